//! SIGUSR1 → reopen the access log, as logrotate's `postrotate` expects.

use crate::state::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

/// The background service that listens for SIGUSR1 (only in a process that owns its
/// signals, i.e. `bitsgate run`).
pub struct ReopenOnSignal {
    shared: Arc<Shared>,
}

impl ReopenOnSignal {
    /// A listener over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        ReopenOnSignal { shared }
    }
}

#[async_trait]
impl BackgroundService for ReopenOnSignal {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::error!(target: "bitsgate::access_log", error = %e, "cannot listen for SIGUSR1");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = usr1.recv() => {
                    tracing::info!(target: "bitsgate::access_log", "SIGUSR1: reopening the access log");
                    self.shared.access_log.reopen();
                }
            }
        }
    }
}
