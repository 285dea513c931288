//! Raw → validated. Collects every problem at once, each with its key path and a fix.

use super::defaults as d;
use super::model::*;
use super::raw::*;
use super::ConfigError;
use rustls_pki_types::pem::PemObject;
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Turns a parsed file into a [`Config`], or every reason it cannot be one.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut v = Validator::default();
    let listener = v.listener(&raw.listener);
    let admin = v.admin(&raw.admin, true);
    if admin.address == listener.address && admin.address.port() != 0 {
        v.push(
            "admin.address",
            format!("{} is also listener.address", admin.address),
            "give the admin API its own address (loopback by default)",
        );
    }
    let host_id = v.host_id(&raw.host_id);
    let sessions = v.sessions(&raw.sessions);
    let balancing = v.balancing(&raw.balancing);
    let upstream = v.upstream(&raw.upstream);
    let limits = v.limits(&raw.limits);
    let server = v.server(&raw.server);
    if admin.open_to_the_network() && !admin.allow_unauthenticated && raw.admin.token_file.is_none()
    {
        v.push(
            "admin.address",
            format!(
                "{} is reachable from other hosts and admin.token is not set",
                admin.address
            ),
            "set admin.token_file (or admin.token) so drain, reload and session cancels need it, \
             bind admin.address to loopback, or set admin.allow_unauthenticated = true if a \
             firewall already guards it",
        );
    }
    let health_check = v.health_check(&raw.health_check);
    let reload = v.reload(&raw.reload);
    let storage = v.storage(&raw.storage);
    let log = v.log(&raw.log);
    let backends = v.backends(&raw.backends, host_id.mode);
    if v.errors.is_empty() {
        Ok(Config {
            listener,
            admin,
            health_check,
            reload,
            storage,
            log,
            host_id,
            sessions,
            balancing,
            upstream,
            limits,
            server,
            backends,
        })
    } else {
        Err(v.errors)
    }
}

/// The `[admin]` section on its own. The token (file) is read only when asked for:
/// a liveness probe needs no token, and its user may not be allowed to read the file.
pub fn validate_admin(raw: &RawAdmin, read_token: bool) -> Result<AdminConfig, Vec<ConfigError>> {
    let mut v = Validator::default();
    let admin = v.admin(raw, read_token);
    if v.errors.is_empty() {
        Ok(admin)
    } else {
        Err(v.errors)
    }
}

