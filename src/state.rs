//! What the proxy, the admin API and the background services share: the current
//! config generation (swapped whole on reload), the session table, the metrics.

use crate::backend::{BackendSlot, Farm, HealthTable, SlotRegistry};
use crate::cancels::Cancels;
use crate::config::{BackendConfig, Config, RemovedBackends};
use crate::metrics::{BackendSeries, Metrics};
use crate::session::store::{
    restored_last_seen, PinOwner, PinSink, PinStore, SnapshotWriter, StoredPin,
};
use crate::session::{Pin, ReplyRoutes, SessionKey, SessionTable, UnixSecs, UrlId, UrlRegistry};
use arc_swap::ArcSwap;
use bits_proto::ClassifyOptions;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The session table, backend slots and session URLs a start fills from the journal
/// before the shared state exists: the journal's pins go straight into the table, with
/// no other copy of them alive. Each pin's idle clock restarts by
/// [`restored_last_seen`], with the journal's format (see [`PinSink::journal_format`]).
pub struct Restored {
    table: SessionTable,
    slots: SlotRegistry,
    urls: UrlRegistry,
    replies: ReplyRoutes,
    /// The load time.
    now: UnixSecs,
    /// `H`: how often an active pin is re-journaled.
    journal_every: u32,
    /// Whether the journal being replayed carries activity (format 2).
    activity_journaled: bool,
    /// Each backend id met so far, resolved once.
    backends: ResolvedBackends,
}

/// Backend ids resolved to slots once each while pins are restored: millions of pins
/// share a handful of backends.
#[derive(Default)]
struct ResolvedBackends(Vec<(Arc<str>, Option<BackendSlot>)>);

impl ResolvedBackends {
    /// The slot of `id`, or `None` (logged once) when it cannot have one.
    fn slot(&mut self, slots: &SlotRegistry, id: &Arc<str>) -> Option<BackendSlot> {
        if let Some((_, resolved)) = self.0.iter().find(|(b, _)| b == id) {
            return *resolved;
        }
        let resolved = match slots.slot(id) {
            Ok((slot, _)) => Some(slot),
            Err(e) => {
                tracing::error!(target: "bitsgate::store", backend = %id, error = %e, "cannot restore the pins of this backend");
                None
            }
        };
        self.0.push((id.clone(), resolved));
        resolved
    }
}

impl Restored {
    /// Empty, for the table `config` describes, loading at the current time.
    pub fn new(config: &Config) -> Self {
        Self::at(config, crate::session::unix_now())
    }

    /// Empty, for the table `config` describes, loading at `now`.
    pub fn at(config: &Config, now: UnixSecs) -> Self {
        Restored {
            table: SessionTable::new(config.sessions.max_pinned),
            slots: SlotRegistry::default(),
            urls: UrlRegistry::default(),
            replies: ReplyRoutes::default(),
            now,
            journal_every: config.sessions.activity_journal_interval(),
            activity_journaled: true,
            backends: ResolvedBackends::default(),
        }
    }

    /// Pins in the table.
    pub fn len(&self) -> u64 {
        self.table.len()
    }

    /// Whether no pin was restored.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn resolve(&mut self, owner: &PinOwner) -> Option<(BackendSlot, UrlId)> {
        let slot = self.backends.slot(&self.slots, &owner.backend)?;
        Some((slot, self.urls.intern(owner.host.as_deref(), &owner.path)))
    }
}

impl PinSink for Restored {
    fn journal_format(&mut self, activity_journaled: bool) {
        self.activity_journaled = activity_journaled;
    }

    fn pin(&mut self, key: SessionKey, owner: &PinOwner, pin: StoredPin) {
        match self.resolve(owner) {
            Some((slot, url)) => {
                let (last_seen, journaled_seen) = restored_clocks(
                    pin.last_seen,
                    self.now,
                    self.journal_every,
                    self.activity_journaled,
                );
                self.table
                    .restore(key, pin.into_pin(slot, url, last_seen, journaled_seen));
            }
            // A later record of the key must not leave an older owner in place.
            None => {
                self.table.unpin(&key);
                self.replies.remove_session(&key);
            }
        }
    }

    fn unpin(&mut self, key: &SessionKey) {
        self.table.unpin(key);
        self.replies.remove_session(key);
    }

    fn reply(&mut self, key: &SessionKey, path: &str) {
        if let Some(slot) = self.table.owner(key) {
            self.replies.insert(path, key.clone(), slot);
        }
    }
}

/// A restored pin's `last_seen` (by [`restored_last_seen`]) and what the journal is
/// taken to hold for it. A clock from a journal without activity was raised to now:
/// that raised value is what a rewrite of the journal must keep, or a later load would
/// trust a stale clock and expire an active session early.
fn restored_clocks(
    stored: UnixSecs,
    now: UnixSecs,
    journal_every: u32,
    activity_journaled: bool,
) -> (UnixSecs, UnixSecs) {
    let last_seen = restored_last_seen(stored, now, journal_every, activity_journaled);
    let journaled_seen = if activity_journaled {
        stored
    } else {
        last_seen
    };
    (last_seen, journaled_seen)
}

/// A session id that may belong to a session the other process of an upgrade is
/// creating: neither known nor ruled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsettled;

/// One configuration generation and everything derived from it.
pub struct Generation {
    /// The validated config.
    pub config: Config,
    /// Backends that left the config but still own sessions (served, never chosen).
    pub retired: Vec<BackendConfig>,
    /// The backends of this generation, configured ones first, then retired ones.
    pub farm: Farm,
    /// Packet validation options derived from the config.
    pub classify: ClassifyOptions,
    /// Per-request metric series of each farm backend, by farm index.
    pub series: Vec<BackendSeries>,
}

