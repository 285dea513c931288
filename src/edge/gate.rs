//! The door of the client listener: every accepted connection passes here before
//! Pingora's HTTP code sees it. It takes one of `max_connections` places (or is
//! refused), reads the PROXY protocol header when the listener expects one, and
//! hands the HTTP application an [`EdgeStream`] that keeps the listener's limits.
//!
//! It also runs the connection's HTTP/1 request loop, which Pingora would otherwise
//! run itself, for one reason: memory. Pingora starts a request's state (a 14 KiB
//! future and a 4 KiB header buffer) before the request's first byte arrives, and a
//! BITS farm's client connections spend most of their life waiting between
//! fragments. Here a connection waits for its next request holding only its stream,
//! and the request's state exists while a request does.

use super::proxy_header;
use super::stream::EdgeStream;
use super::stream::Waited;
use super::transport::Transport;
use crate::metrics::EdgeClose;
use crate::proxy::{FastPath, Served};
use crate::state::Shared;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
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

/// What the Gate knows of a connection before it sees it.
#[derive(Clone)]
pub enum Arrival {
    /// A plain listener: the connection was accepted just now; the Gate reads its
    /// PROXY protocol header if the listener expects one.
    Plain {
        /// Whether every connection opens with a PROXY protocol header.
        proxy_protocol: bool,
    },
    /// A TLS listener: the Gate reads the PROXY header if the listener expects one,
    /// then runs the handshake ([`super::tls`]).
    Tls {
        acceptor: tokio_rustls::TlsAcceptor,
        /// Whether every connection opens with a PROXY protocol header.
        proxy_protocol: bool,
    },
}

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
    arrival: Arrival,
    /// BITS packets it can carry go this way first (see [`crate::proxy::FastPath`]).
    fast: FastPath,
}

impl<A> Gate<A> {
    /// A gate in front of `inner`, taking places from `places`.
    pub fn new(inner: A, shared: Arc<Shared>, places: Places, arrival: Arrival) -> Self {
        Gate {
            inner: Arc::new(inner),
            fast: FastPath::new(shared.clone()),
            shared,
            places,
            arrival,
        }
    }

