//! Every bad-input rule of bits-proto, through the real proxy: the prescribed Ack, and
//! no backend sees the request.

use crate::cluster::Cluster;
use bits_proto::{ErrorCode, ErrorContext, PacketType};
use bits_testkit::client::raw::RawRequest;

const SESSION: &str = "{11111111-2222-3333-4444-555555555555}";
const PATH: &str = "/uploads/m.bin";

fn fragment() -> RawRequest {
    RawRequest::bits(PacketType::Fragment, PATH).header("BITS-Session-Id", SESSION)
}

/// (name, request, whether the Ack must echo the session id)
pub(crate) fn cases() -> Vec<(&'static str, RawRequest, bool)> {
    vec![
        (
            "missing packet type",
            RawRequest::new("BITS_POST", PATH),
            false,
        ),
        (
            "unknown packet type",
            RawRequest::new("BITS_POST", PATH).header("BITS-Packet-Type", "Upload"),
            false,
        ),
        (
            "Ack as a request",
            RawRequest::new("BITS_POST", PATH).header("BITS-Packet-Type", "Ack"),
            false,
        ),
        (
            "missing session id",
            RawRequest::bits(PacketType::Fragment, PATH)
                .header("Content-Range", "bytes 0-0/1")
                .body(vec![1u8]),
            false,
        ),
        (
            "session id too long",
            RawRequest::bits(PacketType::CloseSession, PATH)
                .header("BITS-Session-Id", "x".repeat(101)),
            false,
        ),
        (
            "session id with a space",
            RawRequest::bits(PacketType::CloseSession, PATH).header("BITS-Session-Id", "a b"),
            false,
        ),
        (
            "session id with non-ASCII",
            RawRequest::bits(PacketType::CancelSession, PATH)
                .header("BITS-Session-Id", "caf\u{e9}"),
            false,
        ),
        ("missing range", fragment().body(vec![1u8; 4]), true),
        (
            "range without unit",
            fragment()
                .header("Content-Range", "0-3/4")
                .body(vec![1u8; 4]),
            true,
        ),
        (
            "range last before first",
            fragment()
                .header("Content-Range", "bytes 3-0/4")
                .body(vec![1u8; 4]),
            true,
        ),
        (
            "range total not after last",
            fragment()
                .header("Content-Range", "bytes 0-3/3")
                .body(vec![1u8; 4]),
            true,
        ),
        (
            "range overflow",
            fragment()
                .header("Content-Range", "bytes 0-3/99999999999999999999")
                .body(vec![1u8; 4]),
            true,
        ),
        (
            "range with garbage",
            fragment()
                .header("Content-Range", "bytes 0-3/4x")
                .body(vec![1u8; 4]),
            true,
        ),
        (
            "content length mismatch",
            fragment()
                .header("Content-Range", "bytes 0-9/10")
                .body(vec![1u8; 4]),
            true,
        ),
        (
            "conflicting packet types",
            RawRequest::bits(PacketType::Ping, PATH).header("BITS-Packet-Type", "Fragment"),
            false,
        ),
        (
            "conflicting session ids",
            fragment()
                .header("BITS-Session-Id", "{other}")
                .header("Content-Range", "bytes 0-0/1")
                .body(vec![1u8]),
            false,
        ),
        (
            "BITS header value over 4 KiB",
            RawRequest::bits(PacketType::Ping, PATH).header("BITS-Padding", "p".repeat(4097)),
            false,
        ),
        (
            "transfer encoding on a fragment",
            fragment()
                .header("Content-Range", "bytes 0-3/4")
                .header("Transfer-Encoding", "chunked")
                .body(&b"4\r\nabcd\r\n0\r\n\r\n"[..])
                .exact()
                .header("Host", "x"),
            true,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_packet_gets_a_400_invalidarg_ack_and_no_backend_sees_it() {
    let cluster = Cluster::new().backends(2).start().await;
    for (name, request, echo) in cases() {
        let before = cluster.requests_seen();
        let response = cluster.send(&request).await;
        let ack = response.ack();
        assert_eq!(response.status, 400, "{name}");
        assert!(ack.is_ack, "{name}: BITS-Packet-Type: Ack");
        assert_eq!(ack.error_code, Some(ErrorCode::INVALID_ARG), "{name}");
        assert_eq!(ack.error_context, Some(ErrorContext::REMOTE_FILE), "{name}");
        assert_eq!(response.header("Content-Length"), Some("0"), "{name}");
        let echoed = ack.session_id.map(|s| s.to_string());
        if echo {
            assert_eq!(
                echoed.as_deref(),
                Some(SESSION),
                "{name}: echoes the valid session id"
            );
        } else if name.starts_with("session id") {
            assert_eq!(echoed, None, "{name}: an invalid id is never echoed");
        }
        assert_eq!(
            cluster.requests_seen(),
            before,
            "{name}: a backend saw the request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_counted_by_reason() {
    let cluster = Cluster::new().backends(1).start().await;
    cluster.send(&RawRequest::new("BITS_POST", PATH)).await;
    cluster.send(&RawRequest::new("BITS_POST", PATH)).await;
    let metrics = cluster.metrics().await;
    assert_eq!(
        crate::cluster::sample(
            &metrics,
            "bitsgate_local_acks_total{reason=\"missing_packet_type\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
}
