//! Wire behaviour: what the proxy refuses itself and what it passes through untouched.

use crate::cluster::{options, random_bytes, sha256, Cluster};
use bits_proto::ErrorCode;
use bits_testkit::client::raw::{self, RawRequest};

const PATH: &str = "/uploads/w.bin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_over_the_limit_gets_413_without_its_body_being_read() {
    let cluster = Cluster::new()
        .backends(1)
        .config("[limits]\nmax_fragment_bytes = 1000")
        .start()
        .await;
    let session = cluster.create_session(PATH).await;
    let before = cluster.requests_seen();
    // Announce 10 MB but send only the header: a proxy that waited for the body would
    // never answer.
    let head = format!(
        "BITS_POST {PATH} HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {session}\r\nContent-Range: bytes 0-9999999/10000000\r\nContent-Length: 10000000\r\n\r\n"
    );
    let response = raw::send_bytes(cluster.proxy_addr(), head.as_bytes())
        .await
        .expect("an answer without the body");
    assert_eq!(response.status, 413);
    assert!(response.ack().is_ack);
    assert_eq!(
        response
            .header("Connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    assert_eq!(cluster.requests_seen(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_shrinks_its_fragments_after_the_proxy_413_and_completes() {
    let cluster = Cluster::new()
        .backends(2)
        .config("[limits]\nmax_fragment_bytes = \"64KiB\"")
        .start()
        .await;
    let data = random_bytes(500_000, 3);
    let report = cluster
        .upload(PATH, &data, &options(256 << 10))
        .await
        .expect("upload succeeds");
    assert!(report.shrinks > 0);
    assert_eq!(report.restarts, 0);
    assert_eq!(cluster.committed_sha256(PATH), vec![sha256(&data)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bits_post_over_http_1_0_is_refused() {
    let cluster = Cluster::new().backends(1).start().await;
    let request = b"BITS_POST /uploads/w.bin HTTP/1.0\r\nHost: x\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n";
    let response = raw::send_bytes(cluster.proxy_addr(), request)
        .await
        .expect("an answer");
    assert_eq!(response.status, 505);
    assert!(response.ack().is_ack);
    assert_eq!(response.ack().error_code, Some(ErrorCode::INVALID_ARG));
    assert_eq!(cluster.requests_seen(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_with_content_length_is_refused_on_any_request() {
    let cluster = Cluster::new().backends(1).start().await;
    let request = b"POST /other HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n";
    let response = raw::send_bytes(cluster.proxy_addr(), request)
        .await
        .expect("an answer");
    assert_eq!(response.status, 400);
    assert_eq!(cluster.requests_seen(), 0);
}

/// A Create-Session sent as POST + X-Http-Method-Override, as clients that cannot send
/// extension methods do.
fn override_create_session() -> RawRequest {
    RawRequest::new("POST", PATH)
        .header("X-Http-Method-Override", "BITS_POST")
        .header("BITS-Packet-Type", "Create-Session")
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_override_post_is_forwarded_as_bits_post() {
    let cluster = Cluster::new().backends(1).start().await;
    let response = cluster.send(&override_create_session()).await;
    assert_eq!(response.status, 200, "{response:?}");
    let session = response.ack().session_id.expect("session id").to_string();
    let stats = cluster.stats(0);
    assert_eq!(
        stats.packets.get("create_session"),
        Some(&1),
        "the backend saw a BITS Create-Session"
    );
    assert!(stats.sessions.contains_key(&session));
    assert_eq!(cluster.proxy.shared.table.len(), 1, "the session is pinned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_override_is_not_bits_when_disabled() {
    let cluster = Cluster::new().backends(1).start().await;
    // The cluster writes [listener] itself: switch the key off in a new generation.
    let mut config = cluster.proxy.shared.generation().config.clone();
    config.listener.allow_method_override = false;
    cluster.proxy.shared.apply(config).expect("applies");
    let response = cluster.send(&override_create_session()).await;
    // Treated as an ordinary request: forwarded untouched and never pinned. (The
    // reference server itself accepts the override, so it answers it as BITS.)
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(cluster.stats(0).requests_total, 1, "forwarded");
    assert_eq!(cluster.proxy.shared.table.len(), 0, "not pinned");
    cluster
        .metrics_when(
            "bitsgate_requests_total{backend=\"b0\",class=\"2xx\",packet=\"other\"}",
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_fragments_pass_through() {
    let cluster = Cluster::new().backends(1).start().await;
    let session = cluster.create_session(PATH).await;
    let request = RawRequest::fragment(PATH, &session, 0, bytes::Bytes::from_static(b"hello"), 5)
        .header("Expect", "100-continue");
    let response = cluster.send(&request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.ack().received, Some(5));
    assert_eq!(cluster.committed_sha256(PATH), vec![sha256(b"hello")]);
}

/// A Negotiate token of a user in many groups is often over 4 KiB; only the protocol's
/// own headers are bounded by `[limits] max_header_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_kib_authorization_header_reaches_the_backend_on_ping_and_create_session() {
    let cluster = Cluster::new().backends(1).start().await;
    let token = format!("Negotiate {}", "T".repeat(12 << 10));
    let ping =
        RawRequest::bits(bits_proto::PacketType::Ping, PATH).header("Authorization", token.clone());
    let response = cluster.send(&ping).await;
    assert_eq!(response.status, 200, "{response:?}");
    let create = RawRequest::bits(bits_proto::PacketType::CreateSession, PATH)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL)
        .header("Authorization", token);
    let response = cluster.send(&create).await;
    assert_eq!(response.status, 200, "{response:?}");
    let stats = cluster.stats(0);
    assert_eq!(stats.packets.get("ping"), Some(&1), "{stats:?}");
    assert_eq!(stats.packets.get("create_session"), Some(&1), "{stats:?}");
    assert_eq!(cluster.proxy.shared.table.len(), 1, "the session is pinned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bits_header_over_max_header_bytes_is_still_refused() {
    let cluster = Cluster::new().backends(1).start().await;
    let create = RawRequest::bits(bits_proto::PacketType::CreateSession, PATH)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL)
        .header("Content-Name", "n".repeat(4097));
    let response = cluster.send(&create).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.ack().error_code, Some(ErrorCode::INVALID_ARG));
    assert_eq!(cluster.requests_seen(), 0);
}
