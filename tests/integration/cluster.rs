//! A small builder for a real cluster on loopback: reference BITS servers and a real
//! bitsgate instance in front of them, all on 127.0.0.1 with ports picked by the OS.

use bits_testkit::client::raw::{self, RawRequest, RawResponse};
use bits_testkit::client::{
    self, NoObserver, UploadError, UploadOptions, UploadReport, UploadSource,
};
use bits_testkit::server::{self, ServerConfig, ServerHandle, Stats};
use bitsgate::app::ProcessOptions;
use bitsgate::config::{self, Config};
use bitsgate::runner::{self, RunningProxy};
use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub proxy: RunningProxy,
    config_path: PathBuf,
    backends: Vec<Option<ServerHandle>>,
    server_configs: Vec<ServerConfig>,
    /// Backend roots live here; removed when the cluster is dropped.
    _dir: tempfile::TempDir,
    header: String,
    /// Extra keys of each backend's `[[backends]]` table.
    backend_keys: Vec<String>,
}

/// Adjusts reference server `i`'s config before it starts.
type ServerTweak = dyn Fn(usize, &mut ServerConfig);

pub struct ClusterBuilder {
    backends: usize,
    configured: Option<usize>,
    admin_token: Option<String>,
    admin_extra: String,
    host_id_mode: &'static str,
    extra: String,
    listener_extra: String,
    upstream_extra: String,
    backend_keys: Option<Box<dyn Fn(usize) -> String>>,
    tweak: Option<Box<ServerTweak>>,
}

impl Cluster {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> ClusterBuilder {
        ClusterBuilder {
            backends: 3,
            configured: None,
            admin_token: None,
            admin_extra: String::new(),
            host_id_mode: "strip",
            extra: String::new(),
            listener_extra: String::new(),
            upstream_extra: String::new(),
            backend_keys: None,
            tweak: None,
        }
    }
}

impl ClusterBuilder {
    pub fn backends(mut self, n: usize) -> Self {
        self.backends = n;
        self
    }

    /// Lists only the first `n` backends in the initial config (the others run but
    /// are unknown to bitsgate until a reload adds them).
    pub fn configured(mut self, n: usize) -> Self {
        self.configured = Some(n);
        self
    }

    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_owned());
        self
    }

    /// Extra keys (and subsections after them) for the proxy's `[admin]` section.
    pub fn admin_config(mut self, toml: &str) -> Self {
        self.admin_extra.push_str(toml);
        self.admin_extra.push('\n');
        self
    }

    pub fn host_id_mode(mut self, mode: &'static str) -> Self {
        self.host_id_mode = mode;
        self
    }

    /// Extra TOML sections for the proxy config (not [listener], [admin], [host_id]).
    pub fn config(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// Extra keys for the proxy's `[listener]` section.
    pub fn listener_config(mut self, toml: &str) -> Self {
        self.listener_extra.push_str(toml);
        self.listener_extra.push('\n');
        self
    }

    /// Extra keys for the proxy's `[upstream]` section.
    pub fn upstream_config(mut self, toml: &str) -> Self {
        self.upstream_extra.push_str(toml);
        self.upstream_extra.push('\n');
        self
    }

    /// Extra keys for backend `i`'s `[[backends]]` table.
    pub fn backend_keys(mut self, keys: impl Fn(usize) -> String + 'static) -> Self {
        self.backend_keys = Some(Box::new(keys));
        self
    }

    /// Adjusts each reference server's config (index, config).
    pub fn server(mut self, tweak: impl Fn(usize, &mut ServerConfig) + 'static) -> Self {
        self.tweak = Some(Box::new(tweak));
        self
    }

    pub async fn start(self) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut backends = Vec::new();
        let mut server_configs = Vec::new();
        for i in 0..self.backends {
            let mut config = ServerConfig::new(dir.path().join(format!("b{i}")));
            config.name = format!("b{i}");
            if let Some(tweak) = &self.tweak {
                tweak(i, &mut config);
            }
            std::fs::create_dir_all(&config.root).expect("backend root");
            let handle = server::spawn(config.clone())
                .await
                .expect("reference server");
            // Pin the address so a restart comes back on the same one.
            config.listen = handle.addrs().to_vec();
            server_configs.push(config);
            backends.push(Some(handle));
        }
        let token = self
            .admin_token
            .as_ref()
            .map(|t| format!("token = \"{t}\"\n"))
            .unwrap_or_default()
            + &self.admin_extra;
        // Many proxies start and stop in this one test process. Pingora's
        // runtime-per-thread mode (work_stealing = false) finds its runtime through a
        // thread-local keyed by thread ids that are reused after a thread exits, so a
        // later instance can pick up a stopped one's runtime and never accept. The
        // process tests run the binary with the default instead.
        let keepalive = if self.listener_extra.contains("keepalive_timeout") {
            ""
        } else {
            "keepalive_timeout = \"5s\"\n"
        };
        let header = format!(
            "[listener]\naddress = \"127.0.0.1:0\"\n{keepalive}{}[admin]\naddress = \"127.0.0.1:0\"\n{token}[storage]\nmode = \"memory\"\n[host_id]\nmode = \"{}\"\nfallback_timeout = \"2s\"\n[upstream]\nconnect_timeout = \"2s\"\n{}[server]\nthreads = 2\nwork_stealing = true\ngrace_period = \"1s\"\nshutdown_timeout = \"1s\"\n{}",
            self.listener_extra, self.host_id_mode, self.upstream_extra, self.extra
        );
        // Probes would add requests to the backends' counts that tests compare; tests
        // about health set their own [health_check].
        let header = if self.extra.contains("[health_check]") {
            header
        } else {
            header + "[health_check]\nkind = \"none\"\npassive_failures = 0\n"
        };
        let configured = self.configured.unwrap_or(self.backends);
        let backend_keys: Vec<String> = (0..self.backends)
            .map(|i| {
                self.backend_keys
                    .as_ref()
                    .map(|keys| keys(i))
                    .unwrap_or_default()
            })
            .collect();
        let text = config_text(&header, &server_configs, &backend_keys, |i| i < configured);
        let config_path = dir.path().join("bitsgate.toml");
        std::fs::write(&config_path, &text).expect("config file");
        let config = parse(&text);
        let process = ProcessOptions {
            config_path: Some(config_path.clone()),
            ..ProcessOptions::default()
        };
        let proxy = tokio::task::block_in_place(|| runner::spawn_with(config, process))
            .expect("proxy starts");
        Cluster {
            proxy,
            config_path,
            backends,
            server_configs,
            _dir: dir,
            header,
            backend_keys,
        }
    }
}