#[derive(Default)]
pub(super) struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    pub(super) fn push(
        &mut self,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn socket_addr(&mut self, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        match text.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                self.push(
                    key,
                    format!("{text:?} is not an IP address with a port"),
                    "write IP:PORT, e.g. \"0.0.0.0:8080\" or \"[::]:8080\"",
                );
                placeholder_addr()
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else {
            return default;
        };
        match humantime::parse_duration(text) {
            Ok(duration) if !duration.is_zero() => duration,
            Ok(_) => {
                self.push(
                    key,
                    "must be longer than zero",
                    "use a positive duration such as \"30s\"",
                );
                default
            }
            Err(e) => {
                self.push(
                    key,
                    format!("{text:?} is not a duration ({e})"),
                    "write a number and a unit: \"500ms\", \"30s\", \"10m\", \"14d\"",
                );
                default
            }
        }
    }

    pub(super) fn bytes(&mut self, key: &str, value: Option<&NumOrText>, default: u64) -> u64 {
        match value {
            None => default,
            Some(NumOrText::Num(n)) => *n,
            Some(NumOrText::Text(text)) => match parse_size(text) {
                Some(n) => n,
                None => {
                    self.push(
                        key,
                        format!("{text:?} is not a size"),
                        "write bytes as a number or with a unit: 4096, \"64KiB\", \"1GiB\"",
                    );
                    default
                }
            },
        }
    }

    fn listener(&mut self, raw: &RawListener) -> ListenerConfig {
        let address = self.socket_addr(
            "listener.address",
            raw.address.as_deref(),
            d::LISTENER_ADDRESS,
        );
        let keepalive_timeout = self.duration(
            "listener.keepalive_timeout",
            raw.keepalive_timeout.as_deref(),
            d::LISTENER_KEEPALIVE_TIMEOUT,
        );
        let lingering_time = self.duration(
            "listener.lingering_time",
            raw.lingering_time.as_deref(),
            d::LISTENER_LINGERING_TIME,
        );
        let lingering_timeout = self.duration(
            "listener.lingering_timeout",
            raw.lingering_timeout.as_deref(),
            d::LISTENER_LINGERING_TIMEOUT,
        );
        let tls = raw
            .tls
            .as_ref()
            .and_then(|tls| self.tls_files("listener.tls", tls));
        let proxy_protocol = raw.proxy_protocol.unwrap_or(d::LISTENER_PROXY_PROTOCOL);
        let edge = self.edge_limits(raw);
        ListenerConfig {
            address,
            keepalive_timeout,
            lingering_time,
            lingering_timeout,
            allow_method_override: raw
                .allow_method_override
                .unwrap_or(d::LISTENER_ALLOW_METHOD_OVERRIDE),
            tls,
            proxy_protocol,
            edge,
            fast_path: raw.fast_path.unwrap_or(d::LISTENER_FAST_PATH),
            splice: raw.splice.unwrap_or(d::LISTENER_SPLICE),
        }
    }

    /// The `[admin]` section; the token (file) only when `read_token`.
    fn admin(&mut self, raw: &RawAdmin, read_token: bool) -> AdminConfig {
        let address = self.socket_addr("admin.address", raw.address.as_deref(), d::ADMIN_ADDRESS);
        let token = if read_token {
            self.admin_token(raw)
        } else {
            None
        };
        AdminConfig {
            address,
            token,
            protect_reads: raw.protect_reads.unwrap_or(d::ADMIN_PROTECT_READS),
            allow_unauthenticated: raw
                .allow_unauthenticated
                .unwrap_or(d::ADMIN_ALLOW_UNAUTHENTICATED),
            tls: raw
                .tls
                .as_ref()
                .and_then(|tls| self.tls_files("admin.tls", tls)),
        }
    }

    /// A `[*.tls]` section: both PEM files named and present.
    fn tls_files(&mut self, section: &str, raw: &RawTls) -> Option<TlsConfig> {
        let mut path = |field: &str, value: &Option<String>| -> Option<PathBuf> {
            let key = format!("{section}.{field}");
            match value {
                None => {
                    self.push(
                        &key,
                        "is missing",
                        format!(
                            "set both cert_path and key_path (PEM files), or remove [{section}]"
                        ),
                    );
                    None
                }
                Some(p) if !std::path::Path::new(p).is_file() => {
                    self.push(
                        &key,
                        format!("{p:?} is not a readable file"),
                        "point it at an existing PEM file",
                    );
                    None
                }
                Some(p) => Some(PathBuf::from(p)),
            }
        };
        let cert_path = path("cert_path", &raw.cert_path);
        let key_path = path("key_path", &raw.key_path);
        if let Some(cert) = &cert_path {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)
                .map(|certs| certs.filter(Result::is_ok).count());
            if !matches!(certs, Ok(n) if n > 0) {
                self.push(
                    format!("{section}.cert_path"),
                    format!("{} holds no PEM certificate", cert.display()),
                    "point it at the PEM certificate chain (BEGIN CERTIFICATE blocks, leaf first)",
                );
            }
        }
        if let Some(key) = &key_path {
            if rustls_pki_types::PrivateKeyDer::from_pem_file(key).is_err() {
                self.push(
                    format!("{section}.key_path"),
                    format!("{} holds no PEM private key", key.display()),
                    "point it at the certificate's PEM private key (PKCS#8, PKCS#1 or SEC1)",
                );
            }
        }
        Some(TlsConfig {
            cert_path: cert_path?,
            key_path: key_path?,
        })
    }

    fn host_id(&mut self, raw: &RawHostId) -> HostIdConfig {
        let mode = match raw.mode.as_deref().unwrap_or(d::HOST_ID_MODE) {
            "strip" => HostIdMode::Strip,
            "passthrough" => HostIdMode::Passthrough,
            "rewrite" => HostIdMode::Rewrite,
            other => {
                self.push(
                    "host_id.mode",
                    format!("{other:?} is not a mode"),
                    "use \"strip\", \"passthrough\" or \"rewrite\"",
                );
                HostIdMode::Strip
            }
        };
        HostIdConfig {
            mode,
            fallback_timeout: self.duration(
                "host_id.fallback_timeout",
                raw.fallback_timeout.as_deref(),
                d::HOST_ID_FALLBACK_TIMEOUT,
            ),
        }
    }

    fn sessions(&mut self, raw: &RawSessions) -> SessionsConfig {
        let idle_timeout = self.duration(
            "sessions.idle_timeout",
            raw.idle_timeout.as_deref(),
            d::SESSIONS_IDLE_TIMEOUT,
        );
        let sweep_interval = self.duration(
            "sessions.sweep_interval",
            raw.sweep_interval.as_deref(),
            d::SESSIONS_SWEEP_INTERVAL.min(idle_timeout),
        );
        let max_pinned = raw.max_pinned.unwrap_or(d::SESSIONS_MAX_PINNED);
        if max_pinned == 0 {
            self.push(
                "sessions.max_pinned",
                "must be at least 1",
                "raise it, e.g. 10000000",
            );
        }
        SessionsConfig {
            idle_timeout,
            sweep_interval,
            max_pinned,
            max_pinned_per_client: raw.max_pinned_per_client.unwrap_or(0),
            cancel_on_expiry: raw.cancel_on_expiry.unwrap_or(d::SESSIONS_CANCEL_ON_EXPIRY),
            retired_down_timeout: self.duration(
                "sessions.retired_down_timeout",
                raw.retired_down_timeout.as_deref(),
                d::SESSIONS_RETIRED_DOWN_TIMEOUT,
            ),
        }
    }

    fn log(&mut self, raw: &RawLog) -> LogConfig {
        let access = match raw.access.as_deref().unwrap_or(d::LOG_ACCESS) {
            "off" => AccessTarget::Off,
            "stdout" => AccessTarget::Stdout,
            "" => {
                self.push(
                    "log.access",
                    "is empty",
                    "use \"off\", \"stdout\" or the path of a file",
                );
                AccessTarget::Off
            }
            path => AccessTarget::File(PathBuf::from(path)),
        };
        let format = match raw.format.as_deref().unwrap_or(d::LOG_FORMAT) {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.push(
                    "log.format",
                    format!("{other:?} is not a log format"),
                    "use \"text\" or \"json\"",
                );
                LogFormat::Text
            }
        };
        let access_buffer = match raw.access_buffer {
            None => d::LOG_ACCESS_BUFFER,
            Some(n @ 1..=1_000_000) => n as usize,
            Some(n) => {
                self.push(
                    "log.access_buffer",
                    format!("{n} is outside 1..=1000000"),
                    "use a number of lines such as 8192",
                );
                d::LOG_ACCESS_BUFFER
            }
        };
        LogConfig {
            access,
            format,
            access_buffer,
        }
    }

    fn balancing(&mut self, raw: &RawBalancing) -> BalancingPolicy {
        match raw.policy.as_deref().unwrap_or(d::BALANCING_POLICY) {
            "round_robin" => BalancingPolicy::RoundRobin,
            "least_sessions" => BalancingPolicy::LeastSessions,
            "url_hash" => BalancingPolicy::UrlHash,
            other => {
                self.push(
                    "balancing.policy",
                    format!("{other:?} is not a policy"),
                    "use \"round_robin\", \"least_sessions\" or \"url_hash\"",
                );
                BalancingPolicy::RoundRobin
            }
        }
    }

    fn upstream(&mut self, raw: &RawUpstream) -> UpstreamConfig {
        let read_timeout = self.duration(
            "upstream.read_timeout",
            raw.read_timeout.as_deref(),
            d::UPSTREAM_READ_TIMEOUT,
        );
        if read_timeout < d::UPSTREAM_READ_TIMEOUT_MIN {
            self.push(
                "upstream.read_timeout",
                format!(
                    "{} is shorter than 5 minutes",
                    humantime::format_duration(read_timeout)
                ),
                "allow at least \"5m\": an upload-reply final Ack may take that long (spec §5)",
            );
        }
        UpstreamConfig {
            connect_timeout: self.duration(
                "upstream.connect_timeout",
                raw.connect_timeout.as_deref(),
                d::UPSTREAM_CONNECT_TIMEOUT,
            ),
            read_timeout,
            write_timeout: self.duration(
                "upstream.write_timeout",
                raw.write_timeout.as_deref(),
                d::UPSTREAM_WRITE_TIMEOUT,
            ),
            idle_timeout: self.duration(
                "upstream.idle_timeout",
                raw.idle_timeout.as_deref(),
                d::UPSTREAM_IDLE_TIMEOUT,
            ),
            tls: self.upstream_tls(raw),
            forwarded_for: raw.forwarded_for.unwrap_or(d::UPSTREAM_FORWARDED_FOR),
            trusted_forwarders: self.trusted_forwarders(raw.trusted_forwarders.as_ref()),
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let max_header_bytes = self.bytes(
            "limits.max_header_bytes",
            raw.max_header_bytes.as_ref(),
            d::LIMITS_MAX_HEADER_BYTES,
        );
        if !(256..=65536).contains(&max_header_bytes) {
            self.push(
                "limits.max_header_bytes",
                format!("{max_header_bytes} is outside 256..=65536"),
                "keep it near the protocol's 4096",
            );
        }
        let max_fragment_bytes = self.bytes(
            "limits.max_fragment_bytes",
            raw.max_fragment_bytes.as_ref(),
            d::LIMITS_MAX_FRAGMENT_BYTES,
        );
        if max_fragment_bytes == 0 {
            self.push(
                "limits.max_fragment_bytes",
                "must be at least 1",
                "use e.g. \"1GiB\"",
            );
        }
        Limits {
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
            max_fragment_bytes,
        }
    }

    fn server(&mut self, raw: &RawServer) -> ServerSettings {
        let threads = raw.threads.unwrap_or(d::SERVER_THREADS);
        if threads == 0 || threads > 1024 {
            self.push(
                "server.threads",
                format!("{threads} is outside 1..=1024"),
                "use the number of cores",
            );
        }
        ServerSettings {
            threads,
            work_stealing: raw.work_stealing.unwrap_or(d::SERVER_WORK_STEALING),
            grace_period: self.duration(
                "server.grace_period",
                raw.grace_period.as_deref(),
                d::SERVER_GRACE_PERIOD,
            ),
            shutdown_timeout: self.duration(
                "server.shutdown_timeout",
                raw.shutdown_timeout.as_deref(),
                d::SERVER_SHUTDOWN_TIMEOUT,
            ),
            upgrade_sock: PathBuf::from(
                raw.upgrade_sock
                    .as_deref()
                    .unwrap_or(d::SERVER_UPGRADE_SOCK),
            ),
            pid_file: PathBuf::from(raw.pid_file.as_deref().unwrap_or(d::SERVER_PID_FILE)),
        }
    }

    fn backends(&mut self, raw: &[RawBackend], mode: HostIdMode) -> Vec<BackendConfig> {
        if raw.is_empty() {
            self.push(
                "backends",
                "no backend is configured",
                "add at least one [[backends]] table with id and address",
            );
        }
        let mut ids = HashSet::new();
        let mut addresses = HashSet::new();
        let mut host_ids = HashSet::new();
        let mut public_ids = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, backend) in raw.iter().enumerate() {
            let key = |field: &str| format!("backends[{i}].{field}");
            let id = match backend.id.as_deref() {
                None => {
                    self.push(
                        key("id"),
                        "is missing",
                        "give every backend a short stable id such as \"b1\"",
                    );
                    format!("#{i}")
                }
                Some(id) if !valid_id(id) => {
                    self.push(
                        key("id"),
                        format!("{id:?} is not a valid id"),
                        "use 1 to 64 characters from A-Z a-z 0-9 . _ -",
                    );
                    id.to_owned()
                }
                Some(id) => {
                    if !ids.insert(id.to_owned()) {
                        self.push(
                            key("id"),
                            format!("{id:?} is used twice"),
                            "give each backend its own id",
                        );
                    }
                    id.to_owned()
                }
            };
            let address = match backend.address.as_deref() {
                None => {
                    self.push(
                        key("address"),
                        "is missing",
                        "write the backend's HOST:PORT, e.g. \"10.0.0.11:80\"",
                    );
                    placeholder_addr()
                }
                Some(text) => match resolve(text) {
                    Some(addr) => {
                        if !addresses.insert(addr) {
                            self.push(
                                key("address"),
                                format!("{addr} is used by another backend"),
                                "list each backend once",
                            );
                        }
                        addr
                    }
                    None => {
                        self.push(
                            key("address"),
                            format!("{text:?} is not an address that resolves"),
                            "write HOST:PORT or IP:PORT, e.g. \"10.0.0.11:80\"",
                        );
                        placeholder_addr()
                    }
                },
            };
            let weight = match backend.weight {
                None => d::BACKEND_WEIGHT,
                Some(w) if (1..=1000).contains(&w) => w as u32,
                Some(w) => {
                    self.push(
                        key("weight"),
                        format!("{w} is outside 1..=1000"),
                        "use a weight of at least 1; to stop new sessions, drain the backend instead",
                    );
                    d::BACKEND_WEIGHT
                }
            };
            let host_id =
                self.host_name(&key("host_id"), backend.host_id.as_deref(), &mut host_ids);
            let public_host_id = self.host_name(
                &key("public_host_id"),
                backend.public_host_id.as_deref(),
                &mut public_ids,
            );
            if mode == HostIdMode::Rewrite && public_host_id.is_none() {
                self.push(
                    key("public_host_id"),
                    "is required when host_id.mode = \"rewrite\"",
                    "set a name that resolves to bitsgate, e.g. \"b1.bits.example\"",
                );
            }
            let health_check = backend
                .health_check
                .as_deref()
                .and_then(|kind| self.health_check_kind(&key("health_check"), kind));
            let tls = self.backend_tls(i, backend);
            out.push(BackendConfig {
                id,
                address,
                weight,
                host_id,
                public_host_id,
                drain: backend.drain.unwrap_or(false),
                health_check,
                tls,
            });
        }
        out
    }

    fn host_name(
        &mut self,
        key: &str,
        value: Option<&str>,
        seen: &mut HashSet<String>,
    ) -> Option<String> {
        let name = value?;
        if name.is_empty() || name.len() > 300 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            self.push(
                key,
                format!("{name:?} is not a host name"),
                "use 1 to 300 visible ASCII characters, e.g. \"node1\" or \"b1.bits.example\"",
            );
            return None;
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            self.push(
                key,
                format!("{name:?} is used by another backend"),
                "give each backend its own name",
            );
        }
        Some(name.to_owned())
    }
}

fn placeholder_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn resolve(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    text.to_socket_addrs().ok()?.next()
}

/// `4096`, `"64KiB"`, `"1 GiB"`, `"10MB"`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}
