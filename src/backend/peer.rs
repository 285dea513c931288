//! The one description of how bitsgate reaches a backend: the proxied requests, the
//! health probes and the Cancel-Session bitsgate sends itself use the same peer
//! settings, so a timeout or a TLS setting set for one applies to the others.

use super::Backend;
use crate::config::model::UpstreamConfig;
use pingora::upstreams::peer::HttpPeer;
use std::time::Duration;

/// A peer for `backend`, with the `[upstream]` timeouts and, for `tls = true`, HTTPS
/// with the `[upstream]` roots and client certificate.
pub fn upstream_peer(backend: &Backend, upstream: &UpstreamConfig) -> HttpPeer {
    let mut peer = match &backend.tls {
        None => HttpPeer::new(backend.address, false, String::new()),
        Some(tls) => {
            // Never empty: Pingora skips certificate verification for a TLS peer
            // without SNI. An IP address here is verified against the certificate's
            // IP addresses (and sent without SNI, as TLS requires).
            let mut peer = HttpPeer::new(backend.address, true, tls.server_name.clone());
            peer.options.verify_cert = true;
            peer.options.verify_hostname = true;
            peer.options.ca = upstream.tls.ca.clone();
            peer.client_cert_key = upstream.tls.client.clone();
            peer
        }
    };
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    peer.options.total_connection_timeout = Some(upstream.connect_timeout);
    peer.options.read_timeout = Some(upstream.read_timeout);
    peer.options.write_timeout = Some(upstream.write_timeout);
    peer.options.idle_timeout = Some(upstream.idle_timeout);
    peer
}

/// The peer a health probe uses: [`upstream_peer`] with every timeout set to the
/// probe's `timeout`.
pub fn probe_peer(backend: &Backend, upstream: &UpstreamConfig, timeout: Duration) -> HttpPeer {
    let mut peer = upstream_peer(backend, upstream);
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    peer
}
