//! The `[listener]` limits on client connections, through the real proxy: a header
//! block's deadline (silent and trickling clients), its size, a body's least
//! progress, and the cap on connections. Each closes what it must and nothing else.

use crate::cluster::{options, random_bytes, sample, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::{self, RawRequest};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn ping() -> RawRequest {
    RawRequest::bits(PacketType::Ping, "/uploads/")
}

fn closed_by(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        &format!("bitsgate_client_connections_closed_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(-1.0)
}

/// Reads until the peer closes (or `limit` passes: then panics), returning what came.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads one answer without a body (a Ping Ack) off a kept-alive connection.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("reads");
        assert_eq!(
            n,
            1,
            "closed mid-answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Opens a connection, sends `request` and reads its answer (no body), keeping the
/// connection for more.
async fn open_with(addr: std::net::SocketAddr, request: &RawRequest) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(&request.encode(&addr.to_string()))
        .await
        .expect("writes");
    let answer = read_answer(&mut stream).await;
    (stream, answer)
}

/// The connection is closed by bitsgate with nothing more said, and that close was not
/// counted as a header timeout (the client owed nothing).
async fn closed_without_a_header_timeout(stream: &mut TcpStream, cluster: &Cluster) {
    let got = read_to_close(stream, Duration::from_secs(5)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    let metrics = cluster.metrics().await;
    assert_eq!(closed_by(&metrics, "header_timeout"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_clients_are_closed_after_the_header_timeout() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("header_timeout = \"1s\"")
        .start()
        .await;
    let addr = cluster.proxy_addr();

    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connects");
    let got = read_to_close(&mut silent, Duration::from_secs(5)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A byte every 100 ms keeps every single read short, not the header block.
    let started = Instant::now();
    let mut trickle = TcpStream::connect(addr).await.expect("connects");
    trickle
        .write_all(b"BITS_POST /uploads/ HTTP/1.1\r\n")
        .await
        .expect("writes");
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"X").await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), dripping)
        .await
        .expect("the trickling connection is closed");
    assert!(started.elapsed() < Duration::from_secs(4));

    assert_eq!(cluster.stats(0).requests_total, 0);
    let metrics = cluster.metrics().await;
    assert_eq!(closed_by(&metrics, "header_timeout"), 2.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_starts_the_header_clock_at_the_first_byte() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("header_timeout = \"1s\"")
        .start()
        .await;
    let addr = cluster.proxy_addr();
    let request = ping().encode(&addr.to_string());
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(&request).await.expect("writes");
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle longer than header_timeout, shorter than keepalive_timeout (5 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stream.write_all(&request).await.expect("writes");
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    let metrics = cluster.metrics().await;
    assert_eq!(closed_by(&metrics, "header_timeout"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("keepalive_timeout = \"1s\"")
        .start()
        .await;
    let (mut stream, answer) = open_with(cluster.proxy_addr(), &ping()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle = Instant::now();
    closed_without_a_header_timeout(&mut stream, &cluster).await;
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_after_a_local_answer_is_not_counted_as_a_header_timeout() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("keepalive_timeout = \"1s\"")
        .start()
        .await;
    // A Close-Session for a session nobody pinned: answered by bitsgate itself, with
    // no body read, and the connection kept alive.
    let close = RawRequest::bits(PacketType::CloseSession, "/uploads/x.bin")
        .header("BITS-Session-Id", "{00000000-0000-4000-8000-000000000001}");
    let (mut stream, answer) = open_with(cluster.proxy_addr(), &close).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    closed_without_a_header_timeout(&mut stream, &cluster).await;
    assert_eq!(cluster.stats(0).requests_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_arriving_a_byte_first_and_in_pieces_is_read_whole() {
    let cluster = Cluster::new().backends(1).start().await;
    let addr = cluster.proxy_addr();
    // A head larger than one first read, sent as: one byte, a pause, then the rest
    // in two parts; and again on the same connection.
    let request = ping()
        .header("X-Pad", "p".repeat(1200))
        .encode(&addr.to_string());
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    for _ in 0..2 {
        stream.write_all(&request[..1]).await.expect("writes");
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream.write_all(&request[1..700]).await.expect("writes");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(&request[700..]).await.expect("writes");
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(cluster.stats(0).requests_total, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_over_the_limit_gets_431_and_is_not_forwarded() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("max_header_block = \"2KiB\"")
        .start()
        .await;
    let fits = cluster
        .send(&ping().header("X-Pad", "a".repeat(1500)))
        .await;
    assert_eq!(fits.status, 200);
    let seen = cluster.stats(0).requests_total;

    let addr = cluster.proxy_addr();
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = ping()
        .header("X-Pad", "a".repeat(3000))
        .encode(&addr.to_string());
    let _ = stream.write_all(&request).await;
    let got = read_to_close(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert_eq!(cluster.stats(0).requests_total, seen, "forwarded");
    let metrics = cluster.metrics().await;
    assert_eq!(closed_by(&metrics, "header_too_large"), 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_dropped() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("body_timeout = \"1s\"\nbody_min_bytes = 100")
        .start()
        .await;
    let addr = cluster.proxy_addr();
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "POST /uploads/form HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n\r\n0123456789"
    );
    stream.write_all(head.as_bytes()).await.expect("writes");
    let started = Instant::now();
    let _ = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    let metrics = cluster.metrics().await;
    assert_eq!(closed_by(&metrics, "body_too_slow"), 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_backend_is_not_a_stalled_body() {
    // The backend holds the final Fragment's Ack longer than body_timeout.
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("body_timeout = \"1s\"\nbody_min_bytes = 100")
        .server(|_, config| {
            config.reply = true;
            config.reply_delay = Duration::from_secs(2);
        })
        .start()
        .await;
    let data = random_bytes(64 * 1024, 7);
    let report = cluster
        .upload("/uploads/held.bin", &data, &options(32 * 1024))
        .await;
    assert!(report.is_ok(), "{report:?}");
    let metrics = cluster.metrics().await;
    assert_eq!(closed_by(&metrics, "body_too_slow"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_get_503_until_a_place_frees() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("max_connections = 2")
        .start()
        .await;
    let addr = cluster.proxy_addr();
    let open = || async { sample(&cluster.metrics().await, "bitsgate_client_connections") };
    // The start-up check that the listener is up connected once: its place must be
    // free before the two below take both (on a loaded machine it closes late).
    let deadline = Instant::now() + Duration::from_secs(5);
    while open().await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "a start-up connection kept its place"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = TcpStream::connect(addr).await.expect("connects");
    let _second = TcpStream::connect(addr).await.expect("connects");
    let deadline = Instant::now() + Duration::from_secs(5);
    while open().await != Some(2.0) {
        assert!(Instant::now() < deadline, "two connections never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = raw::send(addr, &ping()).await.expect("an answer");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("Retry-After"), Some("1"));

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open().await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the closed connection kept its place"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster.send(&ping()).await.status, 200);
    let metrics = cluster.metrics().await;
    assert_eq!(closed_by(&metrics, "over_capacity"), 1.0, "{metrics}");
}
