//! What the tests of several bitsgate replicas share: a redis-server of the test's
//! own, a farm of reference servers, replica processes in redis mode, and a
//! round-robin TCP spreader that plays the load balancer.

use crate::cluster::sha256;
use crate::process::{free_port, signal, wait_exit, wait_listening, Proc};
use bits_proto::PacketType;
use bits_testkit::client::raw::{self, RawRequest, RawResponse};
use bits_testkit::server::{self, ServerConfig, ServerHandle};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A redis-server of the test's own on a free loopback port, without persistence
/// unless asked (`appendonly`, so a restart keeps the data).
pub(crate) struct Redis {
    addr: SocketAddr,
    dir: PathBuf,
    /// A sentinel's config file, which comes first on its command line.
    conf: Option<PathBuf>,
    /// The name a sentinel monitors its master under.
    monitors: Option<String>,
    /// How it runs: persistence, replication, sentinel mode.
    options: Vec<String>,
    process: Option<Proc>,
}

impl Redis {
    pub(crate) fn start(dir: &Path, appendonly: bool) -> Redis {
        let appendonly = if appendonly { "yes" } else { "no" };
        let options = [
            "--save",
            "",
            "--appendonly",
            appendonly,
            "--appendfsync",
            "always",
        ];
        Redis::launch(dir, None, &options)
    }

    /// A replica of `master`, with its files in `dir`.
    pub(crate) fn start_replica_of(dir: &Path, master: &Redis) -> Redis {
        let port = master.addr.port().to_string();
        Redis::launch(
            dir,
            None,
            &["--save", "", "--replicaof", "127.0.0.1", &port],
        )
    }

    /// A sentinel, alone in its quorum, that monitors `master` as `name` and declares
    /// it down after one second without an answer.
    pub(crate) fn start_sentinel(dir: &Path, master: &Redis, name: &str) -> Redis {
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {name} 127.0.0.1 {} 1\nsentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 3000\n",
                master.addr.port()
            ),
        )
        .unwrap();
        let mut sentinel = Redis::launch(dir, Some(conf), &["--sentinel"]);
        sentinel.monitors = Some(name.to_owned());
        sentinel
    }

    fn launch(dir: &Path, conf: Option<PathBuf>, options: &[&str]) -> Redis {
        let mut redis = Redis {
            addr: free_port(),
            dir: dir.to_path_buf(),
            conf,
            monitors: None,
            options: options.iter().map(|o| o.to_string()).collect(),
            process: None,
        };
        redis.restart();
        redis
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGKILL: gone without a word, as a crashed host.
    pub(crate) fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.0.kill().unwrap();
            process.0.wait().unwrap();
        }
    }

    pub(crate) fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(&self.conf)
            .args(["--bind", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(&self.options)
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

    pub(crate) fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            signal(&process, "TERM");
            wait_exit(&mut process, Duration::from_secs(10));
        }
    }

    fn connect(&self, args: &[&str]) -> Option<std::net::TcpStream> {
        let mut stream =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        Some(stream)
    }

    /// One command over RESP; the first line of the answer.
    pub(crate) fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = self.connect(args)?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).ok()?;
            answer.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&answer).trim_end().to_owned())
    }

    /// One command whose answer is an array of bulk strings (`KEYS`, `SMEMBERS`).
    pub(crate) fn strings(&self, args: &[&str]) -> Vec<String> {
        let stream = self.connect(args).expect("redis-server answers");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let count: usize = line.trim_end().trim_start_matches('*').parse().unwrap_or(0);
        let mut out = Vec::new();
        for _ in 0..count {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let len: usize = line.trim_end().trim_start_matches('$').parse().unwrap();
            let mut value = vec![0u8; len + 2];
            reader.read_exact(&mut value).unwrap();
            value.truncate(len);
            out.push(String::from_utf8(value).unwrap());
        }
        out
    }

    /// The pins in the store (a test may list keys; bitsgate never does).
    pub(crate) fn pins(&self) -> Vec<String> {
        self.strings(&["KEYS", "test:pin:*"])
    }

    /// The `redis_url` of the store: this server, or, for a sentinel, the master it
    /// names.
    pub(crate) fn url(&self) -> String {
        match &self.monitors {
            Some(name) => format!("redis+sentinel://{}/{name}/0", self.addr),
            None => format!("redis://{}/0", self.addr),
        }
    }
}

