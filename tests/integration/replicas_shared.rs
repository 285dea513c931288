//! What replicas on one Redis share beyond pins: an operator's drain, a reload's
//! retired backends, the admin view of the sessions, and upload-reply routes. Each
//! test runs real bitsgate processes on one real redis-server and watches one
//! replica follow what was done through another.

use crate::cluster::random_bytes;
use crate::replica_kit::{
    cancel, create, fragment, start_replica, start_replica_of, wait_until, Farm, Redis, Replica,
};
use crate::upload_reply::{download_reply, only_the_owner_served, reply_mode, upload_until_reply};
use bits_proto::{headers as h, ErrorCode, PacketType};
use bits_testkit::client::raw::RawRequest;
use std::time::{Duration, Instant};

/// How long a change made through one replica may take to reach another: the poll
/// runs every second.
const PROPAGATION: Duration = Duration::from_secs(5);

/// The operator's command line against a replica (its config names the admin address).
fn cli(args: &[&str], replica: &Replica) -> (i32, String) {
    let output = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bitsgate"))
            .args(args)
            .arg("--config")
            .arg(&replica.config)
            .env_remove("BITSGATE_CONFIG")
            .output()
            .expect("bitsgate runs")
    });
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

/// Waits until `replica` shows backend `id` in `state` (`active`, `draining`,
/// `drained`); returns how long that took.
async fn wait_for_state(replica: &Replica, id: &str, state: &str) -> Duration {
    let started = Instant::now();
    let what = format!("{id} {state} at replica {}", replica.name);
    wait_until(&what, PROPAGATION, || async {
        let backend = replica.backend(id).await?;
        (backend["state"] == state).then_some(())
    })
    .await;
    started.elapsed()
}

/// Creates sessions through `replica` until one is owned by backend `owner`.
async fn session_on(farm: &Farm, replica: &Replica, path: &str, owner: usize) -> String {
    for _ in 0..6 {
        let id = create(replica, path).await;
        if farm.owner_of(&id) == Some(owner) {
            return id;
        }
    }
    panic!("no session landed on b{owner}");
}

