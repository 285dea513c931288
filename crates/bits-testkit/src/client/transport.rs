//! One HTTP/1.1 exchange at a time over a kept-alive (or fresh) TCP connection, with
//! hyper's low-level client connection. No pooling beyond "the last connection": a
//! BITS session has one request outstanding at a time (spec §1).

use super::auth::{ConnAuth, Credentials};
use super::body::PacketBody;
use super::target::Target;
use super::UploadOptions;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest Ack body read to keep a connection reusable; Acks are normally empty, but a
/// server error page can slip through (spec §2).
const MAX_ACK_BODY: usize = 64 * 1024;

/// A response, its body read (up to a limit).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// From the start of the exchange (connecting included) to the end of the body.
    pub latency: Duration,
    /// The body, when it was read whole within the limit; empty otherwise.
    pub body: Bytes,
    /// Whether `body` is the whole body.
    pub body_complete: bool,
    /// A step of the NTLM handshake: send the same request again.
    pub resend: bool,
}

/// Why an exchange produced no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No TCP connection could be made (the host, or the name, is unreachable).
    Connect(io::Error),
    /// The request or its response failed on an established connection.
    Http {
        error: hyper::Error,
        /// The connection had served earlier requests: it may have been closed by the
        /// server while idle, so one immediate resend is reasonable.
        reused: bool,
    },
    /// The request could not be sent for a local reason: the source file could not be
    /// read, or hyper refused the request itself. Never retried.
    Local(io::Error),
    /// No complete response within the request timeout.
    Timeout(Duration),
    /// TLS could not be set up or the server's certificate was not accepted. Never
    /// retried: the same certificate fails the same way.
    Tls(String),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect failed: {e}"),
            SendError::Http { error, .. } => write!(f, "connection failed: {error}"),
            SendError::Local(e) => write!(f, "local failure: {e}"),
            SendError::Timeout(after) => write!(f, "no response within {after:?}"),
            SendError::Tls(reason) => write!(f, "TLS failed: {reason}"),
        }
    }
}

struct Conn {
    /// The scheme, host and port this connection was made for (a target change needs a
    /// new one).
    https: bool,
    host: String,
    port: u16,
    sender: SendRequest<PacketBody>,
    used: bool,
    auth: ConnAuth,
}

/// Sends packets, reusing the last connection when allowed.
pub(crate) struct Transport {
    conn: Option<Conn>,
    fresh_per_packet: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
    credentials: Option<Credentials>,
    ca_file: Option<PathBuf>,
    /// Built on the first `https` connection.
    tls: Option<TlsConnector>,
    body_limit: usize,
}

impl Transport {
    pub fn new(options: &UploadOptions) -> Self {
        Transport {
            conn: None,
            fresh_per_packet: options.new_connection_per_packet,
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            credentials: options.ntlm_user.as_deref().map(Credentials::parse),
            ca_file: options.ca_file.clone(),
            tls: None,
            body_limit: MAX_ACK_BODY
                .max(usize::try_from(options.reply_chunk_size).unwrap_or(usize::MAX)),
        }
    }

