//! The bitsgate binary as a process: kill -9 and restart with the same data directory,
//! and a graceful upgrade (new process with --upgrade, SIGQUIT to the old one), each
//! with uploads in flight over new connections per packet.

use crate::cluster::{random_bytes, sha256};
use bits_testkit::client::{self, NoObserver, UploadOptions, UploadReport, UploadSource};
use bits_testkit::server::{self, ServerConfig, ServerHandle};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Farm {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) backends: Vec<ServerHandle>,
    pub(crate) proxy: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) config: PathBuf,
    /// The config text without its [[backends]] tables, and those tables one by one.
    pub(crate) header: String,
    pub(crate) backend_tables: Vec<String>,
}

pub(crate) fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn farm(backends: usize) -> Farm {
    farm_with(backends, backends).await
}

/// A farm of `backends` reference servers of which the config lists the first
/// `configured`.
pub(crate) async fn farm_with(backends: usize, configured: usize) -> Farm {
    farm_of(backends, configured, |_, _| {}).await
}

/// [`farm_with`], each reference server's config adjusted by `tweak` (index, config).
pub(crate) async fn farm_of(
    backends: usize,
    configured: usize,
    tweak: impl Fn(usize, &mut ServerConfig),
) -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let mut handles = Vec::new();
    let mut tables = Vec::new();
    let mut text = String::new();
    let proxy = free_port();
    let admin = free_port();
    text.push_str(&format!(
        "[listener]\naddress = \"{proxy}\"\n[admin]\naddress = \"{}\"\n[storage]\ndata_dir = \"{}\"\n[server]\ngrace_period = \"2s\"\nshutdown_timeout = \"1s\"\nupgrade_sock = \"{}\"\npid_file = \"{}\"\n[health_check]\nkind = \"none\"\npassive_failures = 0\n",
        admin,
        dir.path().join("data").display(),
        dir.path().join("upgrade.sock").display(),
        dir.path().join("bitsgate.pid").display(),
    ));
    for i in 0..backends {
        let mut config = ServerConfig::new(dir.path().join(format!("b{i}")));
        config.name = format!("b{i}");
        tweak(i, &mut config);
        std::fs::create_dir_all(&config.root).unwrap();
        let handle = server::spawn(config).await.unwrap();
        tables.push(format!(
            "[[backends]]\nid = \"b{i}\"\naddress = \"{}\"\n",
            handle.addr()
        ));
        handles.push(handle);
    }
    let config = dir.path().join("bitsgate.toml");
    std::fs::write(&config, text.clone() + &tables[..configured].concat()).unwrap();
    Farm {
        dir,
        backends: handles,
        proxy,
        admin,
        config,
        header: text,
        backend_tables: tables,
    }
}

