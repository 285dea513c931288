//! Expiry, activity and the Cancel-Session bitsgate sends itself, through the real
//! proxy: which Host and URL a cancel carries, which packets keep a pin alive, when
//! no cancel is sent, and Create-Session Acks that cannot be pinned.

use crate::cluster::{eventually, sample, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;
use std::time::Duration;

const PATH: &str = "/uploads/report.bin";

fn create_session(path: &str) -> RawRequest {
    RawRequest::bits(PacketType::CreateSession, path)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL)
}

fn session_state(cluster: &Cluster, backend: usize, session: &str) -> Option<String> {
    cluster
        .stats(backend)
        .sessions
        .get(session)
        .map(|s| s.state.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_cancel_reaches_a_site_bound_to_a_host_name_at_the_session_url() {
    let cluster = Cluster::new()
        .backends(1)
        .server(|_, config| {
            config.host_name = Some("bits.example".into());
            config.require_session_url = true;
        })
        .config("[sessions]\nidle_timeout = \"1s\"\nsweep_interval = \"100ms\"")
        .start()
        .await;
    let host = format!("bits.example:{}", cluster.proxy_addr().port());
    let response = cluster
        .send(&create_session(PATH).header("Host", host.as_str()))
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    let session = response.ack().session_id.expect("session id").to_string();
    eventually(
        "the expired session is cancelled at its owner",
        Duration::from_secs(10),
        || session_state(&cluster, 0, &session).as_deref() == Some("cancelled"),
    )
    .await;
    cluster
        .metrics_when(
            "bitsgate_cancels_sent_total{outcome=\"ok\",reason=\"expired\"}",
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_answered_503_because_the_owner_is_down_do_not_keep_its_pin_alive() {
    let mut cluster = Cluster::new()
        .backends(1)
        .config("[sessions]\nidle_timeout = \"2s\"\nsweep_interval = \"100ms\"")
        .start()
        .await;
    let session = cluster.create_session(PATH).await;
    cluster.stop_backend(0).await;
    let close = RawRequest::bits(PacketType::CloseSession, PATH)
        .header("BITS-Session-Id", session.as_str());
    let expired = "bitsgate_sessions_ended_total{backend=\"b0\",reason=\"expired\"}";
    // The client keeps retrying more often than the idle timeout; every answer is a
    // local 503 (owner unavailable) until the pin expires.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = cluster.send(&close).await;
        if sample(&cluster.metrics().await, expired) == Some(1.0) {
            break;
        }
        assert_eq!(response.status, 503, "{response:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "the pin never expired while its owner was down"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Expired: the client is told to restart.
    let response = cluster.send(&close).await;
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(
        response.ack().error_code,
        Some(bits_proto::ErrorCode::SESSION_NOT_FOUND)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_mode_never_cancels_an_expired_pin() {
    let cluster = Cluster::new()
        .backends(1)
        .host_id_mode("passthrough")
        .config("[sessions]\nidle_timeout = \"1s\"\nsweep_interval = \"100ms\"")
        .start()
        .await;
    let session = cluster.create_session(PATH).await;
    cluster
        .metrics_when(
            "bitsgate_sessions_ended_total{backend=\"b0\",reason=\"expired\"}",
            1.0,
        )
        .await;
    // Sweeps go on; none of them cancels the upload the client continues directly.
    let sweeps_later = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < sweeps_later {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        session_state(&cluster, 0, &session).as_deref(),
        Some("open")
    );
    assert_eq!(cluster.stats(0).packets.get("cancel_session"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_another_backend_holds_is_refused_cancelled_and_counted() {
    let cluster = Cluster::new()
        .backends(2)
        .server(|_, config| config.ids_from_path = true)
        .start()
        .await;
    let first = cluster.send(&create_session(PATH)).await;
    assert_eq!(first.status, 200, "{first:?}");
    let session = first.ack().session_id.expect("session id").to_string();
    let owner = cluster.owners_of(&session);
    assert_eq!(owner.len(), 1);
    let owner = owner[0];
    let other = 1 - owner;

    // Round robin sends the next Create-Session to the other backend, which issues the
    // same id for the same path.
    let second = cluster.send(&create_session(PATH)).await;
    assert_eq!(second.status, 503, "{second:?}");
    assert_eq!(second.ack().session_id, None);
    assert_eq!(
        cluster.owners_of(&session).len(),
        2,
        "both backends issued it"
    );
    eventually(
        "the duplicate is cancelled at the backend that issued it",
        Duration::from_secs(10),
        || session_state(&cluster, other, &session).as_deref() == Some("cancelled"),
    )
    .await;
    let metrics = cluster
        .metrics_when(
            &format!("bitsgate_session_id_collisions_total{{backend=\"b{other}\"}}"),
            1.0,
        )
        .await;
    assert_eq!(
        sample(
            &metrics,
            "bitsgate_cancels_sent_total{outcome=\"ok\",reason=\"id_collision\"}"
        ),
        Some(1.0)
    );
    // The first client's session still goes to its own backend.
    assert_eq!(
        cluster
            .proxy
            .shared
            .table
            .owner(&bitsgate::session::SessionKey::new(&session)),
        cluster
            .proxy
            .shared
            .slots
            .slot(&format!("b{owner}"))
            .ok()
            .map(|(slot, _)| slot)
    );
    let close = RawRequest::bits(PacketType::CloseSession, PATH)
        .header("BITS-Session-Id", session.as_str());
    assert_eq!(cluster.send(&close).await.status, 200);
    assert_eq!(
        session_state(&cluster, owner, &session).as_deref(),
        Some("closed")
    );
}
