use super::*;
use std::time::Duration;

const MINIMAL: &str = r#"
[[backends]]
id = "b1"
address = "127.0.0.1:8081"
"#;

fn errors_of(text: &str) -> Vec<ConfigError> {
    load_str(text).expect_err("the config should be refused").0
}

fn keys_of(text: &str) -> Vec<String> {
    errors_of(text).into_iter().map(|e| e.key).collect()
}

#[test]
fn a_minimal_file_gets_every_default() {
    let config = load_str(MINIMAL).unwrap();
    assert_eq!(
        config.listener.address.to_string(),
        defaults::LISTENER_ADDRESS
    );
    assert_eq!(config.admin.address.to_string(), defaults::ADMIN_ADDRESS);
    assert_eq!(config.host_id.mode, HostIdMode::Strip);
    assert_eq!(
        config.host_id.fallback_timeout,
        defaults::HOST_ID_FALLBACK_TIMEOUT
    );
    assert_eq!(
        config.sessions.idle_timeout,
        defaults::SESSIONS_IDLE_TIMEOUT
    );
    assert_eq!(config.balancing, BalancingPolicy::RoundRobin);
    assert_eq!(
        config.upstream.read_timeout,
        defaults::UPSTREAM_READ_TIMEOUT
    );
    assert_eq!(
        config.limits.max_fragment_bytes,
        defaults::LIMITS_MAX_FRAGMENT_BYTES
    );
    assert_eq!(config.backends[0].weight, defaults::BACKEND_WEIGHT);
}

#[test]
fn human_durations_and_sizes_are_understood() {
    let config = load_str(&format!(
        r#"
[host_id]
mode = "passthrough"
fallback_timeout = "90s"
[sessions]
idle_timeout = "3d"
[limits]
max_fragment_bytes = "64MiB"
max_header_bytes = 8192
{MINIMAL}"#
    ))
    .unwrap();
    assert_eq!(config.host_id.fallback_timeout, Duration::from_secs(90));
    assert_eq!(config.sessions.idle_timeout, Duration::from_secs(3 * 86400));
    assert_eq!(config.limits.max_fragment_bytes, 64 << 20);
    assert_eq!(config.limits.max_header_bytes, 8192);
}

#[test]
fn every_error_is_reported_at_once_with_its_key() {
    let keys = keys_of(
        r#"
[listener]
address = "nowhere"
[host_id]
mode = "mangle"
[sessions]
idle_timeout = "forever"
[balancing]
policy = "random"
[upstream]
read_timeout = "30s"
[[backends]]
id = "b1"
address = "127.0.0.1:1"
weight = 0
[[backends]]
id = "b1"
address = "not an address"
"#,
    );
    for expected in [
        "listener.address",
        "host_id.mode",
        "sessions.idle_timeout",
        "balancing.policy",
        "upstream.read_timeout",
        "backends[0].weight",
        "backends[1].id",
        "backends[1].address",
    ] {
        assert!(
            keys.contains(&expected.to_owned()),
            "{expected} missing from {keys:?}"
        );
    }
}

#[test]
fn unknown_keys_are_refused_in_every_section() {
    let errors = errors_of(&format!(
        r#"
[listener]
adress = "0.0.0.0:1"
[sessions]
idle = "1d"
[logging]
level = "debug"
[[backends]]
id = "b0"
address = "127.0.0.1:9"
wieght = 2
{MINIMAL}"#
    ));
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"listener"), "{keys:?}");
    assert!(keys.contains(&"sessions"), "{keys:?}");
    assert!(keys.contains(&"logging"), "{keys:?}");
    assert!(keys.contains(&"backends[0]"), "{keys:?}");
    let listener = errors.iter().find(|e| e.key == "listener").unwrap();
    assert!(listener.message.contains("adress"), "{}", listener.message);
}

#[test]
fn a_file_without_backends_is_refused() {
    assert_eq!(keys_of(""), ["backends"]);
}

