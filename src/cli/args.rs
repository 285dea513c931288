//! The command line's definition. Completions and the man page are generated from it.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the operator's commands look for the configuration of the running bitsgate.
pub const DEFAULT_CONFIG: &str = "/etc/bitsgate/bitsgate.toml";

#[derive(Parser)]
#[command(
    name = "bitsgate",
    version,
    about = "A BITS-aware reverse proxy for farms of BITS upload servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    #[cfg(feature = "demo")]
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
        /// Proxy replicas; 2 or more share their pins through a redis-server the demo
        /// starts (replica i listens on --listen and --admin ports + i).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
        replicas: u16,
        /// The reference servers require Windows authentication on every connection,
        /// as IIS does: `ntlm` or `negotiate`.
        #[arg(long, value_name = "ntlm|negotiate")]
        auth: Option<bits_testkit::server::AuthMode>,
        /// The reference servers run upload-reply jobs (a `BITS-Reply-URL` naming
        /// themselves).
        #[arg(long)]
        reply: bool,
        /// The reference servers serve HTTPS with a certificate from a CA made at
        /// start, which the proxy trusts (`[upstream] ca_file`).
        #[arg(long)]
        backend_tls: bool,
    },
    /// Ask a running bitsgate whether it is alive (GET /livez) or ready (GET /readyz):
    /// exit 0 when it answers 200, 1 otherwise. Needs no token.
    Probe {
        #[command(flatten)]
        target: AdminTarget,
        /// Probe readiness (a backend can take new sessions) instead of liveness.
        #[arg(long)]
        ready: bool,
        /// Give up after this long (e.g. "500ms", "5s").
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// List the backends with their state, sessions and uploaded bytes.
    Backends {
        #[command(flatten)]
        call: Call,
    },
    /// List pinned sessions.
    Sessions {
        /// Only the sessions pinned to this backend id.
        #[arg(long)]
        backend: Option<String>,
        /// List at most this many (the total is always counted).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        call: Call,
    },
    /// Stop new sessions on a backend; its pinned sessions are still served.
    Drain {
        /// Backend id.
        id: String,
        #[command(flatten)]
        call: Call,
    },
    /// Let a backend drained with `bitsgate drain` take new sessions again.
    Undrain {
        /// Backend id.
        id: String,
        #[command(flatten)]
        call: Call,
    },
    /// Cancel a session at its backend and unpin it; the client restarts its upload.
    Cancel {
        /// Session id, exactly as the backend issued it (e.g. "{4cd1df3c-...}").
        session: String,
        #[command(flatten)]
        call: Call,
    },
    /// Reload the configuration file of the running bitsgate (as SIGHUP does).
    Reload {
        #[command(flatten)]
        call: Call,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a directory.
    Man {
        /// Write bitsgate.1 and bitsgate-COMMAND.1 here instead of printing bitsgate.1.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Which running bitsgate to talk to.
#[derive(Args, Clone)]
pub struct AdminTarget {
    /// Configuration file of the running bitsgate: its [admin] address and token are used.
    #[arg(long, short, env = "BITSGATE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Call this admin address (IP:PORT) instead of the file's [admin] address.
    #[arg(long, value_name = "IP:PORT")]
    pub admin: Option<SocketAddr>,
}

/// Options shared by the commands that call the admin API.
#[derive(Args, Clone)]
pub struct Call {
    #[command(flatten)]
    pub target: AdminTarget,
    /// Print the admin API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Give up after this long (e.g. "10s"). A cancel waits for the backend's answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}
