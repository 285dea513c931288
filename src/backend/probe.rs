//! Active probes, on Pingora's health-check machinery: a TCP connect, or a BITS Ping
//! (`BITS_POST` with `BITS-Packet-Type: Ping`).
//!
//! What a Ping's answer must be depends on whether `[health_check] path` is set. Unset,
//! the Ping goes to `/`, where a real farm rarely serves BITS (IIS enables it per
//! virtual directory and answers `/` with an HTML 404 or 501): any well-formed HTTP
//! answer, whatever its status, proves the node alive. Set, the path is where BITS is
//! served, and the answer must be a BITS Ack of any status, or a 401/403 carrying
//! `WWW-Authenticate` (an IIS site with Windows authentication answers the anonymous
//! Ping with an HTML 401 without BITS headers: alive, it only wants credentials). A
//! refused connection, a timeout, or a malformed answer always fails.

use super::peer::probe_peer;
use super::tls::TlsFailure;
use super::Backend;
use crate::config::{BackendTls, HealthCheckConfig, HealthCheckKind, UpstreamConfig};
use async_trait::async_trait;
use bits_proto::headers as h;
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend as LbBackend;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a probe failed (logged as the transition's detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No answer within `health_check.timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The TLS handshake failed (certificate not verified, or not TLS at all).
    #[error("{1}")]
    Tls(TlsFailure, String),
    /// Connect, write, read or validation failed.
    #[error("{0}")]
    Failed(String),
}

/// What a cached check was built for: the backend's address and TLS settings.
type CheckKey = (SocketAddr, Option<BackendTls>);

/// The probes of one config (health check and upstream sections), reused across
/// rounds and rebuilt when a reload changes either. The checks of TLS backends and
/// the BITS Ping (whose request carries the backend's address as `Host`) are per
/// backend.
pub struct Probes {
    health: HealthCheckConfig,
    upstream: UpstreamConfig,
    tcp: Arc<TcpHealthCheck>,
    tls_connect: HashMap<CheckKey, Arc<TlsConnectCheck>>,
    ping: HashMap<CheckKey, Arc<HttpHealthCheck>>,
}

impl Probes {
    /// Probes for a config.
    pub fn new(health: &HealthCheckConfig, upstream: &UpstreamConfig) -> Self {
        let mut tcp = TcpHealthCheck::default();
        tcp.peer_template.options.connection_timeout = Some(health.timeout);
        Probes {
            health: health.clone(),
            upstream: upstream.clone(),
            tcp: Arc::new(tcp),
            tls_connect: HashMap::new(),
            ping: HashMap::new(),
        }
    }

    /// Whether these probes were built for this config.
    pub fn matches(&self, health: &HealthCheckConfig, upstream: &UpstreamConfig) -> bool {
        self.health.path == health.path
            && self.health.require_ack == health.require_ack
            && self.health.timeout == health.timeout
            && &self.upstream == upstream
    }

    /// A probe of `kind` for `backend`, ready to run on its own task. `None` for
    /// [`HealthCheckKind::None`].
    pub fn prepare(&mut self, kind: HealthCheckKind, backend: &Backend) -> Option<Probe> {
        let key = (backend.address, backend.tls.clone());
        let timeout = self.health.timeout;
        let check: Arc<dyn HealthCheck + Send + Sync> = match kind {
            HealthCheckKind::None => return None,
            HealthCheckKind::Tcp if backend.tls.is_none() => self.tcp.clone(),
            // A TCP probe of an HTTPS backend completes the TLS handshake: a node
            // whose certificate fails verification would get no request anyway.
            HealthCheckKind::Tcp => {
                let upstream = &self.upstream;
                self.tls_connect
                    .entry(key)
                    .or_insert_with(|| {
                        Arc::new(TlsConnectCheck {
                            peer: probe_peer(backend, upstream, timeout),
                            connector: TransportConnector::new(None),
                        })
                    })
                    .clone()
            }
            HealthCheckKind::BitsPing => {
                let (path, upstream) = (&self.health.path, &self.upstream);
                let require_ack = self.health.require_ack;
                self.ping
                    .entry(key)
                    .or_insert_with(|| {
                        Arc::new(bits_ping(
                            probe_peer(backend, upstream, timeout),
                            path,
                            require_ack,
                        ))
                    })
                    .clone()
            }
        };
        Some(Probe {
            check,
            address: backend.address,
            timeout,
        })
    }
}

/// One probe of one backend.
pub struct Probe {
    check: Arc<dyn HealthCheck + Send + Sync>,
    address: SocketAddr,
    timeout: Duration,
}

