//! What a TLS client listener does before the TLS handshake, which Pingora runs before
//! the [`super::Gate`] sees the connection.
//!
//! - The connection's first byte is due within `header_timeout` of accept, as on a
//!   plain listener; Pingora alone would wait 60 s for a handshake that never starts.
//! - With `proxy_protocol`, the PROXY header, which a load balancer sends before the
//!   TLS bytes, is read and consumed here. Its source reaches the Gate, after the
//!   handshake, through [`ProxySources`], keyed by the socket.

use super::proxy_header::{self, Refused};
use crate::metrics::EdgeClose;
use crate::state::Shared;
use async_trait::async_trait;
use dashmap::DashMap;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Peek, UniqueID, UniqueIDType};
use pingora::{Error, ErrorType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The PROXY header's source of each TLS connection between the header and the Gate
/// (`None`: a LOCAL or UNKNOWN header). Every connection of the listener passes the
/// header first, so an entry left by a connection whose handshake failed is replaced
/// before its socket number is used again.
pub type ProxySources = Arc<DashMap<UniqueIDType, Option<SocketAddr>>>;

/// The pre-handshake step of a TLS client listener.
pub struct BeforeTls {
    shared: Arc<Shared>,
    /// `Some` when the listener expects a PROXY header.
    sources: Option<ProxySources>,
}

impl BeforeTls {
    /// The step for a listener; `sources` when it expects a PROXY header.
    pub fn new(shared: Arc<Shared>, sources: Option<ProxySources>) -> BeforeTls {
        BeforeTls { shared, sources }
    }
}

#[async_trait]
impl PreTlsProcess for BeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let header_timeout = self.shared.generation().config.listener.edge.header_timeout;
        let deadline = tokio::time::Instant::from_std(Instant::now() + header_timeout);
        let metrics = &self.shared.metrics.edge;
        let Some(sources) = &self.sources else {
            let mut first = [0u8; 1];
            return match tokio::time::timeout_at(deadline, stream.try_peek(&mut first)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Error::e_because(ErrorType::ReadError, "before the TLS handshake", e),
                Err(_) => {
                    metrics.closed(EdgeClose::HeaderTimeout);
                    Error::e_explain(
                        ErrorType::ReadTimedout,
                        "no TLS handshake within header_timeout",
                    )
                }
            };
        };
        match proxy_header::read(stream, deadline).await {
            Ok(header) => {
                // The TLS bytes read past the header are read again by the handshake.
                stream.rewind(&header.rest);
                sources.insert(stream.id(), header.source);
                Ok(())
            }
            Err(refused) => {
                match refused {
                    Refused::Invalid => metrics.closed(EdgeClose::ProxyHeaderInvalid),
                    Refused::Timeout => metrics.closed(EdgeClose::HeaderTimeout),
                    Refused::Closed => {}
                }
                tracing::debug!(target: "bitsgate::edge", ?refused, "TLS connection without a valid PROXY protocol header closed");
                Error::e_explain(ErrorType::ReadError, "no valid PROXY protocol header")
            }
        }
    }
}
