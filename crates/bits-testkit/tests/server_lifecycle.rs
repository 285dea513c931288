//! The reference server over time: expiry, restart, concurrency, stats.

#[path = "server_support/mod.rs"]
mod support;

use bits_testkit::server::{spawn, Stats};
use std::time::Duration;
use support::*;

const FILE: &str = "/up/file.bin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_expired_and_their_data_deleted() {
    let fx = Fixture::start_with(|c| {
        c.session_idle_timeout = Duration::from_millis(200);
        c.cleanup_interval = Duration::from_millis(20);
    })
    .await;
    let id = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &id, 0, 100, &[1; 10]).await;
    wait_until("the session to expire", || {
        fx.server.stats().sessions_expired == 1
    })
    .await;
    assert_eq!(fx.server.stats().sessions[&id].state, "expired");
    assert_eq!(fx.server.stats().sessions_open, 0);
    assert!(fx.session_files(&id).is_empty());
    let resp = fragment(fx.addr(), FILE, &id, 10, 100, &[1; 10]).await;
    assert_eq!(resp.error(), Some(("0x8020001F", "0x5")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_address_recovers_a_half_done_session() {
    let dir = tempfile::tempdir().unwrap();
    let config = Fixture::config(dir.path());
    let server = spawn(config.clone()).await.expect("spawn");
    let addr = server.addr();
    let body = data(50_000, 3);
    let id = open(addr, FILE).await;
    assert_eq!(
        fragment(addr, FILE, &id, 0, 50_000, &body[..20_000])
            .await
            .status,
        200
    );
    server.shutdown().await;

    let mut again = config;
    again.listen = vec![addr];
    let server = spawn(again).await.expect("re-bind the same address");
    assert_eq!(server.addr(), addr);
    let stats = server.stats();
    assert_eq!(stats.sessions_open, 1);
    assert_eq!(stats.sessions[&id].state, "open");
    // The server still knows where the upload stands.
    let resp = fragment(addr, FILE, &id, 30_000, 50_000, &body[30_000..]).await;
    assert_eq!((resp.status, resp.received()), (416, 20_000));
    let resp = fragment(addr, FILE, &id, 20_000, 50_000, &body[20_000..]).await;
    assert_eq!((resp.status, resp.received()), (200, 50_000));
    assert_eq!(close(addr, FILE, &id).await.status, 200);
    let written = std::fs::read(dir.path().join("root/up/file.bin")).unwrap();
    assert_eq!(sha256(&written), sha256(&body));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_in_the_middle_of_a_fragment_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = Fixture::config(dir.path());
    let server = spawn(config.clone()).await.unwrap();
    let addr = server.addr();
    let body = data(40_000, 9);
    let id = open(addr, FILE).await;
    assert_eq!(
        fragment(addr, FILE, &id, 0, 40_000, &body[..10_000])
            .await
            .status,
        200
    );
    // A fragment whose body stalls half way: shutdown must not wait for it forever.
    let mut stalled = Conn::connect(addr).await;
    stalled
        .write_head(
            "BITS_POST",
            FILE,
            &[
                ("BITS-Packet-Type", "Fragment"),
                ("BITS-Session-Id", &id),
                ("Content-Range", "bytes 10000-39999/40000"),
            ],
            30_000,
        )
        .await;
    stalled.write(&body[10_000..20_000]).await;
    wait_until("the stalled fragment to be in progress", || {
        server.stats().packets.get("fragment") == Some(&2)
    })
    .await;
    server.shutdown().await;
    assert!(stalled.closed_by_server().await);

    let mut again = config;
    again.listen = vec![addr];
    let server = spawn(again).await.unwrap();
    // Whatever part of the cut fragment reached the disk, resending from the last
    // acknowledged offset completes the file correctly.
    let resp = fragment(addr, FILE, &id, 10_000, 40_000, &body[10_000..]).await;
    assert_eq!((resp.status, resp.received()), (200, 40_000));
    assert_eq!(close(addr, FILE, &id).await.status, 200);
    let written = std::fs::read(dir.path().join("root/up/file.bin")).unwrap();
    assert_eq!(sha256(&written), sha256(&body));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_a_completed_session_until_it_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = Fixture::config(dir.path());
    let server = spawn(config.clone()).await.unwrap();
    let addr = server.addr();
    let id = open(addr, FILE).await;
    fragment(addr, FILE, &id, 0, 3, b"abc").await;
    server.shutdown().await;

    let mut again = config;
    again.listen = vec![addr];
    let server = spawn(again).await.unwrap();
    assert_eq!(server.stats().sessions[&id].state, "completed");
    let resp = fragment(addr, FILE, &id, 0, 3, b"abc").await;
    assert_eq!((resp.status, resp.received()), (200, 3));
    assert_eq!(close(addr, FILE, &id).await.status, 200);
    assert_eq!(
        std::fs::read(dir.path().join("root/up/file.bin")).unwrap(),
        b"abc"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_listeners_share_one_session_table() {
    let fx = Fixture::start_with(|c| {
        c.listen = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ];
    })
    .await;
    let [a, b] = fx.server.addrs() else {
        panic!("two listeners expected");
    };
    let id = open(*a, FILE).await;
    assert_eq!(fragment(*b, FILE, &id, 0, 2, b"ok").await.status, 200);
    assert_eq!(close(*a, FILE, &id).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_sessions_all_complete() {
    let fx = Fixture::start().await;
    let addr = fx.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u8 {
        tasks.spawn(async move {
            let body = data(20_000 + usize::from(i), i);
            let path = format!("/many/{i}.bin");
            upload(addr, &path, &body, 7_000).await;
            (path, sha256(&body))
        });
    }
    let mut expected = Vec::new();
    while let Some(done) = tasks.join_next().await {
        expected.push(done.expect("upload task"));
    }
    for (path, digest) in expected {
        let written = std::fs::read(fx.root().join(path.trim_start_matches('/'))).unwrap();
        assert_eq!(sha256(&written), digest, "{path}");
    }
    let stats = fx.server.stats();
    assert_eq!(
        (stats.sessions_completed, stats.sessions_closed),
        (100, 100)
    );
    assert_eq!(stats.sessions_open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_endpoint_counts_packets_per_session() {
    let fx = Fixture::start().await;
    ping(fx.addr()).await;
    let id = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &id, 0, 6, b"abc").await;
    fragment(fx.addr(), FILE, &id, 3, 6, b"def").await;
    close(fx.addr(), FILE, &id).await;
    let other = open(fx.addr(), "/b.bin").await;
    cancel(fx.addr(), "/b.bin", &other).await;
    once(
        fx.addr(),
        "BITS_POST",
        FILE,
        &[("BITS-Packet-Type", "Nope")],
        b"",
    )
    .await;

    let resp = once(fx.addr(), "GET", "/_bits/stats", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    let stats: Stats = serde_json::from_slice(&resp.body).expect("Stats JSON");
    assert_eq!(stats.name, NAME);
    // ping, 2 creates, 2 fragments, close, cancel, rejected; the GET itself: 9.
    assert_eq!(stats.requests_total, 9);
    for (label, n) in [
        ("ping", 1),
        ("create_session", 2),
        ("fragment", 2),
        ("close_session", 1),
        ("cancel_session", 1),
        ("rejected", 1),
        ("other", 1),
    ] {
        assert_eq!(stats.packets.get(label), Some(&n), "{label}");
    }
    let s = &stats.sessions[&id];
    assert_eq!(s.packets.get("fragment"), Some(&2));
    assert_eq!(s.packets.get("create_session"), Some(&1));
    assert_eq!(s.packets.get("close_session"), Some(&1));
    assert_eq!(
        (s.bytes, s.state.as_str(), s.path.as_str()),
        (6, "closed", "up/file.bin")
    );
    assert_eq!(stats.sessions[&other].state, "cancelled");
    assert_eq!(
        (
            stats.sessions_completed,
            stats.sessions_closed,
            stats.sessions_cancelled
        ),
        (1, 1, 1)
    );
    assert_eq!(stats.bytes_received, 6);
    assert_eq!(fx.server.stats().requests_total, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections() {
    let fx = Fixture::start().await;
    let mut conn = Conn::connect(fx.addr()).await;
    let resp = conn
        .request("BITS_POST", FILE, &[("BITS-Packet-Type", "Ping")], b"")
        .await;
    assert_eq!(resp.status, 200);
    let Fixture { dir: _dir, server } = fx;
    server.shutdown().await;
    assert!(conn.closed_by_server().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_recognises_a_commit_interrupted_before_it_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = Fixture::config(dir.path());
    let sessions = dir.path().join("root/.bits-sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::create_dir_all(dir.path().join("root/up")).unwrap();
    // The file reached its destination, the metadata still says "not completed", and
    // the temp data is gone: a crash between the two steps of a commit.
    let id = "{11111111-2222-4333-8444-555555555555}";
    let meta = format!(r#"{{"id":"{id}","path":"up/file.bin","total":3,"completed":false}}"#);
    std::fs::write(
        sessions.join("11111111-2222-4333-8444-555555555555.json"),
        meta,
    )
    .unwrap();
    std::fs::write(dir.path().join("root/up/file.bin"), b"abc").unwrap();
    // Temp data without metadata belongs to no session and is cleaned away.
    std::fs::write(
        sessions.join("99999999-2222-4333-8444-555555555555.part"),
        b"x",
    )
    .unwrap();

    let server = spawn(config).await.unwrap();
    assert_eq!(server.stats().sessions[id].state, "completed");
    assert!(!sessions
        .join("99999999-2222-4333-8444-555555555555.part")
        .exists());
    let resp = fragment(server.addr(), FILE, id, 0, 3, b"abc").await;
    assert_eq!((resp.status, resp.received()), (200, 3));
    assert_eq!(close(server.addr(), FILE, id).await.status, 200);
    assert_eq!(std::fs::read_dir(&sessions).unwrap().count(), 0);
    server.shutdown().await;
}
