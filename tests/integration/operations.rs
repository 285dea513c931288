//! Operating a farm: reloads, drain, expiry with Cancel-Session, admin deletes and auth.

use crate::cluster::{eventually, options, random_bytes, sample, sha256, Cluster};
use crate::failover::{pauser, wait_for};
use bits_proto::ErrorCode;
use bits_testkit::client::raw::RawRequest;
use bits_testkit::client::{self, UploadError, UploadReport, UploadSource};
use std::time::Duration;

const PATH: &str = "/uploads/o.bin";

/// An upload of `data` to PATH over new connections per packet, held still after a
/// third of it is acknowledged. Returns its task, the release switch and its owner.
async fn paused_upload(
    cluster: &Cluster,
    data: &bytes::Bytes,
) -> (
    tokio::task::JoinHandle<Result<UploadReport, UploadError>>,
    std::sync::mpsc::Sender<()>,
    usize,
) {
    let (pauser, reached, release) = pauser(data.len() as u64 / 3);
    let mut opts = options(64 << 10);
    opts.new_connection_per_packet = true;
    let url = cluster.url(PATH);
    let payload = data.clone();
    let upload = tokio::spawn(async move {
        client::upload(&url, UploadSource::Bytes(payload), &opts, &*pauser).await
    });
    wait_for(&reached).await;
    let owner = (0..cluster.backend_count())
        .find(|&i| cluster.stats(i).sessions_open == 1)
        .expect("an owner");
    (upload, release, owner)
}

/// Releases a paused upload and checks it completed on its owner, byte-identical,
/// without a restart.
async fn finish_paused(
    cluster: &Cluster,
    upload: tokio::task::JoinHandle<Result<UploadReport, UploadError>>,
    release: std::sync::mpsc::Sender<()>,
    owner: usize,
    data: &bytes::Bytes,
) {
    release.send(()).expect("release");
    let report = upload
        .await
        .expect("task")
        .expect("the in-flight upload completes");
    assert_eq!(report.restarts, 0);
    assert_eq!(
        cluster.owners_of(report.session_id.as_deref().unwrap()),
        vec![owner]
    );
    assert_eq!(cluster.committed_sha256(PATH), vec![sha256(data)]);
}

