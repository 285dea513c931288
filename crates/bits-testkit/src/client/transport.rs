//! One HTTP/1.1 exchange at a time over a kept-alive (or fresh) TCP connection, with
//! hyper's low-level client connection. No pooling beyond "the last connection": a
//! BITS session has one request outstanding at a time (spec §1).

use super::body::PacketBody;
use super::target::Target;
use super::UploadOptions;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Largest Ack body read to keep a connection reusable; Acks are normally empty, but a
/// server error page can slip through (spec §2).
const MAX_ACK_BODY: usize = 64 * 1024;

/// A response, its body already drained.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// From the start of the exchange (connecting included) to the end of the body.
    pub latency: Duration,
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
        }
    }
}

struct Conn {
    /// The host and port this connection was made for (a target change needs a new one).
    host: String,
    port: u16,
    sender: SendRequest<PacketBody>,
    used: bool,
}

/// Sends packets, reusing the last connection when allowed.
pub(crate) struct Transport {
    conn: Option<Conn>,
    fresh_per_packet: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Transport {
    pub fn new(options: &UploadOptions) -> Self {
        Transport {
            conn: None,
            fresh_per_packet: options.new_connection_per_packet,
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
        }
    }

    /// Sends one request to `target` (resolved with `resolve`) and reads the whole
    /// response.
    pub async fn send(
        &mut self,
        target: &Target,
        resolve: &std::collections::HashMap<String, SocketAddr>,
        request: Request<PacketBody>,
    ) -> Result<Response, SendError> {
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        let mut conn = match self.take_reusable(target).await {
            Some(conn) => conn,
            None => self.connect(target, resolve).await?,
        };
        let reused = conn.used;
        conn.used = true;
        let exchange = async {
            let response = conn
                .sender
                .send_request(request)
                .await
                .map_err(|error| classify_hyper(error, reused))?;
            let (parts, body) = response.into_parts();
            // A body that fails or is too long leaves the connection unusable, not the
            // response unreadable: the status and headers are what matter.
            let drained = Limited::new(body, MAX_ACK_BODY).collect().await.is_ok();
            Ok::<_, SendError>((parts, drained))
        };
        let (parts, drained) = tokio::time::timeout_at(deadline.into(), exchange)
            .await
            .map_err(|_| SendError::Timeout(self.request_timeout))??;
        if drained && !self.fresh_per_packet {
            self.conn = Some(conn);
        }
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            latency: started.elapsed(),
        })
    }

    async fn take_reusable(&mut self, target: &Target) -> Option<Conn> {
        let mut conn = self.conn.take()?;
        if conn.host != target.host || conn.port != target.port {
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
        let (sender, connection) = http1::Builder::new()
            // `Content-Length` rather than `content-length`: what the Windows client and
            // most servers write. (BITS header names compare case-insensitively.)
            .title_case_headers(true)
            .handshake(TokioIo::new(stream))
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
        Ok(Conn {
            host: target.host.clone(),
            port: target.port,
            sender,
            used: false,
        })
    }
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
