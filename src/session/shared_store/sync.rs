//! Every replica applies the farm state shared through Redis: it polls it every
//! [`SYNC_EVERY`] (one round trip, see [`super::farm`]) and sets its backends' drain
//! flags, retires the backends another replica's reload retired, drops the sessions
//! other replicas ended from its cache, and records each backend's session count.
//!
//! A poll rather than pub/sub: the state is small, a poll a second costs each replica
//! one command, a change reaches every replica within a second, and a replica that was
//! cut off (or starts) needs nothing but its next poll to be right again: no
//! subscription to re-establish, no message to miss. While Redis does not answer each
//! replica keeps the state it last read.

use super::farm::{Snapshot, STREAM_START};
use super::RedisPins;
use crate::config::BackendConfig;
use crate::metrics::EndReason;
use crate::session::SessionKey;
use crate::state::Shared;
use async_trait::async_trait;
use bits_proto::SessionId;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each replica reads the shared state.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Every this many polls, a poll also drops the index entries of expired pins.
const TRIM_EVERY: u32 = 60;

/// The background service that keeps a replica in step with the shared state.
pub struct SharedStateSync {
    shared: Arc<Shared>,
    store: RedisPins,
    /// The last ended session this replica has applied; `None` until the stream's
    /// head was read once.
    ended_after: Mutex<Option<String>>,
}

impl SharedStateSync {
    /// With the Redis store: reads and applies the shared state once, before the
    /// replica serves (waiting at most the store's timeouts), and returns the service
    /// that keeps it in step. `None` in the other storage modes.
    pub fn start(shared: &Arc<Shared>) -> Option<SharedStateSync> {
        let store = shared.redis.get()?.clone();
        let generation = shared.generation();
        let redis = generation.config.storage.redis.as_ref()?;
        let limit = redis.connect_timeout + redis.timeout * 3;
        let sync = SharedStateSync {
            shared: shared.clone(),
            store: store.clone(),
            ended_after: Mutex::new(None),
        };
        let backends = polled_backends(shared);
        let first = store.wait_for(limit, move |store| async move {
            let head = store.ended_head().await?;
            let snapshot = store.poll(backends, head.clone(), false).await?;
            Ok::<_, String>((head, snapshot))
        });
        match first {
            Some(Ok((head, snapshot))) => {
                *sync.cursor() = Some(head);
                shared.apply_shared_state(&snapshot);
                tracing::info!(target: "bitsgate::store", drained = ?snapshot.drained, retired = ?snapshot.retired.iter().map(|b| &b.id).collect::<Vec<_>>(), "read the farm state shared through Redis");
            }
            Some(Err(e)) => {
                tracing::warn!(target: "bitsgate::store", error = %e, "could not read the farm state shared through Redis (drained and retired backends) at start; it is applied once Redis answers");
            }
            None => {
                tracing::warn!(target: "bitsgate::store", waited_ms = limit.as_millis() as u64, "Redis did not answer the first read of the shared farm state (drained and retired backends) in time; it is applied once Redis answers");
            }
        }
        Some(sync)
    }

    fn cursor(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.ended_after.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One poll, applied. Returns whether Redis answered.
    pub async fn sync_once(&self, trim: bool) -> bool {
        let cursor = self.cursor().clone();
        // A replica that never read the stream's head (Redis was down at its start)
        // has cached nothing older than now: it starts from the head, not from 0.
        let after = match cursor {
            Some(after) => after,
            None => match self.store.ended_head().await {
                Ok(head) => {
                    *self.cursor() = Some(head.clone());
                    head
                }
                Err(_) => STREAM_START.to_owned(),
            },
        };
        let snapshot = self
            .store
            .poll(polled_backends(&self.shared), after, trim)
            .await;
        match snapshot {
            Ok(snapshot) => {
                if let Some(until) = &snapshot.ended_until {
                    *self.cursor() = Some(until.clone());
                }
                self.shared.apply_shared_state(&snapshot);
                true
            }
            Err(e) => {
                // The outage itself is logged once, by the store.
                tracing::debug!(target: "bitsgate::store", error = %e, "polling the shared farm state failed; the last state read stays in force");
                false
            }
        }
    }
}

/// Every backend of the replica's farm, retired ones included.
fn polled_backends(shared: &Shared) -> Vec<String> {
    let generation = shared.generation();
    generation
        .farm
        .backends
        .iter()
        .map(|b| b.id.to_string())
        .collect()
}

#[async_trait]
impl BackgroundService for SharedStateSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut polls: u32 = 0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(SYNC_EVERY) => {}
            }
            polls = polls.wrapping_add(1);
            self.sync_once(polls.is_multiple_of(TRIM_EVERY)).await;
        }
    }
}

