//! `SessionTable`: which backend owns which session. The hot path of every packet.

use super::dirs::DirId;
use super::key::SessionKey;
use crate::backend::BackendSlot;
use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Seconds since the Unix epoch, as a u32 (good until 2106). Passed in, never read here.
pub type UnixSecs = u32;

/// What bitsgate knows about one pinned session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The backend that created the session.
    pub backend: BackendSlot,
    /// The URL directory it was created under (for Cancel-Session sent by bitsgate).
    pub dir: DirId,
    /// When the Create-Session Ack was seen.
    pub created: UnixSecs,
    /// When the last packet of the session was seen.
    pub last_seen: UnixSecs,
    /// Packets routed for the session.
    pub packets: u32,
    /// Fragment bytes forwarded for the session.
    pub bytes: u64,
}

/// Why a pin could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The table holds `max_pinned` sessions already.
    #[error("the session table is full")]
    Full,
}

/// Session id → owning backend, with per-session counters.
pub struct SessionTable {
    pins: DashMap<SessionKey, Pin>,
    len: AtomicU64,
    max_pinned: AtomicU64,
    per_backend: Box<[AtomicI64]>,
}

impl SessionTable {
    /// An empty table that holds at most `max_pinned` sessions.
    pub fn new(max_pinned: u64) -> Self {
        SessionTable {
            pins: DashMap::new(),
            len: AtomicU64::new(0),
            max_pinned: AtomicU64::new(max_pinned),
            per_backend: (0..BackendSlot::MAX_SLOTS)
                .map(|_| AtomicI64::new(0))
                .collect(),
        }
    }

    /// Changes the capacity (on reload); existing pins are kept even above it.
    pub fn set_max_pinned(&self, max_pinned: u64) {
        self.max_pinned.store(max_pinned, Ordering::Relaxed);
    }

    /// Whether a new pin would be refused.
    pub fn is_full(&self) -> bool {
        self.len() >= self.max_pinned.load(Ordering::Relaxed)
    }

    /// Pins a session to a backend. Re-pinning an id replaces the old owner (a backend
    /// that issues an id again has, by definition, a new session under it).
    pub fn pin(
        &self,
        key: SessionKey,
        backend: BackendSlot,
        dir: DirId,
        now: UnixSecs,
    ) -> Result<Option<Pin>, PinError> {
        if self.is_full() {
            return Err(PinError::Full);
        }
        let pin = Pin {
            backend,
            dir,
            created: now,
            last_seen: now,
            packets: 1,
            bytes: 0,
        };
        let old = self.pins.insert(key, pin);
        match old {
            Some(old) => self.count(old.backend, -1),
            None => {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count(backend, 1);
        Ok(old)
    }

    /// The owner of a session, without touching it.
    pub fn owner(&self, key: &SessionKey) -> Option<BackendSlot> {
        self.pins.get(key).map(|pin| pin.backend)
    }

    /// A copy of a session's pin.
    pub fn get(&self, key: &SessionKey) -> Option<Pin> {
        self.pins.get(key).map(|pin| *pin)
    }

    /// The owner of a session, recording that a packet of it was seen (one lookup).
    pub fn touch(&self, key: &SessionKey, now: UnixSecs) -> Option<BackendSlot> {
        self.pins.get_mut(key).map(|mut pin| {
            pin.last_seen = now;
            pin.packets = pin.packets.saturating_add(1);
            pin.backend
        })
    }

    /// Adds forwarded fragment bytes to a session.
    pub fn add_bytes(&self, key: &SessionKey, bytes: u64) {
        if let Some(mut pin) = self.pins.get_mut(key) {
            pin.bytes = pin.bytes.saturating_add(bytes);
        }
    }

    /// Forgets a session.
    pub fn unpin(&self, key: &SessionKey) -> Option<Pin> {
        let (_, pin) = self.pins.remove(key)?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.count(pin.backend, -1);
        Some(pin)
    }

    /// Removes and returns every pin idle for at least `idle_secs` at `now`.
    pub fn take_idle(&self, now: UnixSecs, idle_secs: u32) -> Vec<(SessionKey, Pin)> {
        let idle: Vec<SessionKey> = self
            .pins
            .iter()
            .filter(|entry| now.saturating_sub(entry.last_seen) >= idle_secs)
            .map(|entry| entry.key().clone())
            .collect();
        idle.into_iter()
            // Re-check under the shard lock: a packet may have arrived since the scan.
            .filter_map(|key| {
                let (key, pin) = self.pins.remove_if(&key, |_, pin| {
                    now.saturating_sub(pin.last_seen) >= idle_secs
                })?;
                self.len.fetch_sub(1, Ordering::Relaxed);
                self.count(pin.backend, -1);
                Some((key, pin))
            })
            .collect()
    }

    /// Removes and returns every pin of a backend.
    pub fn take_backend(&self, backend: BackendSlot) -> Vec<(SessionKey, Pin)> {
        let keys: Vec<SessionKey> = self
            .pins
            .iter()
            .filter(|entry| entry.backend == backend)
            .map(|entry| entry.key().clone())
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                let removed = self.pins.remove_if(&key, |_, pin| pin.backend == backend)?;
                self.len.fetch_sub(1, Ordering::Relaxed);
                self.count(backend, -1);
                Some(removed)
            })
            .collect()
    }