/// Hands each accepted connection to the next replica in turn, skipping replicas that
/// refuse connections (what a load balancer with health checks does). While held, new
/// connections wait before they are handed on.
pub(crate) struct Spreader {
    pub(crate) addr: SocketAddr,
    replicas: Arc<Mutex<Vec<SocketAddr>>>,
    hold: tokio::sync::watch::Sender<bool>,
    /// Connections forwarded, by replica address.
    forwarded: Arc<Mutex<Vec<(SocketAddr, u64)>>>,
}

impl Spreader {
    pub(crate) async fn start(replicas: Vec<SocketAddr>) -> Spreader {
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

    pub(crate) fn hold(&self, held: bool) {
        self.hold.send_replace(held);
    }

    pub(crate) fn add(&self, replica: SocketAddr) {
        self.replicas.lock().unwrap().push(replica);
    }

    pub(crate) fn forwarded_to(&self, replica: SocketAddr) -> u64 {
        let counts = self.forwarded.lock().unwrap();
        counts
            .iter()
            .find(|(a, _)| *a == replica)
            .map_or(0, |(_, n)| *n)
    }
}

/// Three reference servers, and the files of the replicas in front of them.
pub(crate) struct Farm {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) backends: Vec<ServerHandle>,
}

impl Farm {
    pub(crate) async fn start() -> Farm {
        Farm::start_with(|_, _| {}).await
    }

    /// A farm whose reference server `i` is adjusted by `tweak` before it starts.
    pub(crate) async fn start_with(tweak: impl Fn(usize, &mut ServerConfig)) -> Farm {
        let dir = tempfile::tempdir().unwrap();
        let mut backends = Vec::new();
        for i in 0..3 {
            let mut config = ServerConfig::new(dir.path().join(format!("b{i}")));
            config.name = format!("b{i}");
            tweak(i, &mut config);
            std::fs::create_dir_all(&config.root).unwrap();
            backends.push(server::spawn(config).await.unwrap());
        }
        Farm { dir, backends }
    }

    /// The `[[backends]]` tables of the backends `listed`.
    fn backend_tables(&self, listed: &[usize]) -> String {
        listed
            .iter()
            .map(|&i| {
                format!(
                    "[[backends]]\nid = \"b{i}\"\naddress = \"{}\"\n",
                    self.backends[i].addr()
                )
            })
            .collect()
    }

    pub(crate) fn bytes_received(&self) -> u64 {
        self.backends.iter().map(|b| b.stats().bytes_received).sum()
    }

    pub(crate) async fn wait_for_bytes(&self, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.bytes_received() < bytes {
            assert!(Instant::now() < deadline, "uploads made no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The sha256 of every copy of `path` at any backend.
    pub(crate) fn copies(&self, path: &str) -> Vec<String> {
        (0..self.backends.len())
            .filter_map(|i| std::fs::read(self.dir.path().join(format!("b{i}")).join(path)).ok())
            .map(|bytes| sha256(&bytes))
            .collect()
    }

    /// The backend that created `session`.
    pub(crate) fn owner_of(&self, session: &str) -> Option<usize> {
        (0..self.backends.len()).find(|&i| self.backends[i].stats().sessions.contains_key(session))
    }

    /// Sessions backend `i` created so far.
    pub(crate) fn created_at(&self, i: usize) -> usize {
        self.backends[i].stats().sessions.len()
    }
}

/// One bitsgate process in redis mode.
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) proxy: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) config: PathBuf,
    pub(crate) process: Proc,
}

/// A replica of every backend of the farm.
pub(crate) fn start_replica(farm: &Farm, redis: &Redis, name: &str, extra: &str) -> Replica {
    start_replica_of(farm, redis, name, extra, &[0, 1, 2])
}

