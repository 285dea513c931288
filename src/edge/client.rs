//! The client's address, one source for `X-Forwarded-For`, the access log and
//! per-client limits: the PROXY protocol header's source when the listener expects
//! one, else the TCP peer. Both arrive the same way, as the peer address of the
//! connection's socket digest, which [`super::EdgeStream`] sets.
//!
//! Also the proxy's way to tell the connection where its request is.

use super::stream::{EdgeStream, Phase};
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::{SocketDigest, Stream};
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client's address for this request.
pub fn client_addr(session: &Session) -> Option<SocketAddr> {
    session.as_downstream().client_addr()?.as_inet().copied()
}

/// Tells the connection of `session` where its request is (no-op on a connection
/// that is not an [`EdgeStream`], e.g. HTTP/2).
pub fn announce(session: &Session, phase: Phase) {
    if let Some(edge) = session
        .as_downstream()
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<EdgeStream>())
    {
        edge.announce(phase);
    }
}

/// Keeps the connection of `session` on Pingora's proxy for its later requests
/// (no-op on a connection that is not an [`EdgeStream`]).
pub fn stay_on_general_path(session: &Session) {
    if let Some(edge) = session
        .as_downstream()
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<EdgeStream>())
    {
        edge.stay_on_general_path();
    }
}

/// The socket digest of `stream` with `client` as its peer address.
pub(super) fn digest_with_peer(stream: &Stream, client: SocketAddr) -> Option<Arc<SocketDigest>> {
    let peer = Some(PingoraAddr::Inet(client));
    let digest = stream.get_socket_digest()?;
    if digest.peer_addr.set(peer.clone()).is_ok() {
        return Some(digest);
    }
    // Something looked at the TCP peer already (Pingora does, before a TLS
    // handshake): a digest of our own for the socket, which the stream's id names
    // (its descriptor, through a TLS layer too).
    let own = SocketDigest::from_raw_fd(stream.id());
    let _ = own.peer_addr.set(peer);
    Some(Arc::new(own))
}