fn backend_state(backends: &serde_json::Value, id: &str) -> Option<String> {
    backends["backends"]
        .as_array()?
        .iter()
        .find(|b| b["id"] == id)
        .map(|b| b["state"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_backend_sends_it_new_sessions() {
    let cluster = Cluster::new().backends(3).configured(2).start().await;
    cluster.write_config(|_| true, "");
    let (status, body) = cluster.admin_json("POST", "/config/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["added"], serde_json::json!(["b2"]));
    let data = random_bytes(10_000, 1);
    for i in 0..6 {
        cluster
            .upload(&format!("/uploads/add-{i}.bin"), &data, &options(4096))
            .await
            .expect("upload");
    }
    // Round robin over three backends: two sessions each, the new one included.
    for i in 0..3 {
        assert_eq!(
            cluster.stats(i).packets.get("create_session"),
            Some(&2),
            "b{i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_that_removes_a_backend_lets_its_sessions_finish_then_drops_it() {
    let cluster = Cluster::new()
        .backends(2)
        .config("[sessions]\nsweep_interval = \"100ms\"")
        .start()
        .await;
    let data = random_bytes(600_000, 2);
    let (upload, release, owner) = paused_upload(&cluster, &data).await;
    let other = 1 - owner;

    cluster.write_config(|i| i != owner, "");
    let (status, body) = cluster.admin_json("POST", "/config/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["report"]["removed"],
        serde_json::json!([format!("b{owner}")])
    );
    assert_eq!(
        body["report"]["retired"],
        serde_json::json!([format!("b{owner}")])
    );
    let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
    assert_eq!(
        backend_state(&backends, &format!("b{owner}")).as_deref(),
        Some("draining")
    );

    // New sessions avoid the retired backend while its own session goes on.
    let report = cluster
        .upload("/uploads/new.bin", &data, &options(64 << 10))
        .await
        .expect("upload");
    assert_eq!(
        cluster.owners_of(report.session_id.as_deref().unwrap()),
        vec![other]
    );
    finish_paused(&cluster, upload, release, owner, &data).await;

    // Once its last session ended, the retired backend leaves the farm.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
        if backend_state(&backends, &format!("b{owner}")).is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b{owner} never left: {backends}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_keeps_the_old_config_and_reports_every_error() {
    let cluster = Cluster::new().backends(2).start().await;
    let data = random_bytes(600_000, 3);
    let (upload, release, owner) = paused_upload(&cluster, &data).await;
    cluster.write_raw_config(
        "[listener]\nadress = 1\n[[backends]]\nid = \"b 0\"\naddress = \"nowhere\"\n",
    );
    let (status, body) = cluster.admin_json("POST", "/config/reload", None).await;
    assert_eq!(status, 422, "{body}");
    let keys: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"listener"), "{keys:?}");
    assert!(keys.contains(&"backends[0].id"), "{keys:?}");
    assert!(keys.contains(&"backends[0].address"), "{keys:?}");
    // Still serving with both backends.
    let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
    assert_eq!(backends["backends"].as_array().unwrap().len(), 2);
    finish_paused(&cluster, upload, release, owner, &data).await;
    let metrics = cluster.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "bitsgate_config_reloads_total{outcome=\"failure\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_through_the_admin_api_finishes_in_flight_uploads_then_reports_drained() {
    let cluster = Cluster::new().backends(2).start().await;
    let data = random_bytes(600_000, 4);
    let (upload, release, owner) = paused_upload(&cluster, &data).await;
    let id = format!("b{owner}");

    let (status, body) = cluster
        .admin_json("POST", &format!("/backends/{id}/drain"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "draining");
    for i in 0..4 {
        let report = cluster
            .upload(&format!("/uploads/d-{i}.bin"), &data, &options(64 << 10))
            .await
            .expect("upload");
        assert_eq!(
            cluster.owners_of(report.session_id.as_deref().unwrap()),
            vec![1 - owner],
            "no new session on {id}"
        );
    }
    finish_paused(&cluster, upload, release, owner, &data).await;

    let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
    assert_eq!(
        backend_state(&backends, &id).as_deref(),
        Some("drained"),
        "{backends}"
    );
    let metrics = cluster.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            &format!("bitsgate_backend_drained{{backend=\"{id}\"}}")
        ),
        Some(1.0)
    );

    let (status, body) = cluster
        .admin_json("POST", &format!("/backends/{id}/undrain"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_cancelled_at_its_owner() {
    let cluster = Cluster::new()
        .backends(2)
        .config("[sessions]\nidle_timeout = \"1s\"\nsweep_interval = \"100ms\"")
        .start()
        .await;
    let session = cluster.create_session(PATH).await;
    let owner = cluster.owners_of(&session)[0];
    eventually(
        "the session expires and is cancelled",
        Duration::from_secs(10),
        || {
            cluster
                .stats(owner)
                .sessions
                .get(&session)
                .map(|s| s.state.as_str())
                == Some("cancelled")
        },
    )
    .await;
    assert_eq!(cluster.proxy.shared.table.len(), 0);
    assert_eq!(
        cluster.stats(owner).sessions[&session]
            .packets
            .get("cancel_session"),
        Some(&1)
    );
    let metrics = cluster
        .metrics_when(
            "bitsgate_cancels_sent_total{outcome=\"ok\",reason=\"expired\"}",
            1.0,
        )
        .await;
    assert_eq!(
        sample(
            &metrics,
            &format!("bitsgate_sessions_ended_total{{backend=\"b{owner}\",reason=\"expired\"}}")
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_cancels_it_at_its_owner_and_unpins_it() {
    let cluster = Cluster::new().backends(2).start().await;
    let session = cluster.create_session(PATH).await;
    let fragment = RawRequest::fragment(
        PATH,
        &session,
        0,
        bytes::Bytes::from_static(b"partial"),
        100,
    );
    assert_eq!(cluster.send(&fragment).await.status, 200);
    let owner = cluster.owners_of(&session)[0];
    let encoded = session.replace('{', "%7B").replace('}', "%7D");

    let (status, body) = cluster
        .admin_json("GET", &format!("/sessions/{encoded}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], format!("b{owner}"));
    assert_eq!(body["bytes"], 7);
    let (status, body) = cluster
        .admin_json("GET", &format!("/sessions?backend=b{owner}&limit=5"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 1);

    let (status, body) = cluster
        .admin_json("DELETE", &format!("/sessions/{encoded}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unpinned"], true);
    assert_eq!(body["cancel"]["status"], 200);
    assert_eq!(cluster.stats(owner).sessions[&session].state, "cancelled");
    let late = cluster
        .send(&RawRequest::fragment(
            PATH,
            &session,
            7,
            bytes::Bytes::from_static(b"more"),
            100,
        ))
        .await;
    assert_eq!(late.status, 500);
    assert_eq!(late.ack().error_code, Some(ErrorCode::SESSION_NOT_FOUND));
    let (status, _) = cluster
        .admin_json("GET", &format!("/sessions/{encoded}"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_admin_calls_without_the_right_token_get_401_and_change_nothing() {
    const TOKEN: &str = "test-token-0123456789";
    let cluster = Cluster::new().backends(2).admin_token(TOKEN).start().await;
    let session = cluster.create_session(PATH).await;
    let encoded = session.replace('{', "%7B").replace('}', "%7D");
    for token in [None, Some("wrong-token-0123456789")] {
        for (method, path) in [
            ("POST", "/backends/b0/drain".to_owned()),
            ("DELETE", format!("/sessions/{encoded}")),
            ("POST", "/config/reload".to_owned()),
        ] {
            let response = cluster.admin(method, &path, token).await;
            assert_eq!(response.status, 401, "{method} {path} with {token:?}");
            assert_eq!(response.header("WWW-Authenticate"), Some("Bearer"));
        }
    }
    let (_, backends) = cluster.admin_json("GET", "/backends", Some(TOKEN)).await;
    assert_eq!(backend_state(&backends, "b0").as_deref(), Some("active"));
    assert_eq!(
        cluster.proxy.shared.table.len(),
        1,
        "the session is still pinned"
    );
    let metrics = cluster.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "bitsgate_config_reloads_total{outcome=\"success\"}"
        ),
        Some(0.0)
    );
    let (status, _) = cluster
        .admin_json("POST", "/backends/b0/drain", Some(TOKEN))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_removed_backends_end_forgets_their_sessions_at_once() {
    let cluster = Cluster::new().backends(2).start().await;
    let session = cluster.create_session(PATH).await;
    let owner = cluster.owners_of(&session)[0];
    cluster.write_config(|i| i != owner, "[reload]\nremoved_backends = \"end\"\n");
    let (status, body) = cluster.admin_json("POST", "/config/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["ended_sessions"], 1);
    let late = cluster
        .send(&RawRequest::fragment(
            PATH,
            &session,
            0,
            bytes::Bytes::from_static(b"x"),
            1,
        ))
        .await;
    assert_eq!(late.ack().error_code, Some(ErrorCode::SESSION_NOT_FOUND));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_watch_on_a_changed_config_file_is_reloaded_with_uploads_in_flight() {
    let cluster = Cluster::new()
        .backends(3)
        .configured(2)
        .config("[reload]\nwatch = true")
        .start()
        .await;
    let data = random_bytes(600_000, 9);
    let (upload, release, owner) = paused_upload(&cluster, &data).await;
    cluster.write_config(|_| true, "");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
        if backend_state(&backends, "b2").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the file change was not picked up: {backends}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finish_paused(&cluster, upload, release, owner, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_delete_cancels_exactly_the_sessions_the_same_query_lists() {
    let cluster = Cluster::new().backends(2).start().await;
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(cluster.create_session(PATH).await);
    }
    let owned_by = |i: usize| -> Vec<String> {
        sessions
            .iter()
            .filter(|s| cluster.owners_of(s) == [i])
            .cloned()
            .collect()
    };
    let (on_b0, on_b1) = (owned_by(0), owned_by(1));
    assert_eq!(on_b0.len() + on_b1.len(), 6);
    assert!(
        !on_b0.is_empty() && !on_b1.is_empty(),
        "both backends own some"
    );

    let (status, body) = cluster.admin_json("DELETE", "/sessions", None).await;
    assert_eq!(status, 400, "an unfiltered delete needs all=true: {body}");
    let (status, _) = cluster
        .admin_json("DELETE", "/sessions?backend=nope", None)
        .await;
    assert_eq!(status, 404);
    let (_, listed) = cluster
        .admin_json("GET", "/sessions?backend=b0&idle_over=0", None)
        .await;
    let (status, body) = cluster
        .admin_json("DELETE", "/sessions?backend=b0", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched"], on_b0.len());
    assert_eq!(body["unpinned"], on_b0.len());
    assert!(listed["total"].as_u64() <= Some(on_b0.len() as u64));

    eventually(
        "the owner sees every cancel",
        Duration::from_secs(10),
        || {
            let stats = cluster.stats(0);
            on_b0.iter().all(|s| stats.sessions[s].state == "cancelled")
        },
    )
    .await;
    let (_, left) = cluster.admin_json("GET", "/sessions", None).await;
    assert_eq!(left["total"], on_b1.len());
    for session in &on_b1 {
        assert_eq!(cluster.stats(1).sessions[session].state, "open");
    }
    let (status, body) = cluster
        .admin_json("DELETE", "/sessions?all=true", None)
        .await;
    assert_eq!((status, body["matched"].clone()), (200, on_b1.len().into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_its_pin_limit_gets_503_until_its_sessions_are_cancelled_by_address() {
    let cluster = Cluster::new()
        .backends(2)
        .config("[sessions]\nmax_pinned_per_client = 2\n")
        .start()
        .await;
    let first = cluster.create_session(PATH).await;
    let second = cluster.create_session(PATH).await;
    let refused = cluster
        .send(
            &RawRequest::bits(bits_proto::PacketType::CreateSession, PATH)
                .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL),
        )
        .await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(
        refused.ack().error_code,
        None,
        "a bare 503: the client retries later"
    );
    cluster
        .metrics_when(r#"bitsgate_local_acks_total{reason="client_limit"}"#, 1.0)
        .await;
    let created: u64 = cluster
        .all_stats()
        .iter()
        .map(|s| s.sessions.len() as u64)
        .sum();
    assert_eq!(created, 2, "the refused Create-Session reached no backend");

    let (status, listed) = cluster
        .admin_json("GET", "/sessions?client=127.0.0.1", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["sessions"][0]["client"], "127.0.0.1");
    let (_, other) = cluster
        .admin_json("GET", "/sessions?client=192.0.2.1", None)
        .await;
    assert_eq!(other["total"], 0);
    let (status, body) = cluster
        .admin_json("DELETE", "/sessions?client=127.0.0.1", None)
        .await;
    assert_eq!((status, body["matched"].clone()), (200, 2.into()), "{body}");
    for session in [&first, &second] {
        let owner = cluster.owners_of(session)[0];
        eventually("the owner sees the cancel", Duration::from_secs(10), || {
            cluster.stats(owner).sessions[session.as_str()].state == "cancelled"
        })
        .await;
    }
    // The address holds no pin any more: it may create sessions again.
    cluster.create_session(PATH).await;
}
