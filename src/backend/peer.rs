//! The one description of how bitsgate reaches a backend: the proxied requests and the
//! Cancel-Session bitsgate sends itself use the same peer settings, so a timeout set
//! for one applies to the other.

use crate::config::model::UpstreamConfig;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;

/// A peer for the backend at `address`, with the `[upstream]` timeouts.
pub fn upstream_peer(address: SocketAddr, upstream: &UpstreamConfig) -> HttpPeer {
    let mut peer = HttpPeer::new(address, false, String::new());
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    peer.options.total_connection_timeout = Some(upstream.connect_timeout);
    peer.options.read_timeout = Some(upstream.read_timeout);
    peer.options.write_timeout = Some(upstream.write_timeout);
    peer.options.idle_timeout = Some(upstream.idle_timeout);
    peer
}
