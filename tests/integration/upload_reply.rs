//! Upload-reply jobs through bitsgate: the final Fragment's `BITS-Reply-URL` names the
//! proxy, never a backend, and the reply's `HEAD`/`GET`s, on new connections and
//! without a session id, reach the node that ran the job, until the session ends and
//! across a restart of bitsgate.

use crate::cluster::{options, random_bytes, Cluster};
use crate::process::{farm_of, start, stop_gracefully, wait_listening};
use bits_proto::{headers as h, PacketType};
use bits_testkit::client::raw::{self, RawRequest, RawResponse};
use bits_testkit::client::UploadOptions;
use bits_testkit::server::{ServerConfig, Stats};
use std::net::SocketAddr;
use std::time::Duration;

/// Reply mode on every backend, each naming itself differently in its reply URLs: by
/// its address (backend 0), its `host_id` with a port (1), its `public_host_id` (2).
pub(crate) fn reply_mode(i: usize, config: &mut ServerConfig) {
    config.reply = true;
    config.reply_host = match i {
        0 => None,
        1 => Some("NODE1:8080".into()),
        _ => Some(format!("b{i}.bits.example")),
    };
}

fn reply_options() -> UploadOptions {
    UploadOptions {
        upload_reply: true,
        // Several ranged GETs per reply (a reply is ~100 bytes).
        reply_chunk_size: 40,
        ..options(16 << 10)
    }
}

fn replies_served(stats: &Stats) -> u64 {
    stats.packets.get("reply").copied().unwrap_or(0)
}

