//! Several bitsgate processes sharing their pins through a real redis-server
//! (`[storage] mode = "redis"`), behind a round-robin TCP spreader that plays the
//! load balancer: consecutive connections of one upload reach different replicas.

use crate::cluster::{random_bytes, sha256};
use crate::process::options;
use crate::replica_kit::{create, fragment, start_replica, wait_until, Farm, Redis, Spreader};
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;
use bits_testkit::client::{self, NoObserver, UploadReport, UploadSource};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

type Uploads = Vec<tokio::task::JoinHandle<(String, String, UploadReport)>>;

/// `count` uploads through `front`; every other one opens a new connection per packet
/// (so its packets alternate between replicas), the others keep theirs alive.
fn start_uploads(front: SocketAddr, prefix: &str, count: u64, size: usize) -> Uploads {
    (0..count)
        .map(|i| {
            let url = format!("http://{front}/uploads/{prefix}-{i}.bin");
            let path = format!("uploads/{prefix}-{i}.bin");
            let data = random_bytes(size, 7000 + i);
            let mut options = options();
            options.new_connection_per_packet = i % 2 == 0;
            options.fragment_size = 8 << 10;
            tokio::spawn(async move {
                let report = client::upload(
                    &url,
                    UploadSource::Bytes(data.clone()),
                    &options,
                    &NoObserver,
                )
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
                (path, sha256(&data), report)
            })
        })
        .collect()
}

