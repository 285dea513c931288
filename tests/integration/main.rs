//! Integration tests: real bitsgate instances in front of real reference BITS servers,
//! all on loopback. One test binary, so the suite links once.

mod cluster;

mod access_log;
mod check_cli;
mod cli;
mod client_address;
mod client_limits;
mod dashboard;
mod deploy_files;
mod docs_index;
mod expiry;
mod failover;
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
mod sessions;
mod status_page;
mod systemd_notify;
mod tls;
mod uploads;
mod webdriver;
mod wire;