/// Everything the services of one bitsgate instance share.
pub struct Shared {
    current: ArcSwap<Generation>,
    /// Session id → owner.
    pub table: SessionTable,
    /// Pins per client address, while `[sessions] max_pinned_per_client` is on.
    pub clients: crate::session::clients::ClientPins,
    /// Backend ids → slots and live status.
    pub slots: SlotRegistry,
    /// The Host and URL of each session.
    pub urls: UrlRegistry,
    /// Upload-reply paths and the backend that serves each.
    pub replies: ReplyRoutes,
    /// Cancel-Session packets bitsgate sends on its own, in the background.
    pub cancels: Cancels,
    /// This instance's metrics.
    pub metrics: Metrics,
    /// The durable pin journal (none in memory and redis mode).
    pub store: Option<PinStore>,
    /// The pin store shared by replicas (`[storage] mode = "redis"`), set once at start.
    pub redis: std::sync::OnceLock<crate::session::shared_store::RedisPins>,
    /// The file the config came from, for reloads (none for in-memory configs).
    pub config_path: Option<PathBuf>,
    /// Serialises reloads and retired-backend pruning (never taken on the request path).
    pub(crate) swap_lock: Mutex<()>,
    /// Cleared while the previous process of an upgrade may still append to the
    /// journal: a compaction would rename the file from under it.
    pub(crate) compaction_allowed: std::sync::atomic::AtomicBool,
    create_tick: AtomicU64,
    other_tick: AtomicU64,
    /// Consecutive probe and traffic outcomes per backend slot.
    pub health: HealthTable,
    /// One line per finished request, when `[log] access` is on.
    pub access_log: crate::access_log::AccessLog,
    /// Recent samples of the counters, for the status page's rates and history.
    pub status_history: crate::admin::StatusHistory,
}

