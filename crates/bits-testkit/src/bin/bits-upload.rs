//! `bits-upload`: uploads one file with the BITS upload protocol, like a Windows BITS
//! upload job. Exit status 0 on success, 1 on failure, 2 on bad arguments.

use anyhow::Context;
use bits_testkit::client::{parse_resolve, upload, Event, Observer, UploadOptions, UploadSource};
use bits_testkit::load::{format_size, parse_size};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Upload FILE to URL with the BITS upload protocol (Ping, Create-Session, Fragments,
/// Close-Session), resuming, retrying and restarting like the Windows BITS client.
#[derive(Parser, Debug)]
#[command(name = "bits-upload", version)]
struct Args {
    /// Remote URL of the file, e.g. http://server:8080/uploads/report.bin or https://...
    url: String,
    /// Local file to upload.
    file: PathBuf,
    /// Bytes per Fragment packet; suffixes allowed (4KiB, 1MiB).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_size)]
    fragment_size: u64,
    /// Smallest fragment a 413 answer may shrink to.
    #[arg(long, value_name = "BYTES", default_value = "4KiB", value_parser = parse_size)]
    min_fragment_size: u64,
    /// Open a new TCP connection for every packet instead of keeping one alive.
    #[arg(long)]
    new_connection_per_packet: bool,
    /// Send Cancel-Session after N acknowledged fragments, then stop (exit 0).
    #[arg(long, value_name = "N")]
    cancel_after: Option<u64>,
    /// New sessions allowed after BG_E_SESSION_NOT_FOUND.
    #[arg(long, value_name = "N", default_value_t = bits_testkit::client::DEFAULT_MAX_RESTARTS)]
    max_restarts: u32,
    /// Retries of one packet after a transient failure (5xx without a BITS error code,
    /// 502/503/504, connection errors).
    #[arg(long, value_name = "N", default_value_t = bits_testkit::client::DEFAULT_MAX_RETRIES)]
    max_retries: u32,
    /// First retry delay in milliseconds; doubles per retry, up to 30 s.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    retry_delay_ms: u64,
    /// Connect to ADDR whenever a URL or a BITS-Host-Id names HOST (repeatable),
    /// e.g. --resolve node2:10.0.0.2:8080. The Host header keeps the name.
    #[arg(long, value_name = "HOST:ADDR", value_parser = parse_resolve)]
    resolve: Vec<(String, SocketAddr)>,
    /// Extra request header on every packet (repeatable), e.g. --header 'X-Test: 1'.
    #[arg(long, value_name = "NAME: VALUE", value_parser = parse_header)]
    header: Vec<(String, String)>,
    /// Do not Ping before Create-Session.
    #[arg(long)]
    no_ping: bool,
    /// Print the upload report as JSON on stdout (no progress bar).
    #[arg(long)]
    json: bool,
    /// PEM file of the CAs trusted for https:// [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Run an NTLM handshake on every new connection as this user (DOMAIN\user or
    /// user; no password is sent or checked).
    #[arg(long, value_name = "USER")]
    ntlm_user: Option<String>,
    /// Upload-reply job: require BITS-Reply-URL on the final Ack, download the reply
    /// (HEAD + ranged GETs) before Close-Session, and check it is the reference
    /// server's reply (the file's SHA-256) unless --no-check-reply.
    #[arg(long)]
    reply: bool,
    /// Bytes per ranged GET of the reply.
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_size, requires = "reply")]
    reply_chunk_size: u64,
    /// Write the downloaded reply to FILE.
    #[arg(long, value_name = "FILE", requires = "reply")]
    reply_out: Option<PathBuf>,
    /// Do not check the reply's content (for servers other than bits-server).
    #[arg(long, requires = "reply")]
    no_check_reply: bool,
}

