//! `SessionTable`: which backend owns which session. The hot path of every packet.

use super::key::{GuidStyle, SessionKey};
use super::urls::UrlId;
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
    /// The Host and URL it was created with (for Cancel-Session sent by bitsgate).
    pub url: UrlId,
    /// When the Create-Session Ack was seen.
    pub created: UnixSecs,
    /// When the owner last answered a packet of the session.
    pub last_seen: UnixSecs,
    /// The `last_seen` the journal holds for the session (see [`SessionTable::touch`]).
    pub journaled_seen: UnixSecs,
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
    /// Another backend owns a live session with the same id.
    #[error("the session id is pinned to another backend")]
    Taken {
        /// The backend that owns it.
        owner: BackendSlot,
    },
}

/// Session id → owning backend, with per-session counters.
///
/// GUID ids (nearly every id: IIS issues them) and other ids live in two maps, so a
/// GUID entry is 56 bytes instead of 64: `SessionKey` holds a `u128`, whose 16-byte
/// alignment rounds (key, pin) up to 64 bytes, while `GuidKey` keeps the same 128 bits
/// as two `u64`. At 10^6 pins that is 120 instead of 137 bytes of RSS per pin
/// (`benches/pin_memory.rs`, `docs/benchmarks.md`). Other ids are keyed by their text,
/// so looking one up borrows a `&str` and allocates nothing.
pub struct SessionTable {
    guids: DashMap<GuidKey, Pin>,
    texts: DashMap<Box<str>, Pin>,
    len: AtomicU64,
    max_pinned: AtomicU64,
    per_backend: Box<[AtomicI64]>,
}

/// A GUID session id as the table stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GuidKey {
    hi: u64,
    lo: u64,
    style: GuidStyle,
}

// A 64-byte entry would put 10^6 pins back above 128 bytes of RSS each.
const _: () = assert!(SessionTable::ENTRY_BYTES <= 56);

impl GuidKey {
    fn new(value: u128, style: GuidStyle) -> Self {
        GuidKey {
            hi: (value >> 64) as u64,
            lo: value as u64,
            style,
        }
    }

    fn session_key(self) -> SessionKey {
        SessionKey::Guid {
            value: (u128::from(self.hi) << 64) | u128::from(self.lo),
            style: self.style,
        }
    }
}

impl SessionTable {
    /// Bytes of one GUID entry (key and pin) inside the hash table, without its
    /// control byte. The table's buckets grow by powers of two, so a table of N pins
    /// holds between 8/7 N and 16/7 N of them.
    pub const ENTRY_BYTES: usize = std::mem::size_of::<(GuidKey, Pin)>();

