//! Several bitsgate processes sharing their pins through a real redis-server
//! (`[storage] mode = "redis"`), behind a round-robin TCP spreader that plays the
//! load balancer: consecutive connections of one upload reach different replicas.

use crate::cluster::{random_bytes, sha256};
use crate::process::{free_port, options, signal, wait_exit, wait_listening, Proc};
use bits_proto::PacketType;
use bits_testkit::client::raw::{self, RawRequest, RawResponse};
use bits_testkit::client::{self, NoObserver, UploadReport, UploadSource};
use bits_testkit::server::{self, ServerConfig, ServerHandle};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A redis-server of the test's own on a free loopback port, without persistence
/// unless asked (`appendonly`, so a restart keeps the data).
struct Redis {
    addr: SocketAddr,
    dir: PathBuf,
    appendonly: bool,
    process: Option<Proc>,
}

impl Redis {
    fn start(dir: &Path, appendonly: bool) -> Redis {
        let mut redis = Redis {
            addr: free_port(),
            dir: dir.to_path_buf(),
            appendonly,
            process: None,
        };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(["--save", ""])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): these tests need it on the PATH; .ci/deps installs it (apt-get install redis-server)")
            });
        self.process = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}: {}",
                self.addr,
                std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            signal(&process, "TERM");
            wait_exit(&mut process, Duration::from_secs(10));
        }
    }

    /// One command over RESP; the first line of the answer.
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).ok()?;
            answer.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&answer).trim_end().to_owned())
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }
}

/// Hands each accepted connection to the next replica in turn, skipping replicas that
/// refuse connections (what a load balancer with health checks does). While held, new
/// connections wait before they are handed on.
struct Spreader {
    addr: SocketAddr,
    replicas: Arc<Mutex<Vec<SocketAddr>>>,
    hold: tokio::sync::watch::Sender<bool>,
    /// Connections forwarded, by replica address.
    forwarded: Arc<Mutex<Vec<(SocketAddr, u64)>>>,
}

impl Spreader {
    async fn start(replicas: Vec<SocketAddr>) -> Spreader {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let replicas = Arc::new(Mutex::new(replicas));
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let (list, counts) = (replicas.clone(), forwarded.clone());
        let (hold, held) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut downstream, _)) = listener.accept().await {
                let (list, counts, next) = (list.clone(), counts.clone(), next.clone());
                let mut held = held.clone();
                tokio::spawn(async move {
                    let _ = held.wait_for(|held| !held).await;
                    let targets = list.lock().unwrap().clone();
                    for _ in 0..targets.len() {
                        let target = targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()];
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                            continue;
                        };
                        {
                            let mut counts = counts.lock().unwrap();
                            match counts.iter_mut().find(|(a, _)| *a == target) {
                                Some((_, n)) => *n += 1,
                                None => counts.push((target, 1)),
                            }
                        }
                        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                        return;
                    }
                });
            }
        });
        Spreader {
            addr,
            replicas,
            hold,
            forwarded,
        }
    }

    fn hold(&self, held: bool) {
        self.hold.send_replace(held);
    }

    fn add(&self, replica: SocketAddr) {
        self.replicas.lock().unwrap().push(replica);
    }

    fn forwarded_to(&self, replica: SocketAddr) -> u64 {
        let counts = self.forwarded.lock().unwrap();
        counts
            .iter()
            .find(|(a, _)| *a == replica)
            .map_or(0, |(_, n)| *n)
    }
}

/// Three reference servers and the config every replica shares but for its ports.
struct Farm {
    dir: tempfile::TempDir,
    backends: Vec<ServerHandle>,
    backend_tables: String,
}

impl Farm {
    async fn start() -> Farm {
        let dir = tempfile::tempdir().unwrap();
        let mut backends = Vec::new();
        let mut backend_tables = String::new();
        for i in 0..3 {
            let mut config = ServerConfig::new(dir.path().join(format!("b{i}")));
            config.name = format!("b{i}");
            std::fs::create_dir_all(&config.root).unwrap();
            let handle = server::spawn(config).await.unwrap();
            backend_tables.push_str(&format!(
                "[[backends]]\nid = \"b{i}\"\naddress = \"{}\"\n",
                handle.addr()
            ));
            backends.push(handle);
        }
        Farm {
            dir,
            backends,
            backend_tables,
        }
    }

    fn bytes_received(&self) -> u64 {
        self.backends.iter().map(|b| b.stats().bytes_received).sum()
    }

    async fn wait_for_bytes(&self, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.bytes_received() < bytes {
            assert!(Instant::now() < deadline, "uploads made no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The sha256 of every copy of `path` at any backend.
    fn copies(&self, path: &str) -> Vec<String> {
        (0..self.backends.len())
            .filter_map(|i| std::fs::read(self.dir.path().join(format!("b{i}")).join(path)).ok())
            .map(|bytes| sha256(&bytes))
            .collect()
    }
}

/// One bitsgate process in redis mode.
struct Replica {
    name: String,
    proxy: SocketAddr,
    admin: SocketAddr,
    process: Proc,
}

fn start_replica(farm: &Farm, redis: &Redis, name: &str, extra: &str) -> Replica {
    let proxy = free_port();
    let admin = free_port();
    let dir = farm.dir.path();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[listener]\naddress = \"{proxy}\"\n[admin]\naddress = \"{admin}\"\n[storage]\nmode = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"test:\"\n[server]\ngrace_period = \"1s\"\nshutdown_timeout = \"1s\"\nupgrade_sock = \"{}\"\npid_file = \"{}\"\n[health_check]\nkind = \"none\"\npassive_failures = 0\n{extra}{}",
            redis.url(),
            dir.join(format!("{name}.sock")).display(),
            dir.join(format!("{name}.pid")).display(),
            farm.backend_tables,
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_bitsgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("BITSGATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("bitsgate starts");
    let replica = Replica {
        name: name.to_owned(),
        proxy,
        admin,
        process: Proc(child),
    };
    wait_listening(proxy);
    replica
}

impl Replica {
    fn log(&self, farm: &Farm) -> String {
        std::fs::read_to_string(farm.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    async fn readyz(&self) -> u16 {
        raw::send(self.admin, &RawRequest::new("GET", "/readyz"))
            .await
            .map_or(0, |r| r.status)
    }

    async fn send(&self, request: &RawRequest) -> RawResponse {
        raw::send(self.proxy, request)
            .await
            .expect("request to a replica")
    }
}

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
    // Closed sessions leave nothing behind in Redis.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.command(&["DBSIZE"]).as_deref() != Some(":0") {
        assert!(
            Instant::now() < deadline,
            "pins left in Redis: {:?}",
            redis.command(&["DBSIZE"])
        );
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

async fn create(replica: &Replica, path: &str) -> String {
    let request = RawRequest::bits(PacketType::CreateSession, path)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    let answer = replica.send(&request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.ack().session_id.expect("session id").to_string()
}

async fn fragment(replica: &Replica, path: &str, session: &str, offset: u64) -> RawResponse {
    let request = RawRequest::bits(PacketType::Fragment, path)
        .header("BITS-Session-Id", session)
        .header("Content-Range", format!("bytes {offset}-{offset}/4"))
        .body(&b"x"[..]);
    replica.send(&request).await
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
    assert_eq!(redis.command(&["DBSIZE"]).as_deref(), Some(":1"));

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
    while redis.command(&["DBSIZE"]).as_deref() != Some(":1") {
        assert!(Instant::now() < deadline, "the pin was never written back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = fragment(&b, path, &session, 1).await;
    assert_eq!(found.status, 200, "{found:?}");
}
