//! The validated configuration: every value typed, every default applied.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A complete, valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The client-facing listener.
    pub listener: ListenerConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// `BITS-Host-Id` handling.
    pub host_id: HostIdConfig,
    /// Session pinning.
    pub sessions: SessionsConfig,
    /// Which backend gets a new session.
    pub balancing: BalancingPolicy,
    /// Timeouts towards backends.
    pub upstream: UpstreamConfig,
    /// Request limits.
    pub limits: Limits,
    /// Process settings.
    pub server: ServerSettings,
    /// Backend probing.
    pub health_check: HealthCheckConfig,
    /// Reload behaviour.
    pub reload: ReloadConfig,
    /// Where pins are kept.
    pub storage: StorageConfig,
    /// Access log and log format.
    pub log: LogConfig,
    /// The backend farm, in file order.
    pub backends: Vec<BackendConfig>,
}

/// The client-facing listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Bind address.
    pub address: SocketAddr,
    /// Idle keep-alive timeout between requests.
    pub keepalive_timeout: Duration,
    /// After a local answer, the longest the unread rest of the request body is read
    /// and discarded for.
    pub lingering_time: Duration,
    /// After a local answer, the longest one read of that body may bring nothing.
    pub lingering_timeout: Duration,
    /// Accept `POST` + `X-Http-Method-Override: BITS_POST`.
    pub allow_method_override: bool,
    /// Serve HTTPS when set.
    pub tls: Option<TlsConfig>,
    /// Client connections open with a PROXY protocol header naming the client.
    pub proxy_protocol: bool,
    /// Bounds on each client connection.
    pub edge: EdgeLimits,
    /// BITS packets on a plain listener take the fast path where they can.
    pub fast_path: bool,
    /// Request bodies on the fast path move through a pipe with `splice(2)`.
    pub splice: bool,
}

/// What one client connection may hold and for how long (`[listener]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// The whole request header block arrives within this, from accept or from the
    /// first byte of a request on a kept-alive connection.
    pub header_timeout: Duration,
    /// Largest request header block.
    pub max_header_block: u64,
    /// A request body must bring `body_min_bytes` within every such window of waiting.
    pub body_timeout: Duration,
    /// See `body_timeout`.
    pub body_min_bytes: u64,
    /// Client connections open at once; more are refused.
    pub max_connections: usize,
}

/// Certificate and key for the listener, PEM files.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// Certificate chain.
    pub cert_path: PathBuf,
    /// Private key.
    pub key_path: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Bind address.
    pub address: SocketAddr,
    /// Bearer token required by mutating calls (and reads with `protect_reads`).
    pub token: Option<String>,
    /// Read-only calls need the token too (`/sessions` always does when a token is set).
    pub protect_reads: bool,
    /// Serve without a token on a non-loopback address (a warning at every start).
    pub allow_unauthenticated: bool,
    /// HTTPS on the admin listener.
    pub tls: Option<TlsConfig>,
}

impl AdminConfig {
    /// Anyone who reaches the admin address may drain, reload and cancel: no token on an
    /// address other hosts can reach.
    pub fn open_to_the_network(&self) -> bool {
        self.token.is_none() && !self.address.ip().is_loopback()
    }
}

/// What bitsgate does with `BITS-Host-Id` in backend Acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIdMode {
    /// Remove it, so every packet keeps coming through bitsgate.
    Strip,
    /// Relay it; clients then talk to the node directly.
    Passthrough,
    /// Replace it with the backend's `public_host_id`.
    Rewrite,
}

impl HostIdMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HostIdMode::Strip => "strip",
            HostIdMode::Passthrough => "passthrough",
            HostIdMode::Rewrite => "rewrite",
        }
    }
}

/// `BITS-Host-Id` handling.
#[derive(Debug, Clone, PartialEq)]
pub struct HostIdConfig {
    /// The policy.
    pub mode: HostIdMode,
    /// Fallback timeout sent with a rewritten Host-Id.
    pub fallback_timeout: Duration,
}

/// Session pinning.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionsConfig {
    /// A pin idle this long is forgotten.
    pub idle_timeout: Duration,
    /// How often idle pins are looked for.
    pub sweep_interval: Duration,
    /// Most pins held at once.
    pub max_pinned: u64,
    /// Most pins one client address holds at once; 0: no limit.
    pub max_pinned_per_client: u64,
    /// Send Cancel-Session to the owner when a pin expires.
    pub cancel_on_expiry: bool,
    /// A retired backend down this long has its pins ended.
    pub retired_down_timeout: Duration,
}

impl SessionsConfig {
    /// Whether pins are limited (and so tracked) per client address.
    pub fn max_pinned_per_client_on(&self) -> bool {
        self.max_pinned_per_client > 0
    }
}

impl SessionsConfig {
    /// The longest between two journal records of an active session's activity:
    /// `idle_timeout / 16`, at most an hour, at least a second. A restart trusts the
    /// journaled idle clock to within this.
    pub fn activity_journal_interval(&self) -> u32 {
        let secs = (self.idle_timeout / 16)
            .min(std::time::Duration::from_secs(3600))
            .as_secs()
            .max(1);
        u32::try_from(secs).unwrap_or(3600)
    }
}