impl Probe {
    /// Runs the probe, bounded by the configured timeout as a whole (the connector's
    /// own timeouts cover single steps only).
    pub async fn run(&self) -> Result<(), ProbeError> {
        // Weight 1: Pingora's selection code panics on zero-weight backends.
        let target = LbBackend::new_with_weight(&self.address.to_string(), 1)
            .map_err(|e| ProbeError::Failed(e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.check.check(&target)).await {
            Err(_) => Err(ProbeError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(match TlsFailure::of(&e) {
                Some(failure) => ProbeError::Tls(failure, e.to_string()),
                None => ProbeError::Failed(e.to_string()),
            }),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// The rule in force, in one line, for `bitsgate check` and the start-up log.
pub fn rule_summary(config: &HealthCheckConfig) -> String {
    if config.require_ack {
        format!(
            "health probe: BITS Ping to {} must get a BITS Ack or a 401/403 with WWW-Authenticate ([health_check] path is set)",
            config.path
        )
    } else {
        format!(
            "health probe: BITS Ping to {} passes on any HTTP answer ([health_check] path is not set; set it to the BITS directory to require a BITS Ack)",
            config.path
        )
    }
}

/// A TCP probe of an HTTPS backend: connect and complete the handshake with the
/// backend's peer settings (Pingora's own TCP check has no per-peer roots or client
/// certificate).
struct TlsConnectCheck {
    peer: HttpPeer,
    connector: TransportConnector,
}

#[async_trait]
impl HealthCheck for TlsConnectCheck {
    async fn check(&self, _target: &LbBackend) -> pingora::Result<()> {
        self.connector.new_stream(&self.peer).await.map(|_| ())
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// A BITS Ping to `path` over `peer`.
fn bits_ping(peer: HttpPeer, path: &str, require_ack: bool) -> HttpHealthCheck {
    let host = peer.address().to_string();
    let mut check = HttpHealthCheck::new(&host, false);
    check.peer_template = peer;
    match ping_request(&host, path) {
        Ok(req) => check.req = req,
        // The path is validated at load (starts with '/', visible ASCII), so this is
        // not expected; a probe that cannot be built fails rather than pinging "/".
        Err(e) => {
            let message = e.to_string();
            check.validator = Some(Box::new(move |_| {
                Error::e_explain(ErrorType::InternalError, message.clone())
            }));
            return check;
        }
    }
    if require_ack {
        check.validator = Some(Box::new(validate_ack));
    } else {
        // Reading a complete, parsable answer is the whole test.
        check.validator = Some(Box::new(|_| Ok(())));
    }
    check
}

fn ping_request(host: &str, path: &str) -> pingora::Result<RequestHeader> {
    let mut req = RequestHeader::build(h::METHOD_BITS_POST, path.as_bytes(), None)?;
    req.append_header("Host", host)?;
    req.append_header(h::PACKET_TYPE, "Ping")?;
    req.append_header(h::CONTENT_LENGTH, "0")?;
    Ok(req)
}

/// A BITS Ack of any status, or a 401/403 asking for credentials.
fn validate_ack(response: &ResponseHeader) -> pingora::Result<()> {
    let is_ack = response
        .headers
        .get(h::PACKET_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("Ack"));
    let wants_credentials = matches!(response.status.as_u16(), 401 | 403)
        && response
            .headers
            .contains_key(http::header::WWW_AUTHENTICATE);
    if is_ack || wants_credentials {
        Ok(())
    } else {
        Error::e_explain(
            ErrorType::CustomCode("not a BITS Ack", response.status.as_u16()),
            "the health probe's answer has no BITS-Packet-Type: Ack",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server on loopback that answers every connection with `response` and
    /// reports the first request it read.
    async fn canned(response: &'static str) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let _ = tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .await;
                if !response.is_empty() {
                    let _ = stream.write_all(response.as_bytes()).await;
                } else {
                    // Silent: hold the connection open without answering.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            }
        });
        (address, rx)
    }

    fn config(timeout: Duration) -> HealthCheckConfig {
        HealthCheckConfig {
            kind: HealthCheckKind::BitsPing,
            interval: Duration::from_secs(1),
            timeout,
            path: "/uploads/".into(),
            require_ack: true,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            passive_failures: 0,
        }
    }

    fn upstream() -> UpstreamConfig {
        crate::config::load_str("[[backends]]\nid = \"b\"\naddress = \"127.0.0.1:1\"\n")
            .expect("a valid config")
            .upstream
    }

    fn backend(address: SocketAddr) -> Backend {
        let config = crate::config::BackendConfig {
            id: "b".into(),
            address,
            weight: 1,
            host_id: None,
            public_host_id: None,
            drain: false,
            health_check: None,
            tls: None,
        };
        let registry = crate::backend::SlotRegistry::default();
        let mode = crate::config::HostIdMode::Strip;
        let mut farm = crate::backend::Farm::build(&[config], mode, &registry).unwrap();
        farm.backends.remove(0)
    }

    async fn probe(kind: HealthCheckKind, address: SocketAddr) -> Result<(), ProbeError> {
        let mut probes = Probes::new(&config(Duration::from_millis(500)), &upstream());
        let backend = backend(address);
        probes.prepare(kind, &backend).expect("a probe").run().await
    }

    /// A BITS Ping with the default rule: no path configured.
    async fn default_ping(address: SocketAddr) -> Result<(), ProbeError> {
        let config = HealthCheckConfig {
            path: "/".into(),
            require_ack: false,
            ..config(Duration::from_millis(500))
        };
        let mut probes = Probes::new(&config, &upstream());
        let backend = backend(address);
        let probe = probes.prepare(HealthCheckKind::BitsPing, &backend);
        probe.expect("a probe").run().await
    }

    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn a_bits_ping_sends_bits_post_with_a_ping_packet_to_the_configured_path() {
        let (address, mut requests) =
            canned("HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(probe(HealthCheckKind::BitsPing, address).await, Ok(()));
        let request = requests.recv().await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("bits_post /uploads/ http/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("bits-packet-type: ping\r\n"), "{request}");
        assert!(request.contains("content-length: 0\r\n"), "{request}");
    }

    #[tokio::test]
    async fn an_unauthorized_ack_still_proves_the_node_alive() {
        let (address, _) = canned(
            "HTTP/1.1 401 Unauthorized\r\nBITS-Packet-Type: Ack\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(probe(HealthCheckKind::BitsPing, address).await, Ok(()));
    }

    #[tokio::test]
    async fn a_401_or_403_asking_for_credentials_proves_the_node_alive_without_bits_headers() {
        for status in ["401 Unauthorized", "403 Forbidden"] {
            let response: &'static str = Box::leak(
                format!("HTTP/1.1 {status}\r\nWWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nno")
                    .into_boxed_str(),
            );
            let (address, _) = canned(response).await;
            assert_eq!(
                probe(HealthCheckKind::BitsPing, address).await,
                Ok(()),
                "{status}"
            );
        }
        let (address, _) = canned("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").await;
        assert!(
            probe(HealthCheckKind::BitsPing, address).await.is_err(),
            "a 401 without an offer is not a BITS server asking for credentials"
        );
    }

    #[tokio::test]
    async fn without_a_configured_path_any_http_answer_proves_the_node_alive() {
        let (address, mut requests) = canned(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nno",
        )
        .await;
        assert_eq!(default_ping(address).await, Ok(()));
        let request = requests.recv().await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("bits_post / http/1.1\r\n"), "{request}");
        let (address, _) = canned("garbage\r\n\r\n").await;
        assert!(default_ping(address).await.is_err(), "not HTTP");
        assert!(default_ping(closed_port()).await.is_err());
    }

    #[test]
    fn the_rule_in_force_is_named_in_one_line() {
        let configured = config(Duration::from_secs(1));
        let line = rule_summary(&configured);
        assert!(
            line.contains("/uploads/") && line.contains("BITS Ack"),
            "{line}"
        );
        let default = HealthCheckConfig {
            path: "/".into(),
            require_ack: false,
            ..configured
        };
        let line = rule_summary(&default);
        assert!(
            line.contains("any HTTP answer") && !line.contains('\n'),
            "{line}"
        );
    }

    #[tokio::test]
    async fn an_answer_that_is_not_a_bits_ack_fails_the_ping() {
        let (address, _) =
            canned("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi")
                .await;
        assert!(matches!(
            probe(HealthCheckKind::BitsPing, address).await,
            Err(ProbeError::Failed(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_connection_fails_both_probes() {
        let address = closed_port();
        assert!(probe(HealthCheckKind::BitsPing, address).await.is_err());
        assert!(probe(HealthCheckKind::Tcp, address).await.is_err());
    }

    #[tokio::test]
    async fn a_node_that_accepts_but_never_answers_fails_within_the_timeout() {
        let (address, _) = canned("").await;
        let started = Instant::now();
        assert!(probe(HealthCheckKind::BitsPing, address).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_tcp_probe_passes_on_any_listener() {
        let (address, _) = canned("garbage").await;
        assert_eq!(probe(HealthCheckKind::Tcp, address).await, Ok(()));
    }

    #[test]
    fn kind_none_prepares_no_probe_and_a_changed_config_is_noticed() {
        let base = config(Duration::from_secs(1));
        let upstream = upstream();
        let mut probes = Probes::new(&base, &upstream);
        assert!(probes
            .prepare(HealthCheckKind::None, &backend(closed_port()))
            .is_none());
        assert!(probes.matches(&base, &upstream));
        let other = HealthCheckConfig {
            path: "/".into(),
            ..base.clone()
        };
        assert!(!probes.matches(&other, &upstream));
        let other = HealthCheckConfig {
            require_ack: false,
            ..base.clone()
        };
        assert!(!probes.matches(&other, &upstream));
        let slower = UpstreamConfig {
            connect_timeout: Duration::from_secs(9),
            ..upstream.clone()
        };
        assert!(!probes.matches(&base, &slower));
    }
}