    /// Waits for the next request on `edge` until `until`; false when there is none
    /// (closed, timed out, or the service is shutting down). `shutdown` is this
    /// connection's own copy of the service's watch (tokio shards its wake-ups, so
    /// many connections waiting on it share no lock).
    async fn next_request(
        &self,
        edge: &mut EdgeStream,
        until: Instant,
        shutdown: &mut ShutdownWatch,
    ) -> bool {
        tokio::select! {
            // Bytes already sent are read first: a request the client sent before
            // shutdown began is served, as Pingora's own loop does.
            biased;
            waited = edge.wait_for_request(until) => waited == Waited::Bytes,
            _ = shutdown.wait_for(|down| *down) => false,
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

impl<A: HttpServerApp + Send + Sync + 'static> Gate<A> {
    /// Lets the HTTP application clean up when the listener stops.
    pub async fn cleanup(&self) {
        ServerApp::cleanup(self.inner.as_ref()).await
    }

    /// Serves one client connection, just accepted: a place, its PROXY header when
    /// expected, its TLS handshake on a TLS listener, then its requests. Returns a
    /// stream only from HTTP/2, which Pingora may reuse. The transport comes boxed so
    /// that the connection's state does not keep copies of it after it moved into the
    /// stream.
    pub async fn serve(
        self: &Arc<Self>,
        mut stream: Box<Transport>,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = Instant::now();
        let metrics = &self.shared.metrics.edge;
        let limits = self.shared.generation().config.listener.edge;
        // The first header block is due `header_timeout` after accept, a PROXY header
        // and a TLS handshake included.
        let deadline = tokio::time::Instant::from_std(accepted + limits.header_timeout);
        let mut client = None;
        if let Arrival::Tls {
            acceptor,
            proxy_protocol,
        } = &self.arrival
        {
            let Transport::Tcp { tcp, peer } = *stream else {
                return None;
            };
            // Before the place is taken, as when Pingora ran the handshake: a client
            // over capacity is told so over TLS. Boxed: the handshake's state is gone
            // once it is over.
            let handshake =
                super::tls::handshake(tcp, acceptor, *proxy_protocol, deadline, metrics);
            let (tls, source) = Box::pin(handshake).await?;
            client = source;
            *stream = Transport::Tls {
                tls: Box::new(tls),
                peer,
            };
        }
        let Ok(place) = self.places.clone().try_acquire_owned() else {
            metrics.closed(EdgeClose::OverCapacity);
            refuse(&mut stream).await;
            return None;
        };
        metrics.open.inc();
        let _open = Open(metrics.open.clone());
        let (client, rest) = match &self.arrival {
            Arrival::Tls { .. }
            | Arrival::Plain {
                proxy_protocol: false,
            } => (client, Bytes::new()),
            Arrival::Plain {
                proxy_protocol: true,
            } => {
                // Boxed: its buffer is not part of every waiting connection's state.
                let header =
                    Box::pin(proxy_header::read_or_refuse(&mut stream, deadline, metrics)).await?;
                (header.source, header.rest)
            }
        };
        // Boxed from the start: not a copy in every waiting connection's state.
        let edge = Box::new(EdgeStream::new(
            *stream,
            rest,
            client,
            limits,
            metrics.clone(),
            accepted,
        ));
        let reusable = if speaks_http2(&edge, self.inner.as_ref()) {
            // Not offered by the client listener; Pingora's own loop if it ever is.
            ServerApp::process_new(&self.inner, edge, shutdown).await
        } else {
            self.serve_http1(edge, shutdown).await;
            None
        };
        drop(place);
        reusable
    }

    /// The HTTP/1 request loop of one connection, as Pingora's own, except that
    /// each request's session is made once its first bytes are in.
    async fn serve_http1(self: &Arc<Self>, mut edge: Box<EdgeStream>, shutdown: &ShutdownWatch) {
        let mut until = edge.header_deadline();
        // Boxed while it waits: most of it is for pipelining, which stays off.
        let mut carried: Option<Box<HttpPersistentSettings>> = None;
        // A binding the fast path made, for Pingora's proxy to carry on.
        let mut handoff = None;
        let mut watch = shutdown.clone();
        loop {
            if !self.next_request(&mut edge, until, &mut watch).await {
                // No request came (in time, or before shutdown).
                edge.close_tls().await;
                return;
            }
            let shutting_down = *shutdown.borrow();
            // Boxed, as the session below: not part of a waiting connection.
            match Box::pin(self.fast.serve(edge, shutting_down)).await {
                Served::Kept(next, binding) => {
                    handoff = binding;
                    edge = next;
                    edge.between_requests();
                    until = self.keepalive_until();
                    continue;
                }
                Served::Closed => return,
                Served::NotMine(back) => edge = back,
            }
            // Boxed: the session and its future exist while the request does, not in
            // every waiting connection's state.
            let carried_now = carried.take().map(|c| *c);
            let Some((next, settings)) =
                Box::pin(self.one_request(edge, carried_now, handoff.take(), shutdown)).await
            else {
                return;
            };
            carried = settings.map(Box::new);
            edge = next;
            edge.between_requests();
            until = self.keepalive_until();
        }
    }

    /// When a kept-alive connection's wait for its next request ends.
    fn keepalive_until(&self) -> Instant {
        let keepalive = self.shared.generation().config.listener.keepalive_timeout;
        Instant::now() + keepalive.max(Duration::from_secs(1))
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Gate<A> {
    /// One request on `edge`, whose first bytes are in. Returns the stream and the
    /// settings to carry when the connection may serve another.
    async fn one_request(
        self: &Arc<Self>,
        edge: Box<EdgeStream>,
        carried: Option<HttpPersistentSettings>,
        handoff: Option<Box<dyn std::any::Any + Send + Sync>>,
        shutdown: &ShutdownWatch,
    ) -> Option<(Box<EdgeStream>, Option<HttpPersistentSettings>)> {
        let mut session = ServerSession::new_http1(edge);
        match carried {
            Some(mut settings) => {
                if let Some(context) = handoff {
                    settings.set_user_context(context);
                }
                settings.apply_to_session(&mut session)
            }
            None => {
                // What Pingora's loop sets on a connection's first session; the
                // proxy sets the configured keep-alive on every request.
                session.set_keepalive((!*shutdown.borrow()).then_some(60));
                session.set_keepalive_reuses_remaining(
                    self.inner
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
                if handoff.is_some() {
                    session.set_connection_user_context(handoff);
                }
            }
        }
        let reused = self.inner.process_new_http(session, shutdown).await?;
        // Pingora carries pipelined bytes in `settings`, out of the wait's sight:
        // pipelining stays off (bitsgate never enables it), so Pingora does not
        // reuse a connection that sent bytes past its request.
        let (stream, settings) = reused.consume();
        let edge = stream.into_any().downcast::<EdgeStream>().ok()?;
        Some((edge, settings))
    }
}

/// Whether the connection speaks HTTP/2: cleartext HTTP/2 configured on the
/// application (the TLS listener offers no ALPN, so never over TLS).
fn speaks_http2<A: HttpServerApp>(edge: &EdgeStream, app: &A) -> bool {
    !edge.is_tls() && app.server_options().is_some_and(|o| o.h2c)
}

/// Tells a connection over capacity to come back later, within a bounded time.
async fn refuse(stream: &mut Transport) {
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(OVER_CAPACITY).await?;
        // Over TLS, with its close_notify.
        stream.shutdown().await
    })
    .await;
}