impl Shared {
    /// Whether `backend` may own a session, with the store asked now rather than at
    /// its last poll: a session created a moment ago must not be missed when a reload
    /// decides whether a removed backend is retired or forgotten. Redis not answering
    /// counts as "may". Blocks (a reload runs off the runtime).
    pub fn owns_sessions_now(&self, backend: &crate::backend::Backend) -> bool {
        let generation = self.generation();
        let (Some(store), Some(redis)) = (self.redis.get(), &generation.config.storage.redis)
        else {
            return self.owns_sessions(backend);
        };
        if self.table.sessions_of(backend.slot) > 0 {
            return true;
        }
        let id = backend.id.to_string();
        let limit = redis.connect_timeout + redis.timeout;
        let counted = store.wait_for(limit, move |store| async move {
            store.count_sessions(&id).await
        });
        counted != Some(Ok(0))
    }

    /// Applies what a poll of the shared state found.
    pub fn apply_shared_state(&self, snapshot: &Snapshot) {
        self.apply_shared_drains(snapshot);
        self.apply_shared_retired(snapshot);
        self.drop_ended_elsewhere(&snapshot.ended);
        let generation = self.generation();
        for backend in &generation.farm.backends {
            if let Some(count) = snapshot.counts.get(&*backend.id) {
                self.metrics
                    .store_sessions
                    .with_label_values(&[&*backend.id])
                    .set(i64::try_from(*count).unwrap_or(i64::MAX));
            }
        }
        self.publish_backend_metrics();
    }

    /// An operator's drain through any replica drains the backend here too.
    fn apply_shared_drains(&self, snapshot: &Snapshot) {
        if !snapshot.drains_current {
            return;
        }
        let generation = self.generation();
        for backend in generation.farm.backends.iter().filter(|b| !b.retired) {
            let drained = snapshot.drained.contains(&*backend.id);
            if backend.status.set_draining(drained) {
                tracing::info!(target: "bitsgate::store", backend = %backend.id, draining = drained, "drain state changed through another replica");
            }
        }
    }

    /// A backend another replica retired is retired here too: one this replica's config
    /// still lists drains (`retired_elsewhere`), one it does not list joins its farm as
    /// retired, so the sessions it owns are routed. A backend this replica retired
    /// whose record is missing (Redis lost it) is recorded again while it owns
    /// sessions in the store.
    fn apply_shared_retired(&self, snapshot: &Snapshot) {
        let shared_ids: HashSet<&str> = snapshot.retired.iter().map(|b| b.id.as_str()).collect();
        let generation = self.generation();
        for backend in generation.farm.backends.iter().filter(|b| !b.retired) {
            let elsewhere = shared_ids.contains(&*backend.id);
            if backend.status.set_retired_elsewhere(elsewhere) {
                tracing::warn!(target: "bitsgate::store", backend = %backend.id, retired = elsewhere, "another replica's reload {} this backend, still in this replica's config: it {} new sessions here too", if elsewhere { "retired" } else { "no longer retires" }, if elsewhere { "takes no" } else { "takes" });
            }
        }
        if let Some(store) = self.redis.get() {
            for backend in &generation.retired {
                let in_store = store.sessions_of(&backend.id).unwrap_or(0);
                if !shared_ids.contains(backend.id.as_str()) && in_store > 0 {
                    store.publish_retired(backend, true);
                }
            }
        }
        let joining: Vec<&BackendConfig> = snapshot
            .retired
            .iter()
            .filter(|b| generation.farm.index_of_id(&b.id).is_none())
            .collect();
        if joining.is_empty() {
            return;
        }
        let _guard = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Again under the lock: a reload may have swapped the generation meanwhile.
        let generation = self.generation();
        let mut retired = generation.retired.clone();
        for backend in joining {
            if generation.farm.index_of_id(&backend.id).is_some() {
                continue;
            }
            tracing::warn!(target: "bitsgate::store", backend = %backend.id, address = %backend.address, "a backend another replica's reload retired joins this replica's farm as retired: its sessions are served, it gets no new ones");
            retired.push(backend.clone());
        }
        if let Err(e) = self.install(generation.config.clone(), retired) {
            tracing::error!(target: "bitsgate::store", error = %e, "could not add the backends other replicas retired");
        }
    }

