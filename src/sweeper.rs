//! Expiry: pins that saw no packet for `sessions.idle_timeout` are removed, and their
//! owner is sent Cancel-Session so it frees the temp files now rather than after its
//! own cleanup period. Also drops retired backends once they own nothing.

use crate::backend::cancel::{send_cancel, CancelOutcome};
use crate::metrics::EndReason;
use crate::session::{unix_now, Pin, SessionKey, UnixSecs};
use crate::state::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

/// How many Cancel-Session packets one sweep sends at once.
const CANCEL_CONCURRENCY: usize = 16;

/// Why bitsgate cancels a session itself (metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The pin expired.
    Expired,
    /// An operator deleted the session through the admin API.
    Admin,
}

impl CancelReason {
    fn label(self) -> &'static str {
        match self {
            CancelReason::Expired => "expired",
            CancelReason::Admin => "admin",
        }
    }
}

/// Sends Cancel-Session for a pinned session to its owner, if the owner is still in
/// the farm. Returns the owner's answer, or `None` when it could not be asked.
pub async fn cancel_at_owner(
    shared: &Shared,
    key: &SessionKey,
    pin: &Pin,
    reason: CancelReason,
) -> Option<CancelOutcome> {
    let generation = shared.generation();
    let index = generation.farm.index_of(pin.backend)?;
    let backend = &generation.farm.backends[index];
    let path = shared.dirs.name(pin.dir);
    let timeout =
        generation.config.upstream.connect_timeout + generation.config.health_check.timeout;
    let session = key.to_string();
    let outcome = send_cancel(backend.address, &path, &session, timeout).await;
    let label = match &outcome {
        Ok(answer) if answer.session_is_gone() => "ok",
        Ok(_) => "refused",
        Err(_) => "error",
    };
    shared
        .metrics
        .cancels_sent
        .with_label_values(&[reason.label(), label])
        .inc();
    match outcome {
        Ok(answer) => {
            tracing::info!(target: "bitsgate::expiry", session, backend = %backend.id, status = answer.status, reason = reason.label(), "Cancel-Session sent");
            Some(answer)
        }
        Err(e) => {
            tracing::warn!(target: "bitsgate::expiry", session, backend = %backend.id, error = %e, reason = reason.label(), "Cancel-Session failed");
            None
        }
    }
}

/// The background service.
pub struct IdleSweeper {
    shared: Arc<Shared>,
}

impl IdleSweeper {
    /// A sweeper over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        IdleSweeper { shared }
    }

    /// One pass at `now`: expire idle pins (cancelling them at their owners when
    /// configured), then drop retired backends that own nothing. Returns the number
    /// of pins expired.
    pub async fn sweep(&self, now: UnixSecs) -> usize {
        let sessions = self.shared.generation().config.sessions.clone();
        let idle_secs = u32::try_from(sessions.idle_timeout.as_secs()).unwrap_or(u32::MAX);
        let expired = self.shared.table.take_idle(now, idle_secs);
        for (key, pin) in expired.iter() {
            self.shared.journal_unpin(key);
            let id = self.shared.backend_name(pin.backend);
            self.shared.metrics.session_ended(&id, EndReason::Expired);
            tracing::info!(target: "bitsgate::expiry", session = %key, backend = %id, "idle session expired");
        }
        if sessions.cancel_on_expiry {
            let mut tasks = tokio::task::JoinSet::new();
            for (key, pin) in expired.iter().map(|(k, p)| (k.clone(), *p)) {
                while tasks.len() >= CANCEL_CONCURRENCY {
                    tasks.join_next().await;
                }
                let shared = self.shared.clone();
                tasks.spawn(async move {
                    cancel_at_owner(&shared, &key, &pin, CancelReason::Expired).await;
                });
            }
            while tasks.join_next().await.is_some() {}
        }
        self.shared.prune_retired();
        self.shared.compact_store_if_worthwhile().await;
        self.shared.publish_backend_metrics();
        expired.len()
    }
}

#[async_trait]
impl BackgroundService for IdleSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let interval = self.shared.generation().config.sessions.sweep_interval;
            tokio::select! {
                _ = shutdown.changed() => {
                    // Unpins are not waited for on the request path: make them durable
                    // before the process goes.
                    if let Some(store) = &self.shared.store {
                        if let Err(e) = store.flush().await {
                            tracing::error!(target: "bitsgate::store", error = %e, "flushing the pin journal at shutdown failed");
                        }
                    }
                    return;
                }
                _ = tokio::time::sleep(interval) => {}
            }
            self.sweep(unix_now()).await;
        }
    }
}
