//! `bits-load`: drives many concurrent BITS uploads (or Pings) at a URL and reports
//! throughput and per-request latency. Exit status 1 when any upload failed or, in
//! Ping mode, any request failed.

use bits_testkit::client::parse_resolve;
use bits_testkit::load::{parse_size, run_blocking, LoadConfig, LoadMode};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Load generator for BITS upload servers and proxies.
#[derive(Parser, Debug)]
#[command(name = "bits-load", version)]
struct Args {
    /// Upload mode: base URL; an n in braces is replaced by the upload number, otherwise
    /// /load-<run>-<n>.bin is appended. Ping mode: the URL pinged.
    // (Not written out: clap's help turns an n in braces into a line break.)
    url: String,
    /// Uploads in total.
    #[arg(long, value_name = "N", default_value_t = 100)]
    uploads: u64,
    /// Concurrent workers, each with its own connection.
    #[arg(long, value_name = "C", default_value_t = 8)]
    concurrency: usize,
    /// Bytes per upload; suffixes allowed (4KiB, 1MiB).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_size)]
    size: u64,
    /// Bytes per Fragment packet.
    #[arg(long, value_name = "BYTES", default_value = "256KiB", value_parser = parse_size)]
    fragment_size: u64,
    /// Open a new TCP connection for every packet.
    #[arg(long)]
    new_connection_per_packet: bool,
    /// Send bare Pings instead of uploads (see --requests).
    #[arg(long)]
    ping: bool,
    /// Pings in total (with --ping).
    #[arg(long, value_name = "N", default_value_t = 10_000, requires = "ping")]
    requests: u64,
    /// Runtime worker threads (1: single-threaded) [default: one per core].
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// Start R uploads or Pings per second over all workers (open loop: number n starts
    /// n/R seconds in, or when a worker is free); without it, each worker starts its
    /// next as soon as the last is done.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Stop starting new uploads or Pings after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Connect to ADDR whenever the URL names HOST (repeatable), e.g. node2:127.0.0.1:8080.
    #[arg(long, value_name = "HOST:ADDR", value_parser = parse_resolve)]
    resolve: Vec<(String, SocketAddr)>,
    /// PEM file of the CAs trusted for https:// [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let duration = match args.duration.map(Duration::try_from_secs_f64).transpose() {
        Ok(duration) => duration,
        Err(e) => {
            eprintln!("bits-load: error: --duration: {e}");
            return ExitCode::from(2);
        }
    };
    let config = LoadConfig {
        mode: if args.ping {
            LoadMode::Ping {
                requests: args.requests,
            }
        } else {
            LoadMode::Upload {
                size: args.size,
                fragment_size: args.fragment_size,
            }
        },
        uploads: args.uploads,
        concurrency: args.concurrency,
        new_connection_per_packet: args.new_connection_per_packet,
        resolve: args.resolve.into_iter().collect(),
        threads: args.threads,
        duration,
        rate: args.rate,
        ca_file: args.ca_file,
        ..LoadConfig::new(args.url)
    };
    let report = match run_blocking(config) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("bits-load: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("bits-load: error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{report}");
    }
    let failed = report.uploads_failed > 0 || (args.ping && report.errors > 0);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