/// What a backend's name looks like in a URL, any of them.
fn names_a_backend(url: &str, backends: &[SocketAddr]) -> bool {
    let url = url.to_ascii_lowercase();
    url.contains("node") || url.contains("bits.example") || {
        backends.iter().any(|a| url.contains(&a.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_downloads_reach_only_the_owner_and_the_reply_url_names_the_proxy() {
    let cluster = Cluster::new().backends(3).server(reply_mode).start().await;
    let backends: Vec<SocketAddr> = (0..3).map(|i| backend_addr(&cluster, i)).collect();
    let mut uploads = Vec::new();
    for n in 0..6u64 {
        let data = random_bytes(40_000 + n as usize, 70 + n);
        let path = format!("/uploads/reply-{n}.bin");
        let report = cluster
            .upload(&path, &data, &reply_options())
            .await
            .expect("upload-reply job completes");
        let url = report
            .reply_url
            .clone()
            .expect("final Ack with a reply URL");
        assert!(
            url.starts_with(&format!("http://{}/_bits/replies/", cluster.proxy_addr())),
            "{url}"
        );
        assert!(!names_a_backend(&url, &backends), "{url}");
        let reply = report.reply.clone().expect("reply downloaded");
        assert!(bits_testkit::reply::is_reply_to(&reply, &data), "{reply:?}");
        assert!(report.reply_requests >= 3, "HEAD and ranged GETs");
        uploads.push(report);
    }

    // Every reply request reached the owner of its session, and only it.
    let stats = cluster.all_stats();
    let mut expected = [0u64; 3];
    for report in &uploads {
        let id = report.session_id.as_deref().expect("session id");
        let owners = cluster.owners_of(id);
        assert_eq!(owners.len(), 1, "{id}");
        let session = &stats[owners[0]].sessions[id];
        assert_eq!(session.reply_requests, report.reply_requests, "{id}");
        assert_eq!(session.state, "closed");
        expected[owners[0]] += report.reply_requests;
    }
    let served: Vec<u64> = stats.iter().map(replies_served).collect();
    assert_eq!(served, expected);
    assert!(expected.iter().all(|&n| n > 0), "every backend ran jobs");

    // Closed: the routes are gone, and a GET of a reply path is balanced like any
    // request that is not a BITS packet.
    cluster.metrics_when("bitsgate_reply_routes", 0.0).await;
    let url = uploads[0].reply_url.as_deref().unwrap();
    let path = url.trim_start_matches(&format!("http://{}", cluster.proxy_addr()));
    let before: Vec<u64> = stats.iter().map(|s| s.requests_total).collect();
    for _ in 0..6 {
        let response = cluster.send(&RawRequest::new("GET", path)).await;
        assert_eq!(response.status, 404, "the session ended");
    }
    let after: Vec<u64> = cluster
        .all_stats()
        .iter()
        .map(|s| s.requests_total)
        .collect();
    let reached = before.iter().zip(&after).filter(|(b, a)| a > b).count();
    assert!(
        reached > 1,
        "balanced over the farm: {before:?} -> {after:?}"
    );
}

fn backend_addr(cluster: &Cluster, i: usize) -> SocketAddr {
    cluster.proxy.shared.generation().farm.backends[i].address
}

/// `HEAD path` on a new connection (the raw client would wait for a body): asserts a
/// 200 and returns its `Content-Length`.
async fn head(proxy: SocketAddr, path: &str) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let request = format!("HEAD {path} HTTP/1.1\r\nHost: {proxy}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("HEAD sent");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("HEAD answered and the connection closed")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no Content-Length: {answer}"))
}

/// The reply at `path`, downloaded through `proxy` as a BITS client does: `HEAD`, then
/// the reply in small ranges, each request on a new connection.
pub(crate) async fn download_reply(proxy: SocketAddr, path: &str) -> Vec<u8> {
    let total = head(proxy, path).await;
    let mut reply = Vec::new();
    while reply.len() < total {
        let last = (reply.len() + 29).min(total - 1);
        let range = format!("bytes={}-{last}", reply.len());
        let part = raw::send(proxy, &RawRequest::new("GET", path).header("Range", range))
            .await
            .expect("GET");
        assert_eq!(part.status, 206, "{part:?}");
        reply.extend_from_slice(&part.body);
    }
    reply
}

/// Backend `owner` served at least `at_least` reply requests, the others none.
pub(crate) fn only_the_owner_served(stats: &[Stats], owner: usize, at_least: u64) {
    for (i, stats) in stats.iter().enumerate() {
        let served = replies_served(stats);
        if i == owner {
            assert!(
                served >= at_least,
                "HEAD and ranged GETs at the owner: {served}"
            );
        } else {
            assert_eq!(served, 0, "backend {i} is not the owner");
        }
    }
}

/// Create-Session and one Fragment holding the whole file, through `proxy`: returns the
/// session id and the final Ack.
pub(crate) async fn upload_until_reply(
    proxy: SocketAddr,
    path: &str,
    data: &[u8],
) -> (String, RawResponse) {
    let created = raw::send(
        proxy,
        &RawRequest::bits(PacketType::CreateSession, path)
            .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL),
    )
    .await
    .expect("Create-Session");
    assert_eq!(created.status, 200, "{created:?}");
    let id = created.ack().session_id.expect("session id").to_string();
    let total = data.len() as u64;
    let fragment = RawRequest::fragment(path, &id, 0, data.to_vec().into(), total);
    let ack = raw::send(proxy, &fragment).await.expect("final Fragment");
    assert_eq!(ack.status, 200, "{ack:?}");
    (id, ack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_route_survives_a_restart_of_bitsgate_between_the_final_ack_and_the_download() {
    let farm = farm_of(3, 3, reply_mode).await;
    let mut first = start(&farm, false, "first.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let data = random_bytes(30_000, 7);
    let (id, ack) = upload_until_reply(farm.proxy, "/uploads/restart.bin", &data).await;
    let url = ack.header(h::REPLY_URL).expect("reply URL").to_owned();
    let prefix = format!("http://{}/_bits/replies/", farm.proxy);
    assert!(url.starts_with(&prefix), "{url}");

    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let mut second = start(&farm, false, "second.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));

    let path = &url[format!("http://{}", farm.proxy).len()..];
    let reply = download_reply(farm.proxy, path).await;
    assert!(bits_testkit::reply::is_reply_to(&reply, &data));
    let owner = (0..3)
        .find(|&i| farm.backends[i].stats().sessions.contains_key(&id))
        .expect("an owner");
    let stats: Vec<Stats> = farm.backends.iter().map(|b| b.stats()).collect();
    only_the_owner_served(&stats, owner, 4);

    let close = raw::send(
        farm.proxy,
        &RawRequest::bits(PacketType::CloseSession, "/uploads/restart.bin")
            .header(h::SESSION_ID, id.as_str()),
    )
    .await
    .expect("Close-Session");
    assert_eq!(close.status, 200, "{close:?}");
    stop_gracefully(&mut second);
}

/// The only slow test: an upload-reply final Ack held 70 s by the server application
/// (as IIS does while it computes the reply) must reach the client through bitsgate's
/// default `[upstream] read_timeout`. Named `slow_` so a quick local run can skip it
/// (`cargo test -- --skip slow_`); the suite runs it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_a_final_ack_held_70_seconds_reaches_the_client_through_the_default_timeouts() {
    let cluster = Cluster::new()
        .backends(1)
        .server(|i, config| {
            reply_mode(i, config);
            config.reply_delay = Duration::from_secs(70);
        })
        .start()
        .await;
    let read_timeout = cluster
        .proxy
        .shared
        .generation()
        .config
        .upstream
        .read_timeout;
    assert!(read_timeout > Duration::from_secs(70), "{read_timeout:?}");
    let data = random_bytes(20_000, 9);
    let options = UploadOptions {
        request_timeout: Duration::from_secs(150),
        max_retries: 0,
        ..reply_options()
    };
    let started = std::time::Instant::now();
    let report = cluster
        .upload("/uploads/slow.bin", &data, &options)
        .await
        .expect("the held Ack arrives");
    assert!(started.elapsed() >= Duration::from_secs(70));
    assert_eq!(report.retries, 0, "no request was cut and resent");
    let reply = report.reply.expect("reply downloaded");
    assert!(bits_testkit::reply::is_reply_to(&reply, &data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_owner_cannot_be_reached_gets_503_and_no_other_node_is_asked() {
    let mut cluster = Cluster::new().backends(3).server(reply_mode).start().await;
    let data = random_bytes(10_000, 11);
    let (id, ack) = upload_until_reply(cluster.proxy_addr(), "/uploads/down.bin", &data).await;
    let url = ack.header(h::REPLY_URL).expect("reply URL").to_owned();
    let path = url[format!("http://{}", cluster.proxy_addr()).len()..].to_owned();
    let owner = cluster.owners_of(&id)[0];
    cluster.stop_backend(owner).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != owner).collect();
    let before: Vec<u64> = others
        .iter()
        .map(|&i| cluster.stats(i).requests_total)
        .collect();
    for _ in 0..3 {
        let response = cluster.send(&RawRequest::new("GET", path.as_str())).await;
        assert_eq!(response.status, 503, "{response:?}");
    }
    let after: Vec<u64> = others
        .iter()
        .map(|&i| cluster.stats(i).requests_total)
        .collect();
    assert_eq!(before, after, "no other backend was asked");

    // Back on its address: the route still leads there.
    cluster.restart_backend(owner).await;
    let response = cluster.send(&RawRequest::new("GET", path.as_str())).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(bits_testkit::reply::is_reply_to(&response.body, &data));
}
