//! Server settings and their defaults.
//!
//! Every default is a named constant so the binary's `--help`, the docs and the tests all
//! agree on one value.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Name sent as `Server:` when none is configured.
pub const DEFAULT_NAME: &str = "bits-server";
/// Sessions directory, relative to the upload root, when none is configured. It starts
/// with a dot and is refused as an upload destination, so no URL can write into it.
pub const DEFAULT_SESSIONS_DIR_NAME: &str = ".bits-sessions";
/// Largest fragment body accepted: 64 MiB. Bigger fragments get 413 and the client
/// retries with smaller ones (spec §6).
pub const DEFAULT_MAX_FRAGMENT: u64 = 64 * 1024 * 1024;
/// Largest file accepted: no limit, like IIS's empty `BITSMaximumUploadSize` (spec §10).
pub const DEFAULT_MAX_UPLOAD: u64 = u64::MAX;
/// Idle time after which a session and its data are purged: 14 days, IIS's
/// `BITSSessionTimeout` default (spec §10).
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(1_209_600);
/// How often idle sessions are looked for. IIS cleans every 12 hours; a small server can
/// afford to look every minute, which keeps the disk tidier.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// How long `shutdown` lets requests already in progress finish before cutting them off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a fragment body may stall between two chunks before the upload is treated
/// as cut short. Without it a half-open connection would hold its session forever.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client may take to send request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Ended sessions kept in the stats, newest first; open sessions are always kept.
pub const MAX_ENDED_SESSIONS_IN_STATS: usize = 10_000;
/// Connections kept in the stats, newest first.
pub const MAX_CONNECTIONS_IN_STATS: usize = 10_000;
/// NetBIOS domain named in NTLM challenges when none is configured.
pub const DEFAULT_AUTH_DOMAIN: &str = "BITSTEST";
/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Windows authentication as an IIS site with it enabled does it (see
/// `docs/reference-server.md`): every TCP connection must complete an NTLM handshake
/// before its requests are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Only the `NTLM` provider: anonymous requests get `WWW-Authenticate: NTLM`.
    Ntlm,
    /// IIS's default provider list: `WWW-Authenticate: Negotiate`, then `NTLM`. Tokens
    /// are accepted in either scheme (raw NTLMSSP only: no Kerberos, no SPNEGO).
    Negotiate,
}

impl AuthMode {
    /// The schemes offered to anonymous requests, in order.
    pub fn offers(self) -> &'static [crate::ntlm::Scheme] {
        use crate::ntlm::Scheme;
        match self {
            AuthMode::Ntlm => &[Scheme::Ntlm],
            AuthMode::Negotiate => &[Scheme::Negotiate, Scheme::Ntlm],
        }
    }
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ntlm" => Ok(AuthMode::Ntlm),
            "negotiate" => Ok(AuthMode::Negotiate),
            _ => Err(format!("{s:?} is not ntlm or negotiate")),
        }
    }
}

/// A certificate chain and its key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf.
    pub key: PathBuf,
}

/// Settings of one server. Build with [`ServerConfig::new`] and change fields as needed.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on; all listeners share one state.
    pub listen: Vec<SocketAddr>,
    /// Upload root: a file uploaded to `/a/b.bin` lands at `root/a/b.bin`.
    pub root: PathBuf,
    /// Temp data and per-session metadata.
    pub sessions_dir: PathBuf,
    /// Sent as `Server: <name>` on every response.
    pub name: String,
    /// Sent as `BITS-Host-Id` on Create-Session Acks.
    pub host_id: Option<String>,
    /// Sent as `BITS-Host-Id-Fallback-Timeout` (seconds), only together with `host_id`.
    pub host_id_fallback_timeout: Option<u64>,
    /// Fragment bodies longer than this get 413 without being read.
    pub max_fragment: u64,
    /// Files longer than this get 500 + BG_E_TOO_LARGE.
    pub max_upload: u64,
    /// Sessions without a packet for this long are expired and their data deleted.
    pub session_idle_timeout: Duration,
    /// How often the expiry sweeper runs.
    pub cleanup_interval: Duration,
    /// Whether an upload may replace an existing file.
    pub allow_overwrite: bool,
    /// Answers only requests whose `Host` (port aside) is this name, like an IIS site
    /// bound to a host name; any other `Host` gets a plain 400.
    pub host_name: Option<String>,
    /// Cancel-Session must target the URL its session was created at (else 400 +
    /// E_INVALIDARG), so a test sees which URL a cancel was sent to.
    pub require_session_url: bool,
    /// Session ids derived from the upload path and the number of sessions this server
    /// created before, instead of random ones: two servers started together issue the
    /// same id for the same path, as servers that hash the client and path do.
    pub ids_from_path: bool,
    /// Windows authentication per TCP connection; `None` serves anonymous requests.
    pub auth: Option<AuthMode>,
    /// NetBIOS domain named in NTLM challenges.
    pub auth_domain: String,
    /// Upload-reply jobs: the final Fragment's Ack carries `BITS-Reply-URL`, and the
    /// reply is served with `HEAD` and ranged `GET` until the session ends.
    pub reply: bool,
    /// Time the final Fragment's Ack is held back in reply mode, as a server
    /// application producing its reply would.
    pub reply_delay: Duration,
    /// Authority (`host` or `host:port`) the reply URL names, as an IIS server names
    /// itself by its machine name; `None` names the address the client connected to.
    pub reply_host: Option<String>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// With `tls`: require a client certificate signed by a CA in this PEM file, as
    /// IIS does with "Require client certificates".
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerConfig {
    /// Defaults: one listener on `127.0.0.1:0`, sessions under `root/.bits-sessions`,
    /// no Host-Id, 64 MiB fragments, no file size limit, 14-day idle timeout, no
    /// overwrites, anonymous plain HTTP, plain uploads (no reply).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        ServerConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            sessions_dir: root.join(DEFAULT_SESSIONS_DIR_NAME),
            root,
            name: DEFAULT_NAME.to_owned(),
            host_id: None,
            host_id_fallback_timeout: None,
            max_fragment: DEFAULT_MAX_FRAGMENT,
            max_upload: DEFAULT_MAX_UPLOAD,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
            allow_overwrite: false,
            host_name: None,
            require_session_url: false,
            ids_from_path: false,
            auth: None,
            auth_domain: DEFAULT_AUTH_DOMAIN.to_owned(),
            reply: false,
            reply_delay: Duration::ZERO,
            reply_host: None,
            tls: None,
            tls_client_ca: None,
        }
    }
}
