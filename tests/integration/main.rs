//! Integration tests: real bitsgate instances in front of real reference BITS servers,
//! all on loopback. One test binary, so the suite links once.

mod cluster;

mod access_log;
mod check_cli;
mod failover;
mod health;
mod host_id;
mod malformed;
mod metrics;
mod operations;
mod process;
mod sessions;
mod status_page;
mod tls;
mod uploads;
mod webdriver;
mod wire;
