//! The fast path answers as Pingora's proxy does: the same packets, sent through a
//! bitsgate with `[listener] fast_path` on and through one with it off, get the same
//! answers, and the first served them on the fast path
//! (`bitsgate_fast_path_requests_total`); long request bodies go through a pipe with
//! `splice(2)` whole and under the same body clock.

use crate::cluster::{options, random_bytes, sample, sha256, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::{RawRequest, RawResponse};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/uploads/paths.bin";

/// What must be alike: the status, the BITS headers and the framing of an answer
/// (not the session id's value, which the backend makes up, nor the date).
fn what_matters(response: &RawResponse) -> String {
    let mut out = format!("{}", response.status);
    for name in [
        "BITS-Packet-Type",
        "BITS-Error-Code",
        "BITS-Error-Context",
        "BITS-Received-Content-Range",
        "BITS-Protocol",
        "BITS-Host-Id",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
    ] {
        out.push_str(&format!(" {name}={:?}", response.header(name)));
    }
    let echoed = response.header("BITS-Session-Id").is_some();
    out.push_str(&format!(
        " session-id={echoed} body={}",
        response.body.len()
    ));
    out
}

/// A whole upload, the usual refusals and every malformed packet of `malformed.rs`,
/// through `cluster`: (what was sent, what mattered in the answer).
async fn script(cluster: &Cluster) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let send = |label: String, request: RawRequest| {
        let cluster = &*cluster;
        async move {
            let response = cluster.send(&request).await;
            (label, what_matters(&response), response)
        }
    };
    let (label, answer, _) = send("ping".into(), RawRequest::bits(PacketType::Ping, PATH)).await;
    seen.push((label, answer));
    let create = RawRequest::bits(PacketType::CreateSession, PATH)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    let (label, answer, created) = send("create".into(), create).await;
    seen.push((label, answer));
    let session = created.ack().session_id.expect("a session id").to_string();
    for (first, data) in [(0u64, &b"abcd"[..]), (4, &b"efgh"[..])] {
        let fragment = RawRequest::fragment(PATH, &session, first, data.to_vec().into(), 8);
        let (label, answer, _) = send(format!("fragment at {first}"), fragment).await;
        seen.push((label, answer));
    }
    let close =
        RawRequest::bits(PacketType::CloseSession, PATH).header("BITS-Session-Id", &session);
    let (label, answer, _) = send("close".into(), close).await;
    seen.push((label, answer));
    let after_close = RawRequest::fragment(PATH, &session, 0, b"abcd".to_vec().into(), 8);
    let (label, answer, _) = send("fragment after close".into(), after_close).await;
    seen.push((label, answer));
    let closing = RawRequest::bits(PacketType::Ping, PATH).header("Connection", "close");
    let (label, answer, _) = send("ping asking to close".into(), closing).await;
    seen.push((label, answer));
    let forwarded =
        RawRequest::bits(PacketType::Ping, PATH).header("X-Forwarded-For", "203.0.113.9");
    let (label, answer, _) = send("ping with X-Forwarded-For".into(), forwarded).await;
    seen.push((label, answer));
    for (name, request, _) in crate::malformed::cases() {
        let (label, answer, _) = send(name.into(), request).await;
        seen.push((label, answer));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_http_paths_answer_every_packet_alike() {
    let fast = Cluster::new().backends(1).start().await;
    let pingora = Cluster::new()
        .backends(1)
        .listener_config("fast_path = false")
        .start()
        .await;
    let on_fast = script(&fast).await;
    let on_pingora = script(&pingora).await;
    assert_eq!(on_fast.len(), on_pingora.len());
    for ((label, fast_answer), (_, pingora_answer)) in on_fast.iter().zip(&on_pingora) {
        assert_eq!(fast_answer, pingora_answer, "{label}");
    }
    // Every packet took the fast path but the one framed by Transfer-Encoding.
    let framed_otherwise = crate::malformed::cases()
        .iter()
        .filter(|(_, request, _)| {
            String::from_utf8_lossy(&request.encode("x"))
                .to_ascii_lowercase()
                .contains("\r\ntransfer-encoding:")
        })
        .count();
    assert_eq!(framed_otherwise, 1);
    let sent = on_fast.len() as f64;
    let served = |metrics: &str| sample(metrics, "bitsgate_fast_path_requests_total");
    assert_eq!(
        served(&fast.metrics().await),
        Some(sent - framed_otherwise as f64)
    );
    assert_eq!(served(&pingora.metrics().await), Some(0.0));
}

/// Rewrites `cluster`'s config with `[listener] fast_path` set, and reloads it.
async fn reload_with_fast_path(cluster: &Cluster, fast_path: bool) {
    let text: String = cluster
        .read_config()
        .lines()
        .filter(|line| !line.starts_with("fast_path"))
        .map(|line| format!("{line}\n"))
        .collect();
    let text = text.replace(
        "[listener]\n",
        &format!("[listener]\nfast_path = {fast_path}\n"),
    );
    cluster.write_raw_config(&text);
    let (status, body) = cluster.admin_json("POST", "/config/reload", None).await;
    assert_eq!(status, 200, "{body}");
}

async fn served_on_fast_path(cluster: &Cluster) -> Option<f64> {
    sample(
        &cluster.metrics().await,
        "bitsgate_fast_path_requests_total",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_the_fast_path_off_and_on() {
    let cluster = Cluster::new().backends(1).start().await;
    let ping = RawRequest::bits(PacketType::Ping, PATH);
    assert_eq!(cluster.send(&ping).await.status, 200);
    assert_eq!(served_on_fast_path(&cluster).await, Some(1.0));
    reload_with_fast_path(&cluster, false).await;
    assert_eq!(cluster.send(&ping).await.status, 200);
    assert_eq!(
        served_on_fast_path(&cluster).await,
        Some(1.0),
        "Pingora's proxy served it"
    );
    reload_with_fast_path(&cluster, true).await;
    assert_eq!(cluster.send(&ping).await.status, 200);
    assert_eq!(served_on_fast_path(&cluster).await, Some(2.0));
}

fn spliced(metrics: &str) -> f64 {
    sample(metrics, "bitsgate_fast_path_spliced_bytes_total").unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_fragments_go_through_a_pipe_and_arrive_whole() {
    // Three 1 MiB fragments and a short last one: the long ones are spliced, the
    // short one (under 64 KiB) goes through the buffer.
    let data = random_bytes(3 * 1024 * 1024 + 12_345, 11);
    let on = Cluster::new().backends(1).start().await;
    let off = Cluster::new()
        .backends(1)
        .listener_config("splice = false")
        .start()
        .await;
    for cluster in [&on, &off] {
        let report = cluster
            .upload("/uploads/spliced.bin", &data, &options(1024 * 1024))
            .await;
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(
            cluster.committed_sha256("/uploads/spliced.bin"),
            vec![sha256(&data)]
        );
    }
    // What came in the read that found each head was written with it.
    let moved = spliced(&on.metrics().await);
    assert!(
        moved > (3 * 1024 * 1024 - 3 * 64 * 1024) as f64 && moved <= (3 * 1024 * 1024) as f64,
        "spliced {moved}"
    );
    assert_eq!(spliced(&off.metrics().await), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spliced_body_that_stalls_is_dropped_after_the_body_timeout() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("body_timeout = \"1s\"\nbody_min_bytes = 100")
        .start()
        .await;
    let create = RawRequest::bits(PacketType::CreateSession, PATH)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    let session = cluster
        .send(&create)
        .await
        .ack()
        .session_id
        .expect("a session id")
        .to_string();
    // A 1 MiB fragment of which 200 KiB come at once (spliced), then nothing.
    let addr = cluster.proxy_addr();
    let total = 1024 * 1024;
    let first = random_bytes(200 * 1024, 12);
    let head = format!(
        "BITS_POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nBITS-Packet-Type: Fragment\r\n\
         BITS-Session-Id: {session}\r\nContent-Range: bytes 0-{}/{total}\r\n\
         Content-Length: {total}\r\n\r\n",
        total - 1
    );
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(head.as_bytes()).await.expect("writes");
    stream.write_all(&first).await.expect("writes");
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open after 10 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let metrics = cluster.metrics().await;
    let closed_slow = sample(
        &metrics,
        "bitsgate_client_connections_closed_total{reason=\"body_too_slow\"}",
    );
    assert_eq!(closed_slow, Some(1.0), "{metrics}");
    assert!(spliced(&metrics) >= (64 * 1024) as f64, "{metrics}");
}

/// Pipelined requests behind one whose head is longer than the fast path's first read
/// (1 KiB): the bytes past what the first read took are read later, not dropped when
/// the first request's leftovers are given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_pings_behind_a_long_head_are_all_answered() {
    let cluster = Cluster::new().backends(1).start().await;
    let ping = "BITS_POST /uploads/p.bin HTTP/1.1\r\nHost: a\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n";
    let mut burst = format!(
        "BITS_POST /uploads/p.bin HTTP/1.1\r\nHost: a\r\nBITS-Packet-Type: Ping\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
        "p".repeat(2400)
    );
    for _ in 0..20 {
        burst.push_str(ping);
    }
    let mut stream = TcpStream::connect(cluster.proxy_addr()).await.unwrap();
    stream.write_all(burst.as_bytes()).await.unwrap();
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 16384];
    while count(&answers, b"HTTP/1.1 ") < 21 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answers.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    assert_eq!(
        count(&answers, b"HTTP/1.1 200"),
        21,
        "{}",
        String::from_utf8_lossy(&answers)
    );
    assert_eq!(served_on_fast_path(&cluster).await, Some(21.0));
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}
