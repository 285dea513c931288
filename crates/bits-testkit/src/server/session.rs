//! The table of live sessions.
//!
//! The table lock is held only to look up, insert or remove an entry. Each session has
//! its own async lock, held for the whole of one packet (including its disk I/O), which
//! serialises the packets of one session while sessions run fully in parallel.

use super::storage::SessionMeta;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// State of one session, guarded by its slot's lock.
#[derive(Debug)]
pub(crate) struct Session {
    /// What is persisted.
    pub meta: SessionMeta,
    /// Absolute destination of the file.
    pub dest: PathBuf,
    /// Bytes received contiguously from 0.
    pub next: u64,
    /// Set when the session was ended while a packet waited for its lock: that packet
    /// must then answer "session not found", as if it had arrived a moment later.
    pub ended: bool,
    /// The upload-reply job's reply, once computed (reply mode only).
    pub reply: Option<bytes::Bytes>,
}

/// A session and its last-activity time.
pub(crate) struct Slot {
    pub session: tokio::sync::Mutex<Session>,
    /// Milliseconds since the table's epoch; may be negative for sessions recovered
    /// from disk that were already idle before this process started.
    touched_ms: AtomicI64,
}

/// All live sessions (open, or completed and waiting for Close-Session).
pub(crate) struct Registry {
    epoch: Instant,
    map: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Registry {
            epoch: Instant::now(),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        // Nothing can be left half-updated by a panic inside these short sections.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Adds a session that has been idle for `idle_for` already.
    pub(crate) fn insert(&self, session: Session, idle_for: Duration) -> Arc<Slot> {
        let idle = i64::try_from(idle_for.as_millis()).unwrap_or(i64::MAX / 2);
        let id = session.meta.id.clone();
        let slot = Arc::new(Slot {
            session: tokio::sync::Mutex::new(session),
            touched_ms: AtomicI64::new(self.now_ms().saturating_sub(idle)),
        });
        self.table().insert(id, Arc::clone(&slot));
        slot
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Slot>> {
        self.table().get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// Records activity on a session now.
    pub(crate) fn touch(&self, slot: &Slot) {
        slot.touched_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long a session has seen no packet.
    pub(crate) fn idle_for(&self, slot: &Slot) -> Duration {
        let idle = self
            .now_ms()
            .saturating_sub(slot.touched_ms.load(Ordering::Relaxed));
        Duration::from_millis(u64::try_from(idle).unwrap_or(0))
    }

    /// Sessions idle for at least `timeout`.
    pub(crate) fn idle(&self, timeout: Duration) -> Vec<Arc<Slot>> {
        self.table()
            .values()
            .filter(|slot| self.idle_for(slot) >= timeout)
            .cloned()
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            meta: SessionMeta {
                id: id.into(),
                path: "a".into(),
                total: None,
                completed: false,
            },
            dest: PathBuf::from("/r/a"),
            next: 0,
            ended: false,
            reply: None,
        }
    }

    #[test]
    fn recovered_idle_time_counts_towards_expiry() {
        let reg = Registry::new();
        reg.insert(session("{old}"), Duration::from_secs(3600));
        reg.insert(session("{new}"), Duration::ZERO);
        let idle = reg.idle(Duration::from_secs(60));
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].session.try_lock().unwrap().meta.id, "{old}");
    }

    #[test]
    fn touch_resets_idle_time() {
        let reg = Registry::new();
        let slot = reg.insert(session("{s}"), Duration::from_secs(3600));
        reg.touch(&slot);
        assert!(reg.idle_for(&slot) < Duration::from_secs(60));
        reg.remove("{s}");
        assert_eq!(reg.len(), 0);
        assert!(reg.get("{s}").is_none());
    }
}