    /// An empty table that holds at most `max_pinned` sessions.
    pub fn new(max_pinned: u64) -> Self {
        SessionTable {
            guids: DashMap::new(),
            texts: DashMap::new(),
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

    /// Pins a session to a backend. Re-pinning an id at the same backend replaces the
    /// old pin (a backend that issues an id again has, by definition, a new session
    /// under it); an id another backend owns is refused, since taking it over would
    /// send the first client's packets to the wrong node.
    pub fn pin(
        &self,
        key: SessionKey,
        backend: BackendSlot,
        url: UrlId,
        now: UnixSecs,
    ) -> Result<Option<Pin>, PinError> {
        if self.is_full() {
            return Err(PinError::Full);
        }
        let pin = Pin {
            backend,
            url,
            created: now,
            last_seen: now,
            journaled_seen: now,
            packets: 1,
            bytes: 0,
        };
        let old = match key {
            SessionKey::Guid { value, style } => {
                Self::insert_unless_taken(&self.guids, GuidKey::new(value, style), pin)?
            }
            SessionKey::Text(text) => Self::insert_unless_taken(&self.texts, text, pin)?,
        };
        self.counted_insert(&pin, old);
        Ok(old)
    }

    fn insert_unless_taken<K: Eq + std::hash::Hash>(
        map: &DashMap<K, Pin>,
        key: K,
        pin: Pin,
    ) -> Result<Option<Pin>, PinError> {
        match map.entry(key) {
            dashmap::Entry::Occupied(entry) if entry.get().backend != pin.backend => {
                Err(PinError::Taken {
                    owner: entry.get().backend,
                })
            }
            dashmap::Entry::Occupied(mut entry) => Ok(Some(entry.insert(pin))),
            dashmap::Entry::Vacant(entry) => {
                entry.insert(pin);
                Ok(None)
            }
        }
    }

    /// The owner of a session, without touching it.
    pub fn owner(&self, key: &SessionKey) -> Option<BackendSlot> {
        self.read(key, |pin| pin.backend)
    }

    /// A copy of a session's pin.
    pub fn get(&self, key: &SessionKey) -> Option<Pin> {
        self.read(key, |pin| *pin)
    }

    /// Records that `owner` answered a packet of the session at `now`. Only an answer
    /// of the owner is activity: a packet bitsgate had to refuse (its owner down) must
    /// not keep a pin to a node that never returns alive. Returns a copy of the pin
    /// when its journaled `last_seen` is `journal_every` seconds old or more, having
    /// marked it journaled: the caller appends it, so the journal knows each active
    /// session's activity to within `journal_every`.
    pub fn touch(
        &self,
        key: &SessionKey,
        owner: BackendSlot,
        now: UnixSecs,
        journal_every: u32,
    ) -> Option<Pin> {
        self.write(key, |pin| {
            if pin.backend != owner {
                return None;
            }
            pin.last_seen = pin.last_seen.max(now);
            pin.packets = pin.packets.saturating_add(1);
            if now.saturating_sub(pin.journaled_seen) < journal_every {
                return None;
            }
            pin.journaled_seen = now;
            Some(*pin)
        })
        .flatten()
    }

    /// Adds forwarded fragment bytes to a session.
    pub fn add_bytes(&self, key: &SessionKey, bytes: u64) {
        self.write(key, |pin| pin.bytes = pin.bytes.saturating_add(bytes));
    }

    /// Forgets a session.
    pub fn unpin(&self, key: &SessionKey) -> Option<Pin> {
        self.unpin_where(key, |_| true)
    }

    /// Forgets a session only while `backend` owns it: one locked check-and-remove, so an
    /// answer from a former owner never removes a newer owner's pin.
    pub fn unpin_owned_by(&self, key: &SessionKey, backend: BackendSlot) -> Option<Pin> {
        self.unpin_where(key, |pin| pin.backend == backend)
    }

    fn unpin_where(&self, key: &SessionKey, keep: impl Fn(&Pin) -> bool) -> Option<Pin> {
        let pin = match key {
            SessionKey::Guid { value, style } => {
                self.guids
                    .remove_if(&GuidKey::new(*value, *style), |_, pin| keep(pin))?
                    .1
            }
            SessionKey::Text(text) => self.texts.remove_if(&**text, |_, pin| keep(pin))?.1,
        };
        self.forget(&pin);
        Some(pin)
    }

    /// Removes and returns every pin idle for at least `idle_secs` at `now`.
    pub fn take_idle(&self, now: UnixSecs, idle_secs: u32) -> Vec<(SessionKey, Pin)> {
        // Checked again under the shard lock: a packet may have arrived since the scan.
        self.take_where(|pin| now.saturating_sub(pin.last_seen) >= idle_secs)
    }

    /// Removes and returns every pin of a backend.
    pub fn take_backend(&self, backend: BackendSlot) -> Vec<(SessionKey, Pin)> {
        self.take_where(|pin| pin.backend == backend)
    }

    /// Puts back a pin loaded from the durable store, as it was.
    pub fn restore(&self, key: SessionKey, pin: Pin) {
        let old = match key {
            SessionKey::Guid { value, style } => self.guids.insert(GuidKey::new(value, style), pin),
            SessionKey::Text(text) => self.texts.insert(text, pin),
        };
        self.counted_insert(&pin, old);
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
    /// Ids that are not GUIDs are copied to be handed out as keys.
    pub fn for_each(&self, mut f: impl FnMut(&SessionKey, &Pin)) {
        for entry in self.guids.iter() {
            f(&entry.key().session_key(), entry.value());
        }
        for entry in self.texts.iter() {
            f(&SessionKey::Text(entry.key().clone()), entry.value());
        }
    }

    /// Calls `f` for every pin, without handing out keys.
    pub fn for_each_pin(&self, mut f: impl FnMut(&Pin)) {
        for entry in self.guids.iter() {
            f(entry.value());
        }
        for entry in self.texts.iter() {
            f(entry.value());
        }
    }

    fn counted_insert(&self, pin: &Pin, old: Option<Pin>) {
        match old {
            Some(old) => self.count(old.backend, -1),
            None => {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count(pin.backend, 1);
    }

    fn read<R>(&self, key: &SessionKey, f: impl FnOnce(&Pin) -> R) -> Option<R> {
        match key {
            SessionKey::Guid { value, style } => self
                .guids
                .get(&GuidKey::new(*value, *style))
                .map(|pin| f(&pin)),
            SessionKey::Text(text) => self.texts.get(&**text).map(|pin| f(&pin)),
        }
    }

    fn write<R>(&self, key: &SessionKey, f: impl FnOnce(&mut Pin) -> R) -> Option<R> {
        match key {
            SessionKey::Guid { value, style } => self
                .guids
                .get_mut(&GuidKey::new(*value, *style))
                .map(|mut pin| f(&mut pin)),
            SessionKey::Text(text) => self.texts.get_mut(&**text).map(|mut pin| f(&mut pin)),
        }
    }

    /// Scans for matching pins, then removes each one that still matches under its
    /// shard's write lock.
    fn take_where(&self, matches: impl Fn(&Pin) -> bool) -> Vec<(SessionKey, Pin)> {
        let guids: Vec<GuidKey> = self
            .guids
            .iter()
            .filter(|entry| matches(entry.value()))
            .map(|entry| *entry.key())
            .collect();
        let texts: Vec<Box<str>> = self
            .texts
            .iter()
            .filter(|entry| matches(entry.value()))
            .map(|entry| entry.key().clone())
            .collect();
        let mut taken = Vec::with_capacity(guids.len() + texts.len());
        for key in guids {
            if let Some((key, pin)) = self.guids.remove_if(&key, |_, pin| matches(pin)) {
                taken.push((key.session_key(), pin));
            }
        }
        for key in texts {
            if let Some((key, pin)) = self.texts.remove_if(&key, |_, pin| matches(pin)) {
                taken.push((SessionKey::Text(key), pin));
            }
        }
        for (_, pin) in &taken {
            self.forget(pin);
        }
        taken
    }

    fn forget(&self, pin: &Pin) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.count(pin.backend, -1);
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
        table.pin(key(1), BackendSlot(3), UrlId(0), 100).unwrap();
        assert_eq!(table.owner(&key(1)), Some(BackendSlot(3)));
        assert_eq!(table.touch(&key(1), BackendSlot(3), 150, u32::MAX), None);
        assert_eq!(table.owner(&key(1)), Some(BackendSlot(3)));
        let pin = table.unpin(&key(1)).unwrap();
        assert_eq!((pin.created, pin.last_seen, pin.packets), (100, 150, 2));
        assert_eq!(table.owner(&key(1)), None);
        assert!(table.is_empty());
    }

    #[test]
    fn counts_sessions_per_backend_through_pin_repin_and_unpin() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), UrlId(0), 0).unwrap();
        table.pin(key(2), BackendSlot(1), UrlId(0), 0).unwrap();
        let replaced = table.pin(key(2), BackendSlot(1), UrlId(1), 5).unwrap();
        assert_eq!(replaced.map(|pin| pin.url), Some(UrlId(0)));
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
        table.pin(key(1), BackendSlot(0), UrlId(0), 0).unwrap();
        assert_eq!(
            table.pin(key(2), BackendSlot(0), UrlId(0), 0),
            Err(PinError::Full)
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn takes_only_idle_pins() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), UrlId(0), 100).unwrap();
        table.pin(key(2), BackendSlot(0), UrlId(0), 100).unwrap();
        table.touch(&key(2), BackendSlot(0), 190, u32::MAX);
        let idle = table.take_idle(200, 60);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].0, key(1));
        assert_eq!(table.owner(&key(2)), Some(BackendSlot(0)));
        assert_eq!(table.sessions_of(BackendSlot(0)), 1);
    }

    #[test]
    fn takes_every_pin_of_one_backend() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), UrlId(0), 0).unwrap();
        table.pin(key(2), BackendSlot(1), UrlId(0), 0).unwrap();
        table.pin(key(3), BackendSlot(1), UrlId(0), 0).unwrap();
        assert_eq!(table.take_backend(BackendSlot(1)).len(), 2);
        assert_eq!(table.len(), 1);
        assert_eq!(table.sessions_of(BackendSlot(1)), 0);
    }

    #[test]
    fn ids_that_are_not_guids_are_pinned_like_guids() {
        let table = SessionTable::new(10);
        let text = SessionKey::new("session-42");
        assert!(matches!(text, SessionKey::Text(_)));
        table
            .pin(text.clone(), BackendSlot(2), UrlId(1), 100)
            .unwrap();
        table.pin(key(1), BackendSlot(2), UrlId(1), 100).unwrap();
        assert_eq!(table.touch(&text, BackendSlot(2), 120, u32::MAX), None);
        table.add_bytes(&text, 7);
        assert_eq!(table.get(&text).unwrap().bytes, 7);
        assert_eq!(table.sessions_of(BackendSlot(2)), 2);
        let mut seen = Vec::new();
        table.for_each(|key, pin| seen.push((key.to_string(), pin.backend)));
        seen.sort();
        assert_eq!(
            seen,
            [
                ("session-42".to_owned(), BackendSlot(2)),
                (key(1).to_string(), BackendSlot(2)),
            ]
        );
        let idle = table.take_idle(170, 60);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].0, key(1));
        let taken = table.take_backend(BackendSlot(2));
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, text);
        let pin = taken[0].1;
        assert_eq!(
            (pin.url, pin.last_seen, pin.packets, pin.bytes),
            (UrlId(1), 120, 2, 7)
        );
        assert!(table.is_empty());
        assert_eq!(table.unpin(&text), None);
    }

    #[test]
    fn a_guid_and_its_text_spelling_elsewhere_never_collide() {
        // The same hex, once as a GUID key and once kept verbatim (mixed case).
        let table = SessionTable::new(10);
        let guid = SessionKey::new("{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d}");
        let text = SessionKey::new("{5e53c221-F2D6-4bf2-b994-1dc43ceaca8d}");
        table
            .pin(guid.clone(), BackendSlot(0), UrlId(0), 0)
            .unwrap();
        table
            .pin(text.clone(), BackendSlot(1), UrlId(0), 0)
            .unwrap();
        assert_eq!(table.owner(&guid), Some(BackendSlot(0)));
        assert_eq!(table.owner(&text), Some(BackendSlot(1)));
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.unpin(&guid).map(|pin| pin.backend),
            Some(BackendSlot(0))
        );
        assert_eq!(table.owner(&text), Some(BackendSlot(1)));
    }

    #[test]
    fn an_id_another_backend_owns_is_never_taken_over() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), UrlId(1), 100).unwrap();
        assert_eq!(
            table.pin(key(1), BackendSlot(1), UrlId(2), 200),
            Err(PinError::Taken {
                owner: BackendSlot(0)
            })
        );
        let pin = table.get(&key(1)).unwrap();
        assert_eq!(
            (pin.backend, pin.url, pin.created),
            (BackendSlot(0), UrlId(1), 100)
        );
        assert_eq!(table.sessions_of(BackendSlot(1)), 0);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn only_the_owners_answers_are_activity() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), UrlId(0), 100).unwrap();
        table.touch(&key(1), BackendSlot(1), 150, u32::MAX);
        let pin = table.get(&key(1)).unwrap();
        assert_eq!((pin.last_seen, pin.packets), (100, 1));
        assert_eq!(table.take_idle(160, 60).len(), 1);
    }

    #[test]
    fn a_touch_asks_for_a_journal_record_at_most_once_per_interval() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), UrlId(0), 100).unwrap();
        assert_eq!(table.touch(&key(1), BackendSlot(0), 150, 60), None);
        let due = table.touch(&key(1), BackendSlot(0), 160, 60).expect("due");
        assert_eq!(
            (due.last_seen, due.journaled_seen, due.packets),
            (160, 160, 3)
        );
        assert_eq!(table.touch(&key(1), BackendSlot(0), 219, 60), None);
        assert!(table.touch(&key(1), BackendSlot(0), 220, 60).is_some());
    }

    #[test]
    fn accumulates_bytes() {
        let table = SessionTable::new(10);
        table.pin(key(1), BackendSlot(0), UrlId(0), 0).unwrap();
        table.add_bytes(&key(1), 10);
        table.add_bytes(&key(1), 5);
        assert_eq!(table.get(&key(1)).unwrap().bytes, 15);
    }
}