    /// Puts back a pin loaded from the durable store, as it was.
    pub fn restore(&self, key: SessionKey, pin: Pin) {
        let backend = pin.backend;
        match self.pins.insert(key, pin) {
            Some(old) => self.count(old.backend, -1),
            None => {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count(backend, 1);
    }

    /// Pins held.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no session is pinned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pins held by one backend.
    pub fn sessions_of(&self, backend: BackendSlot) -> u64 {
        self.per_backend[backend.index()]
            .load(Ordering::Relaxed)
            .max(0) as u64
    }

    /// Calls `f` for every pin (a consistent view per shard, not of the whole table).
    pub fn for_each(&self, mut f: impl FnMut(&SessionKey, &Pin)) {
        for entry in self.pins.iter() {
            f(entry.key(), entry.value());
        }
    }

    fn count(&self, backend: BackendSlot, delta: i64) {
        self.per_backend[backend.index()].fetch_add(delta, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> SessionKey {
        SessionKey::new(&format!("{{00000000-0000-0000-0000-{n:012x}}}"))
    }

    #[test]
    fn a_pinned_session_routes_to_its_backend_until_unpinned() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(3), DirId(0), 100).unwrap();
        assert_eq!(table.owner(&key(1)), Some(BackendSlot(3)));
        assert_eq!(table.touch(&key(1), 150), Some(BackendSlot(3)));
        let pin = table.unpin(&key(1)).unwrap();
        assert_eq!((pin.created, pin.last_seen, pin.packets), (100, 150, 2));
        assert_eq!(table.owner(&key(1)), None);
        assert!(table.is_empty());
    }

    #[test]
    fn counts_sessions_per_backend_through_pin_repin_and_unpin() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), DirId(0), 0).unwrap();
        table.pin(key(2), BackendSlot(0), DirId(0), 0).unwrap();
        table.pin(key(2), BackendSlot(1), DirId(0), 0).unwrap();
        assert_eq!(table.sessions_of(BackendSlot(0)), 1);
        assert_eq!(table.sessions_of(BackendSlot(1)), 1);
        assert_eq!(table.len(), 2);
        table.unpin(&key(2));
        assert_eq!(table.sessions_of(BackendSlot(1)), 0);
        assert_eq!(table.unpin(&key(2)), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn refuses_new_pins_when_full() {
        let table = SessionTable::new(1);
        table.pin(key(1), BackendSlot(0), DirId(0), 0).unwrap();
        assert_eq!(
            table.pin(key(2), BackendSlot(0), DirId(0), 0),
            Err(PinError::Full)
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn takes_only_idle_pins() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), DirId(0), 100).unwrap();
        table.pin(key(2), BackendSlot(0), DirId(0), 100).unwrap();
        table.touch(&key(2), 190);
        let idle = table.take_idle(200, 60);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].0, key(1));
        assert_eq!(table.owner(&key(2)), Some(BackendSlot(0)));
        assert_eq!(table.sessions_of(BackendSlot(0)), 1);
    }

    #[test]
    fn takes_every_pin_of_one_backend() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), DirId(0), 0).unwrap();
        table.pin(key(2), BackendSlot(1), DirId(0), 0).unwrap();
        table.pin(key(3), BackendSlot(1), DirId(0), 0).unwrap();
        assert_eq!(table.take_backend(BackendSlot(1)).len(), 2);
        assert_eq!(table.len(), 1);
        assert_eq!(table.sessions_of(BackendSlot(1)), 0);
    }

    #[test]
    fn accumulates_bytes() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), DirId(0), 0).unwrap();
        table.add_bytes(&key(1), 10);
        table.add_bytes(&key(1), 5);
        assert_eq!(table.get(&key(1)).unwrap().bytes, 15);
    }
}
