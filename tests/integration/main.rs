//! Integration tests: real bitsgate instances in front of real reference BITS servers,
//! all on loopback. One test binary, so the suite links once.

mod cluster;

mod check_cli;
mod cli;
mod failover;
mod health;
mod host_id;
mod malformed;
mod metrics;
mod operations;
mod packaging;
mod process;
mod sessions;
mod systemd_notify;
mod tls;
mod uploads;
mod wire;
