//! The client listener's accept loop, plain and TLS.
//!
//! Pingora's listening service spawns one task per accepted connection whose state
//! is sized for its TLS handshake, even on plain TCP: about 9 KiB that every waiting
//! client holds for as long as it waits, next to HAProxy's 1 KiB for the whole
//! connection. So bitsgate accepts itself: the task of a connection holds the
//! [`Gate`]'s future and no more, over the bare socket ([`Transport::Tcp`]): no
//! buffers, and no Pingora L4 stream (its writes go straight to the socket; Pingora's
//! HTTP/1 code writes a whole head at once). On a TLS listener the Gate runs the
//! handshake in a future of its own that is gone once it is over.
//!
//! The socket comes from the shared listener ([`crate::workers::SharedListener`]),
//! which binds it once or takes it over from the previous process in an upgrade, so
//! an upgrade hands the same socket on as before.

use super::Gate;
use super::Transport;
use crate::workers::SharedListener;
use async_trait::async_trait;
use pingora::apps::HttpServerApp;
use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::Service;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long accepting pauses when the process is out of descriptors: the error
/// repeats at once until a connection closes, and would spin the thread.
const OUT_OF_DESCRIPTORS_PAUSE: Duration = Duration::from_millis(100);

/// The client listener of one worker (or of the only service): accepts on the
/// shared socket and hands every connection to the Gate.
pub struct Accepting<A> {
    name: String,
    gate: Arc<Gate<A>>,
    listener: Arc<SharedListener>,
    threads: usize,
}

impl<A> Accepting<A> {
    /// A service named `name` running `threads` threads, accepting on `listener`.
    pub fn new(name: String, gate: Gate<A>, listener: Arc<SharedListener>, threads: usize) -> Self {
        Accepting {
            name,
            gate: Arc::new(gate),
            listener,
            threads,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> Service for Accepting<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let process = fds.unwrap_or_else(|| Arc::new(parking_lot::Mutex::new(Fds::new())));
        let listener = match self
            .listener
            .socket_for_worker(&process)
            .and_then(TcpListener::from_std)
        {
            Ok(listener) => listener,
            Err(e) => {
                // As Pingora's own listener does: a proxy that cannot listen must not
                // look started.
                panic!(
                    "cannot listen on {}: {e}; is another process using the address?",
                    self.listener.address()
                );
            }
        };
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                changed = shutdown.changed() => match changed {
                    Ok(()) if !*shutdown.borrow() => continue,
                    _ => break,
                },
            };
            match accepted {
                Ok((tcp, peer)) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(target: "bitsgate::edge", error = %e, "a connection closed as it was accepted");
                        continue;
                    }
                    let gate = self.gate.clone();
                    let shutdown = shutdown.clone();
                    // Boxed: the task keeps no copy of it once it moved into the stream.
                    let transport = Box::new(Transport::Tcp { tcp, peer });
                    tokio::spawn(async move {
                        // A reusable stream comes back only from HTTP/2, which the
                        // client listener does not speak.
                        let _ = gate.serve(transport, &shutdown).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(target: "bitsgate::edge", address = %self.listener.address(), error = %e, "accept failed");
                    if e.raw_os_error() == Some(libc::EMFILE)
                        || e.raw_os_error() == Some(libc::ENFILE)
                    {
                        tokio::time::sleep(OUT_OF_DESCRIPTORS_PAUSE).await;
                    }
                }
            }
        }
        self.gate.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        Some(self.threads)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.listener.address().to_owned()])
    }
}
