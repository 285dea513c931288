//! The TLS client listener's handshake, on a connection bitsgate accepted itself.
//!
//! Pingora's TLS listener runs the handshake in its own per-connection task, whose
//! state keeps room for the handshake (8 KiB) for as long as the connection lives, and
//! wraps the result in a stream with slots for handshakes that are over (3 KiB) and a
//! write buffer (1.4 KiB). Here the [`super::Gate`] runs the handshake in a future it
//! boxes and drops once it is done, and keeps the bare rustls stream over the socket.
//!
//! Before the handshake, as on a plain listener:
//! - the first byte is due within `header_timeout` of accept, and the handshake ends
//!   by then too (the first header block is due then anyway);
//! - with `proxy_protocol`, the PROXY header, which a load balancer sends before the
//!   TLS bytes, is read here; what was read past it opens the handshake.

use super::proxy_header;
use crate::config::TlsConfig;
use crate::metrics::{EdgeClose, EdgeMetrics};
use bytes::{Buf, Bytes};
use rustls::crypto::ring;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client connection over TLS.
pub type ClientTls = TlsStream<Rewound>;

/// The listener's acceptor: its certificate chain and key, TLS 1.2 and 1.3 with
/// rustls's default cipher suites (ring), no client certificates, no ALPN (HTTP/1.1
/// only), as Pingora's `TlsSettings::intermediate` builds it.
pub fn acceptor(tls: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context as _;
    let chain = CertificateDer::pem_file_iter(&tls.cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", tls.cert_path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "no certificate in {}",
        tls.cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .with_context(|| format!("reading the private key {}", tls.key_path.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the certificate {} and key {} do not make a TLS configuration",
                tls.cert_path.display(),
                tls.key_path.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads the PROXY header when `proxy_protocol` asks for one, then runs the TLS
/// handshake, all by `deadline`. `None` when the connection is to close: it said
/// nothing in time, sent no valid PROXY header, or failed its handshake (each counted
/// here). A client that closes or resets the connection before or during its
/// handshake is not counted: a load balancer's TCP health check does that.
pub async fn handshake(
    mut tcp: TcpStream,
    acceptor: &TlsAcceptor,
    proxy_protocol: bool,
    deadline: Instant,
    metrics: &EdgeMetrics,
) -> Option<(ClientTls, Option<SocketAddr>)> {
    let (source, rest) = if proxy_protocol {
        let header = proxy_header::read_or_refuse(&mut tcp, deadline, metrics).await?;
        (header.source, header.rest)
    } else {
        // No handshake state until the client speaks.
        if tokio::time::timeout_at(deadline, tcp.readable())
            .await
            .is_err()
        {
            metrics.closed(EdgeClose::HeaderTimeout);
            return None;
        }
        (None, Bytes::new())
    };
    // The socket stays open until the close is counted (it is dropped after the match),
    // so that whoever sees the connection close also sees it counted.
    let mut accept = acceptor.accept(Rewound { rest, tcp }).into_fallible();
    match tokio::time::timeout_at(deadline, &mut accept).await {
        Ok(Ok(tls)) => Some((tls, source)),
        Ok(Err((e, _socket))) => {
            // Only TLS's own errors: a client that closes or resets the connection
            // before or during its handshake (a load balancer's health check) is none.
            if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                metrics.closed(EdgeClose::TlsHandshakeFailed);
            }
            tracing::debug!(target: "bitsgate::edge", error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.closed(EdgeClose::HeaderTimeout);
            None
        }
    }
}

/// The socket, with the bytes read past a PROXY header handed out first.
#[derive(Debug)]
pub struct Rewound {
    rest: Bytes,
    tcp: TcpStream,
}

impl Rewound {
    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl AsyncRead for Rewound {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rest.has_remaining() {
            let n = this.rest.len().min(buf.remaining());
            buf.put_slice(&this.rest[..n]);
            this.rest.advance(n);
            if !this.rest.has_remaining() {
                // Drained: let its allocation go now, not when the connection closes.
                this.rest = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Sends the close_notify of a connection that is being dropped, if the socket takes
/// it at once; never waits. For the paths that end a connection without its async
/// close (Pingora's proxy drops the stream after an error answer it will not keep the
/// connection for): an alert of a few dozen bytes into a send buffer that the ended
/// exchange has left all but empty. A connection already closed sends nothing again.
pub fn close_without_waiting(tls: &mut ClientTls) {
    let (io, connection) = tls.get_mut();
    connection.send_close_notify();
    let mut socket = WriteIfReady(io.tcp());
    while connection.wants_write() {
        match connection.write_tls(&mut socket) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Writes what the socket takes now (`WouldBlock` when it takes nothing).
struct WriteIfReady<'a>(&'a TcpStream);

impl io::Write for WriteIfReady<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What Pingora's TLS stream tells of a connection without client certificates: the
/// cipher suite and the protocol version.
pub fn digest(tls: &ClientTls) -> pingora::protocols::tls::SslDigest {
    let (_, connection) = tls.get_ref();
    let cipher = connection
        .negotiated_cipher_suite()
        .and_then(|suite| suite.suite().as_str())
        .unwrap_or_default();
    let version = connection
        .protocol_version()
        .and_then(|version| version.as_str())
        .unwrap_or_default();
    pingora::protocols::tls::SslDigest::new(cipher, version, None, None, Vec::new())
}