fn parse_header(value: &str) -> Result<(String, String), String> {
    let (name, value) = value
        .split_once(':')
        .ok_or_else(|| format!("{value:?} is not NAME: VALUE"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

impl Args {
    fn options(&self) -> UploadOptions {
        UploadOptions {
            fragment_size: self.fragment_size,
            min_fragment_size: self.min_fragment_size,
            new_connection_per_packet: self.new_connection_per_packet,
            ping: !self.no_ping,
            max_restarts: self.max_restarts,
            max_retries: self.max_retries,
            retry_delay: Duration::from_millis(self.retry_delay_ms),
            cancel_after: self.cancel_after,
            resolve: self.resolve.iter().cloned().collect(),
            headers: self.header.clone(),
            ca_file: self.ca_file.clone(),
            ntlm_user: self.ntlm_user.clone(),
            upload_reply: self.reply,
            reply_chunk_size: self.reply_chunk_size,
            ..UploadOptions::default()
        }
    }
}

/// Shows progress on a bar, and notable events above it (or on stderr without a bar).
struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Observer for Progress {
    fn on_progress(&self, acked: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(acked);
    }

    fn on_event(&self, event: &Event) {
        let line = match event {
            Event::HostIdSwitch {
                host_id,
                fallback_timeout,
            } => match fallback_timeout {
                Some(s) => format!("server asked for host {host_id} (fallback after {s} s)"),
                None => format!("server asked for host {host_id} (no fallback)"),
            },
            Event::FellBack => "host-id server unreachable; back to the URL's host".into(),
            Event::Retry {
                packet,
                attempt,
                delay,
                reason,
            } => {
                format!("{packet} retry {attempt} in {delay:?}: {reason}")
            }
            Event::Shrink { from, to } => {
                format!("413: fragment of {from} bytes refused, now {to}")
            }
            Event::Restart { attempt, packet } => {
                format!("session lost on {packet}: restart {attempt} from byte 0")
            }
            Event::Resync { expected, received } => {
                format!("server wants byte {received} (sent up to {expected})")
            }
            _ => return,
        };
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("bits-upload: {line}");
        } else {
            self.bar.println(line);
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let options = args.options();
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    let show_bar = !args.json && std::io::stdout().is_terminal();
    let bar = ProgressBar::with_draw_target(
        Some(size),
        if show_bar {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .context("progress bar template")?,
    );
    let progress = Progress {
        bar,
        quiet: args.json,
    };
    let outcome = upload(
        &args.url,
        UploadSource::File(args.file.clone()),
        &options,
        &progress,
    )
    .await;
    progress.bar.finish_and_clear();
    let report = outcome?;
    if let Some(reply) = &report.reply {
        if let Some(out) = &args.reply_out {
            std::fs::write(out, reply)
                .with_context(|| format!("cannot write the reply to {}", out.display()))?;
        }
        if !args.no_check_reply {
            check_reply(&args.file, reply)?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let verb = if report.cancelled {
        "cancelled"
    } else {
        "uploaded"
    };
    println!(
        "{verb} {} to {} in {:.2} s (session {}, {} requests, {} retries, {} restarts{})",
        format_size(report.bytes),
        report.url,
        report.elapsed.as_secs_f64(),
        report.session_id.as_deref().unwrap_or("-"),
        report.requests,
        report.retries,
        report.restarts,
        if report.close_acknowledged || report.cancelled {
            ""
        } else {
            "; Close-Session got BG_E_SESSION_NOT_FOUND"
        }
    );
    if let (Some(reply), Some(url)) = (&report.reply, &report.reply_url) {
        println!(
            "reply: {} from {url} in {} requests{}",
            format_size(reply.len() as u64),
            report.reply_requests,
            if args.no_check_reply { "" } else { ", checked" }
        );
    }
    Ok(())
}

/// The reference server's reply is the upload's SHA-256 (see `bits_testkit::reply`).
fn check_reply(file: &std::path::Path, reply: &[u8]) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut source =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    std::io::copy(&mut source, &mut hasher)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if !bits_testkit::reply::is_reply_for_digest(reply, &hasher.finalize()) {
        anyhow::bail!(
            "the reply is not the SHA-256 of {}: {:?}",
            file.display(),
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bits-upload: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bits-upload: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