/// Create-Session balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancingPolicy {
    /// Each ready backend in turn, in proportion to its weight.
    RoundRobin,
    /// The ready backend with the fewest pinned sessions per unit of weight.
    LeastSessions,
    /// A hash of the URL path, so one file always goes to the same node while it is ready.
    UrlHash,
}

impl BalancingPolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancingPolicy::RoundRobin => "round_robin",
            BalancingPolicy::LeastSessions => "least_sessions",
            BalancingPolicy::UrlHash => "url_hash",
        }
    }
}

/// Timeouts towards backends.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// TCP connect.
    pub connect_timeout: Duration,
    /// Waiting for each read, including the Ack.
    pub read_timeout: Duration,
    /// Waiting for each write.
    pub write_timeout: Duration,
    /// Idle pooled connections.
    pub idle_timeout: Duration,
    /// Roots and client certificate for backends with `tls = true`.
    pub tls: crate::backend::tls::UpstreamTls,
    /// Append the client's address to `X-Forwarded-For`.
    pub forwarded_for: bool,
    /// Peers whose incoming `X-Forwarded-For` is kept (none: every peer's is).
    pub trusted_forwarders: Option<Vec<ipnet::IpNet>>,
}

/// Request limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest header value.
    pub max_header_bytes: usize,
    /// Largest fragment body.
    pub max_fragment_bytes: u64,
}

/// Process settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Worker threads of the proxy.
    pub threads: usize,
    /// Whether idle threads take work queued on busy ones (one shared runtime) or each
    /// thread keeps the connections it accepted (one runtime per thread).
    pub work_stealing: bool,
    /// How long in-flight requests get on SIGTERM.
    pub grace_period: Duration,
    /// How long the runtime gets to stop after that.
    pub shutdown_timeout: Duration,
    /// Pingora's zero-downtime upgrade socket.
    pub upgrade_sock: PathBuf,
    /// Pingora's pid file.
    pub pid_file: PathBuf,
}

/// How a backend is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `BITS_POST` with `BITS-Packet-Type: Ping`; any Ack (any status) counts as alive.
    BitsPing,
    /// A TCP connect.
    Tcp,
    /// No active probing (passive failures still count).
    None,
}

impl HealthCheckKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCheckKind::BitsPing => "bits_ping",
            HealthCheckKind::Tcp => "tcp",
            HealthCheckKind::None => "none",
        }
    }
}

/// Backend probing.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    /// Default probe kind (a backend may override it).
    pub kind: HealthCheckKind,
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// URL path of the BITS Ping.
    pub path: String,
    /// `path` was configured: the Ping's answer must be a BITS Ack (or a 401/403 with
    /// `WWW-Authenticate`). Without it any well-formed HTTP answer proves the node alive,
    /// since the default path is rarely where a farm serves BITS.
    pub require_ack: bool,
    /// Successes that bring a backend up.
    pub healthy_threshold: u32,
    /// Failures that take it down.
    pub unhealthy_threshold: u32,
    /// Consecutive live connect failures that take it down (0: off).
    pub passive_failures: u32,
}

/// What a reload does with the sessions of a backend that left the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedBackends {
    /// Keep serving its pinned sessions until they end; no new ones.
    Drain,
    /// Forget its sessions at once: their next packet gets not-found.
    End,
}

/// Reload behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadConfig {
    /// Reload when the file changes.
    pub watch: bool,
    /// Sessions of removed backends.
    pub removed_backends: RemovedBackends,
}

/// Where pins live beyond one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// A journal on local disk, loaded at start.
    Durable,
    /// Memory only: a restart forgets every pin.
    Memory,
    /// In Redis (or Valkey), shared by every replica that uses the same server and
    /// key prefix.
    Redis,
}

/// When a pin write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageSync {
    /// Handed to the kernel: survives a crash of bitsgate, not of the machine.
    Write,
    /// Flushed to the device: survives a power cut too.
    Fsync,
}

/// Pin storage.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Durable or memory.
    pub mode: StorageMode,
    /// Journal directory.
    pub data_dir: PathBuf,
    /// Durability of each write.
    pub sync: StorageSync,
    /// The shared store, in `redis` mode.
    pub redis: Option<crate::config::redis::RedisConfig>,
}

/// One backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Stable identity (metrics label, pins refer to it).
    pub id: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Share of new sessions.
    pub weight: u32,
    /// What the backend itself sends in `BITS-Host-Id`.
    pub host_id: Option<String>,
    /// The name clients use for this backend in rewrite mode.
    pub public_host_id: Option<String>,
    /// Start draining: no new sessions, pinned ones keep being served.
    pub drain: bool,
    /// Probe kind for this backend (the global one when not set).
    pub health_check: Option<HealthCheckKind>,
    /// HTTPS to this backend; `None` is plain HTTP.
    pub tls: Option<BackendTls>,
}

/// HTTPS settings of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendTls {
    /// SNI and the name its certificate must carry (a DNS name or an IP address).
    pub server_name: String,
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    /// No access log.
    Off,
    /// Standard output (the diagnostic log is on standard error).
    Stdout,
    /// Appended to a file, reopened on SIGUSR1 and on reload.
    File(PathBuf),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` text for people.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Access log destination.
    pub access: AccessTarget,
    /// Format of the access log and the diagnostic log.
    pub format: LogFormat,
    /// Lines queued for the access-log writer before new ones are dropped.
    pub access_buffer: usize,
}
