//! The configuration file as written: a serde mirror of the TOML, no validation beyond
//! types. Unknown keys are errors so a typo never silently falls back to a default.

use serde::Deserialize;

/// A value that may be written as a number or a string (`"1GiB"`, `"10m"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NumOrText {
    /// `1048576`
    Num(u64),
    /// `"1MiB"`
    Text(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listener: RawListener,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub host_id: RawHostId,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub balancing: RawBalancing,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub health_check: RawHealthCheck,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub lingering_time: Option<String>,
    pub lingering_timeout: Option<String>,
    pub allow_method_override: Option<bool>,
    pub tls: Option<RawTls>,
    pub proxy_protocol: Option<bool>,
    pub header_timeout: Option<String>,
    pub max_header_block: Option<NumOrText>,
    pub body_timeout: Option<String>,
    pub body_min_bytes: Option<NumOrText>,
    pub max_connections: Option<u64>,
    pub fast_path: Option<bool>,
    pub splice: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_path: Option<String>,
    pub key_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub protect_reads: Option<bool>,
    pub allow_unauthenticated: Option<bool>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostId {
    pub mode: Option<String>,
    pub fallback_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub idle_timeout: Option<String>,
    pub sweep_interval: Option<String>,
    pub max_pinned: Option<u64>,
    pub max_pinned_per_client: Option<u64>,
    pub cancel_on_expiry: Option<bool>,
    pub retired_down_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalancing {
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub forwarded_for: Option<bool>,
    pub trusted_forwarders: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<NumOrText>,
    pub max_fragment_bytes: Option<NumOrText>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub threads: Option<usize>,
    pub work_stealing: Option<bool>,
    pub grace_period: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub upgrade_sock: Option<String>,
    pub pid_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub kind: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub path: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub passive_failures: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub watch: Option<bool>,
    pub removed_backends: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub mode: Option<String>,
    pub data_dir: Option<String>,
    pub sync: Option<String>,
    pub redis_url: Option<String>,
    pub redis_password_file: Option<String>,
    pub redis_key_prefix: Option<String>,
    pub redis_connect_timeout: Option<String>,
    pub redis_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub access: Option<String>,
    pub format: Option<String>,
    pub access_buffer: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub id: Option<String>,
    pub address: Option<String>,
    pub weight: Option<i64>,
    pub host_id: Option<String>,
    pub public_host_id: Option<String>,
    pub drain: Option<bool>,
    pub health_check: Option<String>,
    pub tls: Option<bool>,
    pub tls_server_name: Option<String>,
}