#[test]
fn rewrite_mode_needs_a_public_host_id_on_every_backend() {
    let keys = keys_of(&format!("[host_id]\nmode = \"rewrite\"\n{MINIMAL}"));
    assert_eq!(keys, ["backends[0].public_host_id"]);
}

#[test]
fn host_names_must_be_unique_across_backends() {
    let keys = keys_of(
        r#"
[[backends]]
id = "b1"
address = "127.0.0.1:1"
public_host_id = "same.example"
[[backends]]
id = "b2"
address = "127.0.0.1:2"
public_host_id = "SAME.example"
"#,
    );
    assert_eq!(keys, ["backends[1].public_host_id"]);
}

#[test]
fn a_read_timeout_under_five_minutes_is_refused_with_the_reason() {
    let errors = errors_of(&format!("[upstream]\nread_timeout = \"1m\"\n{MINIMAL}"));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].fix.contains("5m"), "{}", errors[0]);
}

#[test]
fn backend_ids_must_be_label_safe() {
    let keys = keys_of("[[backends]]\nid = \"b 1\"\naddress = \"127.0.0.1:1\"\n");
    assert_eq!(keys, ["backends[0].id"]);
}

#[test]
fn admin_and_listener_must_differ() {
    let keys = keys_of(&format!(
        "[listener]\naddress = \"127.0.0.1:9000\"\n[admin]\naddress = \"127.0.0.1:9000\"\n{MINIMAL}"
    ));
    assert_eq!(keys, ["admin.address"]);
}

#[test]
fn syntax_errors_name_the_line() {
    let errors = errors_of("[listener\naddress = 1\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "(syntax)");
    assert!(
        errors[0].message.contains("line 1"),
        "{}",
        errors[0].message
    );
}

#[test]
fn sizes_parse_with_and_without_units() {
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("64KiB"), Some(64 << 10));
    assert_eq!(parse_size("1 GiB"), Some(1 << 30));
    assert_eq!(parse_size("10MB"), Some(10_000_000));
    assert_eq!(parse_size("ten"), None);
    assert_eq!(parse_size("1PiB"), None);
    assert_eq!(parse_size("99999999999999999999"), None);
}

#[test]
fn every_error_message_names_a_fix() {
    for error in errors_of("[listener]\naddress = \"x\"\n[host_id]\nmode = \"y\"\n") {
        assert!(!error.fix.is_empty(), "{error}");
        assert!(error.to_string().contains("fix:"));
    }
}

#[test]
fn the_example_config_shows_every_default() {
    let example = load_str(include_str!("../../config/bitsgate.toml")).expect("example is valid");
    let minimal = load_str(MINIMAL).unwrap();
    // The example listens on its documented defaults and differs only in backends.
    assert_eq!(example.listener, minimal.listener);
    assert_eq!(example.admin, minimal.admin);
    assert_eq!(example.host_id, minimal.host_id);
    assert_eq!(example.sessions, minimal.sessions);
    assert_eq!(example.balancing, minimal.balancing);
    assert_eq!(example.upstream, minimal.upstream);
    assert_eq!(example.limits, minimal.limits);
    assert_eq!(example.server, minimal.server);
    assert_eq!(example.health_check, minimal.health_check);
    assert_eq!(example.reload, minimal.reload);
    assert_eq!(example.storage, minimal.storage);
    assert_eq!(example.log, minimal.log);
    assert!(example
        .backends
        .iter()
        .all(|b| b.weight == defaults::BACKEND_WEIGHT));
}

#[test]
fn the_example_config_names_every_key() {
    let example = include_str!("../../config/bitsgate.toml");
    for key in [
        "address",
        "keepalive_timeout",
        "lingering_time",
        "lingering_timeout",
        "allow_method_override",
        "header_timeout",
        "max_header_block",
        "body_timeout",
        "body_min_bytes",
        "max_connections",
        "fast_path",
        "splice",
        "proxy_protocol",
        "forwarded_for",
        "trusted_forwarders",
        "cert_path",
        "key_path",
        "mode",
        "fallback_timeout",
        "idle_timeout",
        "sweep_interval",
        "max_pinned",
        "policy",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "max_header_bytes",
        "max_fragment_bytes",
        "threads",
        "work_stealing",
        "grace_period",
        "shutdown_timeout",
        "id",
        "weight",
        "host_id",
        "public_host_id",
        "access",
        "format",
        "access_buffer",
    ] {
        assert!(
            example.contains(&format!("{key} = ")),
            "{key} is missing from config/bitsgate.toml"
        );
    }
}

