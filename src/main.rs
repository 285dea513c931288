//! The `bitsgate` command line.

use anyhow::Context;
use bitsgate::app::{self, ProcessOptions};
use bitsgate::config;
use bitsgate::demo::{self, DemoOptions};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Pingora allocates and frees several buffers per request; a third of a proxied Ping's
/// instructions were in the system allocator (docs/benchmarks.md, profile section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of `check` for an invalid file (EX_DATAERR-style, as in sysexits.h).
const EXIT_INVALID_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "bitsgate",
    version,
    about = "A BITS-aware reverse proxy for farms of BITS upload servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listeners over from a running bitsgate (zero-downtime upgrade).
        #[arg(long, short)]
        upgrade: bool,
    },
    /// Validate a configuration file: exit 0 when valid, 64 with every error otherwise.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run three reference BITS servers and the proxy in front of them, on loopback.
    Demo {
        /// Proxy address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin (metrics) address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        /// Number of reference servers.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
        backends: u16,
        /// Keep uploaded files in this directory instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(match &cli.command {
        Command::Run { config, .. } => config::peek_log_format(config),
        _ => config::LogFormat::Text,
    });
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config, upgrade } => report(run(&config, upgrade)),
        Command::Demo {
            listen,
            admin,
            backends,
            data_dir,
        } => report(demo::run(DemoOptions {
            listen,
            admin,
            backends: usize::from(backends),
            data_dir,
        })),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bitsgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load_file(path) {
        Ok(config) => {
            println!(
                "{}: valid ({} backend(s), listener {}, admin {})",
                path.display(),
                config.backends.len(),
                config.listener.address,
                config.admin.address
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn run(path: &std::path::Path, upgrade: bool) -> anyhow::Result<()> {
    let config = config::load_file(path)
        .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
    tracing::info!(target: "bitsgate", listener = %config.listener.address, admin = %config.admin.address, backends = config.backends.len(), "starting");
    let process = ProcessOptions {
        upgrade,
        config_path: Some(path.to_owned()),
        reload_on_sighup: true,
        write_pid_file: true,
    };
    let instance = app::build(config, &process).context("building the server")?;
    instance.server.run_forever()
}

/// The diagnostic log, on stderr; `[log] format = "json"` gives one JSON object per
/// event for log shippers. Set once per process: changing the format needs a restart.
fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BITSGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder.init(),
        config::LogFormat::Json => builder.json().init(),
    }
}