/// A replica whose config lists only the backends `listed`.
pub(crate) fn start_replica_of(
    farm: &Farm,
    redis: &Redis,
    name: &str,
    extra: &str,
    listed: &[usize],
) -> Replica {
    let (proxy, admin) = (free_port(), free_port());
    let dir = farm.dir.path();
    let config = dir.join(format!("{name}.toml"));
    let text = replica_config(farm, redis, name, (proxy, admin), extra, listed);
    std::fs::write(&config, text).unwrap();
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
    wait_listening(proxy);
    Replica {
        name: name.to_owned(),
        proxy,
        admin,
        config,
        process: Proc(child),
    }
}

/// The config of replica `name` on `ports` (proxy, admin), listing the backends
/// `listed`.
fn replica_config(
    farm: &Farm,
    redis: &Redis,
    name: &str,
    (proxy, admin): (SocketAddr, SocketAddr),
    extra: &str,
    listed: &[usize],
) -> String {
    let dir = farm.dir.path();
    format!(
        "[listener]\naddress = \"{proxy}\"\n[admin]\naddress = \"{admin}\"\n[storage]\nmode = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"test:\"\n[server]\ngrace_period = \"1s\"\nshutdown_timeout = \"1s\"\nupgrade_sock = \"{}\"\npid_file = \"{}\"\n[health_check]\nkind = \"none\"\npassive_failures = 0\n{extra}{}",
        redis.url(),
        dir.join(format!("{name}.sock")).display(),
        dir.join(format!("{name}.pid")).display(),
        farm.backend_tables(listed),
    )
}

impl Replica {
    /// Rewrites the replica's config file with the backends `listed` (a reload reads
    /// it).
    pub(crate) fn write_config(&self, farm: &Farm, redis: &Redis, extra: &str, listed: &[usize]) {
        let ports = (self.proxy, self.admin);
        let text = replica_config(farm, redis, &self.name, ports, extra, listed);
        std::fs::write(&self.config, text).unwrap();
    }

    pub(crate) fn log(&self, farm: &Farm) -> String {
        std::fs::read_to_string(farm.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    pub(crate) async fn readyz(&self) -> u16 {
        raw::send(self.admin, &RawRequest::new("GET", "/readyz"))
            .await
            .map_or(0, |r| r.status)
    }

    pub(crate) async fn send(&self, request: &RawRequest) -> RawResponse {
        raw::send(self.proxy, request)
            .await
            .expect("request to a replica")
    }

    /// An admin call; its status and JSON answer.
    pub(crate) async fn admin(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        let response = raw::send(self.admin, &RawRequest::new(method, path))
            .await
            .expect("admin call");
        let value = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
        (response.status, value)
    }

    /// The admin view of backend `id`.
    pub(crate) async fn backend(&self, id: &str) -> Option<serde_json::Value> {
        let (_, answer) = self.admin("GET", "/backends").await;
        answer["backends"]
            .as_array()?
            .iter()
            .find(|b| b["id"] == id)
            .cloned()
    }

    /// One sample of the replica's metrics.
    pub(crate) async fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let response = raw::send(self.admin, &RawRequest::new("GET", "/metrics"))
            .await
            .ok()?;
        crate::cluster::sample(&String::from_utf8_lossy(&response.body), name_and_labels)
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or fails the test after `limit`.
pub(crate) async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn create(replica: &Replica, path: &str) -> String {
    let request = RawRequest::bits(PacketType::CreateSession, path)
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    let answer = replica.send(&request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.ack().session_id.expect("session id").to_string()
}

pub(crate) async fn fragment(
    replica: &Replica,
    path: &str,
    session: &str,
    offset: u64,
) -> RawResponse {
    let request = RawRequest::bits(PacketType::Fragment, path)
        .header("BITS-Session-Id", session)
        .header("Content-Range", format!("bytes {offset}-{offset}/4"))
        .body(&b"x"[..]);
    replica.send(&request).await
}

/// A client's Cancel-Session.
pub(crate) async fn cancel(replica: &Replica, path: &str, session: &str) -> RawResponse {
    let request =
        RawRequest::bits(PacketType::CancelSession, path).header("BITS-Session-Id", session);
    replica.send(&request).await
}