#[test]
fn edge_keys_are_read_and_bounded() {
    let config = load_str(&format!(
        "[listener]\nheader_timeout = \"5s\"\nmax_header_block = \"8KiB\"\nbody_timeout = \"10s\"\nbody_min_bytes = 100\nmax_connections = 7\nproxy_protocol = true\n[upstream]\nforwarded_for = false\ntrusted_forwarders = [\"10.0.0.0/8\", \"192.0.2.1\"]\n{MINIMAL}"
    ))
    .expect("valid");
    let edge = config.listener.edge;
    assert_eq!(edge.header_timeout, std::time::Duration::from_secs(5));
    assert_eq!(edge.max_header_block, 8192);
    assert_eq!(edge.body_timeout, std::time::Duration::from_secs(10));
    assert_eq!(edge.body_min_bytes, 100);
    assert_eq!(edge.max_connections, 7);
    assert!(config.listener.proxy_protocol);
    assert!(!config.upstream.forwarded_for);
    assert_eq!(
        config.upstream.trusted_forwarders,
        Some(vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.0.2.1/32".parse().unwrap()
        ])
    );
    let keys = keys_of(&format!(
        "[listener]\nheader_timeout = \"2m\"\nmax_header_block = 10\nbody_min_bytes = 0\nmax_connections = 0\n[upstream]\ntrusted_forwarders = [\"10.0.0.0/33\"]\n{MINIMAL}"
    ));
    for key in [
        "listener.header_timeout",
        "listener.max_header_block",
        "listener.body_min_bytes",
        "listener.max_connections",
        "upstream.trusted_forwarders",
    ] {
        assert!(
            keys.contains(&key.to_owned()),
            "{key} not refused: {keys:?}"
        );
    }
}

#[test]
fn operations_sections_validate_their_choices() {
    let keys = keys_of(&format!(
        r#"
[admin]
token = "short"
[health_check]
kind = "icmp"
path = "no-slash"
healthy_threshold = 0
[reload]
removed_backends = "keep"
[storage]
mode = "disk"
sync = "sometimes"
{MINIMAL}"#
    ));
    for expected in [
        "admin.token",
        "health_check.kind",
        "health_check.path",
        "health_check.healthy_threshold",
        "reload.removed_backends",
        "storage.mode",
        "storage.sync",
    ] {
        assert!(
            keys.contains(&expected.to_owned()),
            "{expected} missing from {keys:?}"
        );
    }
}

#[test]
fn the_admin_token_can_come_from_a_file_but_not_from_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
    let config = load_str(&format!(
        "[admin]\ntoken_file = {:?}\n{MINIMAL}",
        path.display().to_string()
    ))
    .unwrap();
    assert_eq!(config.admin.token.as_deref(), Some("0123456789abcdef0123"));
    let keys = keys_of(&format!(
        "[admin]\ntoken = \"0123456789abcdef\"\ntoken_file = {:?}\n{MINIMAL}",
        path.display().to_string()
    ));
    assert_eq!(keys, ["admin.token_file"]);
}

#[test]
fn durable_storage_is_the_default() {
    let config = load_str(MINIMAL).unwrap();
    assert_eq!(config.storage.mode, StorageMode::Durable);
    assert_eq!(
        config.storage.data_dir,
        std::path::PathBuf::from(defaults::STORAGE_DATA_DIR)
    );
}