impl Shared {
    /// Builds the first generation from a validated config.
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        store: Option<PinStore>,
    ) -> anyhow::Result<Arc<Shared>> {
        let restored = Restored::new(&config);
        Self::from_restored(config, config_path, store, restored)
    }

    /// Builds the first generation over the pins a start replayed into `restored`
    /// (see [`PinStore::open_into`]).
    pub fn from_restored(
        config: Config,
        config_path: Option<PathBuf>,
        store: Option<PinStore>,
        restored: Restored,
    ) -> anyhow::Result<Arc<Shared>> {
        let Restored {
            table,
            slots,
            urls,
            replies,
            ..
        } = restored;
        // Owners of restored pins that left the config are retired (or not) by
        // `settle_unconfigured_owners` once the pins are back.
        let generation = Generation::build(config, Vec::new(), &slots)?;
        table.set_max_pinned(generation.config.sessions.max_pinned);
        let metrics = Metrics::new();
        let access_log = crate::access_log::AccessLog::new(
            &generation.config.log,
            metrics.access_log_dropped.clone(),
        );
        let clients = crate::session::clients::ClientPins::default();
        clients.set_limit(generation.config.sessions.max_pinned_per_client);
        let shared = Shared {
            table,
            clients,
            current: ArcSwap::from_pointee(generation),
            slots,
            urls,
            replies,
            cancels: Cancels::new(metrics.cancels_sent.clone()),
            metrics,
            store,
            redis: std::sync::OnceLock::new(),
            config_path,
            swap_lock: Mutex::new(()),
            compaction_allowed: std::sync::atomic::AtomicBool::new(true),
            create_tick: AtomicU64::new(0),
            other_tick: AtomicU64::new(0),
            health: HealthTable::default(),
            access_log,
            status_history: crate::admin::StatusHistory::default(),
        };
        for backend in &shared.generation().farm.backends {
            shared.metrics.add_backend(&backend.id);
        }
        for (slot, id) in shared.slot_ids() {
            let count = shared.table.sessions_of(slot);
            if count > 0 {
                shared.metrics.sessions_restored(&id, count);
            }
        }
        shared.publish_backend_metrics();
        shared.publish_reply_routes();
        Ok(Arc::new(shared))
    }

    /// Every backend id this process has seen, with its slot.
    fn slot_ids(&self) -> impl Iterator<Item = (BackendSlot, Arc<str>)> + '_ {
        (0..BackendSlot::MAX_SLOTS as u16)
            .map(BackendSlot)
            .map_while(|slot| self.slots.name(slot).map(|id| (slot, id)))
    }

    /// The generation in force.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Swaps in exactly this config: backends not in it are gone, and packets of their
    /// sessions are answered as removed. `reload` is the policy-aware way in.
    pub fn apply(&self, config: Config) -> anyhow::Result<()> {
        let _guard = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.install(config, Vec::new())
    }

    /// Swaps in a config plus the retired backends to keep serving. The session table
    /// is kept as it is.
    pub(crate) fn install(
        &self,
        config: Config,
        retired: Vec<BackendConfig>,
    ) -> anyhow::Result<()> {
        let generation = Generation::build(config, retired, &self.slots)?;
        let before: HashSet<Arc<str>> = self
            .generation()
            .farm
            .backends
            .iter()
            .map(|b| b.id.clone())
            .collect();
        self.table
            .set_max_pinned(generation.config.sessions.max_pinned);
        self.clients
            .set_limit(generation.config.sessions.max_pinned_per_client);
        let gone: Vec<Arc<str>> = before
            .iter()
            .filter(|&id| generation.farm.index_of_id(id).is_none())
            .cloned()
            .collect();
        let added: Vec<Arc<str>> = generation
            .farm
            .backends
            .iter()
            .filter(|b| !before.contains(&b.id))
            .map(|b| b.id.clone())
            .collect();
        let farm_changed = !self
            .generation()
            .known_backends()
            .eq(generation.known_backends());
        self.access_log.apply(&generation.config.log);
        self.current.store(Arc::new(generation));
        if farm_changed {
            self.save_known_backends();
        }
        // After the swap, so no publisher still holding the old farm brings them back.
        for id in gone {
            self.metrics.forget_backend(&id);
        }
        for id in added {
            self.metrics.add_backend(&id);
        }
        self.publish_backend_metrics();
        Ok(())
    }

    /// Writes every backend of the farm, with its address, beside the journal, so a
    /// restart can still reach one that leaves the config file meanwhile.
    pub fn save_known_backends(&self) {
        if self.store.is_none() {
            return;
        }
        let generation = self.generation();
        let backends: Vec<BackendConfig> = generation.known_backends().cloned().collect();
        let dir = &generation.config.storage.data_dir;
        if let Err(e) = crate::session::retired::save(dir, &backends) {
            tracing::error!(target: "bitsgate::store", error = %e, file = %dir.join(crate::session::retired::FILE).display(), "could not save the known backends; a restart would end the sessions of a backend removed from the config");
        }
    }

    /// Applies `[reload] removed_backends` to restored pins whose owner is not in the
    /// config (removed from the file while bitsgate was stopped, or retired by a reload
    /// before a restart), as a reload would: `drain` retires the owner, reached at the
    /// address remembered in the known-backends file, and keeps serving its sessions;
    /// `end` ends them at once. Logs what it did for each such owner.
    pub fn settle_unconfigured_owners(&self) {
        if self.store.is_none() {
            return;
        }
        let _guard = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation();
        let orphans: Vec<(BackendSlot, Arc<str>, u64)> = self
            .slot_ids()
            .filter(|(slot, _)| generation.farm.index_of(*slot).is_none())
            .map(|(slot, id)| (slot, id, self.table.sessions_of(slot)))
            .filter(|(_, _, sessions)| *sessions > 0)
            .collect();
        if orphans.is_empty() {
            return;
        }
        let policy = generation.config.reload.removed_backends;
        let known = match crate::session::retired::load(&generation.config.storage.data_dir) {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(target: "bitsgate::store", error = %e, "the known-backends file is unusable: the sessions of backends no longer in the config cannot be reached and end");
                Vec::new()
            }
        };
        let mut retired = generation.retired.clone();
        for (slot, id, sessions) in orphans {
            let remembered = known.iter().find(|b| *b.id == *id);
            match (policy, remembered) {
                (RemovedBackends::Drain, Some(backend)) => {
                    tracing::warn!(target: "bitsgate::store", backend = %id, address = %backend.address, sessions, "backend no longer in the config still owns sessions: retired (reload.removed_backends = \"drain\"): its sessions are served until they end, it gets no new ones");
                    retired.push(backend.clone());
                }
                (RemovedBackends::Drain, None) => {
                    tracing::error!(target: "bitsgate::store", backend = %id, sessions, "backend no longer in the config owns sessions but its address is not known: its sessions end, their clients restart their uploads");
                    self.end_sessions_of(slot, &id);
                }
                (RemovedBackends::End, _) => {
                    tracing::warn!(target: "bitsgate::store", backend = %id, sessions, "backend no longer in the config: its sessions end (reload.removed_backends = \"end\"), their clients restart their uploads");
                    self.end_sessions_of(slot, &id);
                }
            }
        }
        if let Err(e) = self.install(generation.config.clone(), retired) {
            tracing::error!(target: "bitsgate::store", error = %e, "could not retire the backends no longer in the config");
        }
    }

    /// Ends every session of a backend that left the config: table, journal, metrics.
    pub(crate) fn end_sessions_of(&self, slot: BackendSlot, id: &str) -> u64 {
        let mut ended = 0;
        for (key, _) in self.table.take_backend(slot) {
            self.journal_unpin(&key, slot);
            self.metrics
                .session_ended(id, crate::metrics::EndReason::BackendRemoved);
            ended += 1;
        }
        ended
    }

    /// Drops retired backends whose last session ended; returns their ids.
    pub fn prune_retired(&self) -> Vec<String> {
        let _guard = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation();
        let (keep, done): (Vec<BackendConfig>, Vec<BackendConfig>) =
            generation.retired.iter().cloned().partition(|backend| {
                generation
                    .farm
                    .index_of_id(&backend.id)
                    .is_some_and(|i| self.owns_sessions(&generation.farm.backends[i]))
            });
        if done.is_empty() {
            return Vec::new();
        }
        if let Err(e) = self.install(generation.config.clone(), keep) {
            tracing::error!(target: "bitsgate::reload", error = %e, "could not prune retired backends");
            return Vec::new();
        }
        if let Some(store) = self.redis.get() {
            for backend in &done {
                store.forget_retired(&backend.id);
            }
        }
        let ids: Vec<String> = done.into_iter().map(|b| b.id).collect();
        tracing::info!(target: "bitsgate::reload", backends = ?ids, "retired backends drained and removed");
        ids
    }

    /// The id of a backend slot, for metrics and logs.
    pub fn backend_name(&self, slot: crate::backend::BackendSlot) -> Arc<str> {
        self.slots.name(slot).unwrap_or_else(|| "unknown".into())
    }

    /// Ends a session's pin: table, journal and metrics.
    pub fn end_session(&self, key: &SessionKey, reason: crate::metrics::EndReason) -> Option<Pin> {
        let pin = self.unpin(key)?;
        self.metrics
            .session_ended(&self.backend_name(pin.backend), reason);
        Some(pin)
    }

    /// Drops a session from this process's table and its side tables (client,
    /// reply route) and counts its end, without telling any store: for a session the
    /// shared store has ended, or is ending, by other means. The caller publishes the
    /// reply routes when it has dropped sessions.
    pub fn forget_cached(
        &self,
        key: &SessionKey,
        reason: crate::metrics::EndReason,
    ) -> Option<Pin> {
        let pin = self.table.unpin(key)?;
        self.clients.remove(key);
        self.replies.remove_session(key);
        self.metrics
            .session_ended(&self.backend_name(pin.backend), reason);
        Some(pin)
    }

    /// Ends a session's pin only while `backend` owns it (see
    /// [`SessionTable::unpin_owned_by`]).
    pub fn end_session_owned_by(
        &self,
        key: &SessionKey,
        backend: crate::backend::BackendSlot,
        reason: crate::metrics::EndReason,
    ) -> Option<Pin> {
        let pin = self.table.unpin_owned_by(key, backend)?;
        self.journal_unpin(key, pin.backend);
        self.metrics
            .session_ended(&self.backend_name(pin.backend), reason);
        Some(pin)
    }

    /// Forgets a pin in the table and in the durable store.
    pub fn unpin(&self, key: &SessionKey) -> Option<Pin> {
        let pin = self.table.unpin(key)?;
        self.journal_unpin(key, pin.backend);
        Some(pin)
    }

    /// Journals the removal of a pin of `backend` the table already dropped, and drops
    /// the session's reply route (the unpin ends it in the journal too). An unpin is
    /// not waited for: losing one only leaves a stale pin that expires after a restart.
    pub fn journal_unpin(&self, key: &SessionKey, backend: BackendSlot) {
        if let Some(store) = &self.store {
            drop(store.unpin(key));
        }
        if let Some(redis) = self.redis.get() {
            redis.unpin(key, &self.backend_name(backend));
        }
        self.clients.remove(key);
        if self.replies.remove_session(key) {
            self.publish_reply_routes();
        }
    }

    /// Routes the upload reply of `key`, owned by `backend`, at `path` (path and
    /// query). Returns the journal write to wait for, if the journal takes it.
    /// `Err(owner)` when the path is the reply of another backend's live session: one
    /// backend cannot take over the downloads of another's reply.
    pub fn add_reply_route(
        &self,
        key: &SessionKey,
        backend: BackendSlot,
        path: &str,
    ) -> Result<Option<crate::session::store::PendingWrite>, BackendSlot> {
        if let Some(held) = self.replies.get(path) {
            let alive = self.table.owner(&held.session) == Some(held.backend);
            if alive && held.backend != backend {
                return Err(held.backend);
            }
        }
        self.replies.insert(path, key.clone(), backend);
        self.publish_reply_routes();
        if let Some(redis) = self.redis.get() {
            let owner = self.backend_name(backend);
            return Ok(Some(redis.route_reply(key, &owner, path)));
        }
        Ok(self.store.as_ref().and_then(|store| store.reply(key, path)))
    }

    /// The backend that serves the reply at `path_and_query`, while its session lives.
    /// A route whose session ended (by any path) is dropped here.
    pub fn reply_owner(&self, path_and_query: &str) -> Option<BackendSlot> {
        let route = self.replies.get(path_and_query)?;
        if self.table.owner(&route.session) == Some(route.backend) {
            return Some(route.backend);
        }
        if self.replies.remove_session(&route.session) {
            self.publish_reply_routes();
        }
        None
    }

    /// Drops the reply routes whose session no longer lives; returns how many.
    pub fn prune_reply_routes(&self) -> usize {
        let dropped = self
            .replies
            .retain(|route| self.table.owner(&route.session) == Some(route.backend));
        self.publish_reply_routes();
        dropped
    }

    pub(crate) fn publish_reply_routes(&self) {
        self.metrics
            .reply_routes
            .set(i64::try_from(self.replies.len()).unwrap_or(i64::MAX));
    }

    /// Puts the pins of the durable store back into the table; returns how many. Each
    /// restarts its idle clock by [`restored_last_seen`] (`activity_journaled`: the
    /// journal re-appends active pins). Millions of pins share a handful of owners:
    /// each backend id is resolved to its slot once, and the gauges are raised once per
    /// backend.
    pub fn restore(
        &self,
        pins: Vec<(SessionKey, PinOwner, StoredPin)>,
        now: UnixSecs,
        activity_journaled: bool,
    ) -> usize {
        let journal_every = self
            .generation()
            .config
            .sessions
            .activity_journal_interval();
        let mut resolved = ResolvedBackends::default();
        let mut per_backend: HashMap<Arc<str>, u64> = HashMap::new();
        for (key, owner, stored) in pins {
            let Some(slot) = resolved.slot(&self.slots, &owner.backend) else {
                continue;
            };
            let url = self.urls.intern(owner.host.as_deref(), &owner.path);
            let (last_seen, journaled_seen) =
                restored_clocks(stored.last_seen, now, journal_every, activity_journaled);
            self.table
                .restore(key, stored.into_pin(slot, url, last_seen, journaled_seen));
            *per_backend.entry(owner.backend).or_default() += 1;
        }
        let mut restored = 0;
        for (backend, count) in per_backend {
            self.metrics.sessions_restored(&backend, count);
            restored += count as usize;
        }
        restored
    }

    /// What the journal needs to know of a pin's owner and URL.
    pub fn pin_owner(&self, pin: &Pin) -> PinOwner {
        let url = self.urls.get(pin.url);
        PinOwner {
            backend: self.backend_name(pin.backend),
            host: url.host,
            path: url.path.into(),
        }
    }

    /// Adds the journal's pins this process does not hold: after a graceful upgrade,
    /// those the old process created while it finished its last requests. Returns how
    /// many were added.
    pub async fn catch_up_store(&self) -> usize {
        let Some(store) = &self.store else {
            return 0;
        };
        match store.read_live().await {
            Ok((pins, replies)) => {
                let missing: Vec<_> = pins
                    .into_iter()
                    .filter(|(key, _, _)| self.table.get(key).is_none())
                    .collect();
                // Written by a process that may predate activity journaling: no clock
                // is trusted to be recent.
                let added = self.restore(missing, crate::session::unix_now(), false);
                self.settle_unconfigured_owners();
                // Replies the old process routed while it finished its last requests.
                for (key, path) in replies {
                    if let (None, Some(owner)) =
                        (self.replies.path_of(&key), self.table.owner(&key))
                    {
                        self.replies.insert(&path, key, owner);
                    }
                }
                self.publish_reply_routes();
                added
            }
            Err(e) => {
                tracing::error!(target: "bitsgate::store", error = %e, "re-reading the pin journal after the upgrade failed");
                0
            }
        }
    }

    /// The owner of a session packet's id. A lookup only: the packet is not activity
    /// (that is recorded when the owner answers it, see `proxy::learn`). While another
    /// process shares the journal (either side of a graceful upgrade), a miss first
    /// reads what that process journaled since: it may have created the session a
    /// moment ago. `Err(Unsettled)` when that read could not rule the session out (it
    /// stopped at a record being written, or failed): the packet must be answered
    /// "retry later", never "session not found".
    pub fn session_owner(&self, key: &SessionKey) -> Result<Option<BackendSlot>, Unsettled> {
        if let Some(slot) = self.table.owner(key) {
            return Ok(Some(slot));
        }
        let Some(store) = &self.store else {
            return Ok(None);
        };
        if store.holds_dir_lock() {
            return Ok(None);
        }
        match store.read_tail() {
            Ok(tail) => {
                let missing: Vec<_> = tail
                    .pins
                    .into_iter()
                    .filter(|(key, _, _)| self.table.get(key).is_none())
                    .collect();
                if !missing.is_empty() {
                    // Just created, by a process that may predate activity journaling:
                    // their clocks start now, as after the upgrade's catch-up.
                    let added = self.restore(missing, crate::session::unix_now(), false);
                    self.settle_unconfigured_owners();
                    tracing::debug!(target: "bitsgate::store", added, "took over pins the other process of the upgrade journaled");
                }
                match self.table.owner(key) {
                    Some(slot) => Ok(Some(slot)),
                    None if tail.complete => Ok(None),
                    None => Err(Unsettled),
                }
            }
            Err(e) => {
                tracing::warn!(target: "bitsgate::store", error = %e, "cannot read the pin journal shared during the upgrade");
                Err(Unsettled)
            }
        }
    }

    /// Whether this process holds the data dir (always true without a durable store).
    pub fn holds_dir_lock(&self) -> bool {
        self.store.as_ref().is_none_or(PinStore::holds_dir_lock)
    }

    /// Rewrites the journal to the live pins when it has grown well past them.
    pub async fn compact_store_if_worthwhile(&self) {
        let Some(store) = &self.store else {
            return;
        };
        if !self.compaction_allowed.load(Ordering::Relaxed)
            || !store.holds_dir_lock()
            || !store.should_compact(self.table.len())
        {
            return;
        }
        self.compact_store().await;
    }

    /// Rewrites the journal to the pins in the table, whatever its size. Callers make
    /// sure this process is the journal's only writer.
    pub async fn compact_store(&self) {
        let Some(store) = &self.store else {
            return;
        };
        // Encoded straight into the new file while each table shard is read: backend
        // names are looked up once per backend, no list of the pins is made, and each
        // pin's Host and URL path are borrowed from the URL registry, so nothing is
        // allocated per pin (but the copy of a non-GUID session id). `StoredPin::from`
        // writes the activity last journaled, never a restored clock.
        let snapshot = |out: &mut SnapshotWriter| {
            let mut backends: Vec<Option<Arc<str>>> = Vec::new();
            self.table.for_each(|key, pin| {
                let b = pin.backend.index();
                if backends.len() <= b {
                    backends.resize(b + 1, None);
                }
                let backend = backends[b].get_or_insert_with(|| self.backend_name(pin.backend));
                self.urls.with(pin.url, |host, path| {
                    out.pin(
                        key,
                        backend,
                        host.unwrap_or(""),
                        path,
                        &StoredPin::from(pin),
                    );
                });
            });
            // After every pin, so replay finds the pin each reply belongs to.
            self.replies.for_each(|key, path| {
                if self.table.owner(key).is_some() {
                    out.reply(key, path);
                }
            });
        };
        match store.compact_streaming(snapshot).await {
            Ok(()) => {
                tracing::info!(target: "bitsgate::store", pins = self.table.len(), "pin journal compacted")
            }
            Err(e) => {
                tracing::error!(target: "bitsgate::store", error = %e, "pin journal compaction failed")
            }
        }
    }

    /// The round-robin counter of a request kind. Create-Session has its own, so the
    /// Pings and other requests of an upload never shift which backend gets the next
    /// session (with a shared counter, uploads of the same shape all land on one node).
    pub fn next_tick(&self, create_session: bool) -> u64 {
        let counter = if create_session {
            &self.create_tick
        } else {
            &self.other_tick
        };
        counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a backend is draining and owns no session any more.
    pub fn is_drained(&self, backend: &crate::backend::Backend) -> bool {
        backend.status.is_draining() && !self.owns_sessions(backend)
    }

    /// Whether a backend may still own a session: one in this process's table, or,
    /// with the Redis store, one in the store (or the store's count is not known).
    pub fn owns_sessions(&self, backend: &crate::backend::Backend) -> bool {
        self.table.sessions_of(backend.slot) > 0
            || self
                .redis
                .get()
                .is_some_and(|store| store.sessions_of(&backend.id) != Some(0))
    }

    /// Sets the per-backend gauges from the live status, and the journal's state.
    pub fn publish_backend_metrics(&self) {
        let max_pinned = self.current.load().config.sessions.max_pinned;
        self.metrics
            .max_pinned
            .set(i64::try_from(max_pinned).unwrap_or(i64::MAX));
        if let Some(store) = &self.store {
            self.metrics
                .store_failed
                .set(i64::from(store.stats().failed));
        }
        let generation = self.current.load();
        for backend in &generation.farm.backends {
            let labels = [&*backend.id];
            let m = &self.metrics;
            m.backend_up
                .with_label_values(&labels)
                .set(i64::from(backend.status.is_up()));
            m.backend_draining
                .with_label_values(&labels)
                .set(i64::from(backend.status.is_draining()));
            m.backend_drained
                .with_label_values(&labels)
                .set(i64::from(self.is_drained(backend)));
            m.backend_retired
                .with_label_values(&labels)
                .set(i64::from(backend.is_retired()));
        }
    }
}

