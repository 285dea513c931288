//! What carries a client connection's bytes under the [`super::EdgeStream`].
//!
//! Every connection is one bitsgate accepted itself ([`super::Accepting`]). A plain
//! one is its bare socket: Pingora's L4 stream would add 376 bytes of state and a
//! layer to every read and write, and a waiting connection can wait for readiness on
//! the socket itself, holding no buffer until bytes are there. A TLS one is the rustls
//! stream over the socket, boxed, so that a plain connection's state does not grow by
//! a TLS connection's size.

use super::tls::ClientTls;
use bytes::{Bytes, BytesMut};
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::{SocketDigest, UniqueID, UniqueIDType};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How many bytes the wait for a request reads at most: most BITS request heads fit,
/// so this is the one read the HTTP reader would have made. The buffer is made when
/// the bytes are there (on a plain connection) and becomes the request's prefix.
const FIRST_READ: usize = 512;

/// A client connection's transport.
#[derive(Debug)]
pub enum Transport {
    /// A plain TCP connection accepted by bitsgate.
    Tcp {
        tcp: TcpStream,
        /// The TCP peer.
        peer: SocketAddr,
    },
    /// A TLS connection, its handshake done.
    Tls {
        tls: Box<ClientTls>,
        /// The TCP peer.
        peer: SocketAddr,
    },
}

/// What a wait for bytes found.
pub enum Arrived {
    /// The first bytes of a request.
    Bytes(Bytes),
    /// The end of the connection (or an error).
    Closed,
}

impl Transport {
    /// Waits until bytes arrive and reads what is there, up to [`FIRST_READ`].
    pub async fn first_bytes(&mut self) -> Arrived {
        match self {
            Transport::Tcp { tcp, .. } => loop {
                if tcp.readable().await.is_err() {
                    return Arrived::Closed;
                }
                let mut buf = BytesMut::with_capacity(FIRST_READ);
                match tcp.try_read_buf(&mut buf) {
                    Ok(0) => return Arrived::Closed,
                    Ok(_) => return Arrived::Bytes(buf.freeze()),
                    // The readiness was stale: wait again.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return Arrived::Closed,
                }
            },
            // Read into a buffer on the stack of each poll, not one made before the
            // wait: a waiting connection then holds no buffer of its own. rustls
            // decrypts into its own buffers, so there is no readiness to wait for.
            Transport::Tls { tls, .. } => {
                std::future::poll_fn(|cx| {
                    let mut stack = [0u8; FIRST_READ];
                    let mut read = ReadBuf::new(&mut stack);
                    match Pin::new(tls.as_mut()).poll_read(cx, &mut read) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                            Poll::Ready(Arrived::Bytes(Bytes::copy_from_slice(read.filled())))
                        }
                        Poll::Ready(_) => Poll::Ready(Arrived::Closed),
                    }
                })
                .await
            }
        }
    }

    /// The socket digest of the connection, with `peer` as its peer address. Made
    /// when a request's session asks for it, so a waiting connection does not hold
    /// one.
    pub fn digest(&self, peer: SocketAddr) -> Arc<SocketDigest> {
        let digest = SocketDigest::from_raw_fd(self.id());
        let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
        Arc::new(digest)
    }

    /// The TCP peer.
    pub fn peer(&self) -> SocketAddr {
        match self {
            Transport::Tcp { peer, .. } | Transport::Tls { peer, .. } => *peer,
        }
    }

    /// The TLS stream, on a TLS connection.
    pub fn tls(&self) -> Option<&ClientTls> {
        match self {
            Transport::Tls { tls, .. } => Some(tls),
            Transport::Tcp { .. } => None,
        }
    }
}

impl UniqueID for Transport {
    fn id(&self) -> UniqueIDType {
        match self {
            Transport::Tcp { tcp, .. } => tcp.as_raw_fd(),
            Transport::Tls { tls, .. } => tls.get_ref().0.tcp().as_raw_fd(),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp { tcp, .. } => Pin::new(tcp).poll_read(cx, buf),
            Transport::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp { tcp, .. } => Pin::new(tcp).poll_write(cx, buf),
            Transport::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp { tcp, .. } => Pin::new(tcp).poll_flush(cx),
            Transport::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp { tcp, .. } => Pin::new(tcp).poll_shutdown(cx),
            Transport::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp { tcp, .. } => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Transport::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp { tcp, .. } => tcp.is_write_vectored(),
            Transport::Tls { tls, .. } => tls.is_write_vectored(),
        }
    }
}
