//! The door of the client listener: every accepted connection passes here before
//! Pingora's HTTP code sees it. It takes one of `max_connections` places (or is
//! refused), reads the PROXY protocol header when the listener expects one, and
//! hands the HTTP application an [`EdgeStream`] that keeps the listener's limits.

use super::proxy_header::{self, Refused};
use super::stream::EdgeStream;
use crate::metrics::EdgeClose;
use crate::state::Shared;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

/// What a connection beyond `max_connections` gets before it is closed: a client
/// retries a 503 later.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// The longest the 503 to a connection over capacity may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Places for client connections, shared by every worker of the listener.
pub type Places = Arc<Semaphore>;

/// A fresh set of `max_connections` places.
pub fn places(max_connections: usize) -> Places {
    Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)))
}

/// Wraps the HTTP application `A` of the client listener.
pub struct Gate<A> {
    inner: Arc<A>,
    shared: Arc<Shared>,
    places: Places,
    proxy_protocol: bool,
}

impl<A> Gate<A> {
    /// A gate in front of `inner`, taking places from `places`.
    pub fn new(inner: A, shared: Arc<Shared>, places: Places, proxy_protocol: bool) -> Self {
        Gate {
            inner: Arc::new(inner),
            shared,
            places,
            proxy_protocol,
        }
    }
}

/// Counts a connection open while it lives.
struct Open(IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Gate<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = Instant::now();
        let metrics = &self.shared.metrics.edge;
        let Ok(place) = self.places.clone().try_acquire_owned() else {
            metrics.closed(EdgeClose::OverCapacity);
            let _ = tokio::time::timeout(REFUSAL_WRITE, async {
                stream.write_all(OVER_CAPACITY).await?;
                stream.flush().await
            })
            .await;
            return None;
        };
        metrics.open.inc();
        let _open = Open(metrics.open.clone());
        let limits = self.shared.generation().config.listener.edge;
        let (client, rest) = if self.proxy_protocol {
            let deadline = tokio::time::Instant::from_std(accepted + limits.header_timeout);
            match proxy_header::read(&mut stream, deadline).await {
                Ok(header) => (header.source, header.rest),
                Err(refused) => {
                    match refused {
                        Refused::Invalid => metrics.closed(EdgeClose::ProxyHeaderInvalid),
                        Refused::Timeout => metrics.closed(EdgeClose::HeaderTimeout),
                        // A load balancer's TCP health check: nothing to count.
                        Refused::Closed => {}
                    }
                    tracing::debug!(target: "bitsgate::edge", ?refused, "connection without a valid PROXY protocol header closed");
                    return None;
                }
            }
        } else {
            (None, Bytes::new())
        };
        let edge = EdgeStream::new(stream, rest, client, limits, metrics.clone(), accepted);
        let reusable = self.inner.process_new(Box::new(edge), shutdown).await;
        drop(place);
        reusable
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
