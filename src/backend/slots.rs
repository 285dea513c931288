//! Backend ids interned to small slots, so a pin stores 2 bytes instead of a string,
//! and status (health, drain) keyed by id survives config reloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// A backend id, interned. Stable for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendSlot(pub u16);

impl BackendSlot {
    /// How many distinct backend ids one process can know.
    pub const MAX_SLOTS: usize = 4096;

    /// As an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Live status of a backend, shared by every config generation that lists it.
///
/// Draining has four independent causes, so that clearing one (an admin undrain)
/// never overrides another (the config file, the backend having left the config, or
/// another replica having retired it).
#[derive(Debug)]
pub struct BackendStatus {
    up: AtomicBool,
    draining: AtomicBool,
    config_drain: AtomicBool,
    retired: AtomicBool,
    retired_elsewhere: AtomicBool,
    /// It answered a 401 offering NTLM or Negotiate: client connections sent to it
    /// are bound from their first request.
    asks_windows_auth: AtomicBool,
}

impl BackendStatus {
    fn new() -> Self {
        BackendStatus {
            up: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            config_drain: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            retired_elsewhere: AtomicBool::new(false),
            asks_windows_auth: AtomicBool::new(false),
        }
    }

    /// Whether health checks (or passive failure tracking) consider it reachable.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records reachability; returns whether it changed.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::Relaxed) != up
    }

    /// Whether it takes no new sessions, for any reason.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
            || self.config_drain.load(Ordering::Relaxed)
            || self.retired.load(Ordering::Relaxed)
            || self.retired_elsewhere.load(Ordering::Relaxed)
    }

    /// Sets the operator's drain flag (admin API); returns whether it changed.
    pub fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Ordering::Relaxed) != draining
    }

    /// Whether the operator's drain flag is set.
    pub fn is_admin_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Sets the config file's `drain` flag.
    pub fn set_config_drain(&self, drain: bool) {
        self.config_drain.store(drain, Ordering::Relaxed);
    }

    /// Whether the config file says `drain = true`.
    pub fn is_config_draining(&self) -> bool {
        self.config_drain.load(Ordering::Relaxed)
    }

    /// Marks a backend that left the config but still owns sessions.
    pub fn set_retired(&self, retired: bool) {
        self.retired.store(retired, Ordering::Relaxed);
    }

    /// Whether it left the config.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks a backend of this config that another replica's reload retired (Redis
    /// store); returns whether it changed.
    pub fn set_retired_elsewhere(&self, retired: bool) -> bool {
        self.retired_elsewhere.swap(retired, Ordering::Relaxed) != retired
    }

    /// Whether another replica retired it while this config still lists it.
    pub fn is_retired_elsewhere(&self) -> bool {
        self.retired_elsewhere.load(Ordering::Relaxed)
    }

    /// Whether it has offered NTLM or Negotiate since this process started.
    pub fn asks_windows_auth(&self) -> bool {
        self.asks_windows_auth.load(Ordering::Relaxed)
    }

    /// Records that it offered NTLM or Negotiate.
    pub fn set_asks_windows_auth(&self) {
        if !self.asks_windows_auth() {
            self.asks_windows_auth.store(true, Ordering::Relaxed);
        }
    }
}

/// Interns backend ids.
#[derive(Debug, Default)]
pub struct SlotRegistry {
    entries: RwLock<Vec<(Arc<str>, Arc<BackendStatus>)>>,
}

/// Every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than 4096 distinct backend ids were configured in this process")]
pub struct SlotsExhausted;

impl SlotRegistry {
    /// The slot of an id, allocating one on first sight.
    pub fn slot(&self, id: &str) -> Result<(BackendSlot, Arc<BackendStatus>), SlotsExhausted> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = entries.iter().position(|(name, _)| &**name == id) {
            return Ok((BackendSlot(i as u16), entries[i].1.clone()));
        }
        if entries.len() >= BackendSlot::MAX_SLOTS {
            return Err(SlotsExhausted);
        }
        let status = Arc::new(BackendStatus::new());
        entries.push((id.into(), status.clone()));
        Ok((BackendSlot((entries.len() - 1) as u16), status))
    }

    /// The id of a slot.
    pub fn name(&self, slot: BackendSlot) -> Option<Arc<str>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(slot.index()).map(|(name, _)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_always_gets_the_same_slot_and_status() {
        let registry = SlotRegistry::default();
        let (a, status_a) = registry.slot("b1").unwrap();
        let (b, _) = registry.slot("b2").unwrap();
        let (a_again, status_again) = registry.slot("b1").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, a_again);
        status_a.set_draining(true);
        assert!(status_again.is_draining());
        assert_eq!(registry.name(b).as_deref(), Some("b2"));
    }

    #[test]
    fn status_changes_report_whether_they_changed() {
        let registry = SlotRegistry::default();
        let (_, status) = registry.slot("b1").unwrap();
        assert!(status.is_up());
        assert!(status.set_up(false));
        assert!(!status.set_up(false));
        assert!(!status.is_up());
    }
}