#[test]
fn an_admin_address_open_to_other_hosts_needs_a_token() {
    let errors = errors_of(&format!("[admin]\naddress = \"0.0.0.0:9090\"\n{MINIMAL}"));
    let error = errors
        .iter()
        .find(|e| e.key == "admin.address")
        .expect("admin.address refused");
    assert!(error.fix.contains("admin.token_file"), "{error}");
    assert!(error.fix.contains("admin.allow_unauthenticated"), "{error}");
}

#[test]
fn an_open_admin_address_is_accepted_when_chosen_with_a_warning() {
    let config = load_str(&format!(
        "[admin]\naddress = \"0.0.0.0:9090\"\nallow_unauthenticated = true\n{MINIMAL}"
    ))
    .unwrap();
    let found = warnings(&config);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "admin.allow_unauthenticated");
    let loopback = load_str(MINIMAL).unwrap();
    assert!(warnings(&loopback).is_empty());
}

#[test]
fn an_admin_token_protects_reads_by_default() {
    let config = load_str(&format!(
        "[admin]\naddress = \"0.0.0.0:9090\"\ntoken = \"0123456789abcdef0123\"\n{MINIMAL}"
    ))
    .unwrap();
    assert!(config.admin.protect_reads);
    assert!(warnings(&config).is_empty());
}

#[test]
fn admin_tls_needs_both_files() {
    let keys = keys_of(&format!(
        "[admin.tls]\ncert_path = \"/nonexistent/cert.pem\"\n{MINIMAL}"
    ));
    assert!(keys.contains(&"admin.tls.cert_path".to_owned()), "{keys:?}");
    assert!(keys.contains(&"admin.tls.key_path".to_owned()), "{keys:?}");
}

#[test]
fn tls_files_that_hold_no_pem_are_errors_on_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let keys = keys_of(&format!(
        "[listener.tls]\ncert_path = {0:?}\nkey_path = {0:?}\n{MINIMAL}",
        not_pem.display().to_string()
    ));
    assert!(
        keys.contains(&"listener.tls.cert_path".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"listener.tls.key_path".to_owned()),
        "{keys:?}"
    );
}

#[test]
fn the_admin_section_is_read_alone_and_the_token_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    let file = dir.path().join("bitsgate.toml");
    // The backend is invalid: the admin section is still usable.
    std::fs::write(
        &file,
        format!(
            "[admin]\naddress = \"0.0.0.0:9191\"\ntoken_file = {:?}\n[[backends]]\nid = \"b1\"\naddress = \"not an address\"\n",
            token.display().to_string()
        ),
    )
    .unwrap();
    let admin = load_admin_file(&file, true).unwrap();
    assert_eq!(admin.address.to_string(), "0.0.0.0:9191");
    assert_eq!(admin.token.as_deref(), Some("0123456789abcdef0123"));

    std::fs::remove_file(&token).unwrap();
    let without = load_admin_file(&file, false).unwrap();
    assert_eq!(without.token, None);
    let errors = load_admin_file(&file, true).unwrap_err();
    assert_eq!(errors.0[0].key, "admin.token_file");

    std::fs::write(&file, "[admin]\naddress = \"nowhere\"\n").unwrap();
    let errors = load_admin_file(&file, false).unwrap_err();
    assert_eq!(errors.0[0].key, "admin.address");
}

#[test]
fn the_log_section_takes_a_target_and_a_format() {
    let config = load_str(MINIMAL).unwrap();
    assert_eq!(config.log.access, AccessTarget::Off);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.access_buffer, defaults::LOG_ACCESS_BUFFER);
    let config = load_str(&format!(
        "[log]\naccess = \"/var/log/bitsgate/access.log\"\nformat = \"json\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        config.log.access,
        AccessTarget::File("/var/log/bitsgate/access.log".into())
    );
    assert_eq!(config.log.format, LogFormat::Json);
    let keys = keys_of(&format!(
        "[log]\naccess = \"\"\nformat = \"xml\"\naccess_buffer = 0\n{MINIMAL}"
    ));
    assert_eq!(keys, ["log.access", "log.format", "log.access_buffer"]);
}
