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

/// The connection of `session`, when it is an [`EdgeStream`] (not, e.g., HTTP/2).
fn edge_of(session: &Session) -> Option<&EdgeStream> {
    session
        .as_downstream()
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<EdgeStream>())
}

/// Tells the connection of `session` where its request is.
pub fn announce(session: &Session, phase: Phase) {
    if let Some(edge) = edge_of(session) {
        edge.announce(phase);
    }
}

/// Keeps the connection of `session` on Pingora's proxy for its later requests.
pub fn stay_on_general_path(session: &Session) {
    if let Some(edge) = edge_of(session) {
        edge.stay_on_general_path();
    }
}

/// Marks the connection of `session` as ended by a failure, its answer incomplete or
/// missing: over TLS it closes without a close_notify, which would tell the client
/// that what it received was all there is.
pub fn cut_short(session: &Session) {
    if let Some(edge) = edge_of(session) {
        edge.cut_short();
    }
}
