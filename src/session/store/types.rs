//! The values the store hands out: stored pins, what a load found, counters.

use crate::backend::BackendSlot;
use crate::session::table::{Pin, UnixSecs};
use crate::session::SessionKey;
use std::path::PathBuf;
use std::sync::Arc;

/// Who owns a stored pin and where the session lives: the backend id, the `Host` and
/// URL path of its Create-Session (kept as strings, since slots and URL ids are local
/// to one process).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PinOwner {
    /// Backend id from the config.
    pub backend: Arc<str>,
    /// The `Host` the client used, when it was kept (never in a version 1 journal).
    pub host: Option<Arc<str>>,
    /// The Create-Session's URL path (a version 1 journal holds only its directory).
    pub path: Arc<str>,
}

/// A pin as the journal keeps it: everything of [`Pin`] except the process-local slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPin {
    /// When the Create-Session Ack was seen.
    pub created: UnixSecs,
    /// When the owner last answered a packet, as of the last record of the pin: pin
    /// records are re-appended as a session stays active (see [`Loaded::pins`]).
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

    /// Back to a table entry, with the slot and URL id of this process. `last_seen` is
    /// what the table starts with, `journaled_seen` what the journal is taken to hold.
    pub fn into_pin(
        self,
        backend: BackendSlot,
        url: crate::session::UrlId,
        last_seen: UnixSecs,
        journaled_seen: UnixSecs,
    ) -> Pin {
        Pin {
            backend,
            url,
            created: self.created,
            last_seen,
            journaled_seen,
            packets: self.packets,
            bytes: self.bytes,
        }
    }
}

/// What the journal may say of a pin: its activity as last journaled, not the table's
/// `last_seen`. A restored pin's `last_seen` is the journaled value plus up to one
/// interval; writing that back (a compaction) and adding the interval again at every
/// restart would let an abandoned pin's clock creep forward forever. The journaled
/// value is within one interval of the truth, which is all a load assumes.
impl From<&Pin> for StoredPin {
    fn from(pin: &Pin) -> Self {
        StoredPin {
            created: pin.created,
            last_seen: pin.journaled_seen,
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
    /// Every pin the journal holds, in no particular order, with its backend id and
    /// `last_seen` as journaled. How far to trust that clock depends on
    /// [`Loaded::activity_journaled`]; see [`restored_last_seen`]. Empty after
    /// [`super::PinStore::open_into`], which hands them to its sink instead.
    pub pins: Vec<(SessionKey, PinOwner, StoredPin)>,
    /// Whether the journal was written with activity re-appends (format 2 or later).
    /// A version 1 journal is rewritten in the current version by the load that holds
    /// the data directory, but the pins it held carry no activity.
    pub activity_journaled: bool,
    /// The upload-reply path of each pin in [`Loaded::pins`] that has one (empty
    /// after [`super::PinStore::open_into`], which hands them to its sink).
    pub replies: Vec<(SessionKey, Box<str>)>,
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
    /// When the journal was read.
    pub loaded_at: UnixSecs,
}

/// The idle clock a pin restarts with. With activity journaled, the stored `last_seen`
/// is at most `journal_every` behind the truth, so `min(now, stored + journal_every)`
/// is never earlier than the real last activity and at most one interval late: an
/// abandoned pin keeps its old clock across restarts and expires. Without (a version 1
/// journal), the stored clock may be arbitrarily stale, so it is raised to `now`: no
/// session expires early because bitsgate restarted.
pub fn restored_last_seen(
    stored: UnixSecs,
    now: UnixSecs,
    journal_every: u32,
    activity_journaled: bool,
) -> UnixSecs {
    if activity_journaled {
        now.min(stored.saturating_add(journal_every))
    } else {
        stored.max(now)
    }
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
    /// An earlier failure left the journal in an unknown state: it takes no more
    /// writes until a restart replays it.
    pub failed: bool,
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
