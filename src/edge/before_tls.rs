//! What a TLS client listener does before the TLS handshake, which Pingora runs before
//! the [`super::Gate`] sees the connection.
//!
//! - The connection's first byte is due within `header_timeout` of accept, as on a
//!   plain listener; Pingora alone would wait 60 s for a handshake that never starts.
//! - With `proxy_protocol`, the PROXY header, which a load balancer sends before the
//!   TLS bytes, is read and consumed here.
//!
//! The time of accept and the header's source reach the Gate, after the handshake,
//! through [`Arrivals`], keyed by the socket: the first header block is then due
//! `header_timeout` after accept, the handshake included, as on a plain listener.

use super::proxy_header;
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

/// What was noted of a TLS connection before its handshake.
#[derive(Debug, Clone, Copy)]
pub struct Noted {
    /// When it was accepted.
    pub accepted: Instant,
    /// The PROXY header's source (`None`: no header expected, or a LOCAL or UNKNOWN
    /// one).
    pub source: Option<SocketAddr>,
}

/// Each TLS connection's notes between the pre-handshake step and the Gate. Every
/// connection of the listener passes the step first, so an entry left by one whose
/// handshake failed is replaced before its socket number is used again.
pub type Arrivals = Arc<DashMap<UniqueIDType, Noted>>;

/// The pre-handshake step of a TLS client listener.
pub struct BeforeTls {
    shared: Arc<Shared>,
    arrivals: Arrivals,
    proxy_protocol: bool,
}

impl BeforeTls {
    /// The step for a listener, noting into `arrivals`.
    pub fn new(shared: Arc<Shared>, arrivals: Arrivals, proxy_protocol: bool) -> BeforeTls {
        BeforeTls {
            shared,
            arrivals,
            proxy_protocol,
        }
    }
}

#[async_trait]
impl PreTlsProcess for BeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let accepted = Instant::now();
        let header_timeout = self.shared.generation().config.listener.edge.header_timeout;
        let deadline = tokio::time::Instant::from_std(accepted + header_timeout);
        let metrics = &self.shared.metrics.edge;
        if !self.proxy_protocol {
            let mut first = [0u8; 1];
            return match tokio::time::timeout_at(deadline, stream.try_peek(&mut first)).await {
                Ok(Ok(_)) => {
                    let noted = Noted {
                        accepted,
                        source: None,
                    };
                    self.arrivals.insert(stream.id(), noted);
                    Ok(())
                }
                Ok(Err(e)) => Error::e_because(ErrorType::ReadError, "before the TLS handshake", e),
                Err(_) => {
                    metrics.closed(EdgeClose::HeaderTimeout);
                    Error::e_explain(
                        ErrorType::ReadTimedout,
                        "no TLS handshake within header_timeout",
                    )
                }
            };
        }
        match proxy_header::read(stream, deadline).await {
            Ok(header) => {
                // The TLS bytes read past the header are read again by the handshake.
                stream.rewind(&header.rest);
                let noted = Noted {
                    accepted,
                    source: header.source,
                };
                self.arrivals.insert(stream.id(), noted);
                Ok(())
            }
            Err(refused) => {
                if let Some(reason) = refused.close_reason() {
                    metrics.closed(reason);
                }
                tracing::debug!(target: "bitsgate::edge", ?refused, "TLS connection without a valid PROXY protocol header closed");
                Error::e_explain(ErrorType::ReadError, "no valid PROXY protocol header")
            }
        }
    }
}