/// Six Create-Sessions through `replica` (two rounds over three backends): none lands
/// on backend `i`.
async fn no_new_session_on(farm: &Farm, replica: &Replica, i: usize) {
    let before = farm.created_at(i);
    for _ in 0..6 {
        create(replica, "/uploads/new.bin").await;
    }
    let placed = farm.created_at(i) - before;
    assert_eq!(placed, 0, "{} placed sessions on b{i}", replica.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_through_one_replica_drains_the_backend_on_every_replica_and_undrain_likewise() {
    let farm = Farm::start().await;
    let redis = Redis::start(farm.dir.path(), false);
    let a = start_replica(&farm, &redis, "a", "");
    let b = start_replica(&farm, &redis, "b", "");
    let path = "/uploads/drained.bin";
    let session = session_on(&farm, &b, path, 1).await;

    // The operator drains b1 with the command line, through replica a.
    let (code, out) = cli(&["drain", "b1"], &a);
    assert_eq!(code, 0, "{out}");
    let took = wait_for_state(&b, "b1", "draining").await;
    println!("drain through a reached b in {took:?}");
    assert_eq!(b.backend("b1").await.unwrap()["drain_admin"], true);

    // b places no new session on b1; the session b1 owns still reaches it through
    // both replicas.
    no_new_session_on(&farm, &b, 1).await;
    for (replica, offset) in [(&b, 0), (&a, 1)] {
        let answer = fragment(replica, path, &session, offset).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let fragments = |i: usize| farm.backends[i].stats().sessions[&session].packets["fragment"];
    assert_eq!(fragments(1), 2);

    // Drained on every replica once its last session ends, wherever it was cached.
    let ended = cancel(&a, path, &session).await;
    assert_eq!(ended.status, 200, "{ended:?}");
    wait_for_state(&b, "b1", "drained").await;
    wait_for_state(&a, "b1", "drained").await;
    assert_eq!(
        b.metric("bitsgate_backend_drained{backend=\"b1\"}").await,
        Some(1.0)
    );

    // Undrained through b (the API this time): a places sessions on b1 again.
    let (status, answer) = b.admin("POST", "/backends/b1/undrain").await;
    assert_eq!(status, 200, "{answer}");
    wait_for_state(&a, "b1", "active").await;
    let before = farm.created_at(1);
    for _ in 0..3 {
        create(&a, "/uploads/again.bin").await;
    }
    assert_eq!(farm.created_at(1), before + 1, "round robin over three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_retired_by_one_replicas_reload_is_retired_on_every_replica_until_its_sessions_end(
) {
    let farm = Farm::start().await;
    let redis = Redis::start(farm.dir.path(), false);
    // Retired backends are dropped by the sweep once they own nothing.
    let sweep = "[sessions]\nsweep_interval = \"1s\"\n";
    let a = start_replica(&farm, &redis, "a", sweep);
    let b = start_replica(&farm, &redis, "b", sweep);
    let path = "/uploads/retired.bin";
    // Created through b: a never saw it, only the store knows it.
    let session = session_on(&farm, &b, path, 2).await;

    // a's config loses b2. a owns none of b2's sessions in its cache, but the store
    // does: a retires b2 instead of forgetting it.
    a.write_config(&farm, &redis, sweep, &[0, 1]);
    let (status, answer) = a.admin("POST", "/config/reload").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["report"]["retired"], serde_json::json!(["b2"]));

    // b still lists b2 in its config, and routes it as retired: no new session.
    wait_until("b2 retired at b", PROPAGATION, || async {
        let backend = b.backend("b2").await?;
        (backend["retired"] == true && backend["state"] == "draining").then_some(())
    })
    .await;
    no_new_session_on(&farm, &b, 2).await;

    // A replica started with the new config (no b2) reads the retired backends before
    // it serves: the session's very first packet there reaches b2.
    let c = start_replica_of(&farm, &redis, "c", sweep, &[0, 1]);
    let answer = fragment(&c, path, &session, 0).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = fragment(&a, path, &session, 1).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        farm.backends[2].stats().sessions[&session].packets["fragment"],
        2
    );
    assert_eq!(c.backend("b2").await.unwrap()["retired"], true);

    // Its last session ends (through c): every replica lets b2 go. a and c drop it
    // from their farms, b takes new sessions on it again (its config lists it).
    let ended = cancel(&c, path, &session).await;
    assert_eq!(ended.status, 200, "{ended:?}");
    for replica in [&a, &c] {
        wait_until("b2 pruned", PROPAGATION, || async {
            replica.backend("b2").await.is_none().then_some(())
        })
        .await;
    }
    wait_for_state(&b, "b2", "active").await;
    assert!(redis.strings(&["HKEYS", "test:retired"]).is_empty());
    let log = a.log(&farm);
    assert!(
        log.contains("retired backends drained and removed"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_backends_end_ends_the_backends_sessions_for_every_replica() {
    let farm = Farm::start().await;
    let redis = Redis::start(farm.dir.path(), false);
    let end = "[reload]\nremoved_backends = \"end\"\n";
    let a = start_replica(&farm, &redis, "a", end);
    let b = start_replica(&farm, &redis, "b", "");
    let path = "/uploads/ended.bin";
    let session = session_on(&farm, &b, path, 2).await;
    let kept = session_on(&farm, &b, path, 1).await;

    a.write_config(&farm, &redis, end, &[0, 1]);
    let (status, answer) = a.admin("POST", "/config/reload").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["report"]["removed"], serde_json::json!(["b2"]));
    wait_until("b2's pin gone from the store", PROPAGATION, || async {
        let pins = redis.pins();
        (!pins.contains(&format!("test:pin:{session}"))).then_some(())
    })
    .await;
    assert!(redis.pins().contains(&format!("test:pin:{kept}")));
    // b created it and still lists b2, yet follows the end: not-found, so the client
    // starts again on a backend of the new config.
    let answer = wait_until("b ends the session", PROPAGATION, || async {
        let answer = fragment(&b, path, &session, 0).await;
        (answer.status == 500).then_some(answer)
    })
    .await;
    assert_eq!(answer.ack().error_code, Some(ErrorCode::SESSION_NOT_FOUND));
    assert_eq!(fragment(&b, path, &kept, 0).await.status, 200);
}

/// A session's store view through `replica`.
async fn listed(replica: &Replica, query: &str) -> serde_json::Value {
    let (status, answer) = replica.admin("GET", &format!("/sessions{query}")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["source"], "store", "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_lists_and_cancels_the_sessions_of_the_store() {
    let farm = Farm::start().await;
    let redis = Redis::start(farm.dir.path(), false);
    let a = start_replica(&farm, &redis, "a", "");
    let b = start_replica(&farm, &redis, "b", "");
    let path = "/uploads/listed/a.bin";
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(create(&a, path).await);
    }

    // b never saw them, and lists them all, with filters.
    let all = listed(&b, "?limit=4").await;
    assert_eq!(all["total"], 6, "{all}");
    assert_eq!(all["sessions"].as_array().unwrap().len(), 4);
    let on_b1: Vec<&String> = sessions
        .iter()
        .filter(|id| farm.owner_of(id) == Some(1))
        .collect();
    let b1 = listed(&b, "?backend=b1").await;
    assert_eq!(b1["total"], on_b1.len() as u64, "{b1}");
    for session in b1["sessions"].as_array().unwrap() {
        assert_eq!(session["backend"], "b1");
        assert_eq!(session["dir"], "/uploads/listed/");
    }
    assert_eq!(listed(&b, "?idle_over=3600").await["total"], 0);
    let (status, one) = b.admin("GET", &format!("/sessions/{}", on_b1[0])).await;
    assert_eq!(
        (status, &one["backend"]),
        (200, &serde_json::json!("b1")),
        "{one}"
    );
    let (status, _) = b.admin("GET", "/sessions?backend=zz").await;
    assert_eq!(status, 404);
    // The store's count per backend, as a gauge on every replica.
    wait_until("the store gauge", PROPAGATION, || async {
        let count = b.metric("bitsgate_store_sessions{backend=\"b1\"}").await?;
        (count == on_b1.len() as f64).then_some(())
    })
    .await;

    // A cancel through b of a session created through a: Cancel-Session at its owner,
    // key gone, and a's cache drops it.
    let victim = on_b1[0].clone();
    assert_eq!(a.metric("bitsgate_pinned_sessions").await, Some(6.0));
    let (status, answer) = b.admin("DELETE", &format!("/sessions/{victim}")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unpinned"], true, "{answer}");
    assert_eq!(answer["cancel"]["status"], 200, "{answer}");
    assert_eq!(
        farm.backends[1].stats().sessions[&victim].state,
        "cancelled"
    );
    assert!(!redis.pins().contains(&format!("test:pin:{victim}")));
    wait_until("a drops the cancelled session", PROPAGATION, || async {
        let pinned = a.metric("bitsgate_pinned_sessions").await?;
        (pinned == 5.0).then_some(())
    })
    .await;
    assert_eq!(
        a.metric("bitsgate_sessions_ended_total{backend=\"b1\",reason=\"ended_elsewhere\"}")
            .await,
        Some(1.0)
    );
    let requests = farm.backends[1].stats().requests_total;
    let gone = fragment(&a, path, &victim, 0).await;
    assert_eq!(gone.status, 500, "{gone:?}");
    assert_eq!(gone.ack().error_code, Some(ErrorCode::SESSION_NOT_FOUND));
    assert_eq!(
        farm.backends[1].stats().requests_total,
        requests,
        "answered by a from the store, not by the owner"
    );
    let (status, _) = b.admin("DELETE", &format!("/sessions/{victim}")).await;
    assert_eq!(status, 404);

    // A bulk cancel through b takes every session of b0 in the store.
    let on_b0 = sessions
        .iter()
        .filter(|id| farm.owner_of(id) == Some(0))
        .count();
    let (status, answer) = b.admin("DELETE", "/sessions?backend=b0").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched"], on_b0 as u64, "{answer}");
    assert_eq!(answer["unpinned"], on_b0 as u64, "{answer}");
    assert_eq!(answer["remaining"], 0, "{answer}");
    assert_eq!(listed(&a, "?backend=b0").await["total"], 0);
    assert_eq!(listed(&a, "").await["total"], (5 - on_b0) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_route_learnt_by_one_replica_is_followed_through_another_and_ends_with_its_session()
{
    let farm = Farm::start_with(reply_mode).await;
    let redis = Redis::start(farm.dir.path(), false);
    let a = start_replica(&farm, &redis, "a", "");
    let b = start_replica(&farm, &redis, "b", "");
    let data = random_bytes(30_000, 17);
    let upload = "/uploads/replied.bin";
    let (id, ack) = upload_until_reply(a.proxy, upload, &data).await;
    let url = ack.header(h::REPLY_URL).expect("reply URL").to_owned();
    let prefix = format!("http://{}", a.proxy);
    assert!(
        url.starts_with(&format!("{prefix}/_bits/replies/")),
        "{url}"
    );
    let path = &url[prefix.len()..];
    let owner = farm.owner_of(&id).expect("an owner");

    // The download goes through b, which never saw the session.
    let reply = download_reply(b.proxy, path).await;
    assert!(bits_testkit::reply::is_reply_to(&reply, &data));
    let stats: Vec<_> = farm.backends.iter().map(|b| b.stats()).collect();
    only_the_owner_served(&stats, owner, 2);
    assert_eq!(b.metric("bitsgate_reply_routes").await, Some(1.0));

    // The session ends through b: the route goes from Redis and from a.
    let close = b
        .send(
            &RawRequest::bits(PacketType::CloseSession, upload).header(h::SESSION_ID, id.as_str()),
        )
        .await;
    assert_eq!(close.status, 200, "{close:?}");
    wait_until("reply keys gone", PROPAGATION, || async {
        redis
            .strings(&["KEYS", "test:reply*"])
            .is_empty()
            .then_some(())
    })
    .await;
    wait_until("a drops the route", PROPAGATION, || async {
        (a.metric("bitsgate_reply_routes").await? == 0.0).then_some(())
    })
    .await;
    assert_eq!(b.metric("bitsgate_reply_routes").await, Some(0.0));
}