    /// Drops from this replica's cache the sessions another replica ended (Close,
    /// Cancel, not-found, an operator's cancel): their keys are gone already.
    fn drop_ended_elsewhere(&self, ended: &[String]) {
        for id in ended {
            let Ok(id) = SessionId::validate(id.as_bytes()) else {
                continue;
            };
            self.forget_cached(&SessionKey::new(id), EndReason::EndedElsewhere);
        }
        if !ended.is_empty() {
            self.publish_reply_routes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::UnixSecs;
    use crate::state::tests::shared;

    fn backend(id: &str, address: &str) -> BackendConfig {
        crate::session::retired::from_json(&format!(
            "{{\"id\":\"{id}\",\"address\":\"{address}\",\"weight\":1,\"host_id\":null,\"public_host_id\":null}}"
        ))
        .expect("a backend record")
    }

    fn state(shared: &Shared, id: &str) -> (bool, bool, bool) {
        let generation = shared.generation();
        let b = &generation.farm.backends[generation.farm.index_of_id(id).expect(id)];
        (b.status.is_draining(), b.retired, b.is_retired())
    }

    #[test]
    fn a_drain_recorded_through_another_replica_drains_here_until_it_is_lifted() {
        let shared = shared();
        let mut snapshot = Snapshot {
            drained: HashSet::from(["b2".to_owned(), "gone".to_owned()]),
            drains_current: true,
            ..Snapshot::default()
        };
        shared.apply_shared_state(&snapshot);
        assert_eq!(state(&shared, "b2"), (true, false, false));
        assert_eq!(state(&shared, "b1"), (false, false, false));
        // A poll answered while this replica changed a drain says nothing of it.
        snapshot.drained.clear();
        snapshot.drains_current = false;
        shared.apply_shared_state(&snapshot);
        assert!(state(&shared, "b2").0);
        snapshot.drains_current = true;
        shared.apply_shared_state(&snapshot);
        assert!(!state(&shared, "b2").0);
    }

    #[test]
    fn a_backend_another_replica_retired_drains_here_or_joins_the_farm_as_retired() {
        let shared = shared();
        let snapshot = Snapshot {
            retired: vec![backend("b2", "127.0.0.1:2"), backend("b9", "127.0.0.9:9")],
            drains_current: true,
            ..Snapshot::default()
        };
        shared.apply_shared_state(&snapshot);
        // Listed by this config: drains, shown as retired, stays configured.
        assert_eq!(state(&shared, "b2"), (true, false, true));
        // Not listed: routed as retired, at the recorded address.
        assert_eq!(state(&shared, "b9"), (true, true, true));
        let generation = shared.generation();
        let b9 = &generation.farm.backends[generation.farm.index_of_id("b9").unwrap()];
        assert_eq!(b9.address.to_string(), "127.0.0.9:9");
        // Applying it again adds nothing; the record's removal lifts b2's drain.
        shared.apply_shared_state(&snapshot);
        assert_eq!(shared.generation().farm.backends.len(), 3);
        shared.apply_shared_state(&Snapshot {
            drains_current: true,
            ..Snapshot::default()
        });
        assert_eq!(state(&shared, "b2"), (false, false, false));
    }

    #[test]
    fn sessions_ended_through_another_replica_leave_the_cache_and_are_counted_once() {
        let shared = shared();
        let (slot, _) = shared.slots.slot("b1").unwrap();
        let id = "{6f9619ff-8b86-d011-b42d-00c04fc964ff}";
        let url = shared.urls.intern(None, "/u/a.bin");
        shared
            .table
            .pin(SessionKey::new(id), slot, url, 1_000 as UnixSecs)
            .unwrap();
        shared.metrics.session_created("b1");
        shared.replies.insert("/r/1", SessionKey::new(id), slot);
        let snapshot = Snapshot {
            ended: vec![id.to_owned(), id.to_owned(), "not an id".to_owned()],
            drains_current: true,
            ..Snapshot::default()
        };
        shared.apply_shared_state(&snapshot);
        assert!(shared.table.get(&SessionKey::new(id)).is_none());
        assert_eq!(shared.reply_owner("/r/1"), None);
        assert_eq!(shared.metrics.pinned.get(), 0);
        let ended = shared
            .metrics
            .sessions_ended
            .with_label_values(&["b1", "ended_elsewhere"])
            .get();
        assert_eq!(ended, 1);
    }
}
