//! The values the store hands out: stored pins, what a load found, counters.

use crate::backend::BackendSlot;
use crate::session::table::{Pin, UnixSecs};
use crate::session::SessionKey;
use std::path::PathBuf;
use std::sync::Arc;

/// Who owns a stored pin: the backend id and the URL directory of the session (both
/// kept as strings, since slots and directory ids are local to one process).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PinOwner {
    /// Backend id from the config.
    pub backend: Arc<str>,
    /// URL directory the session was created under.
    pub dir: Arc<str>,
}

/// A pin as the journal keeps it: everything of [`Pin`] except the process-local slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPin {
    /// When the Create-Session Ack was seen.
    pub created: UnixSecs,
    /// When the last packet was seen, as of the last compaction (appends do not track
    /// it; see [`Loaded::pins`]).
    pub last_seen: UnixSecs,
    /// Packets routed, as of the last compaction.
    pub packets: u32,
    /// Fragment bytes forwarded, as of the last compaction.
    pub bytes: u64,
}

impl StoredPin {
    /// A pin just created at `created`, as [`crate::session::SessionTable::pin`] makes it.
    pub fn new(created: UnixSecs) -> Self {
        StoredPin {
            created,
            last_seen: created,
            packets: 1,
            bytes: 0,
        }
    }

    /// Back to a table entry, with the slot the backend id interns to in this process.
    pub fn into_pin(self, backend: BackendSlot, dir: crate::session::DirId) -> Pin {
        Pin {
            backend,
            dir,
            created: self.created,
            last_seen: self.last_seen,
            packets: self.packets,
            bytes: self.bytes,
        }
    }
}

impl From<&Pin> for StoredPin {
    fn from(pin: &Pin) -> Self {
        StoredPin {
            created: pin.created,
            last_seen: pin.last_seen,
            packets: pin.packets,
            bytes: pin.bytes,
        }
    }
}

/// Why replay stopped before the end of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailDamage {
    /// The file ends inside a record: a write cut short by a crash or power cut.
    Incomplete,
    /// A record length no valid record has.
    BadLength,
    /// A record whose CRC does not match: torn, or damaged on disk.
    BadChecksum,
}

impl std::fmt::Display for TailDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TailDamage::Incomplete => "the file ends inside a record",
            TailDamage::BadLength => "a record length no record has",
            TailDamage::BadChecksum => "a record checksum mismatch",
        })
    }
}

/// What [`super::PinStore::open`] found.
#[derive(Debug)]
pub struct Loaded {
    /// Every pin the journal holds, in no particular order, with its backend id. Idle
    /// clocks are not journaled on every packet, so `last_seen` is raised to the load
    /// time: no session expires early because bitsgate restarted, and each gets at most
    /// one full idle timeout from the restart.
    pub pins: Vec<(SessionKey, PinOwner, StoredPin)>,
    /// Complete records replayed.
    pub records: u64,
    /// Bytes cut off the end because they were not a complete, valid record.
    pub truncated_bytes: u64,
    /// Why those bytes were cut.
    pub damage: Option<TailDamage>,
    /// Where the cut bytes were saved for inspection.
    pub discarded_to: Option<PathBuf>,
    /// Whether the journal was rewritten to just the live pins.
    pub compacted: bool,
    /// Whether a compaction interrupted by a crash left a temp file (now removed).
    pub removed_stale_temp: bool,
    /// The time used for `last_seen`.
    pub loaded_at: UnixSecs,
}

/// Counters for metrics and the compaction decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Records appended since open.
    pub records_written: u64,
    /// `write(2)` calls: fewer than records when group commit batches.
    pub writes: u64,
    /// Device flushes.
    pub syncs: u64,
    /// Current journal size.
    pub journal_bytes: u64,
    /// Records queued but not yet written.
    pub pending: u64,
    /// Compactions since open (not counting one done by `open`).
    pub compactions: u64,
    /// When the last of them finished.
    pub last_compaction: Option<UnixSecs>,
}

/// Whether the journal takes writes, for `/readyz` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreHealth {
    /// The last write (or sync) succeeded.
    #[default]
    Healthy,
    /// Appends fail (disk full, file too large, I/O error) since `since`; each failed
    /// append was rolled back, and the next one that succeeds ends this state.
    Failing {
        /// When the first append of this outage failed.
        since: UnixSecs,
        /// The last error.
        error: String,
    },
    /// A sync failed, or a failed append could not be rolled back: the journal takes
    /// no more writes until a restart replays it.
    Poisoned {
        /// The error that poisoned it.
        error: String,
    },
}

impl StoreHealth {
    /// Whether pins cannot be journaled now.
    pub fn is_failing(&self) -> bool {
        !matches!(self, StoreHealth::Healthy)
    }
}

/// Pins read from the end of a shared journal, see [`super::PinStore::read_tail`].
#[derive(Debug)]
pub struct TailPins {
    /// Pins journaled since the last read, in journal order (this process's own too).
    pub pins: Vec<(SessionKey, PinOwner, StoredPin)>,
    /// Whether the read reached the end of the file.
    pub complete: bool,
}
