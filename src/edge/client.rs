//! The client's address, one source for `X-Forwarded-For`, the access log and
//! per-client limits: the PROXY protocol header's source when the listener expects
//! one, else the TCP peer. Both arrive the same way, as the peer address of the
//! connection's socket digest, which [`super::EdgeStream`] sets.
//!
//! Also the proxy's way to tell the connection where its request is.

use super::stream::{EdgeStream, Phase};
use pingora::proxy::Session;
use std::net::SocketAddr;

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
