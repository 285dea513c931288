//! `bits-server`: the reference BITS upload server as a program.
//!
//! Prints one `listening on ADDR` line per listener on stdout once it accepts
//! connections, so scripts can read the addresses, and stops cleanly on Ctrl-C/SIGTERM.

use anyhow::Context;
use bits_testkit::server::{self, AuthMode, ServerConfig, TlsFiles};
use clap::Parser;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Reference BITS upload server: accepts BITS upload jobs and stores the files below a
/// root directory.
#[derive(Parser, Debug)]
#[command(name = "bits-server", version)]
struct Args {
    /// Address to listen on; repeat for several (default 127.0.0.1:0, any free port).
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Upload root: a file uploaded to /a/b.bin lands at ROOT/a/b.bin.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Temp data and session metadata [default: ROOT/.bits-sessions].
    #[arg(long, value_name = "DIR")]
    sessions_dir: Option<PathBuf>,
    /// Server identity, sent as `Server:` on every response.
    #[arg(long, value_name = "NAME", default_value = server::DEFAULT_NAME)]
    name: String,
    /// Send `BITS-Host-Id: NAME` on Create-Session Acks.
    #[arg(long, value_name = "NAME")]
    host_id: Option<String>,
    /// Send `BITS-Host-Id-Fallback-Timeout: SECONDS` (only with --host-id).
    #[arg(long, value_name = "SECONDS", requires = "host_id")]
    host_id_fallback_timeout: Option<u64>,
    /// Fragments longer than this get 413 [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    max_fragment: Option<u64>,
    /// Files longer than this get 500 + BG_E_TOO_LARGE [default: no limit].
    #[arg(long, value_name = "BYTES")]
    max_upload: Option<u64>,
    /// Sessions idle this long are expired and their data deleted [default: 1209600].
    #[arg(long, value_name = "SECONDS")]
    session_idle_timeout: Option<u64>,
    /// Let uploads replace existing files.
    #[arg(long)]
    allow_overwrite: bool,
    /// Answer only requests with this Host (port aside), like an IIS site bound to a name.
    #[arg(long, value_name = "NAME")]
    host_name: Option<String>,
    /// Refuse a Cancel-Session sent to another URL than its session's.
    #[arg(long)]
    require_session_url: bool,
    /// Derive session ids from the upload path and a per-server count (servers started
    /// together issue the same ids).
    #[arg(long)]
    ids_from_path: bool,
    /// Windows authentication as IIS does it, per TCP connection: `ntlm` offers NTLM,
    /// `negotiate` offers Negotiate and NTLM (IIS's default). Any user is accepted.
    #[arg(long, value_name = "ntlm|negotiate")]
    auth: Option<AuthMode>,
    /// NetBIOS domain named in NTLM challenges.
    #[arg(long, value_name = "NAME", default_value = server::DEFAULT_AUTH_DOMAIN)]
    auth_domain: String,
    /// Upload-reply jobs: announce a reply in BITS-Reply-URL on the final Fragment's
    /// Ack and serve it (the upload's SHA-256, sha256sum format) with HEAD and GET.
    #[arg(long)]
    reply: bool,
    /// Hold the final Fragment's Ack this long in --reply mode, e.g. 70s or 2m.
    #[arg(long, value_name = "DURATION", requires = "reply", value_parser = humantime::parse_duration)]
    reply_delay: Option<Duration>,
    /// Name HOST[:PORT] in BITS-Reply-URL instead of the address the client connected
    /// to, as IIS names itself by its machine name (needs --reply).
    #[arg(long, value_name = "HOST[:PORT]", requires = "reply")]
    reply_host: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by a CA in this PEM file (needs
    /// --tls-cert), as IIS does with "Require client certificates".
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

impl Args {
    fn into_config(self) -> ServerConfig {
        let mut config = ServerConfig::new(self.root);
        if !self.listen.is_empty() {
            config.listen = self.listen;
        }
        if let Some(dir) = self.sessions_dir {
            config.sessions_dir = dir;
        }
        config.name = self.name;
        config.host_id = self.host_id;
        config.host_id_fallback_timeout = self.host_id_fallback_timeout;
        if let Some(bytes) = self.max_fragment {
            config.max_fragment = bytes;
        }
        if let Some(bytes) = self.max_upload {
            config.max_upload = bytes;
        }
        if let Some(secs) = self.session_idle_timeout {
            config.session_idle_timeout = Duration::from_secs(secs);
            // Look for idle sessions often enough that short timeouts mean something.
            config.cleanup_interval = config
                .cleanup_interval
                .min(Duration::from_secs(secs.max(1)));
        }
        config.allow_overwrite = self.allow_overwrite;
        config.host_name = self.host_name;
        config.require_session_url = self.require_session_url;
        config.ids_from_path = self.ids_from_path;
        config.auth = self.auth;
        config.auth_domain = self.auth_domain;
        config.reply = self.reply;
        config.reply_delay = self.reply_delay.unwrap_or_default();
        config.reply_host = self.reply_host;
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            config.tls = Some(TlsFiles { cert, key });
        }
        config.tls_client_ca = self.tls_client_ca;
        config
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("bits_server=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Args::parse().into_config();
    let server = server::spawn(config)
        .await
        .context("could not start the server")?;
    {
        let mut out = std::io::stdout().lock();
        for addr in server.addrs() {
            writeln!(out, "listening on {addr}")?;
        }
        out.flush()?;
    }
    wait_for_signal().await?;
    server.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("could not watch SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("could not watch Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("could not watch Ctrl-C")
}
