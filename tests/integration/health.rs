//! Backend health on a real cluster: active probes and passive connect failures take
//! a backend down, routing keeps new sessions off it and answers its pinned sessions
//! with 503, and it comes back once it answers again.

use crate::cluster::{eventually, options, random_bytes, sample, sha256, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;
use std::time::Duration;

/// Active BITS Ping probes, fast; passive counting off so only probes decide.
const ACTIVE: &str = "[health_check]\nkind = \"bits_ping\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\npassive_failures = 0";

/// No active probes; two live connect failures take a backend down.
const PASSIVE: &str = "[health_check]\nkind = \"none\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\npassive_failures = 2";

const PATH: &str = "/uploads/pinned.bin";
const DEADLINE: Duration = Duration::from_secs(15);

/// One sample of this instance's metrics, read in-process (the same exposition the
/// admin `/metrics` serves), so it can be polled from `eventually`.
fn metric(cluster: &Cluster, key: &str) -> Option<f64> {
    let text = cluster.proxy.shared.metrics.render();
    sample(&String::from_utf8_lossy(&text), key)
}

fn up(id: &str) -> String {
    format!("bitsgate_backend_up{{backend=\"{id}\"}}")
}

fn transitions(id: &str, to: &str) -> String {
    format!("bitsgate_backend_transitions_total{{backend=\"{id}\",to=\"{to}\"}}")
}

fn connect_failures(id: &str) -> String {
    format!("bitsgate_upstream_connect_failures_total{{backend=\"{id}\"}}")
}

async fn wait_for_up(cluster: &Cluster, id: &str, value: f64) {
    let what = format!("{} == {value}", up(id));
    eventually(&what, DEADLINE, || metric(cluster, &up(id)) == Some(value)).await;
}

/// Sends the second half of the upload and closes it; both must succeed.
async fn finish_upload(cluster: &Cluster, session: &str, data: &bytes::Bytes) {
    let half = data.len() / 2;
    let rest = RawRequest::fragment(
        PATH,
        session,
        half as u64,
        data.slice(half..),
        data.len() as u64,
    );
    assert_eq!(cluster.send(&rest).await.status, 200, "second half");
    let close = RawRequest::bits(PacketType::CloseSession, PATH).header("BITS-Session-Id", session);
    assert_eq!(cluster.send(&close).await.status, 200, "close");
    assert_eq!(cluster.committed_sha256(PATH), vec![sha256(data)]);
}

/// A session pinned to some backend with the first half of `data` uploaded.
async fn half_uploaded(cluster: &Cluster, data: &bytes::Bytes) -> (String, usize) {
    let session = cluster.create_session(PATH).await;
    let half = data.len() / 2;
    let first = RawRequest::fragment(PATH, &session, 0, data.slice(..half), data.len() as u64);
    assert_eq!(cluster.send(&first).await.status, 200, "first half");
    let owners = cluster.owners_of(&session);
    assert_eq!(owners.len(), 1, "exactly one backend knows the session");
    (session, owners[0])
}

fn fragment_again(session: &str, data: &bytes::Bytes) -> RawRequest {
    let half = data.len() / 2;
    RawRequest::fragment(
        PATH,
        session,
        half as u64,
        data.slice(half..),
        data.len() as u64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_goes_down_takes_no_new_sessions_and_comes_back_to_finish_its_own() {
    let mut cluster = Cluster::new().backends(3).config(ACTIVE).start().await;
    let data = random_bytes(4000, 11);
    let (session, owner) = half_uploaded(&cluster, &data).await;
    let id = format!("b{owner}");
    assert_eq!(metric(&cluster, &up(&id)), Some(1.0));

    cluster.stop_backend(owner).await;
    wait_for_up(&cluster, &id, 0.0).await;
    assert_eq!(metric(&cluster, &transitions(&id, "down")), Some(1.0));
    let tried_before = metric(&cluster, &connect_failures(&id));

    // Its pinned session: 503 without a BITS error (the client keeps its session and
    // retries), answered by bitsgate itself, never by another backend.
    let pinned = cluster.send(&fragment_again(&session, &data)).await;
    assert_eq!(pinned.status, 503);
    assert_eq!(pinned.ack().error_code, None);
    assert!(
        cluster.owners_of(&session).is_empty(),
        "no other backend saw it"
    );

    // New uploads all land elsewhere, and the down backend is not even tried.
    for i in 0..6 {
        let path = format!("/uploads/new-{i}.bin");
        let body = random_bytes(3000, 100 + i);
        let report = cluster
            .upload(&path, &body, &options(1000))
            .await
            .expect("upload while a backend is down");
        assert_eq!(report.restarts, 0);
    }
    assert_eq!(
        metric(&cluster, &connect_failures(&id)),
        tried_before,
        "no new session was sent to the down backend"
    );
    let created = format!("bitsgate_sessions_created_total{{backend=\"{id}\"}}");
    assert_eq!(metric(&cluster, &created), Some(1.0), "only the pinned one");

    cluster.restart_backend(owner).await;
    wait_for_up(&cluster, &id, 1.0).await;
    finish_upload(&cluster, &session, &data).await;
    assert_eq!(cluster.owners_of(&session), vec![owner]);

    // The admin scrape shows the same counts.
    let scraped = cluster.metrics().await;
    assert_eq!(sample(&scraped, &transitions(&id, "down")), Some(1.0));
    assert_eq!(sample(&scraped, &transitions(&id, "up")), Some(1.0));
    for other in (0..3).filter(|&i| i != owner) {
        let other = format!("b{other}");
        assert_eq!(sample(&scraped, &transitions(&other, "down")), Some(0.0));
        assert_eq!(sample(&scraped, &up(&other)), Some(1.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_of_live_traffic_take_a_backend_down_without_active_probes() {
    let mut cluster = Cluster::new().backends(2).config(PASSIVE).start().await;
    let data = random_bytes(4000, 12);
    let (session, owner) = half_uploaded(&cluster, &data).await;
    let id = format!("b{owner}");

    cluster.stop_backend(owner).await;
    // The first failure is counted, not yet acted on.
    let first = cluster.send(&fragment_again(&session, &data)).await;
    assert_eq!(first.status, 503);
    assert_eq!(metric(&cluster, &up(&id)), Some(1.0));
    // The second one reaches `passive_failures`: down before its 503 is written.
    let second = cluster.send(&fragment_again(&session, &data)).await;
    assert_eq!(second.status, 503);
    assert_eq!(metric(&cluster, &up(&id)), Some(0.0));
    assert_eq!(metric(&cluster, &transitions(&id, "down")), Some(1.0));
    // Down: answered locally, the backend is not even tried any more.
    let third = cluster.send(&fragment_again(&session, &data)).await;
    assert_eq!(third.status, 503);
    assert_eq!(metric(&cluster, &connect_failures(&id)), Some(2.0));

    // With kind "none" a down backend is probed by TCP connect only, so it comes back.
    cluster.restart_backend(owner).await;
    wait_for_up(&cluster, &id, 1.0).await;
    assert_eq!(metric(&cluster, &transitions(&id, "up")), Some(1.0));
    finish_upload(&cluster, &session, &data).await;
    for stats in cluster.all_stats() {
        assert_eq!(
            stats.packets.get("ping"),
            None,
            "{}: no BITS Ping probe",
            stats.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_the_generation_in_force_after_a_reload() {
    let mut cluster = Cluster::new().backends(3).config(ACTIVE).start().await;
    // b2 leaves the config, then both b1 and b2 stop.
    cluster.reconfigure(|i| i != 2);
    cluster.stop_backend(2).await;
    cluster.stop_backend(1).await;
    wait_for_up(&cluster, "b1", 0.0).await;
    // The rounds that took b1 down would have taken b2 down too, had it been probed.
    assert_eq!(metric(&cluster, &transitions("b2", "down")), Some(0.0));
    assert_eq!(metric(&cluster, &transitions("b0", "down")), Some(0.0));
    // b0's probe of the same round may still be on its way when b1 flips.
    crate::cluster::eventually(
        "b0 is probed with BITS Pings",
        Duration::from_secs(10),
        || cluster.stats(0).packets.get("ping").copied().unwrap_or(0) >= 2,
    )
    .await;
}