/// Backend `i` is called `b{i}` and answers to `b{i}.bits.example` / `NODE{i}`.
fn build_config(
    header: &str,
    servers: &[ServerConfig],
    keys: &[String],
    keep: impl Fn(usize) -> bool,
) -> Config {
    parse(&config_text(header, servers, keys, keep))
}

fn parse(text: &str) -> Config {
    config::load_str(text).unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"))
}

fn config_text(
    header: &str,
    servers: &[ServerConfig],
    keys: &[String],
    keep: impl Fn(usize) -> bool,
) -> String {
    let mut text = header.to_owned();
    for (i, server) in servers.iter().enumerate().filter(|(i, _)| keep(*i)) {
        text.push_str(&format!(
            "[[backends]]\nid = \"b{i}\"\naddress = \"{}\"\nhost_id = \"NODE{i}\"\npublic_host_id = \"b{i}.bits.example\"\n",
            server.listen[0]
        ));
        if let Some(keys) = keys.get(i).filter(|k| !k.is_empty()) {
            text.push_str(keys);
            text.push('\n');
        }
    }
    text
}

impl Cluster {
    pub fn admin_addr(&self) -> SocketAddr {
        self.proxy.admin_addr
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.proxy_addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.proxy_addr)
    }

    pub fn backend_count(&self) -> usize {
        self.server_configs.len()
    }

    pub fn backend_root(&self, i: usize) -> PathBuf {
        self.server_configs[i].root.clone()
    }

    pub fn stats(&self, i: usize) -> Stats {
        self.backends[i]
            .as_ref()
            .expect("backend is running")
            .stats()
    }

    pub fn all_stats(&self) -> Vec<Stats> {
        (0..self.backends.len())
            .filter(|i| self.backends[*i].is_some())
            .map(|i| self.stats(i))
            .collect()
    }

    /// Total requests every running backend has seen.
    pub fn requests_seen(&self) -> u64 {
        self.all_stats().iter().map(|s| s.requests_total).sum()
    }

    /// Index of the backend whose stats know this session.
    pub fn owners_of(&self, session: &str) -> Vec<usize> {
        (0..self.backends.len())
            .filter(|i| self.backends[*i].is_some())
            .filter(|i| self.stats(*i).sessions.contains_key(session))
            .collect()
    }

    pub async fn stop_backend(&mut self, i: usize) {
        if let Some(handle) = self.backends[i].take() {
            handle.shutdown().await;
        }
    }

    pub async fn restart_backend(&mut self, i: usize) {
        assert!(self.backends[i].is_none(), "backend {i} is running");
        let handle = server::spawn(self.server_configs[i].clone())
            .await
            .expect("reference server restarts on its address");
        self.backends[i] = Some(handle);
    }

    /// Applies a config with only the backends `keep` accepts.
    pub fn reconfigure(&self, keep: impl Fn(usize) -> bool) {
        let config = build_config(&self.header, &self.server_configs, &self.backend_keys, keep);
        self.proxy.shared.apply(config).expect("config applies");
    }

    /// Rewrites the config file with the backends `keep` accepts and `extra` appended.
    pub fn write_config(&self, keep: impl Fn(usize) -> bool, extra: &str) {
        let text =
            config_text(&self.header, &self.server_configs, &self.backend_keys, keep) + extra;
        std::fs::write(&self.config_path, text).expect("config file");
    }

    /// The config file as it is now.
    pub fn read_config(&self) -> String {
        std::fs::read_to_string(&self.config_path).expect("config file")
    }

    /// Overwrites the config file with arbitrary text.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("config file");
    }

    /// An admin call, with a bearer token when given.
    pub async fn admin(&self, method: &str, path: &str, token: Option<&str>) -> RawResponse {
        let mut request = RawRequest::new(method, path);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        raw::send(self.proxy.admin_addr, &request)
            .await
            .expect("admin call")
    }

    /// An admin call whose JSON answer is returned.
    pub async fn admin_json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let response = self.admin(method, path, token).await;
        let value = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
        (response.status, value)
    }

    /// Creates a session at `path` through the proxy and returns its id.
    pub async fn create_session(&self, path: &str) -> String {
        let request = RawRequest::bits(bits_proto::PacketType::CreateSession, path)
            .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
        let response = self.send(&request).await;
        assert_eq!(response.status, 200, "{response:?}");
        response.ack().session_id.expect("session id").to_string()
    }

    pub async fn send(&self, request: &RawRequest) -> RawResponse {
        raw::send(self.proxy.proxy_addr, request)
            .await
            .expect("request through the proxy")
    }

    /// A scrape, with the admin token when one is configured (as Prometheus would).
    pub async fn metrics(&self) -> String {
        let mut request = RawRequest::new("GET", "/metrics");
        if let Some(token) = &self.proxy.shared.generation().config.admin.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = raw::send(self.proxy.admin_addr, &request)
            .await
            .expect("metrics scrape");
        assert_eq!(response.status, 200);
        String::from_utf8(response.body.to_vec()).expect("utf-8 metrics")
    }

    /// Scrapes until a sample has the expected value, since bitsgate counts a request
    /// in its logging phase, just after the answer went out. Returns the scrape.
    pub async fn metrics_when(&self, name_and_labels: &str, expected: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = self.metrics().await;
            if sample(&metrics, name_and_labels) == Some(expected) {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "{name_and_labels} never reached {expected}:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn upload(
        &self,
        path: &str,
        data: &Bytes,
        options: &UploadOptions,
    ) -> Result<UploadReport, UploadError> {
        client::upload(
            &self.url(path),
            UploadSource::Bytes(data.clone()),
            options,
            &NoObserver,
        )
        .await
    }

    /// Finds the committed file on whichever backend has it and returns its sha256.
    pub fn committed_sha256(&self, path: &str) -> Vec<String> {
        (0..self.server_configs.len())
            .filter_map(|i| {
                std::fs::read(self.backend_root(i).join(path.trim_start_matches('/'))).ok()
            })
            .map(|bytes| sha256(&bytes))
            .collect()
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    Bytes::from(data)
}

/// Client options for tests: fast retries, fragments of `fragment` bytes.
pub fn options(fragment: u64) -> UploadOptions {
    UploadOptions {
        fragment_size: fragment,
        retry_delay: Duration::from_millis(20),
        max_retry_delay: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(30),
        ..UploadOptions::default()
    }
}

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `client=` field of every line of a text access log, in order.
pub fn access_log_clients(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("client=")))
        .map(str::to_owned)
        .collect()
}

/// The value of one sample line of a Prometheus text exposition.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name_and_labels)
            .then(|| value.parse().ok())
            .flatten()
    })
}
