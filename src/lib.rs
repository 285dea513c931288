//! bitsgate: a reverse proxy that puts a farm of BITS upload servers behind one
//! address, pinning every upload session to the backend that created it.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod backend;
pub mod config;
pub mod demo;
pub mod health_service;
pub mod metrics;
pub mod pid_file;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod runner;
pub mod session;
pub mod state;
pub mod sweeper;
pub mod upgrade;
