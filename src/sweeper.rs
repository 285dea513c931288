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
        // With a shared store the table is a cache: the session may be busy at another
        // replica, and Redis's TTL is what expires it (see `session::shared_store`).
        let cached = self.shared.redis.get().is_some();
        for (key, pin) in expired.iter() {
            if !cached {
                self.shared.journal_unpin(key, pin.backend);
            }
            let id = self.shared.backend_name(pin.backend);
            self.shared.metrics.session_ended(&id, EndReason::Expired);
            tracing::info!(target: "bitsgate::expiry", session = %key, backend = %id, "idle session expired");
        }
        // In passthrough mode clients talk to the backend directly and bitsgate sees
        // none of their packets: an expired pin may be an upload that is progressing.
        let cancel = !cached
            && sessions.cancel_on_expiry
            && generation.config.host_id.mode != HostIdMode::Passthrough;
        let mut report = SweepReport {
            expired: expired.len(),
            ..SweepReport::default()
        };
        if cancel {
            for (key, pin) in expired {
                let job = CancelJob::for_pin(&self.shared.urls, &key, &pin, CancelReason::Expired);
                self.shared.cancels.submit(&generation, job);
                report.cancels += 1;
            }
        }
        report.ended_with_dead_owner = self.end_pins_of_dead_retired_backends(now);
        self.shared.prune_retired();
        self.collect_urls();
        self.shared.prune_reply_routes();
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
                self.shared.journal_unpin(key, backend.slot);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;
    use crate::session::{SessionKey, UrlId};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    const NOW: UnixSecs = 1_000_000;

    fn shared(backends: &[(&str, SocketAddr)], sessions: &str) -> Arc<Shared> {
        let mut text = format!(
            "[storage]\nmode = \"memory\"\n[health_check]\nkind = \"none\"\npassive_failures = 0\n[upstream]\nconnect_timeout = \"2s\"\n[sessions]\n{sessions}\n"
        );
        for (id, address) in backends {
            text.push_str(&format!(
                "[[backends]]\nid = \"{id}\"\naddress = \"{address}\"\n"
            ));
        }
        let config = crate::config::load_str(&text).expect("valid config");
        Shared::new(config, None, None).expect("shared state")
    }

    /// A backend that accepts connections and never answers; counts what it accepted.
    async fn silent_backend() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                held.push(stream);
            }
        });
        (address, accepted)
    }

    fn key(n: u32) -> SessionKey {
        SessionKey::new(&format!("{{00000000-0000-4000-8000-{n:012x}}}"))
    }

    fn pin_many(shared: &Shared, backend: &str, count: u32, at: UnixSecs) {
        let (slot, _) = shared.slots.slot(backend).unwrap();
        for n in 0..count {
            let url = shared
                .urls
                .intern(Some("bits.example"), &format!("/u/{n}.bin"));
            shared.table.pin(key(n), slot, url, at).unwrap();
        }
    }

    fn cancels(shared: &Shared, outcome: &str) -> u64 {
        shared
            .metrics
            .cancels_sent
            .with_label_values(&["expired", outcome])
            .get()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousands_of_expiring_pins_never_wait_for_their_cancels() {
        let (address, _) = silent_backend().await;
        let shared = shared(&[("b1", address)], "idle_timeout = \"1h\"");
        pin_many(&shared, "b1", 5_000, NOW);
        let sweeper = IdleSweeper::new(shared.clone());
        // Awaiting 5,000 cancels that each time out after 3 s, 16 at a time, would take
        // over 15 minutes; the deadline only catches a sweep that waits for them.
        let report = tokio::time::timeout(Duration::from_secs(60), sweeper.sweep(NOW + 3600))
            .await
            .expect("the sweep finished without waiting for its cancels");
        assert_eq!((report.expired, report.cancels), (5_000, 5_000));
        assert!(shared.table.is_empty());
        assert!(
            shared.cancels.pending() > 0,
            "the cancels are still on their way"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancels_to_an_owner_that_is_down_are_skipped() {
        let (address, accepted) = silent_backend().await;
        let shared = shared(&[("b1", address)], "idle_timeout = \"1h\"");
        shared.generation().farm.backends[0].status.set_up(false);
        pin_many(&shared, "b1", 2_000, NOW);
        let report = IdleSweeper::new(shared.clone()).sweep(NOW + 3600).await;
        assert_eq!(report.expired, 2_000);
        assert_eq!(cancels(&shared, "skipped"), 2_000);
        assert_eq!(shared.cancels.pending(), 0);
        assert_eq!(accepted.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pins_of_a_retired_backend_down_past_the_limit_end() {
        let (b1, _) = silent_backend().await;
        let (b2, _) = silent_backend().await;
        let shared = shared(&[("b1", b1), ("b2", b2)], "retired_down_timeout = \"1h\"");
        pin_many(&shared, "b2", 3, NOW);
        // b2 leaves the file and is retired (drained), then goes down.
        let generation = shared.generation();
        let mut config = generation.config.clone();
        let retired: Vec<BackendConfig> = config.backends.drain(1..).collect();
        shared.install(config, retired).unwrap();
        let b2_index = shared.generation().farm.index_of_id("b2").unwrap();
        let status = shared.generation().farm.backends[b2_index].status.clone();
        status.set_up(false);

        let sweeper = IdleSweeper::new(shared.clone());
        assert_eq!(sweeper.sweep(NOW).await.ended_with_dead_owner, 0);
        // Back up for a while: the clock starts again at the next outage.
        status.set_up(true);
        assert_eq!(sweeper.sweep(NOW + 1800).await.ended_with_dead_owner, 0);
        status.set_up(false);
        assert_eq!(sweeper.sweep(NOW + 2000).await.ended_with_dead_owner, 0);
        assert_eq!(
            sweeper.sweep(NOW + 2000 + 3599).await.ended_with_dead_owner,
            0
        );
        assert_eq!(shared.table.len(), 3);
        assert_eq!(
            sweeper.sweep(NOW + 2000 + 3600).await.ended_with_dead_owner,
            3
        );
        assert!(shared.table.is_empty());
        let ended = shared
            .metrics
            .sessions_ended
            .with_label_values(&["b2", "backend_removed"])
            .get();
        assert_eq!(ended, 3);
        assert!(shared.generation().retired.is_empty(), "pruned once empty");
    }

    #[tokio::test]
    async fn a_sweep_frees_the_urls_of_sessions_that_ended() {
        let shared = shared(
            &[("b1", "127.0.0.1:1".parse().unwrap())],
            "idle_timeout = \"1h\"",
        );
        pin_many(&shared, "b1", 10, NOW);
        let (slot, _) = shared.slots.slot("b1").unwrap();
        let kept = shared.urls.intern(None, "/kept.bin");
        shared.table.pin(key(99), slot, kept, NOW + 3600).unwrap();
        let sweeper = IdleSweeper::new(shared.clone());
        sweeper.sweep(NOW + 3600).await;
        sweeper.sweep(NOW + 3600).await;
        assert_eq!(
            shared.urls.len(),
            2,
            "the fallback and the live session's URL"
        );
        assert_eq!(shared.urls.get(kept).path, "/kept.bin");
        assert_ne!(kept, UrlId(0));
    }
}

#[cfg(test)]
mod shared_store_tests {
    use super::*;
    use crate::session::SessionKey;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// With pins shared through Redis, a replica's table is a cache: a pin idle here
    /// may be busy at another replica, so its expiry here cancels nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_cached_pin_is_forgotten_without_a_cancel() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Nothing listens at the Redis address: the store connects on first use only.
        let config = crate::config::load_str(&format!(
            "[storage]\nmode = \"redis\"\nredis_url = \"redis://127.0.0.1:1/0\"\n[health_check]\nkind = \"none\"\n[sessions]\nidle_timeout = \"1h\"\n[[backends]]\nid = \"b1\"\naddress = \"{address}\"\n"
        ))
        .unwrap();
        let shared = Shared::new(config, None, None).unwrap();
        crate::session::shared_store::start_for(&shared).unwrap();
        assert!(shared.redis.get().is_some());
        let (slot, _) = shared.slots.slot("b1").unwrap();
        let url = shared.urls.intern(Some("bits.example"), "/u/a.bin");
        let key = SessionKey::new("{00000000-0000-4000-8000-000000000001}");
        shared.table.pin(key, slot, url, 1_000).unwrap();

        let report = IdleSweeper::new(shared.clone()).sweep(1_000 + 3_600).await;
        assert_eq!((report.expired, report.cancels), (1, 0));
        assert!(shared.table.is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            0,
            "a Cancel-Session was sent"
        );
    }
}
