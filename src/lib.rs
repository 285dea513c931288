//! bitsgate: a reverse proxy that puts a farm of BITS upload servers behind one
//! address, pinning every upload session to the backend that created it.
// Denied rather than forbidden for one function: duplicating the listening socket a
// previous process handed over in an upgrade (`workers::duplicate_inherited`).
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod allocator;
pub mod app;
pub mod backend;
pub mod cancels;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod demo_redis;
#[cfg(feature = "demo")]
pub mod demo_tls;
pub mod edge;
pub mod health_service;
pub mod log_gate;
pub mod metrics;
pub mod pid_file;
pub mod proxy;
pub mod reach;
pub mod reload;
pub mod routing;
pub mod runner;
pub mod session;
pub mod state;
pub mod sweeper;
pub mod systemd;
pub mod upgrade;
pub mod workers;
