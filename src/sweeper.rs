//! Forgets pins that saw no packet for `sessions.idle_timeout`.

use crate::metrics::EndReason;
use crate::session::unix_now;
use crate::state::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

/// The background service.
pub struct IdleSweeper {
    shared: Arc<Shared>,
}

impl IdleSweeper {
    /// A sweeper over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        IdleSweeper { shared }
    }

    /// One pass at `now`; returns how many pins expired.
    pub fn sweep(&self, now: crate::session::UnixSecs) -> usize {
        let idle = self.shared.generation().config.sessions.idle_timeout;
        let idle_secs = u32::try_from(idle.as_secs()).unwrap_or(u32::MAX);
        let expired = self.shared.table.take_idle(now, idle_secs);
        for (key, pin) in &expired {
            let id = self
                .shared
                .slots
                .name(pin.backend)
                .unwrap_or_else(|| "unknown".into());
            self.shared.metrics.session_ended(&id, EndReason::Expired);
            tracing::info!(target: "bitsgate::sweeper", session = %key, backend = %id, "idle session expired");
        }
        expired.len()
    }
}

#[async_trait]
impl BackgroundService for IdleSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let interval = self.shared.generation().config.sessions.sweep_interval;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            self.sweep(unix_now());
        }
    }
}
