//! Load generator: many concurrent BITS uploads (or Pings) against one URL, with
//! per-request latency percentiles.
//!
//! Upload data comes from one shared in-memory random buffer, sliced per fragment, so
//! the generator never touches the disk and is not the bottleneck. Every loop is bounded
//! by a count, and optionally by a duration. See `docs/load-generator.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bits_testkit::load::LoadError> {
//! use bits_testkit::load::{run, LoadConfig, LoadMode};
//! let report = run(LoadConfig {
//!     mode: LoadMode::Upload { size: 1 << 20, fragment_size: 256 << 10 },
//!     uploads: 100,
//!     concurrency: 8,
//!     ..LoadConfig::new("http://127.0.0.1:8080/load/")
//! })
//! .await?;
//! println!("{report}");
//! # Ok(()) }
//! ```

mod report;
mod size;
mod tally;
mod workers;

pub use report::{Latency, LoadReport};
pub use size::{format_size, parse_size};

use crate::client::{Pinger, UploadOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tally::Tally;

/// What each worker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadMode {
    /// Whole uploads of `size` bytes in fragments of `fragment_size`, without Ping.
    Upload {
        /// Bytes per upload.
        size: u64,
        /// Bytes per Fragment packet.
        fragment_size: u64,
    },
    /// Bare Ping packets, `requests` in total over all workers.
    Ping {
        /// Pings to send.
        requests: u64,
    },
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Upload mode: where files go. `{n}` in the URL is replaced by the upload's number;
    /// without it, `/load-<run>-<n>.bin` is appended (`<run>` is random per run, so runs
    /// never collide with each other's files). Ping mode: the URL pinged.
    pub url: String,
    /// Uploads or Pings.
    pub mode: LoadMode,
    /// Uploads in total (upload mode).
    pub uploads: u64,
    /// Concurrent workers, each with its own connection.
    pub concurrency: usize,
    /// Open a new TCP connection for every packet.
    pub new_connection_per_packet: bool,
    /// Host name → address overrides, as for the client.
    pub resolve: HashMap<String, SocketAddr>,
    /// Runtime worker threads for [`run_blocking`] (`None`: one per core; `Some(1)`: a
    /// single-threaded runtime). [`run`] uses whatever runtime awaits it.
    pub threads: Option<usize>,
    /// Stop starting new uploads or Pings after this long.
    pub duration: Option<Duration>,
    /// Uploads or Pings started per second over all workers (`None`: each worker starts
    /// its next one as soon as the last is done). Number `n` starts `n / rate` seconds
    /// after the run began, or as soon as a worker is free after that: an open-loop,
    /// fixed offered load, as long as `concurrency` covers the requests in flight.
    pub rate: Option<f64>,
    /// PEM file of the CAs trusted for `https` URLs (`None`: the system's roots).
    pub ca_file: Option<PathBuf>,
}

impl LoadConfig {
    /// 100 uploads of 1 MiB in 256 KiB fragments, 8 at a time, kept-alive connections.
    pub fn new(url: impl Into<String>) -> Self {
        LoadConfig {
            url: url.into(),
            mode: LoadMode::Upload {
                size: 1 << 20,
                fragment_size: 256 << 10,
            },
            uploads: 100,
            concurrency: 8,
            new_connection_per_packet: false,
            resolve: HashMap::new(),
            threads: None,
            duration: None,
            rate: None,
            ca_file: None,
        }
    }

    fn upload_options(&self, fragment_size: u64) -> UploadOptions {
        UploadOptions {
            fragment_size,
            // The Windows client pings once per job; here every upload would pay an
            // extra round trip that measures nothing new, so Ping has its own mode.
            ping: false,
            new_connection_per_packet: self.new_connection_per_packet,
            resolve: self.resolve.clone(),
            ca_file: self.ca_file.clone(),
            ..UploadOptions::default()
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration cannot be run.
    #[error("invalid load configuration: {0}")]
    InvalidConfig(String),
    /// The runtime of [`run_blocking`] could not be built.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs the load on the current runtime and reports once every worker is done.
pub async fn run(config: LoadConfig) -> Result<LoadReport, LoadError> {
    if config.concurrency == 0 {
        return Err(LoadError::InvalidConfig(
            "concurrency must be at least 1".into(),
        ));
    }
    if config.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(LoadError::InvalidConfig(
            "rate must be a positive number per second".into(),
        ));
    }
    // The last start's time must be a time (a rate of 1e-300 would put it past any).
    let total = match config.mode {
        LoadMode::Upload { .. } => config.uploads,
        LoadMode::Ping { requests } => requests,
    };
    if let Some(rate) = config.rate {
        if Duration::try_from_secs_f64(total as f64 / rate).is_err() {
            return Err(LoadError::InvalidConfig(format!(
                "a rate of {rate} per second puts the last of {total} starts past any time"
            )));
        }
    }
    // A CA file that cannot be read stops the run before it starts, not in every request.
    if let Some(ca_file) = &config.ca_file {
        crate::tls::client_config(Some(ca_file))
            .map_err(|e| LoadError::InvalidConfig(format!("{}: {e}", ca_file.display())))?;
    }
    // Checks the URL (and the resolve map) once, before any worker starts.
    Pinger::new(&config.url, &UploadOptions::default())
        .map_err(|e| LoadError::InvalidConfig(e.to_string()))?;
    let deadline = config.duration.map(|d| Instant::now() + d);
    let started = Instant::now();
    let (mode, tally) = match config.mode {
        LoadMode::Upload {
            size,
            fragment_size,
        } => {
            if fragment_size == 0 {
                return Err(LoadError::InvalidConfig(
                    "fragment size must be at least 1".into(),
                ));
            }
            let size = usize::try_from(size)
                .map_err(|_| LoadError::InvalidConfig("upload size too large".into()))?;
            let options = config.upload_options(fragment_size);
            let tally = workers::uploads(&config, options, size, deadline).await;
            ("upload", tally)
        }
        LoadMode::Ping { requests } => {
            let options = config.upload_options(0);
            (
                "ping",
                workers::pings(&config, options, requests, deadline).await,
            )
        }
    };
    Ok(LoadReport::new(
        mode,
        &config.url,
        config.concurrency,
        &tally,
        started.elapsed(),
    ))
}

/// Builds a runtime with `config.threads` worker threads and runs the load on it.
pub fn run_blocking(config: LoadConfig) -> Result<LoadReport, LoadError> {
    let runtime = match config.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(0) => {
            return Err(LoadError::InvalidConfig(
                "threads must be at least 1".into(),
            ))
        }
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .map_err(LoadError::Runtime)?;
    runtime.block_on(run(config))
}

/// Merges worker tallies.
fn merge(tallies: impl IntoIterator<Item = Tally>) -> Tally {
    tallies.into_iter().fold(Tally::default(), |mut all, t| {
        all.merge(&t);
        all
    })
}
