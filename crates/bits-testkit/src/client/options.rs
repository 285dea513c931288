//! What the caller can tune about an upload, and where the bytes come from.

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default fragment size: 1 MiB.
pub const DEFAULT_FRAGMENT_SIZE: u64 = 1024 * 1024;
/// Default floor when 413 answers shrink the fragment size: 4 KiB.
pub const DEFAULT_MIN_FRAGMENT_SIZE: u64 = 4 * 1024;
/// Default number of new sessions after `BG_E_SESSION_NOT_FOUND`.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// Default number of retries of one packet after a transient failure.
pub const DEFAULT_MAX_RETRIES: u32 = 8;
/// Default first retry delay; it doubles per retry of the same packet.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Default ceiling of the retry delay.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Default TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to wait for a whole response. Above 5 minutes on purpose: the final
/// Ack of an upload-reply job may wait that long for the server application (spec §5).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(6 * 60);

/// Default size of one ranged `GET` of an upload-reply job's reply: 1 MiB.
pub const DEFAULT_REPLY_CHUNK_SIZE: u64 = 1024 * 1024;

/// Tuning of one upload. `UploadOptions::default()` behaves like the Windows client with
/// shorter retry delays.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Bytes per Fragment packet (the last one may be shorter).
    pub fragment_size: u64,
    /// Smallest fragment a 413 answer may shrink to; a 413 at this size is fatal.
    pub min_fragment_size: u64,
    /// `(min, max, seed)`: draw every fragment's size uniformly from `min..=max` with a
    /// seeded generator, so a test can exercise odd boundaries reproducibly.
    /// Overrides `fragment_size`.
    pub random_fragment_sizes: Option<(u64, u64, u64)>,
    /// Open a new TCP connection for every packet instead of reusing one.
    pub new_connection_per_packet: bool,
    /// Send a Ping before Create-Session.
    pub ping: bool,
    /// New sessions allowed after `BG_E_SESSION_NOT_FOUND`.
    pub max_restarts: u32,
    /// Retries of one packet after a transient failure (5xx without a BITS error,
    /// 502/503/504, connection errors, timeouts).
    pub max_retries: u32,
    /// First retry delay; doubles per retry of the same packet.
    pub retry_delay: Duration,
    /// Ceiling of the retry delay.
    pub max_retry_delay: Duration,
    /// Send Cancel-Session once this many fragments were acknowledged, then stop.
    pub cancel_after: Option<u64>,
    /// Host name → address to connect to, like curl's `--resolve`. The `Host` header
    /// keeps the name and the URL's port; the connection goes to this address and port.
    pub resolve: HashMap<String, SocketAddr>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for one request, from sending it to the end of the response.
    pub request_timeout: Duration,
    /// Extra headers sent on every packet (for example a test marker).
    pub headers: Vec<(String, String)>,
    /// PEM file of the certificate authorities trusted for `https://` URLs; without one
    /// the system's roots are trusted. Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// Authenticate every new connection with an NTLM handshake as this user
    /// (`DOMAIN\user` or `user`). No password: the proof is not computed.
    pub ntlm_user: Option<String>,
    /// Upload-reply job: the final Fragment's Ack must carry `BITS-Reply-URL`, and the
    /// reply is downloaded (`HEAD`, then ranged `GET`s) before Close-Session.
    pub upload_reply: bool,
    /// Bytes asked for by one ranged `GET` of the reply.
    pub reply_chunk_size: u64,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            fragment_size: DEFAULT_FRAGMENT_SIZE,
            min_fragment_size: DEFAULT_MIN_FRAGMENT_SIZE,
            random_fragment_sizes: None,
            new_connection_per_packet: false,
            ping: true,
            max_restarts: DEFAULT_MAX_RESTARTS,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_delay: DEFAULT_RETRY_DELAY,
            max_retry_delay: DEFAULT_MAX_RETRY_DELAY,
            cancel_after: None,
            resolve: HashMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            headers: Vec::new(),
            ca_file: None,
            ntlm_user: None,
            upload_reply: false,
            reply_chunk_size: DEFAULT_REPLY_CHUNK_SIZE,
        }
    }
}

impl UploadOptions {
    /// The delay before retry number `attempt` (1-based): `retry_delay * 2^(attempt-1)`,
    /// never above `max_retry_delay`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.retry_delay
            .saturating_mul(factor)
            .min(self.max_retry_delay)
    }
}

/// Where the uploaded bytes come from.
#[derive(Debug, Clone)]
pub enum UploadSource {
    /// A local file, read fragment by fragment (never whole into memory).
    File(PathBuf),
    /// Bytes already in memory; fragments are slices of it, not copies.
    Bytes(Bytes),
}

/// Parses a `--resolve` value, `HOST:ADDR` with `ADDR` an IP address and port
/// (`node2:127.0.0.1:9000`, `node2:[::1]:9000`).
pub fn parse_resolve(value: &str) -> Result<(String, SocketAddr), String> {
    let (host, addr) = value
        .split_once(':')
        .ok_or_else(|| format!("{value:?} is not HOST:ADDR (for example node2:127.0.0.1:9000)"))?;
    if host.is_empty() {
        return Err(format!("{value:?} has no host name"));
    }
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|_| format!("{addr:?} in {value:?} is not an IP address with a port"))?;
    Ok((host.to_ascii_lowercase(), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolve_overrides() {
        let (host, addr) = parse_resolve("Node2:127.0.0.1:9000").unwrap();
        assert_eq!((host.as_str(), addr.port()), ("node2", 9000));
        assert_eq!(
            parse_resolve("n:[::1]:80").unwrap().1,
            "[::1]:80".parse().unwrap()
        );
        for bad in ["node2", ":127.0.0.1:1", "n:127.0.0.1", "n:host:80"] {
            assert!(parse_resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_and_stops_at_the_ceiling() {
        let options = UploadOptions {
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_millis(1000),
            ..UploadOptions::default()
        };
        let delays: Vec<u128> = (1..=6).map(|a| options.backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(options.backoff(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn request_timeout_outlasts_a_slow_upload_reply_ack() {
        assert!(UploadOptions::default().request_timeout > Duration::from_secs(5 * 60));
    }
}
