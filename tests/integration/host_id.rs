//! The three BITS-Host-Id modes.

use crate::cluster::{options, random_bytes, sha256, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;

const PATH: &str = "/uploads/h.bin";

/// Backends that announce themselves with BITS-Host-Id `NODE{i}` and a 60 s fallback.
fn announcing(mode: &'static str) -> crate::cluster::ClusterBuilder {
    Cluster::new()
        .backends(2)
        .host_id_mode(mode)
        .server(|i, config| {
            config.host_id = Some(format!("NODE{i}"));
            config.host_id_fallback_timeout = Some(60);
        })
}

async fn create(cluster: &Cluster, host: Option<&str>) -> bits_testkit::client::raw::RawResponse {
    let mut request = RawRequest::bits(PacketType::CreateSession, PATH)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    if let Some(host) = host {
        request = request.header("Host", host);
    }
    let response = cluster.send(&request).await;
    assert_eq!(response.status, 200);
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_mode_removes_host_id_headers_so_clients_stay_on_the_proxy() {
    let cluster = announcing("strip").start().await;
    let ack = create(&cluster, None).await.ack();
    assert_eq!(ack.host_id, None);
    assert_eq!(ack.host_id_fallback_timeout, None);
    let data = random_bytes(700_000, 11);
    let report = cluster
        .upload(PATH, &data, &options(100_000))
        .await
        .expect("upload");
    assert_eq!(report.host_id, None);
    assert_eq!(cluster.committed_sha256(PATH), vec![sha256(&data)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_mode_relays_host_id_and_routes_that_name_to_its_node() {
    let cluster = announcing("passthrough").start().await;
    let response = create(&cluster, None).await;
    let ack = response.ack();
    let host_id = ack.host_id.clone().expect("Host-Id relayed");
    assert_eq!(ack.host_id_fallback_timeout, Some(60));
    let owner: usize = host_id.trim_start_matches("NODE").parse().expect("NODEi");
    let session = ack.session_id.expect("session").to_string();
    assert_eq!(cluster.owners_of(&session), vec![owner]);
    // A client that reaches bitsgate under the Host-Id name (DNS points it here) lands
    // on that node even for a Ping, which carries no session.
    let before = cluster
        .stats(owner)
        .packets
        .get("ping")
        .copied()
        .unwrap_or(0);
    let ping = cluster
        .send(&RawRequest::bits(PacketType::Ping, PATH).header("Host", &host_id))
        .await;
    assert_eq!(ping.status, 200);
    assert_eq!(
        cluster.stats(owner).packets.get("ping").copied(),
        Some(before + 1)
    );
    // A client that falls back to the original URL keeps its session through the pin.
    let fragment = RawRequest::fragment(PATH, &session, 0, bytes::Bytes::from_static(b"abc"), 3);
    assert_eq!(cluster.send(&fragment).await.status, 200);
    assert_eq!(cluster.owners_of(&session), vec![owner]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_mode_replaces_host_id_with_the_public_name_and_fallback() {
    let cluster = announcing("rewrite").start().await;
    let ack = create(&cluster, None).await.ack();
    let session = ack.session_id.expect("session").to_string();
    let owner = cluster.owners_of(&session)[0];
    assert_eq!(
        ack.host_id.as_deref(),
        Some(format!("b{owner}.bits.example").as_str())
    );
    assert_eq!(
        ack.host_id_fallback_timeout,
        Some(2),
        "the configured fallback, not the backend's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_follows_a_rewritten_host_id_through_the_proxy_to_the_owner() {
    let cluster = Cluster::new()
        .backends(3)
        .host_id_mode("rewrite")
        .start()
        .await;
    let mut opts = options(64 << 10);
    opts.new_connection_per_packet = true;
    for i in 0..3 {
        opts.resolve
            .insert(format!("b{i}.bits.example"), cluster.proxy_addr());
    }
    let data = random_bytes(400_000, 21);
    let report = cluster.upload(PATH, &data, &opts).await.expect("upload");
    let host_id = report.host_id.clone().expect("the client switched host");
    let session = report.session_id.expect("session");
    let owner = cluster.owners_of(&session);
    assert_eq!(owner.len(), 1);
    assert_eq!(host_id, format!("b{}.bits.example", owner[0]));
    assert_eq!(report.restarts, 0);
    assert!(!report.fell_back);
    assert_eq!(cluster.committed_sha256(PATH), vec![sha256(&data)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_rewrite_mode_a_fresh_proxy_routes_by_host_name_without_a_pin() {
    let cluster = Cluster::new()
        .backends(2)
        .host_id_mode("rewrite")
        .start()
        .await;
    let ack = create(&cluster, None).await.ack();
    let session = ack.session_id.expect("session").to_string();
    let owner = cluster.owners_of(&session)[0];
    // Forget the pin, as a replica that never saw the Create-Session would.
    let key = bitsgate::session::SessionKey::new(&session);
    cluster.proxy.shared.table.unpin(&key).expect("pinned");
    let fragment = RawRequest::fragment(PATH, &session, 0, bytes::Bytes::from_static(b"xyz"), 3)
        .header("Host", format!("b{owner}.bits.example"));
    let response = cluster.send(&fragment).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        cluster.stats(owner).sessions[&session]
            .packets
            .get("fragment"),
        Some(&1)
    );
}