/// A bitsgate process that is killed when the test ends, passed or failed.
pub(crate) struct Proc(pub(crate) Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub(crate) fn start(farm: &Farm, upgrade: bool, log: &str) -> Proc {
    let log = std::fs::File::create(farm.dir.path().join(log)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bitsgate"));
    command.args(["run", "--config"]).arg(&farm.config);
    if upgrade {
        command.arg("--upgrade");
    }
    command
        .env(
            "BITSGATE_LOG",
            std::env::var("BITSGATE_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Proc)
        .expect("bitsgate starts")
}

/// Starts the next process of a graceful upgrade and waits until it listens on the
/// upgrade socket for the old one's listeners.
pub(crate) async fn start_upgrade(farm: &Farm, log: &str) -> Proc {
    let socket = farm.dir.path().join("upgrade.sock");
    let new = start(farm, true, log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the new process never opened {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    new
}

pub(crate) fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            Instant::now() < deadline,
            "bitsgate never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGTERM, then wait for the process to exit (in a multi-thread test runtime).
pub(crate) fn stop_gracefully(child: &mut Child) {
    signal(child, "TERM");
    tokio::task::block_in_place(|| wait_exit(child, Duration::from_secs(20)));
}

pub(crate) fn wait_exit(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bitsgate did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn options() -> UploadOptions {
    UploadOptions {
        fragment_size: 32 << 10,
        new_connection_per_packet: true,
        max_retries: 2000,
        retry_delay: Duration::from_millis(20),
        max_retry_delay: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(30),
        ..UploadOptions::default()
    }
}

pub(crate) type Uploads = Vec<tokio::task::JoinHandle<(String, String, UploadReport)>>;

pub(crate) fn start_uploads(farm: &Farm, prefix: &str, count: u64, size: usize) -> Uploads {
    (0..count)
        .map(|i| {
            let url = format!("http://{}/uploads/{prefix}-{i}.bin", farm.proxy);
            let path = format!("uploads/{prefix}-{i}.bin");
            let data = random_bytes(size, 1000 + i);
            tokio::spawn(async move {
                let report = client::upload(
                    &url,
                    UploadSource::Bytes(data.clone()),
                    &options(),
                    &NoObserver,
                )
                .await
                .expect("upload completes");
                (path, sha256(&data), report)
            })
        })
        .collect()
}

pub(crate) async fn bytes_received(farm: &Farm) -> u64 {
    farm.backends.iter().map(|b| b.stats().bytes_received).sum()
}

pub(crate) async fn check_uploads(farm: &Farm, uploads: Uploads) -> Vec<UploadReport> {
    let mut reports = Vec::new();
    for task in uploads {
        let (path, expected, report) = task.await.expect("upload task");
        check_upload(farm, &path, &expected, &report);
        reports.push(report);
    }
    reports
}

/// One upload finished without restarting, and exactly one backend holds the file,
/// with the bytes that were sent.
pub(crate) fn check_upload(farm: &Farm, path: &str, expected: &str, report: &UploadReport) {
    assert_eq!(report.restarts, 0, "{path} restarted from byte 0");
    let copies: Vec<String> = (0..farm.backends.len())
        .filter_map(|i| std::fs::read(farm.dir.path().join(format!("b{i}")).join(path)).ok())
        .map(|bytes| sha256(&bytes))
        .collect();
    assert_eq!(copies, vec![expected.to_owned()], "{path}");
}

pub(crate) async fn wait_for_progress(farm: &Farm, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while bytes_received(farm).await < bytes {
        assert!(Instant::now() < deadline, "uploads made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn log_of(farm: &Farm, name: &str) -> String {
    std::fs::read_to_string(farm.dir.path().join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_survive_a_kill_9_of_bitsgate_and_finish_without_restarting() {
    let farm = farm(3).await;
    let mut first = start(&farm, false, "first.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let uploads = start_uploads(&farm, "kill", 8, 1 << 20);
    wait_for_progress(&farm, 3 << 20).await;

    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let mut second = start(&farm, false, "second.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    check_uploads(&farm, uploads).await;

    let log = log_of(&farm, "second.log");
    assert!(log.contains("pins loaded from the journal"), "{log}");
    // The killed process left its pid file; the restart replaced it.
    let pid_file = farm.dir.path().join("bitsgate.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(pid.trim(), second.id().to_string());
    stop_gracefully(&mut second);
    assert!(!pid_file.exists(), "removed at a graceful stop");
    assert!(Path::new(&farm.dir.path().join("data")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_upgrade_during_uploads_fails_no_request() {
    let farm = farm(2).await;
    let mut old = start(&farm, false, "old.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let uploads = start_uploads(&farm, "upgrade", 6, 1 << 20);
    wait_for_progress(&farm, 1 << 20).await;

    let mut new = start_upgrade(&farm, "new.log").await;
    signal(&old, "QUIT");
    tokio::task::block_in_place(|| wait_exit(&mut old, Duration::from_secs(20)));

    let reports = check_uploads(&farm, uploads).await;
    for report in &reports {
        assert_eq!(
            report.retries,
            0,
            "a request failed during the upgrade: {report:?}\n{}",
            log_of(&farm, "new.log")
        );
    }
    assert!(
        new.try_wait().unwrap().is_none(),
        "the new process serves on"
    );
    // The old process's exit hands the data dir's lock over, which triggers the
    // catch-up at once rather than after a fixed wait, then a rewrite of the journal
    // from the new process's table.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log_of(&farm, "new.log").contains("pin journal compacted") {
        assert!(
            Instant::now() < deadline,
            "the new process never took the data dir over:\n{}",
            log_of(&farm, "new.log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log_of(&farm, "new.log").contains("the previous process is gone"));
    stop_gracefully(&mut new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_the_config_file_with_uploads_in_flight() {
    let farm = farm_with(2, 1).await;
    let mut proxy = start(&farm, false, "hup.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let uploads = start_uploads(&farm, "hup", 4, 1 << 20);
    wait_for_progress(&farm, 1 << 20).await;

    std::fs::write(
        &farm.config,
        farm.header.clone() + &farm.backend_tables.concat(),
    )
    .unwrap();
    signal(&proxy, "HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = bits_testkit::client::raw::send(
            farm.admin,
            &bits_testkit::client::raw::RawRequest::new("GET", "/backends"),
        )
        .await
        .expect("admin answers");
        if String::from_utf8_lossy(&answer.body).contains("\"b1\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not add b1: {}",
            log_of(&farm, "hup.log")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check_uploads(&farm, uploads).await;
    assert!(
        proxy.try_wait().unwrap().is_none(),
        "SIGHUP must not end the process"
    );
    let later = start_uploads(&farm, "after-hup", 4, 10_000);
    check_uploads(&farm, later).await;
    assert!(
        farm.backends[1]
            .stats()
            .packets
            .get("create_session")
            .copied()
            .unwrap_or(0)
            > 0,
        "b1 got no session after the reload"
    );
    assert!(log_of(&farm, "hup.log").contains("configuration reloaded"));
    stop_gracefully(&mut proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_retired_by_a_reload_keeps_its_sessions_across_a_restart() {
    use bits_testkit::client::raw::{self, RawRequest};
    let farm = farm(2).await;
    let mut first = start(&farm, false, "retire-1.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let create = RawRequest::bits(bits_proto::PacketType::CreateSession, "/uploads/r.bin")
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    let created = raw::send(farm.proxy, &create)
        .await
        .expect("Create-Session");
    assert_eq!(created.status, 200);
    let session = created.ack().session_id.expect("session id").to_string();
    let owner = (0..2)
        .find(|&i| farm.backends[i].stats().sessions.contains_key(&session))
        .expect("an owner");

    // Remove the owner from the config: it is retired, still serving its session.
    let kept: String = (0..2)
        .filter(|&i| i != owner)
        .map(|i| farm.backend_tables[i].clone())
        .collect();
    std::fs::write(&farm.config, farm.header.clone() + &kept).unwrap();
    let reload = raw::send(farm.admin, &RawRequest::new("POST", "/config/reload"))
        .await
        .expect("reload");
    assert_eq!(
        reload.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reload.body)
    );
    assert!(String::from_utf8_lossy(&reload.body).contains(&format!("\"b{owner}\"")));

    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let mut second = start(&farm, false, "retire-2.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let fragment = RawRequest::fragment(
        "/uploads/r.bin",
        &session,
        0,
        bytes::Bytes::from_static(b"abc"),
        3,
    );
    let answer = raw::send(farm.proxy, &fragment).await.expect("Fragment");
    assert_eq!(
        answer.status, 200,
        "the retired owner must still get its session: {answer:?}"
    );
    assert_eq!(
        farm.backends[owner].stats().sessions[&session]
            .packets
            .get("fragment"),
        Some(&1)
    );
    stop_gracefully(&mut second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_process_on_the_same_data_dir_refuses_to_start() {
    let farm = farm(1).await;
    let mut first = start(&farm, false, "first.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));

    // Same data dir, its own ports and upgrade socket.
    let text = std::fs::read_to_string(&farm.config)
        .unwrap()
        .replace(&farm.proxy.to_string(), &free_port().to_string())
        .replace(&farm.admin.to_string(), &free_port().to_string())
        .replace("upgrade.sock", "upgrade-2.sock");
    let config = farm.dir.path().join("second.toml");
    std::fs::write(&config, text).unwrap();
    let output = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_bitsgate"))
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .expect("bitsgate runs")
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the second process started: {stderr}"
    );
    assert!(
        stderr.contains("in use by another bitsgate process")
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first process serves on"
    );
    std::net::TcpStream::connect(farm.proxy).expect("the first process still listens");
    stop_gracefully(&mut first);
}

/// With the default runtime (`[server] threads = 2`, `work_stealing = false`), a client
/// that keeps its connection alive has its whole upload carried to the backend over
/// one pooled upstream connection: none is dropped on its way back to the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_upload_reaches_the_backend_over_one_upstream_connection() {
    let farm = farm(1).await;
    let mut proxy = start(&farm, false, "reuse.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let data = random_bytes(20 << 20, 4242);
    let options = UploadOptions {
        fragment_size: 64 << 10,
        new_connection_per_packet: false,
        ..options()
    };
    let report = client::upload(
        &format!("http://{}/uploads/reuse.bin", farm.proxy),
        UploadSource::Bytes(data.clone()),
        &options,
        &NoObserver,
    )
    .await
    .expect("upload completes");
    assert_eq!(report.restarts, 0);
    assert_eq!(report.retries, 0, "{report:?}");
    let stored = std::fs::read(farm.dir.path().join("b0/uploads/reuse.bin")).expect("committed");
    assert_eq!(sha256(&stored), sha256(&data));

    let stats = farm.backends[0].stats();
    assert!(
        stats.requests_total > 320,
        "{} requests",
        stats.requests_total
    );
    let metrics = bits_testkit::client::raw::send(
        farm.admin,
        &bits_testkit::client::raw::RawRequest::new("GET", "/metrics"),
    )
    .await
    .expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    let log = log_of(&farm, "reuse.log");
    assert_eq!(
        stats.connections_total,
        1,
        "the backend saw {} connections for {} requests\n{}\n{log}",
        stats.connections_total,
        stats.requests_total,
        metrics
            .lines()
            .filter(|l| l.starts_with("bitsgate_upstream"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert!(!log.contains("failed to acquire reusable stream"), "{log}");
    assert_eq!(
        crate::cluster::sample(&metrics, "bitsgate_upstream_connects_total{backend=\"b0\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        crate::cluster::sample(&metrics, "bitsgate_upstream_reuses_total{backend=\"b0\"}"),
        Some(stats.requests_total as f64 - 1.0),
        "{metrics}"
    );
    stop_gracefully(&mut proxy);
}

/// Lines of a file, none when it does not exist (yet).
fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_for_file_lines(path: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while file_lines(path).len() < count {
        assert!(
            Instant::now() < deadline,
            "{} never had {count} line(s)",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr1_reopens_the_access_log_and_json_format_covers_both_logs() {
    let farm = farm(1).await;
    let access = farm.dir.path().join("access.log");
    let rotated = farm.dir.path().join("access.log.1");
    std::fs::write(
        &farm.config,
        format!(
            "{}[log]\naccess = {:?}\nformat = \"json\"\n{}",
            farm.header,
            access.display().to_string(),
            farm.backend_tables.concat()
        ),
    )
    .unwrap();
    let mut proxy = start(&farm, false, "json.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let ping = bits_testkit::client::raw::RawRequest::bits(bits_proto::PacketType::Ping, "/");
    let send = || bits_testkit::client::raw::send(farm.proxy, &ping);
    assert_eq!(send().await.expect("ping").status, 200);
    wait_for_file_lines(&access, 1).await;

    // What logrotate does: rename, then SIGUSR1 from postrotate.
    std::fs::rename(&access, &rotated).unwrap();
    signal(&proxy, "USR1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !access.exists() {
        assert!(
            Instant::now() < deadline,
            "SIGUSR1 did not reopen the access log: {}",
            log_of(&farm, "json.log")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(send().await.expect("ping").status, 200);
    wait_for_file_lines(&access, 1).await;
    assert_eq!(file_lines(&rotated).len(), 1);
    for line in file_lines(&access).iter().chain(&file_lines(&rotated)) {
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON access line");
        assert_eq!(record["packet"], "ping");
        assert_eq!(record["backend"], "b0");
    }
    assert!(
        proxy.try_wait().unwrap().is_none(),
        "SIGUSR1 must not end the process"
    );
    stop_gracefully(&mut proxy);

    // The diagnostic log on stderr is JSON too, line by line.
    let diagnostic = log_of(&farm, "json.log");
    let events: Vec<serde_json::Value> = diagnostic
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "SIGUSR1: reopening the access log"),
        "{diagnostic}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_removed_from_the_file_during_a_restart_keeps_its_uploads() {
    use bits_testkit::client::raw::{self, RawRequest};
    let farm = farm(2).await;
    let mut first = start(&farm, false, "removed-1.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    // Sessions left open until after the restart, so b1 surely owns some then (the
    // uploads may all finish first on a fast machine). Created first: round robin
    // then gives b1 every other one.
    let mut held = Vec::new();
    for i in 0..4 {
        let create = RawRequest::bits(
            bits_proto::PacketType::CreateSession,
            format!("/uploads/held-{i}.bin"),
        )
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
        let created = raw::send(farm.proxy, &create)
            .await
            .expect("Create-Session");
        assert_eq!(created.status, 200);
        held.push(created.ack().session_id.expect("session id").to_string());
    }
    let on_b1: Vec<String> = held
        .into_iter()
        .filter(|id| farm.backends[1].stats().sessions.contains_key(id))
        .collect();
    assert!(!on_b1.is_empty(), "b1 owns no session to lose");
    let uploads = start_uploads(&farm, "removed", 6, 4 << 20);
    wait_for_progress(&farm, 1 << 20).await;

    stop_gracefully(&mut first);
    std::fs::write(&farm.config, farm.header.clone() + &farm.backend_tables[0]).unwrap();
    let mut second = start(&farm, false, "removed-2.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    // check_uploads fails on any upload that was told its session is gone.
    check_uploads(&farm, uploads).await;
    for (i, session) in on_b1.iter().enumerate() {
        let close = RawRequest::bits(
            bits_proto::PacketType::CloseSession,
            format!("/uploads/held-{i}.bin"),
        )
        .header("BITS-Session-Id", session.as_str());
        let closed = raw::send(farm.proxy, &close).await.expect("Close-Session");
        assert_ne!(closed.status, 500, "{session} was forgotten: {closed:?}");
    }
    let log = log_of(&farm, "removed-2.log");
    assert!(
        log.contains("backend no longer in the config still owns sessions: retired"),
        "{log}"
    );
    stop_gracefully(&mut second);
}

/// Starts bitsgate with its data dir on a private 256 KiB tmpfs (a mount namespace of
/// its own, gone with the process), so the test can fill the disk under the journal.
fn start_on_a_small_disk(farm: &Farm, log: &str) -> Proc {
    let data = farm.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(farm.dir.path().join(log)).unwrap();
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=256k bitsgate-test \"$1\" && exec \"$2\" run --config \"$3\"")
        .arg("sh")
        .arg(&data)
        .arg(env!("CARGO_BIN_EXE_bitsgate"))
        .arg(&farm.config)
        .env(
            "BITSGATE_LOG",
            std::env::var("BITSGATE_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Proc)
        .expect("unshare starts (needs root, as CI runs)")
}

async fn readyz(farm: &Farm) -> (u16, String) {
    use bits_testkit::client::raw::{self, RawRequest};
    let answer = raw::send(farm.admin, &RawRequest::new("GET", "/readyz"))
        .await
        .expect("admin answers");
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_reports_a_journal_that_cannot_be_written_until_it_can_again() {
    use bits_testkit::client::raw::{self, RawRequest};
    use std::io::Write;
    let farm = farm(1).await;
    let proxy = start_on_a_small_disk(&farm, "full.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    assert_eq!(readyz(&farm).await.0, 200);

    // Fill the data dir's disk, through the process's own view of its mounts.
    let data = farm.dir.path().join("data");
    let filler = Path::new(&format!("/proc/{}/root", proxy.id()))
        .join(data.strip_prefix("/").unwrap())
        .join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler on the small disk");
    while file.write_all(&[0u8; 4096]).is_ok() {}
    drop(file);

    let create = RawRequest::bits(bits_proto::PacketType::CreateSession, "/uploads/full.bin")
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    // Appends fill what is left of the journal's last page first.
    let mut tries = 0;
    while readyz(&farm).await.0 == 200 {
        tries += 1;
        assert!(
            tries < 500,
            "journal writes never failed:\n{}",
            log_of(&farm, "full.log")
        );
        raw::send(farm.proxy, &create)
            .await
            .expect("Create-Session answered");
    }
    let (status, body) = readyz(&farm).await;
    assert_eq!(status, 503);
    assert!(body.contains("pin journal failing"), "{body}");
    for _ in 0..5 {
        raw::send(farm.proxy, &create)
            .await
            .expect("Create-Session answered");
    }
    let failing_lines = || {
        log_of(&farm, "full.log")
            .matches("pin journal writes are failing")
            .count()
    };
    assert_eq!(
        failing_lines(),
        1,
        "one line per outage:\n{}",
        log_of(&farm, "full.log")
    );

    // Room again: the journal finds out by itself, without a Create-Session.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz(&farm).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "still not ready:\n{}",
            log_of(&farm, "full.log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log_of(&farm, "full.log").contains("pin journal writes succeed again"));
    let created = raw::send(farm.proxy, &create)
        .await
        .expect("Create-Session");
    assert_eq!(created.status, 200);
    assert_eq!(failing_lines(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_created_on_both_sides_of_an_upgrade_all_complete() {
    let farm = farm(2).await;
    let mut old = start(&farm, false, "both-old.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    // Started in the old process, continued in the new one.
    let mut uploads = start_uploads(&farm, "before", 4, 1 << 20);
    wait_for_progress(&farm, 256 << 10).await;

    let new = start_upgrade(&farm, "both-new.log").await;
    signal(&old, "QUIT");
    // Until the old process is gone (its close delay, when both processes accept
    // connections, then its grace period), new uploads start every 100 ms: each session
    // is created by whichever process takes the connection, and each packet of it, on a
    // new connection, may reach the other one.
    let mut started = 0;
    while old.try_wait().unwrap().is_none() {
        uploads.extend(start_uploads(
            &farm,
            &format!("during-{started}"),
            1,
            256 << 10,
        ));
        started += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started > 20, "the old process left after {started} uploads");
    // check_uploads fails on an upload that was told its session does not exist.
    check_uploads(&farm, uploads).await;
    let mut new = new;
    assert!(
        new.try_wait().unwrap().is_none(),
        "the new process serves on"
    );
    stop_gracefully(&mut new);
}

/// Unpins are not waited for on the request path. One queued by the last request
/// before a fast stop (SIGINT: no grace period, so no flush when it begins) is on disk
/// once the process has exited: the journal is flushed after the runtimes stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpin_queued_just_before_a_fast_stop_is_on_disk_when_the_process_exits() {
    use bits_proto::PacketType;
    use bits_testkit::client::raw::{self, RawRequest};
    let farm = farm(1).await;
    let path = "/uploads/last.bin";
    let mut first = start(&farm, false, "first.log");
    tokio::task::block_in_place(|| wait_listening(farm.proxy));
    let created = raw::send(
        farm.proxy,
        &RawRequest::bits(PacketType::CreateSession, path)
            .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 200, "{created:?}");
    let session = created.ack().session_id.expect("session id").to_string();
    let cancelled = raw::send(
        farm.proxy,
        &RawRequest::bits(PacketType::CancelSession, path).header("BITS-Session-Id", &session),
    )
    .await
    .unwrap();
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    // At once, well inside the time an unpin may wait for a write to carry it.
    let pid = libc::pid_t::try_from(first.id()).unwrap();
    // SAFETY: kill(2) with a valid signal number only sends a signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    tokio::task::block_in_place(|| wait_exit(&mut first, Duration::from_secs(20)));

    // The next process loads the journal: the cancelled session is not pinned.
    let mut second = start(&farm, false, "second.log");
    tokio::task::block_in_place(|| wait_listening(farm.admin));
    let metrics = raw::send(farm.admin, &RawRequest::new("GET", "/metrics"))
        .await
        .unwrap();
    let pinned = crate::cluster::sample(
        &String::from_utf8_lossy(&metrics.body),
        "bitsgate_pinned_sessions",
    );
    assert_eq!(
        pinned,
        Some(0.0),
        "the journal lost the unpin; first process's log:\n{}",
        log_of(&farm, "first.log")
    );
    stop_gracefully(&mut second);
}
