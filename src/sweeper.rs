//! Expiry: pins whose owner answered nothing for `sessions.idle_timeout` are removed,
//! and their owner is sent Cancel-Session (in the background) so it frees the temp
//! files now rather than after its own cleanup period. Also ends the pins of retired
//! backends down longer than `sessions.retired_down_timeout`, drops retired backends
//! once they own nothing, and frees the URLs no pin uses any more.

use crate::backend::BackendSlot;
use crate::cancels::{CancelJob, CancelReason};
use crate::config::HostIdMode;
use crate::metrics::EndReason;
use crate::session::{unix_now, UnixSecs, UrlRegistry};
use crate::state::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The background service.
pub struct IdleSweeper {
    shared: Arc<Shared>,
    /// Retired backends seen down, and since when.
    retired_down_since: Mutex<HashMap<BackendSlot, UnixSecs>>,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Pins idle for `idle_timeout`, removed.
    pub expired: usize,
    /// Cancel-Session packets handed to the background sender.
    pub cancels: usize,
    /// Pins of retired backends down for `retired_down_timeout`, ended.
    pub ended_with_dead_owner: usize,
}

impl IdleSweeper {
    /// A sweeper over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        IdleSweeper {
            shared,
            retired_down_since: Mutex::new(HashMap::new()),
        }
    }

    /// One pass at `now`: expire idle pins (handing their cancels to the background
    /// sender, never waiting for them), end the pins of retired backends that stayed
    /// down, drop retired backends that own nothing, free unused URLs, compact.
    pub async fn sweep(&self, now: UnixSecs) -> SweepReport {
        let generation = self.shared.generation();
        let sessions = &generation.config.sessions;
        let idle_secs = u32::try_from(sessions.idle_timeout.as_secs()).unwrap_or(u32::MAX);
        let expired = self.shared.table.take_idle(now, idle_secs);
        for (key, pin) in expired.iter() {
            self.shared.journal_unpin(key);
            let id = self.shared.backend_name(pin.backend);
            self.shared.metrics.session_ended(&id, EndReason::Expired);
            tracing::info!(target: "bitsgate::expiry", session = %key, backend = %id, "idle session expired");
        }
        // In passthrough mode clients talk to the backend directly and bitsgate sees
        // none of their packets: an expired pin may be an upload that is progressing.
        let cancel = sessions.cancel_on_expiry && generation.config.host_id.mode != HostIdMode::Passthrough;
        let mut report = SweepReport {
            expired: expired.len(),
            ..SweepReport::default()
        };
        if cancel {
            for (key, pin) in expired {
                self.shared.cancels.submit(
                    &generation,
                    CancelJob {
                        backend: pin.backend,
                        session: key.to_string(),
                        url: self.shared.urls.get(pin.url),
                        reason: CancelReason::Expired,
                    },
                );
                report.cancels += 1;
            }
        }
        report.ended_with_dead_owner = self.end_pins_of_dead_retired_backends(now);
        self.shared.prune_retired();
        self.collect_urls();
        self.shared.compact_store_if_worthwhile().await;
        self.shared.publish_backend_metrics();
        report
    }

    /// A retired backend is never chosen again and its clients cannot move on while
    /// its pins last: once it has been down for `retired_down_timeout`, its pins end,
    /// so the next packet of each gets not-found and the client restarts elsewhere.
    fn end_pins_of_dead_retired_backends(&self, now: UnixSecs) -> usize {
        let generation = self.shared.generation();
        let limit = u32::try_from(generation.config.sessions.retired_down_timeout.as_secs())
            .unwrap_or(u32::MAX);
        let mut down_since = self
            .retired_down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut ended = 0;
        let mut seen = Vec::new();
        for backend in generation.farm.backends.iter().filter(|b| b.retired) {
            if backend.status.is_up() {
                continue;
            }
            seen.push(backend.slot);
            let since = *down_since.entry(backend.slot).or_insert(now);
            if now.saturating_sub(since) < limit {
                continue;
            }
            let taken = self.shared.table.take_backend(backend.slot);
            for (key, _) in &taken {
                self.shared.journal_unpin(key);
                self.shared
                    .metrics
                    .session_ended(&backend.id, EndReason::BackendRemoved);
            }
            if !taken.is_empty() {
                tracing::warn!(target: "bitsgate::expiry", backend = %backend.id, sessions = taken.len(), down_for_s = now.saturating_sub(since), "a retired backend stayed down past sessions.retired_down_timeout; its sessions are ended and their clients will restart elsewhere");
            }
            ended += taken.len();
        }
        // Forget backends that came back up or left the farm.
        down_since.retain(|slot, _| seen.contains(slot));
        ended
    }

    /// Frees the URLs of sessions no longer pinned.
    fn collect_urls(&self) {
        let urls = &self.shared.urls;
        let started = urls.begin_collection();
        let mut in_use = urls.id_set();
        self.shared
            .table
            .for_each_pin(|pin| UrlRegistry::mark(&mut in_use, pin.url));
        let freed = urls.collect(started, &in_use);
        if freed > 0 {
            tracing::debug!(target: "bitsgate::expiry", freed, "session URLs freed");
        }
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
