//! The client's address reaches the backends: `X-Forwarded-For` built from the TCP
//! peer or from a PROXY protocol header (v1 and v2), a spoofed value dropped outside
//! `trusted_forwarders`, and a connection without the PROXY header closed with
//! nothing forwarded.

use crate::cluster::{access_log_clients, eventually, sample, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::{self, RawRequest};
use std::net::SocketAddr;
use std::time::Duration;

/// A Ping, which every backend answers without a session.
fn ping() -> RawRequest {
    RawRequest::bits(PacketType::Ping, "/uploads/")
}

/// The `X-Forwarded-For` values backend 0 saw, one per connection (latest request).
/// Requests each backend connection has carried, to tell which one the next request
/// takes: bitsgate may open a new upstream connection for a new client connection
/// (another worker thread, another pool) or reuse one.
fn requests_per_connection(cluster: &Cluster) -> std::collections::BTreeMap<u64, u64> {
    cluster
        .stats(0)
        .connections
        .iter()
        .map(|(id, c)| (*id, c.requests))
        .collect()
}

/// The `X-Forwarded-For` of the latest request, found on the connection whose request
/// count grew since `before`.
fn seen_since(cluster: &Cluster, before: &std::collections::BTreeMap<u64, u64>) -> Vec<String> {
    cluster
        .stats(0)
        .connections
        .iter()
        .filter(|(id, c)| before.get(id) != Some(&c.requests))
        .filter_map(|(_, c)| c.last_forwarded_for.clone())
        .collect()
}

fn seen(cluster: &Cluster) -> Vec<String> {
    cluster
        .stats(0)
        .connections
        .values()
        .filter_map(|c| c.last_forwarded_for.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_is_appended_to_x_forwarded_for() {
    let cluster = Cluster::new().backends(1).start().await;
    let answer = cluster.send(&ping()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(seen(&cluster), vec!["127.0.0.1".to_owned()]);

    // A value brought by the client stays in front (no trusted_forwarders: all kept).
    let answer = cluster
        .send(&ping().header("X-Forwarded-For", "203.0.113.9"))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        seen(&cluster),
        vec!["203.0.113.9, 127.0.0.1".to_owned()],
        "one pooled upstream connection, its latest request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_from_outside_the_trusted_forwarders_is_dropped() {
    let cluster = Cluster::new()
        .backends(1)
        .upstream_config("trusted_forwarders = [\"10.0.0.0/8\", \"192.0.2.1\"]")
        .start()
        .await;
    let answer = cluster
        .send(&ping().header("X-Forwarded-For", "203.0.113.9"))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(seen(&cluster), vec!["127.0.0.1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_off_sends_no_header() {
    let cluster = Cluster::new()
        .backends(1)
        .upstream_config("forwarded_for = false")
        .start()
        .await;
    assert_eq!(cluster.send(&ping()).await.status, 200);
    assert!(seen(&cluster).is_empty(), "{:?}", seen(&cluster));
}

/// Sends `header` and then a Ping on one new connection.
async fn ping_behind(cluster: &Cluster, header: &[u8]) -> Result<u16, raw::RawError> {
    let addr = cluster.proxy_addr();
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&ping().encode(&addr.to_string()));
    raw::send_bytes(addr, &bytes).await.map(|r| r.status)
}

/// A v2 header from `source` (IPv6) to the listener.
fn v2_header(source: &str) -> Vec<u8> {
    use ppp::v2;
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (
            source.parse::<SocketAddr>().expect("address"),
            "[::1]:8080".parse::<SocketAddr>().expect("address"),
        ),
    )
    .build()
    .expect("a v2 header")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_source_is_the_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("proxy_protocol = true")
        .config(&format!(
            "[log]\naccess = {:?}\n",
            log.display().to_string()
        ))
        .start()
        .await;
    let v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 50123 8080\r\n";
    let before = requests_per_connection(&cluster);
    assert_eq!(ping_behind(&cluster, v1).await.expect("answered"), 200);
    assert_eq!(seen_since(&cluster, &before), vec!["192.0.2.7".to_owned()]);

    let v2 = v2_header("[2001:db8::9]:4000");
    let before = requests_per_connection(&cluster);
    assert_eq!(ping_behind(&cluster, &v2).await.expect("answered"), 200);
    assert_eq!(
        seen_since(&cluster, &before),
        vec!["2001:db8::9".to_owned()]
    );

    // A v2 LOCAL header (a load balancer's own check): the TCP peer is the client.
    let local = ppp::v2::Builder::new(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::AddressFamily::Unspecified | ppp::v2::Protocol::Unspecified,
    )
    .build()
    .expect("a local header");
    let before = requests_per_connection(&cluster);
    assert_eq!(ping_behind(&cluster, &local).await.expect("answered"), 200);
    assert_eq!(seen_since(&cluster, &before), vec!["127.0.0.1".to_owned()]);

    // The access log names the same clients, ports included.
    eventually("three access-log lines", Duration::from_secs(10), || {
        access_log_clients(&log).len() >= 3
    })
    .await;
    let clients = access_log_clients(&log);
    assert_eq!(clients[0], "192.0.2.7:50123");
    assert_eq!(clients[1], "[2001:db8::9]:4000");
    assert!(clients[2].starts_with("127.0.0.1:"), "{clients:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_the_proxy_header_is_closed_and_nothing_forwarded() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("proxy_protocol = true")
        .start()
        .await;
    let refused = ping_behind(&cluster, b"").await;
    assert!(refused.is_err(), "answered without a header: {refused:?}");
    let spoofed = ping_behind(&cluster, b"PROXY TCP4 not-an-address\r\n").await;
    assert!(spoofed.is_err(), "answered a damaged header: {spoofed:?}");
    assert_eq!(
        cluster.stats(0).requests_total,
        0,
        "the backend saw a request"
    );
    let metrics = cluster.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "bitsgate_client_connections_closed_total{reason=\"proxy_header_invalid\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
}
