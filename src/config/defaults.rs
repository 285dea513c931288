//! Every default of the configuration, in one place. `config/bitsgate.toml` shows the
//! same values; a test keeps the two in step.

use std::time::Duration;

/// Where the proxy listens for BITS clients.
pub const LISTENER_ADDRESS: &str = "0.0.0.0:8080";
/// How long an idle client connection is kept open between requests.
pub const LISTENER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a local answer to a request whose body was not read, how long the rest of
/// the body may take to arrive while it is read and discarded (nginx's
/// `lingering_time`): the client gets its Ack instead of a reset.
pub const LISTENER_LINGERING_TIME: Duration = Duration::from_secs(30);
/// The same, for one read that brings nothing (nginx's `lingering_timeout`).
pub const LISTENER_LINGERING_TIMEOUT: Duration = Duration::from_secs(5);
/// Accept `POST` + `X-Http-Method-Override: BITS_POST` (clients that cannot send
/// extension methods use it).
pub const LISTENER_ALLOW_METHOD_OVERRIDE: bool = true;
/// A client connection must send its whole request header block within this (from
/// accept, or from a kept-alive request's first byte): slow-header clients
/// (slowloris) cannot hold connections.
pub const LISTENER_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `header_timeout` accepted.
pub const LISTENER_HEADER_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// Largest request header block; BITS headers are short (4 KB per value at most).
pub const LISTENER_MAX_HEADER_BLOCK: u64 = 64 * 1024;
/// A request body waited on this long must have brought `body_min_bytes`.
pub const LISTENER_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Least body bytes per `body_timeout` (about 17 bytes/s: only a stalled or trickled
/// body falls under it).
pub const LISTENER_BODY_MIN_BYTES: u64 = 1024;
/// Expect no PROXY protocol header.
pub const LISTENER_PROXY_PROTOCOL: bool = false;
/// BITS packets on a plain listener take the fast path.
pub const LISTENER_FAST_PATH: bool = true;
/// Request bodies on the fast path move through a pipe with `splice(2)`.
pub const LISTENER_SPLICE: bool = true;
/// Append the client's address to `X-Forwarded-For`.
pub const UPSTREAM_FORWARDED_FOR: bool = true;
/// Where the admin API (metrics, probes) listens. Loopback: it is not for clients.
pub const ADMIN_ADDRESS: &str = "127.0.0.1:9090";
/// What to do with `BITS-Host-Id` in backend Acks.
pub const HOST_ID_MODE: &str = "strip";
/// Fallback timeout sent to clients in rewrite mode.
pub const HOST_ID_FALLBACK_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// A pin that sees no packet for this long is forgotten. Matches the IIS
/// `BITSSessionTimeout` default, so bitsgate never forgets a session the backend keeps.
pub const SESSIONS_IDLE_TIMEOUT: Duration = Duration::from_secs(14 * 24 * 3600);
/// How often idle pins are looked for.
pub const SESSIONS_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Most sessions pinned at once; Create-Session is refused with 503 beyond it.
pub const SESSIONS_MAX_PINNED: u64 = 10_000_000;
/// Create-Session balancing policy.
pub const BALANCING_POLICY: &str = "round_robin";
/// Upstream TCP connect timeout.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream read timeout: an upload-reply final Ack may take 5 minutes (spec §5).
pub const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// Upstream write timeout.
pub const UPSTREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle upstream connections are kept in the pool this long.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest upstream read timeout accepted: the upload-reply final Ack may take 5 min.
pub const UPSTREAM_READ_TIMEOUT_MIN: Duration = Duration::from_secs(5 * 60);
/// Longest request header value accepted (spec §2: 4 KB).
pub const LIMITS_MAX_HEADER_BYTES: u64 = 4096;
/// Largest fragment forwarded; larger ones get 413 so the client shrinks them.
pub const LIMITS_MAX_FRAGMENT_BYTES: u64 = 1 << 30;
/// Weight of a backend in Create-Session balancing.
pub const BACKEND_WEIGHT: u32 = 1;
/// Worker threads of the proxy service.
pub const SERVER_THREADS: usize = 2;
/// One single-threaded runtime per worker thread: 10-14 % less CPU per proxied Ping
/// than Tokio's work-stealing scheduler, measured (docs/benchmarks.md).
pub const SERVER_WORK_STEALING: bool = false;
/// Seconds in-flight requests get to finish on SIGTERM.
pub const SERVER_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Seconds the runtime gets to stop after the grace period.
pub const SERVER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Read-only admin calls need the token too (when a token is set): session ids are
/// capabilities, and backend addresses are the farm's map.
pub const ADMIN_PROTECT_READS: bool = true;
/// A non-loopback admin address without a token is refused unless this is set.
pub const ADMIN_ALLOW_UNAUTHENTICATED: bool = false;
/// How backends are probed: a BITS Ping, a TCP connect, or not at all.
pub const HEALTH_CHECK_KIND: &str = "bits_ping";
/// Time between two probes of one backend.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// A probe slower than this counts as failed.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// URL path of the BITS Ping probe. Unset, any HTTP answer to it proves a node alive;
/// a configured path must answer with a BITS Ack.
pub const HEALTH_CHECK_PATH: &str = "/";
/// Consecutive successful probes that bring a down backend back.
pub const HEALTH_CHECK_HEALTHY_THRESHOLD: u32 = 2;
/// Consecutive failed probes that take a backend down.
pub const HEALTH_CHECK_UNHEALTHY_THRESHOLD: u32 = 3;
/// Consecutive connect failures of live traffic that take a backend down (0: off).
pub const HEALTH_CHECK_PASSIVE_FAILURES: u32 = 3;
/// Reload when the config file changes on disk.
pub const RELOAD_WATCH: bool = false;
/// What happens to the sessions of a backend that leaves the config.
pub const RELOAD_REMOVED_BACKENDS: &str = "drain";
/// Send Cancel-Session to the owner when a pin expires, so it frees its temp files.
pub const SESSIONS_CANCEL_ON_EXPIRY: bool = true;
/// A backend removed from the config (retired) that stays down this long has its pins
/// ended, so its clients restart elsewhere instead of retrying a node that is gone.
pub const SESSIONS_RETIRED_DOWN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Where pins are kept beyond the process: on local disk, or only in memory.
pub const STORAGE_MODE: &str = "durable";
/// Directory of the pin journal, relative to the working directory.
pub const STORAGE_DATA_DIR: &str = "data";
/// When a pin write is durable: `write` survives a crash of bitsgate, `fsync` also a
/// power cut (at a latency cost on Create-Session).
pub const STORAGE_SYNC: &str = "write";
/// Prefix of every Redis key, so several farms can share one Redis.
pub const STORAGE_REDIS_KEY_PREFIX: &str = "bitsgate:";
/// How long connecting to Redis may take.
pub const STORAGE_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one Redis command may take (a Create-Session waits for one).
pub const STORAGE_REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// Pingora's zero-downtime upgrade socket.
pub const SERVER_UPGRADE_SOCK: &str = "/tmp/bitsgate_upgrade.sock";
/// Pingora's pid file.
pub const SERVER_PID_FILE: &str = "/tmp/bitsgate.pid";
/// Access log: off unless asked for. Every Fragment is a request, so one upload of a
/// large file writes thousands of lines; where they go (and how long client addresses
/// are kept) is the operator's choice, not a default.
pub const LOG_ACCESS: &str = "off";
/// Format of the access log and of the diagnostic log (stderr).
pub const LOG_FORMAT: &str = "text";
/// Access-log lines waiting for the writer; beyond it lines are dropped and counted,
/// so a slow disk never holds up a request.
pub const LOG_ACCESS_BUFFER: usize = 8192;