    /// Whether requests run the NTLM handshake.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Sends one request to `target` (resolved with `resolve`) and reads the whole
    /// response.
    pub async fn send(
        &mut self,
        target: &Target,
        resolve: &std::collections::HashMap<String, SocketAddr>,
        mut request: Request<PacketBody>,
    ) -> Result<Response, SendError> {
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        let mut conn = match self.take_reusable(target).await {
            Some(conn) => conn,
            None => self.connect(target, resolve).await?,
        };
        let reused = conn.used;
        conn.used = true;
        if let Some(credentials) = &self.credentials {
            if let Some(value) = conn.auth.authorization(credentials) {
                let value = HeaderValue::from_str(&value)
                    .map_err(|e| SendError::Local(io::Error::other(e)))?;
                request.headers_mut().insert(AUTHORIZATION, value);
            }
        }
        let body_limit = self.body_limit;
        let exchange = async {
            let response = conn
                .sender
                .send_request(request)
                .await
                .map_err(|error| classify_hyper(error, reused))?;
            let (parts, body) = response.into_parts();
            // A body that fails or is too long leaves the connection unusable, not the
            // response unreadable: the status and headers are what matter.
            let body = Limited::new(body, body_limit)
                .collect()
                .await
                .ok()
                .map(|b| b.to_bytes());
            Ok::<_, SendError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout_at(deadline.into(), exchange)
            .await
            .map_err(|_| SendError::Timeout(self.request_timeout))??;
        let status = parts.status.as_u16();
        let resend = self.credentials.is_some() && conn.auth.on_response(status, &parts.headers);
        let drained = body.is_some();
        // The handshake belongs to this connection: its next step must use it, even
        // when every packet otherwise gets a new connection.
        if drained && (!self.fresh_per_packet || resend) {
            self.conn = Some(conn);
        }
        Ok(Response {
            status,
            headers: parts.headers,
            latency: started.elapsed(),
            body_complete: drained,
            body: body.unwrap_or_default(),
            resend: resend && drained,
        })
    }

    async fn take_reusable(&mut self, target: &Target) -> Option<Conn> {
        let mut conn = self.conn.take()?;
        if conn.https != target.https || conn.host != target.host || conn.port != target.port {
            return None;
        }
        // A connection the server closed while idle fails here, not mid-request.
        conn.sender.ready().await.ok()?;
        Some(conn)
    }

    async fn connect(
        &mut self,
        target: &Target,
        resolve: &std::collections::HashMap<String, SocketAddr>,
    ) -> Result<Conn, SendError> {
        let attempt = async {
            let addr = target.resolve(resolve).await?;
            let stream = TcpStream::connect(addr).await?;
            // Small Acks and request heads must not wait for Nagle.
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        };
        let stream = tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| {
                SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.connect_timeout),
                ))
            })?
            .map_err(SendError::Connect)?;
        let sender = if target.https {
            let connector = self.tls_connector()?;
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| SendError::Tls(format!("{:?}: {e}", target.host)))?;
            let handshake = connector.connect(name, stream);
            let tls = tokio::time::timeout(self.connect_timeout, handshake)
                .await
                .map_err(|_| SendError::Tls("handshake timed out".to_owned()))?
                .map_err(|e| SendError::Tls(e.to_string()))?;
            handshake_http(tls).await?
        } else {
            handshake_http(stream).await?
        };
        Ok(Conn {
            https: target.https,
            host: target.host.clone(),
            port: target.port,
            sender,
            used: false,
            auth: ConnAuth::default(),
        })
    }

    fn tls_connector(&mut self) -> Result<TlsConnector, SendError> {
        if let Some(connector) = &self.tls {
            return Ok(connector.clone());
        }
        let config = crate::tls::client_config(self.ca_file.as_deref())
            .map_err(|e| SendError::Tls(e.to_string()))?;
        let connector = TlsConnector::from(config);
        self.tls = Some(connector.clone());
        Ok(connector)
    }
}

/// HTTP/1.1 over an established stream; the connection task runs in the background.
async fn handshake_http<I>(io: I) -> Result<SendRequest<PacketBody>, SendError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        // `Content-Length` rather than `content-length`: what the Windows client and
        // most servers write. (BITS header names compare case-insensitively.)
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|error| SendError::Http {
            error,
            reused: false,
        })?;
    tokio::spawn(async move {
        // The connection ends when the server closes it or the sender is dropped;
        // its error, if any, already reached the request that saw it.
        let _ = connection.await;
    });
    Ok(sender)
}

fn classify_hyper(error: hyper::Error, reused: bool) -> SendError {
    if error.is_user() {
        // Our own side failed (the body, i.e. the local file, or the request head):
        // resending would fail the same way.
        let message = error.to_string();
        let source = std::error::Error::source(&error)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .map(|e| io::Error::new(e.kind(), e.to_string()))
            .unwrap_or_else(|| io::Error::other(message));
        return SendError::Local(source);
    }
    SendError::Http { error, reused }
}
