//! Integration tests: real bitsgate instances in front of real reference BITS servers,
//! all on loopback. One test binary, so the suite links once.

mod cluster;

mod access_log;
mod backend_tls;
mod check_cli;
mod cli;
mod client_address;
mod client_limits;
mod dashboard;
mod demo;
mod deploy_files;
mod docs_index;
mod expiry;
mod failover;
mod fast_path;
mod health;
mod host_id;
mod lingering;
mod malformed;
mod metrics;
mod operations;
mod packaging;
mod process;
mod prometheus_rules;
mod promql;
mod replica_kit;
mod replicas;
mod replicas_shared;
mod sessions;
mod slow_clients;
mod soak;
mod status_page;
mod systemd_notify;
mod tls;
mod upload_reply;
mod uploads;
mod webdriver;
mod windows_auth;
mod wire;
