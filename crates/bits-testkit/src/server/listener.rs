//! Listening sockets and connection life cycle, including a bounded graceful stop.

use super::config::{HEADER_READ_TIMEOUT, SHUTDOWN_GRACE};
use super::{http, Shared};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

const LOG: &str = "bits_server";

/// Pause after a failed accept (out of file descriptors, usually) so the loop does not
/// spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds with `SO_REUSEADDR`, so a server can come back on the address it just left
/// even while old connections linger in TIME_WAIT.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until `stop` turns true, then lets open connections finish the
/// request in progress for up to [`SHUTDOWN_GRACE`] and cuts off the rest.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = super::until_stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    sh.stats.connection_accepted();
                    connections.spawn(connection(stream, peer, Arc::clone(&sh), stop.clone()));
                }
                Err(e) => {
                    warn!(target: LOG, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Acks are tiny and latency-bound; do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| http::serve(Arc::clone(&sh), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = super::until_stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(target: LOG, %peer, error = %e, "connection ended with an error");
    }
}