impl Generation {
    /// Every backend of the farm as configured: the config's, then the retired ones.
    pub fn known_backends(&self) -> impl Iterator<Item = &BackendConfig> {
        self.config.backends.iter().chain(self.retired.iter())
    }

    /// Derives a generation from a config and the retired backends to keep.
    pub fn build(
        config: Config,
        retired: Vec<BackendConfig>,
        slots: &SlotRegistry,
    ) -> anyhow::Result<Generation> {
        let farm =
            Farm::build_with_retired(&config.backends, &retired, config.host_id.mode, slots)?;
        let classify = ClassifyOptions {
            allow_method_override: config.listener.allow_method_override,
            max_header_value: config.limits.max_header_bytes,
        };
        let series = farm
            .backends
            .iter()
            .map(|backend| BackendSeries::new(backend.id.clone()))
            .collect();
        Ok(Generation {
            config,
            retired,
            farm,
            classify,
            series,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::store::StorageSync;
    use crate::session::UnixSecs;

    /// An in-memory instance with backends b1 and b2.
    pub(crate) fn shared() -> Arc<Shared> {
        let config = crate::config::load_str(
            "[storage]\nmode = \"memory\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n[[backends]]\nid = \"b2\"\naddress = \"127.0.0.1:2\"\n",
        )
        .expect("valid config");
        Shared::new(config, None, None).expect("shared state")
    }

    fn key(n: u128) -> SessionKey {
        SessionKey::new(&format!("{{{:08x}-0000-4000-8000-{:012x}}}", n as u32, n))
    }

    fn owner(backend: &str, path: &str) -> PinOwner {
        PinOwner {
            backend: Arc::from(backend),
            host: Some(Arc::from("bits.example")),
            path: Arc::from(path),
        }
    }

    fn durable(dir: &std::path::Path, upgrade: bool) -> Arc<Shared> {
        let config = crate::config::load_str(&format!(
            "[storage]\ndata_dir = {:?}\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
            dir.display().to_string()
        ))
        .expect("valid config");
        let sync = config.storage.sync;
        let (store, loaded) = if upgrade {
            PinStore::open_shared(dir, sync)
        } else {
            PinStore::open(dir, sync)
        }
        .expect("store opens");
        let shared = Shared::new(config, None, Some(store)).expect("shared state");
        shared.restore(loaded.pins, loaded.loaded_at, loaded.activity_journaled);
        shared.settle_unconfigured_owners();
        shared.save_known_backends();
        shared
    }

    /// Pins `key` as a Create-Session Ack would: table, then journal.
    async fn pin(shared: &Shared, key: SessionKey) {
        let (slot, _) = shared.slots.slot("b1").expect("slot");
        let url = shared.urls.intern(None, "/u/a.bin");
        shared
            .table
            .pin(key.clone(), slot, url, 1_000)
            .expect("pinned");
        let store = shared.store.as_ref().expect("durable");
        store
            .pin(&key, "b1", None, "/u/a.bin", 1_000)
            .await
            .expect("journaled");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn after_an_upgrade_a_rewrite_from_the_table_keeps_pins_an_old_compaction_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let old = durable(dir.path(), false);
        pin(&old, key(1)).await;
        let new = durable(dir.path(), true);
        assert!(new.table.get(&key(1)).is_some(), "loaded at the handover");
        pin(&new, key(2)).await;
        // The old process compacts during the handover: its snapshot lacks key 2 and
        // replaces the file the new process appended key 2 to.
        old.compact_store().await;
        drop(old);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !new.holds_dir_lock() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock never passed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        new.compact_store().await;
        drop(new);

        let (_, loaded) = PinStore::open(dir.path(), StorageSync::Write).expect("reopen");
        let keys: HashSet<String> = loaded.pins.iter().map(|(k, _, _)| k.to_string()).collect();
        assert!(keys.contains(&key(1).to_string()));
        assert!(
            keys.contains(&key(2).to_string()),
            "the new process's pin survived"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn after_an_upgrade_the_catch_up_takes_over_the_reply_routes_the_old_process_learnt() {
        let dir = tempfile::tempdir().unwrap();
        let old = durable(dir.path(), false);
        let new = durable(dir.path(), true);
        // Learnt by the old process after the new one read the journal.
        pin(&old, key(7)).await;
        let (slot, _) = old.slots.slot("b1").unwrap();
        let write = old.add_reply_route(&key(7), slot, "/_bits/replies/7");
        write.unwrap().expect("journaled").await.unwrap();
        assert_eq!(new.reply_owner("/_bits/replies/7"), None);
        drop(old);
        assert_eq!(new.catch_up_store().await, 1);
        let owner = new.slots.slot("b1").unwrap().0;
        assert_eq!(new.reply_owner("/_bits/replies/7"), Some(owner));
        assert_eq!(new.metrics.reply_routes.get(), 1);
    }

    /// Opens `dir` as a start at `now` would, with a 16 h idle timeout (so activity is
    /// journaled at most hourly).
    fn durable_at(dir: &std::path::Path, now: UnixSecs) -> Arc<Shared> {
        let config = crate::config::load_str(&format!(
            "[storage]\ndata_dir = {:?}\n[sessions]\nidle_timeout = \"16h\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
            dir.display().to_string()
        ))
        .expect("valid config");
        // As a start does it: straight into the table, which applies the load rule.
        let mut restored = Restored::at(&config, now);
        let (store, loaded) = PinStore::open_into(dir, config.storage.sync, false, &mut restored)
            .expect("store opens");
        assert!(loaded.pins.is_empty());
        Shared::from_restored(config, None, Some(store), restored).expect("shared state")
    }

    /// [`durable_at`] through `open` and [`Shared::restore`] (the catch-up's path).
    fn durable_collected_at(dir: &std::path::Path, now: UnixSecs) -> Arc<Shared> {
        let config = crate::config::load_str(&format!(
            "[storage]\ndata_dir = {:?}\n[sessions]\nidle_timeout = \"16h\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
            dir.display().to_string()
        ))
        .expect("valid config");
        let (store, loaded) = PinStore::open(dir, config.storage.sync).expect("store opens");
        let shared = Shared::new(config, None, Some(store)).expect("shared state");
        shared.restore(loaded.pins, now, loaded.activity_journaled);
        shared
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn restarts_keep_an_abandoned_pins_clock_so_it_expires_and_an_active_one_alive() {
        const HOUR: UnixSecs = 3600;
        let dir = tempfile::tempdir().unwrap();
        let (abandoned, active) = (key(1), key(2));
        let start: UnixSecs = 1_000_000;
        let first = durable_at(dir.path(), start);
        let (slot, _) = first.slots.slot("b1").unwrap();
        for key in [&abandoned, &active] {
            let url = first.urls.intern(Some("bits.example"), "/u/a.bin");
            first.table.pin(key.clone(), slot, url, start).unwrap();
            let store = first.store.as_ref().unwrap();
            store
                .pin(key, "b1", Some("bits.example"), "/u/a.bin", start)
                .await
                .unwrap();
        }
        // The active upload's owner answers a packet every hour for a day; each answer
        // that is due is journaled, as the proxy does it.
        let every = first
            .generation()
            .config
            .sessions
            .activity_journal_interval();
        assert_eq!(every, HOUR);
        for hour in 1..=24 {
            let now = start + hour * HOUR;
            if let Some(pin) = first.table.touch(&active, slot, now, every) {
                let owner = first.pin_owner(&pin);
                let store = first.store.as_ref().unwrap();
                store
                    .touch(
                        &active,
                        &owner.backend,
                        owner.host.as_deref(),
                        &owner.path,
                        &StoredPin::from(&pin),
                    )
                    .await
                    .unwrap();
            }
        }
        first.store.as_ref().unwrap().flush().await.unwrap();
        drop(first);

        // Restarts every 5 hours, more often than the 16 h idle timeout: the abandoned
        // pin must still expire, the active one (last answered 10 h ago) must not.
        let mut now = start + 24 * HOUR;
        for _ in 0..2 {
            now += 5 * HOUR;
            let shared = durable_at(dir.path(), now);
            let pin = shared.table.get(&abandoned).expect("restored");
            assert!(
                pin.last_seen <= start + HOUR,
                "{} kept its old clock",
                pin.last_seen
            );
            drop(shared);
        }
        let shared = durable_at(dir.path(), now);
        let idle =
            u32::try_from(shared.generation().config.sessions.idle_timeout.as_secs()).unwrap();
        let expired: Vec<SessionKey> = shared
            .table
            .take_idle(now, idle)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(expired, [abandoned]);
        let pin = shared.table.get(&active).expect("still pinned");
        assert_eq!(
            pin.last_seen,
            start + 25 * HOUR,
            "journaled at +24 h, trusted to within 1 h"
        );
    }

    /// Restarts three times, 5 h apart, compacting each time: the clock of a pin that
    /// saw no packet stays what was journaled for it, whatever the restart path.
    async fn compactions_between_restarts_keep_the_journaled_clock(
        open: fn(&std::path::Path, UnixSecs) -> Arc<Shared>,
    ) {
        const HOUR: UnixSecs = 3600;
        let dir = tempfile::tempdir().unwrap();
        let start: UnixSecs = 1_000_000;
        let first = open(dir.path(), start);
        first
            .store
            .as_ref()
            .unwrap()
            .pin(&key(1), "b1", None, "/u/a.bin", start)
            .await
            .unwrap();
        drop(first);
        let mut now = start;
        for _ in 0..3 {
            now += 5 * HOUR;
            let shared = open(dir.path(), now);
            let pin = shared.table.get(&key(1)).expect("restored");
            assert_eq!(
                pin.last_seen,
                start + HOUR,
                "trusted to within one interval"
            );
            shared.compact_store().await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_compaction_between_restarts_does_not_move_an_abandoned_pins_clock_forward() {
        compactions_between_restarts_keep_the_journaled_clock(durable_at).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_compaction_between_restarts_through_restore_does_not_move_a_clock_forward() {
        compactions_between_restarts_keep_the_journaled_clock(durable_collected_at).await;
    }

    /// A durable instance over `dir` with backends b1 and, when `with_b2`, b2.
    fn restarted(dir: &std::path::Path, with_b2: bool, removed_backends: &str) -> Arc<Shared> {
        let mut text = format!(
            "[storage]\ndata_dir = {:?}\n[reload]\nremoved_backends = {removed_backends:?}\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
            dir.display().to_string()
        );
        if with_b2 {
            text.push_str("[[backends]]\nid = \"b2\"\naddress = \"127.0.0.2:2\"\n");
        }
        let config = crate::config::load_str(&text).expect("valid config");
        // As a start does it: straight into the table.
        let mut restored = Restored::new(&config);
        let (store, _) = PinStore::open_into(dir, config.storage.sync, false, &mut restored)
            .expect("store opens");
        let shared =
            Shared::from_restored(config, None, Some(store), restored).expect("shared state");
        shared.settle_unconfigured_owners();
        shared.save_known_backends();
        shared
    }

    async fn pin_to(shared: &Shared, key: SessionKey, backend: &str) {
        let (slot, _) = shared.slots.slot(backend).expect("slot");
        let url = shared.urls.intern(Some("bits.example"), "/u/a.bin");
        shared
            .table
            .pin(key.clone(), slot, url, 1_000)
            .expect("pinned");
        let store = shared.store.as_ref().expect("durable");
        store
            .pin(&key, backend, Some("bits.example"), "/u/a.bin", 1_000)
            .await
            .expect("journaled");
    }

    async fn with_a_session_on_b2(dir: &std::path::Path) {
        let first = restarted(dir, true, "drain");
        pin_to(&first, key(1), "b1").await;
        pin_to(&first, key(2), "b2").await;
        first.store.as_ref().unwrap().flush().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_restart_without_a_backend_retires_it_and_keeps_its_sessions_by_default() {
        let dir = tempfile::tempdir().unwrap();
        with_a_session_on_b2(dir.path()).await;

        let second = restarted(dir.path(), false, "drain");
        let generation = second.generation();
        let b2 = generation
            .farm
            .index_of_id("b2")
            .expect("b2 is retired, not gone");
        assert_eq!(
            generation.farm.backends[b2].address.to_string(),
            "127.0.0.2:2"
        );
        assert_eq!(generation.retired.len(), 1);
        assert!(
            second.table.get(&key(2)).is_some(),
            "the session of b2 is kept"
        );
        drop(second);

        // Still known at the next restart, and still served.
        let third = restarted(dir.path(), false, "drain");
        assert!(third.generation().farm.index_of_id("b2").is_some());
        assert!(third.table.get(&key(2)).is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_restart_without_a_backend_ends_its_sessions_when_configured_to() {
        let dir = tempfile::tempdir().unwrap();
        with_a_session_on_b2(dir.path()).await;

        let second = restarted(dir.path(), false, "end");
        assert!(second.generation().farm.index_of_id("b2").is_none());
        assert!(second.table.get(&key(2)).is_none());
        assert!(second.table.get(&key(1)).is_some());
        second.store.as_ref().unwrap().flush().await.unwrap();
        drop(second);
        let (_, loaded) = PinStore::open(dir.path(), StorageSync::Write).expect("reopen");
        assert_eq!(loaded.pins.len(), 1, "the end is journaled");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_damaged_known_backends_file_does_not_stop_a_start() {
        let dir = tempfile::tempdir().unwrap();
        with_a_session_on_b2(dir.path()).await;
        std::fs::write(
            dir.path().join(crate::session::retired::FILE),
            b"{ not json",
        )
        .unwrap();

        let second = restarted(dir.path(), false, "drain");
        assert!(second.table.get(&key(1)).is_some());
        assert!(
            second.table.get(&key(2)).is_none(),
            "an unreachable owner's sessions end"
        );
        // The start rewrote the file from the config.
        let known = crate::session::retired::load(dir.path()).expect("readable again");
        assert_eq!(known.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reply_routes_survive_restarts_and_compactions_and_end_with_their_session() {
        let dir = tempfile::tempdir().unwrap();
        let first = restarted(dir.path(), true, "drain");
        for n in 0..3u128 {
            pin_to(&first, key(n), "b2").await;
            let (slot, _) = first.slots.slot("b2").unwrap();
            let write = first.add_reply_route(&key(n), slot, &format!("/r/{n}?x"));
            write.unwrap().expect("journaled").await.unwrap();
        }
        // Another backend cannot take over the path of a live reply; its own
        // session's reply replaces an ended one.
        let (b1, _) = first.slots.slot("b1").unwrap();
        pin_to(&first, key(9), "b1").await;
        assert_eq!(
            first.add_reply_route(&key(9), b1, "/r/1?x").err(),
            Some(first.slots.slot("b2").unwrap().0)
        );
        assert_eq!(
            first.reply_owner("/r/1?x"),
            first.slots.slot("b2").ok().map(|s| s.0)
        );
        first.end_session(&key(9), crate::metrics::EndReason::Closed);
        // Closed before the restart: its route goes with it.
        first.end_session(&key(0), crate::metrics::EndReason::Closed);
        assert_eq!(first.reply_owner("/r/0?x"), None);
        first.store.as_ref().unwrap().flush().await.unwrap();
        drop(first);

        let second = restarted(dir.path(), true, "drain");
        let b2 = second.slots.slot("b2").unwrap().0;
        assert_eq!(second.reply_owner("/r/1?x"), Some(b2));
        assert_eq!(second.reply_owner("/r/2?x"), Some(b2));
        assert_eq!(second.reply_owner("/r/0?x"), None);
        assert_eq!(second.reply_owner("/r/1"), None, "path and query, exactly");
        assert_eq!(second.metrics.reply_routes.get(), 2);
        second.compact_store().await;
        // Ended by expiry (or any path that unpins): dead at once, dropped by a sweep.
        second.table.unpin(&key(2));
        assert_eq!(second.prune_reply_routes(), 1);
        assert_eq!(second.metrics.reply_routes.get(), 1);
        second.journal_unpin(&key(2), b2);
        second.store.as_ref().unwrap().flush().await.unwrap();
        drop(second);

        let third = restarted(dir.path(), true, "drain");
        assert!(
            third.reply_owner("/r/1?x").is_some(),
            "kept by the compaction"
        );
        assert_eq!(third.replies.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_compaction_from_the_table_keeps_every_pin_with_its_owner_host_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let shared = restarted(dir.path(), true, "drain");
        for n in 0..300u128 {
            pin_to(&shared, key(n), if n % 2 == 0 { "b1" } else { "b2" }).await;
        }
        let text = SessionKey::new("session-text-1");
        let (slot, _) = shared.slots.slot("b2").expect("slot");
        let other_url = shared.urls.intern(None, "/v/w/b.bin");
        shared
            .table
            .pin(text.clone(), slot, other_url, 5)
            .expect("pinned");
        for n in (0..300u128).step_by(3) {
            shared.unpin(&key(n));
        }
        type Owned = (String, String, Option<String>, String);
        let expected: HashSet<Owned> = {
            let mut all = HashSet::new();
            shared.table.for_each(|key, pin| {
                let url = shared.urls.get(pin.url);
                all.insert((
                    key.to_string(),
                    shared.backend_name(pin.backend).to_string(),
                    url.host.as_deref().map(str::to_owned),
                    url.path,
                ));
            });
            all
        };
        assert_eq!(expected.len(), 201);
        shared.compact_store().await;
        assert_eq!(shared.store.as_ref().unwrap().stats().compactions, 1);
        drop(shared);

        let (_, loaded) = PinStore::open(dir.path(), StorageSync::Write).expect("reopen");
        let reloaded: HashSet<Owned> = loaded
            .pins
            .iter()
            .map(|(k, o, _)| {
                (
                    k.to_string(),
                    o.backend.to_string(),
                    o.host.as_deref().map(str::to_owned),
                    o.path.to_string(),
                )
            })
            .collect();
        assert_eq!(reloaded, expected);
    }

    #[test]
    fn restored_pins_keep_their_owner_and_directory_and_raise_the_gauges_once_per_pin() {
        let shared = shared();
        let created: UnixSecs = 1_000;
        let pins: Vec<_> = (0..5u128)
            .map(|n| {
                let owner = if n < 3 {
                    owner("b1", "/a/")
                } else {
                    owner("b2", "/b/c/")
                };
                (key(n), owner, StoredPin::new(created))
            })
            .collect();
        assert_eq!(shared.restore(pins, created, true), 5);

        for n in 0..5u128 {
            let pin = shared.table.get(&key(n)).expect("restored");
            let (backend, dir) = if n < 3 {
                ("b1", "/a/")
            } else {
                ("b2", "/b/c/")
            };
            assert_eq!(shared.slots.name(pin.backend).as_deref(), Some(backend));
            let url = shared.urls.get(pin.url);
            assert_eq!(url.path, dir);
            assert_eq!(url.host.as_deref(), Some("bits.example"));
        }
        let active = |b: &str| shared.metrics.sessions_active.with_label_values(&[b]).get();
        assert_eq!(active("b1"), 3);
        assert_eq!(active("b2"), 2);
        assert_eq!(shared.metrics.pinned.get(), 5);
    }
}