/// Every upload completed without restarting from byte 0, and is at exactly one
/// backend, byte for byte.
async fn check_uploads(farm: &Farm, uploads: Uploads) -> Vec<UploadReport> {
    let mut reports = Vec::new();
    for task in uploads {
        let (path, expected, report) = task.await.expect("upload task");
        assert_eq!(report.restarts, 0, "{path} restarted from byte 0");
        assert_eq!(farm.copies(&path), vec![expected], "{path}");
        reports.push(report);
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_alternating_between_replicas_complete_through_a_new_and_a_killed_replica() {
    let farm = Farm::start().await;
    let redis = Redis::start(farm.dir.path(), false);
    let mut a = start_replica(&farm, &redis, "a", "");
    let b = start_replica(&farm, &redis, "b", "");
    let spreader = Spreader::start(vec![a.proxy, b.proxy]).await;

    // 64 fragments each: in flight for long enough to see the replicas change.
    let size = 512 << 10;
    let uploads = start_uploads(spreader.addr, "r", 100, size);
    farm.wait_for_bytes(100 * size as u64 / 10).await;

    // A replica that saw none of these Create-Sessions starts and routes their packets.
    // New connections wait meanwhile, so the uploads are still under way when it joins.
    spreader.hold(true);
    let c = start_replica(&farm, &redis, "c", "");
    spreader.add(c.proxy);
    spreader.hold(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while spreader.forwarded_to(c.proxy) < 20 {
        assert!(
            Instant::now() < deadline,
            "the new replica got no connection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // One replica dies without a word while uploads run; the others carry on.
    assert!(
        uploads.iter().any(|u| !u.is_finished()),
        "every upload was done before a replica was killed"
    );
    a.process.kill().unwrap();
    a.process.wait().unwrap();

    let reports = check_uploads(&farm, uploads).await;
    assert_eq!(reports.len(), 100);
    assert!(
        spreader.forwarded_to(c.proxy) > 0,
        "the replica started mid-way got no connection"
    );
    for replica in [&b, &c] {
        assert!(
            !replica.log(&farm).contains("unreachable"),
            "{}",
            replica.log(&farm)
        );
    }
    // Closed sessions leave no pin behind in Redis: strictly for uploads through the
    // replicas that stay up. The killed one may have left a few: a Create-Session
    // whose pin it stored but whose Ack it never relayed (the client created another
    // session), or a Close-Session whose Ack it relayed before its unpin reached
    // Redis. Those last until their idle expiry, as the backend's session does, and
    // there can be no more of them than requests it had in flight.
    let mut after = check_uploads(&farm, start_uploads(b.proxy, "after-b", 4, 64 << 10)).await;
    after.extend(check_uploads(&farm, start_uploads(c.proxy, "after-c", 4, 64 << 10)).await);
    let after: Vec<String> = after.into_iter().filter_map(|r| r.session_id).collect();
    assert_eq!(after.len(), 8);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = redis.strings(&["KEYS", "test:*"]);
        let pins: Vec<&String> = keys.iter().filter(|k| k.starts_with("test:pin:")).collect();
        let of_after = pins
            .iter()
            .filter(|k| after.iter().any(|id| k.ends_with(id.as_str())))
            .count();
        // An owner's index entry stays while a pin of that owner does.
        let expected = |k: &String| {
            k == "test:ended"
                || k.starts_with("test:pin:")
                || (k.starts_with("test:owned:") && !pins.is_empty())
        };
        let others = keys.iter().filter(|k| !expected(k)).count();
        if of_after == 0 && others == 0 && pins.len() <= 8 {
            break;
        }
        assert!(Instant::now() < deadline, "keys left in Redis: {keys:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_mid_way_gives_503s_never_not_found_and_uploads_finish_after_it_returns() {
    let farm = Farm::start().await;
    // With its append-only file, the restarted server has the pins again.
    let mut redis = Redis::start(farm.dir.path(), true);
    let a = start_replica(&farm, &redis, "a", "");
    let b = start_replica(&farm, &redis, "b", "");
    let spreader = Spreader::start(vec![a.proxy, b.proxy]).await;

    let size = 256 << 10;
    let before = start_uploads(spreader.addr, "before", 10, size);
    farm.wait_for_bytes(10 * (size as u64) / 4).await;

    redis.stop();
    // Create-Sessions during the outage get 503 and are retried by their clients.
    let during = start_uploads(spreader.addr, "during", 6, size);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.readyz().await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A session this replica never saw: 503, not "session not found".
    let unknown = RawRequest::bits(PacketType::Fragment, "/uploads/x.bin")
        .header("BITS-Session-Id", "{11111111-2222-3333-4444-555555555555}")
        .header("Content-Range", "bytes 0-0/1")
        .body(&b"x"[..]);
    let answer = b.send(&unknown).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.ack().error_code, None, "{answer:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    redis.restart();
    let during = check_uploads(&farm, during).await;
    assert!(
        during.iter().all(|r| r.retries > 0),
        "uploads started while Redis was down were never refused"
    );
    check_uploads(&farm, before).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.readyz().await != 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed 503 after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for replica in [&a, &b] {
        let log = replica.log(&farm);
        assert_eq!(log.matches("is unreachable").count(), 1, "{log}");
        assert_eq!(log.matches("answers again").count(), 1, "{log}");
    }
}

/// What losing Redis's data does: a replica that cached the session keeps routing it
/// (and writes the pin back at its next activity refresh); a replica that never saw
/// it answers session-not-found meanwhile, and that client restarts its upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_flushall_only_replicas_that_cached_a_session_route_it_until_it_is_written_back() {
    let farm = Farm::start().await;
    let redis = Redis::start(farm.dir.path(), false);
    // idle_timeout / 16 = 1 s: an active session's pin is rewritten every second.
    let sessions = "[sessions]\nidle_timeout = \"16s\"\n";
    let a = start_replica(&farm, &redis, "a", sessions);
    let b = start_replica(&farm, &redis, "b", sessions);
    let path = "/uploads/flushed.bin";
    let session = create(&a, path).await;
    assert_eq!(redis.pins().len(), 1);

    assert_eq!(redis.command(&["FLUSHALL"]).as_deref(), Some("+OK"));
    let lost = fragment(&b, path, &session, 0).await;
    assert_eq!(lost.status, 500, "{lost:?}");
    assert_eq!(
        lost.ack().error_code,
        Some(bits_proto::ErrorCode::SESSION_NOT_FOUND),
        "{lost:?}"
    );

    // The replica that created it still routes it, and writes the pin back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let kept = fragment(&a, path, &session, 0).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.pins().len() != 1 {
        assert!(Instant::now() < deadline, "the pin was never written back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = fragment(&b, path, &session, 1).await;
    assert_eq!(found.status, 200, "{found:?}");
}

/// With `redis+sentinel://`, the store finds the master through the sentinels and
/// follows a failover by itself: after the master dies and the sentinel promotes its
/// replica, pins are written to the new master and sessions created before are found
/// there by a replica that never saw them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinels_the_store_follows_a_failover_of_the_redis_master() {
    let farm = Farm::start().await;
    let dir = |name: &str| {
        let dir = farm.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let mut master = Redis::start(&dir("master"), false);
    let standby = Redis::start_replica_of(&dir("standby"), &master);
    let sentinel = Redis::start_sentinel(&dir("sentinel"), &master, "pins");
    // The sentinel promotes only a replica it knows.
    wait_until(
        "the sentinel knows the standby",
        Duration::from_secs(30),
        || async {
            (sentinel
                .command(&["SENTINEL", "replicas", "pins"])
                .as_deref()
                == Some("*1"))
            .then_some(())
        },
    )
    .await;
    let a = start_replica(&farm, &sentinel, "a", "");
    let b = start_replica(&farm, &sentinel, "b", "");
    let path = "/uploads/failover.bin";
    let before = create(&a, path).await;
    // Replication is asynchronous: the test waits for the copy before the crash.
    let copied = format!("test:pin:{before}");
    wait_until(
        "the pin reaches the standby",
        Duration::from_secs(10),
        || async { (standby.command(&["EXISTS", &copied]).as_deref() == Some(":1")).then_some(()) },
    )
    .await;

    master.kill();
    let killed = Instant::now();
    wait_until(
        "the sentinel promotes the standby",
        Duration::from_secs(30),
        || async {
            let named = sentinel.strings(&["SENTINEL", "get-master-addr-by-name", "pins"]);
            (named.get(1) == Some(&standby.port().to_string())).then_some(())
        },
    )
    .await;
    let promoted = killed.elapsed();

    // New sessions are pinned on the new master (503s meanwhile, which clients retry).
    let request = RawRequest::bits(PacketType::CreateSession, path)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    let after = wait_until(
        "a Create-Session after the failover",
        Duration::from_secs(20),
        || async {
            let answer = a.send(&request).await;
            (answer.status == 200).then(|| answer.ack().session_id.expect("session id").to_string())
        },
    )
    .await;
    let recovered = killed.elapsed();
    println!("master killed: promoted after {promoted:?}, pins written again after {recovered:?}");
    assert_eq!(
        standby
            .command(&["EXISTS", &format!("test:pin:{after}")])
            .as_deref(),
        Some(":1")
    );
    // b never saw the session created before the crash: it finds it on the new master.
    let answer = wait_until(
        "b routes the older session",
        Duration::from_secs(20),
        || async {
            let answer = fragment(&b, path, &before, 0).await;
            (answer.status == 200).then_some(answer)
        },
    )
    .await;
    assert_eq!(answer.ack().error_code, None);
    // The farm's shared state lives on the new master too.
    let (status, answer) = b.admin("POST", "/backends/b1/drain").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(standby.strings(&["SMEMBERS", "test:drain"]), ["b1"]);
}
