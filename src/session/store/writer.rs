//! The journal writer: turns a batch of queued records into one `write(2)` and, when
//! asked for, one `fdatasync(2)`, and tracks the journal's health. Who runs it, and
//! when, is [`super::queue`]'s business.

use super::files::{self, io_err};
use super::lock::Ownership;
use super::{format, StoreError, StoreHealth, UnixSecs};
use crate::config::model::StorageSync;
use crate::session::SessionKey;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Where a waiter learns the outcome of its request.
pub(crate) type Ack = oneshot::Sender<Result<(), StoreError>>;

/// While appends fail (disk full, file too large), how often the writer tries a
/// harmless record of its own, so the outage ends when the disk has room again even if
/// no Create-Session comes (a load balancer that reads `/readyz` sends none).
pub(crate) const PROBE_INTERVAL: Duration = if cfg!(test) {
    Duration::from_millis(50)
} else {
    Duration::from_secs(2)
};

/// A request to the writer. The channel order is the journal order.
pub(crate) enum Msg {
    /// Append encoded records; acknowledge once written, and also flushed to the device
    /// when `wait_sync` is set and the store syncs.
    Append {
        bytes: Vec<u8>,
        records: u64,
        wait_sync: bool,
        ack: Ack,
    },
    /// Flush everything written so far to the device, whatever the sync mode.
    Flush { ack: Ack },
    /// A compaction is about to snapshot the table: remember where the journal ends, so
    /// the records after this point can be carried into the compacted file.
    Mark,
    /// Finish a compaction: append the records since the mark to `temp`, then rename it
    /// over the journal.
    Swap { temp: File, ack: Ack },
}

impl Msg {
    /// Whether nobody waits for it: an append that needs no device flush (an unpin,
    /// an activity touch), which may wait for the next write to carry it.
    pub fn is_lazy(&self) -> bool {
        matches!(
            self,
            Msg::Append {
                wait_sync: false,
                ..
            }
        )
    }
}

/// Counters shared with [`super::PinStore::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records_written: AtomicU64,
    pub pin_records: AtomicU64,
    pub pin_record_bytes: AtomicU64,
    pub writes: AtomicU64,
    pub syncs: AtomicU64,
    pub journal_bytes: AtomicU64,
    pub pending: AtomicU64,
    pub compactions: AtomicU64,
    pub last_compaction: AtomicU32,
    /// Whether writes fail now; read by `/readyz`.
    pub health: Mutex<StoreHealth>,
}

impl Counters {
    pub fn health(&self) -> StoreHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The writer's state; lives on its thread.
pub(crate) struct Writer {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    pub sync: StorageSync,
    pub counters: Arc<Counters>,
    pub clock: fn() -> UnixSecs,
    /// Journal length at the last [`Msg::Mark`].
    mark: Option<u64>,
    /// Set once the journal can no longer be trusted to match what was acknowledged.
    failed: Option<StoreError>,
    /// Whether another process shares the journal (an upgrade).
    ownership: Arc<Ownership>,
    /// See [`super::PinStore::read_tail`].
    caught_up_to: Arc<AtomicU64>,
}

/// What the writer shares with the store about other processes on the journal.
pub(crate) struct Sharing {
    pub ownership: Arc<Ownership>,
    pub caught_up_to: Arc<AtomicU64>,
}

/// What one turn has buffered but not yet written.
#[derive(Default)]
struct Turn {
    buf: Vec<u8>,
    records: u64,
    after_write: Vec<Ack>,
    after_sync: Vec<Ack>,
    force_sync: bool,
}

impl Writer {
    /// A writer appending to `file`, the journal at `path` (in the data dir), which
    /// is `len` bytes long now.
    pub fn new(
        path: PathBuf,
        file: File,
        len: u64,
        sync: StorageSync,
        counters: Arc<Counters>,
        clock: fn() -> UnixSecs,
        sharing: Sharing,
    ) -> Self {
        counters.journal_bytes.store(len, Ordering::Relaxed);
        Writer {
            dir: path.parent().map(PathBuf::from).unwrap_or_default(),
            path,
            file,
            len,
            sync,
            counters,
            clock,
            mark: None,
            failed: None,
            ownership: sharing.ownership,
            caught_up_to: sharing.caught_up_to,
        }
    }

    /// Whether appends fail now (an outage that may end, not a poisoning).
    pub fn is_failing(&self) -> bool {
        self.counters.health().is_failing() && self.failed.is_none()
    }

    /// Hands the device what the kernel holds, so an orderly exit without a flush
    /// loses nothing either. Nobody is left to tell how it went.
    pub fn close(&mut self) {
        let _ = self.file.sync_data();
    }

    /// Writes a batch of queued messages, in order, and answers their waiters.
    pub fn turn(&mut self, batch: &mut Vec<Msg>) {
        let mut turn = Turn::default();
        for msg in batch.drain(..) {
            match msg {
                Msg::Append {
                    bytes,
                    records,
                    wait_sync,
                    ack,
                } => {
                    turn.buf.extend_from_slice(&bytes);
                    turn.records += records;
                    if wait_sync && self.sync == StorageSync::Fsync {
                        turn.after_sync.push(ack);
                    } else {
                        turn.after_write.push(ack);
                    }
                }
                Msg::Flush { ack } => {
                    turn.force_sync = true;
                    turn.after_sync.push(ack);
                }
                Msg::Mark => self.mark = Some(self.len + turn.buf.len() as u64),
                Msg::Swap { temp, ack } => {
                    self.commit(std::mem::take(&mut turn));
                    let _ = ack.send(self.swap(temp));
                }
            }
        }
        self.commit(turn);
    }

    /// Writes a turn, syncs if needed, and answers its waiters.
    fn commit(&mut self, turn: Turn) {
        let Turn {
            buf,
            records,
            after_write,
            after_sync,
            force_sync,
        } = turn;
        let buf_was_empty = buf.is_empty();
        let written = if buf_was_empty {
            self.check()
        } else {
            self.counters.pending.fetch_sub(records, Ordering::Relaxed);
            self.write(&buf, records)
        };
        let write_failed = written.is_err();
        for ack in after_write {
            let _ = ack.send(written.clone());
        }
        if after_sync.is_empty() && !force_sync {
            self.note(&written, !buf_was_empty);
            return;
        }
        let synced = if write_failed { written } else { self.sync() };
        // Only an append shows that appends work again: a flush with nothing to write
        // succeeds on a full disk too.
        self.note(&synced, !buf_was_empty);
        for ack in after_sync {
            let _ = ack.send(synced.clone());
        }
    }

    /// Appends a record that changes nothing (the unpin of an id no session has), to
    /// find out whether appends work again.
    pub fn probe(&mut self) {
        let mut buf = Vec::with_capacity(16);
        let written = format::encode_unpin(&mut buf, &SessionKey::Text("".into()))
            .and_then(|()| self.write(&buf, 1));
        self.note(&written, true);
    }

    /// Tracks outages: one error line when writes start failing, one line when they
    /// work again, nothing per failed write in between.
    fn note(&mut self, outcome: &Result<(), StoreError>, attempted: bool) {
        let mut health = self
            .counters
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match outcome {
            Err(e) => {
                let poisoned = self.failed.is_some();
                let next = if poisoned {
                    StoreHealth::Poisoned {
                        error: e.to_string(),
                    }
                } else {
                    StoreHealth::Failing {
                        since: (self.clock)(),
                        error: e.to_string(),
                    }
                };
                match (&*health, poisoned) {
                    (StoreHealth::Poisoned { .. }, _) => return,
                    (StoreHealth::Failing { .. }, false) => return,
                    (_, true) => {
                        tracing::error!(target: "bitsgate::store", journal = %self.path.display(), error = %e, "the pin journal takes no more writes until a restart: new uploads are refused and /readyz answers 503")
                    }
                    (_, false) => {
                        tracing::error!(target: "bitsgate::store", journal = %self.path.display(), error = %e, "pin journal writes are failing: new uploads are refused and /readyz answers 503 until a write succeeds again")
                    }
                }
                *health = next;
            }
            Ok(()) if attempted => {
                if let StoreHealth::Failing { since, .. } = &*health {
                    let failed_for_secs = (self.clock)().saturating_sub(*since);
                    tracing::warn!(target: "bitsgate::store", journal = %self.path.display(), failed_for_secs, "pin journal writes succeed again");
                    *health = StoreHealth::Healthy;
                }
            }
            Ok(()) => {}
        }
    }

    /// Refuses every later write. The health turns [`StoreHealth::Poisoned`] at once
    /// (with one error line), which is what `StoreStats.failed` and `/readyz` report.
    fn poison(&mut self, cause: StoreError) {
        self.failed = Some(cause.clone());
        self.note(&Err(cause), true);
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(e) => Err(StoreError::Failed {
                cause: Arc::new(e.clone()),
            }),
            None => Ok(()),
        }
    }

    fn write(&mut self, buf: &[u8], records: u64) -> Result<(), StoreError> {
        self.check()?;
        // Where the first byte landed: the file is opened for appending, and during an
        // upgrade the other process appends too, so offsets come from the file, never
        // from a count of this process's own writes.
        let mut start = None;
        let mut done = 0;
        while done < buf.len() {
            match self.file.write(&buf[done..]) {
                Ok(0) => {
                    return Err(self.failed_write(start, done, io::ErrorKind::WriteZero.into()))
                }
                Ok(n) => {
                    done += n;
                    // A short write: learn now where it began, in case the rest fails.
                    // A whole one is placed by the end offset below (one `lseek`).
                    if start.is_none() && done < buf.len() {
                        start = Some(self.position().saturating_sub(n as u64));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failed_write(start, done, e)),
            }
        }
        let end = self.position();
        // One append to an O_APPEND file lands in one piece.
        let start = start.or_else(|| end.checked_sub(buf.len() as u64));
        if let Some(start) = start {
            // Nothing foreign between what this process knew and its own record.
            let _ =
                self.caught_up_to
                    .compare_exchange(start, end, Ordering::AcqRel, Ordering::Acquire);
        }
        self.len = end;
        let c = &self.counters;
        c.records_written.fetch_add(records, Ordering::Relaxed);
        c.writes.fetch_add(1, Ordering::Relaxed);
        c.journal_bytes.store(self.len, Ordering::Relaxed);
        Ok(())
    }

    /// The file offset after this process's last write: its end when it was written.
    fn position(&mut self) -> u64 {
        self.file.stream_position().unwrap_or(self.len)
    }

    /// Cuts a partial write off again, so later appends do not follow garbage that
    /// replay would stop at. Only the only writer may: with another process appending,
    /// its records may already follow, so the journal takes no more writes instead
    /// (the new process of an upgrade rewrites it from its table once alone).
    fn failed_write(&mut self, start: Option<u64>, done: usize, e: io::Error) -> StoreError {
        let err = io_err("append to", &self.path)(e);
        // Offsets after the mark are no longer what the compaction expects.
        self.mark = None;
        let Some(start) = start.filter(|_| done > 0) else {
            return err;
        };
        if !self.ownership.sole_writer() {
            self.poison(err.clone());
            return err;
        }
        if let Err(e) = self.file.set_len(start) {
            // If even that fails the file is in an unknown state.
            self.poison(io_err("roll back a failed append to", &self.path)(e));
        }
        err
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.check()?;
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing
            // written since the last good sync can be vouched for again (the lesson of
            // PostgreSQL's fsync bug). Refuse further writes instead of pretending.
            let err = io_err("sync", &self.path)(e);
            self.poison(err.clone());
            return Err(err);
        }
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn swap(&mut self, mut temp: File) -> Result<(), StoreError> {
        self.check()?;
        let temp_path = self.dir.join(files::COMPACT_TEMP);
        let Some(mark) = self.mark.take() else {
            let _ = std::fs::remove_file(&temp_path);
            return Err(StoreError::CompactionInterrupted);
        };
        // A process started with --upgrade may have opened the journal meanwhile: a
        // rename now would hide its appends from it.
        if !self.ownership.sole_writer() {
            let _ = std::fs::remove_file(&temp_path);
            return Err(StoreError::Shared);
        }
        let result = self.copy_tail(&mut temp, mark);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp_path);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&temp_path, &self.path) {
            let _ = std::fs::remove_file(&temp_path);
            return Err(io_err("rename compacted journal onto", &self.path)(e));
        }
        // The old journal is unlinked now: appending to its handle would write to a file
        // nobody reads again, so switch handles whatever happens next.
        let reopened = files::open_append(&self.path);
        let synced = files::sync_dir(&self.dir);
        match reopened {
            Ok(file) => self.file = file,
            Err(e) => {
                self.poison(e.clone());
                return Err(e);
            }
        }
        if let Err(e) = synced {
            // After a power cut the directory might still name the old journal, without
            // the appends that follow; refuse them rather than acknowledge them.
            self.poison(e.clone());
            return Err(e);
        }
        self.len = self
            .file
            .metadata()
            .map_err(io_err("stat", &self.path))?
            .len();
        self.caught_up_to.store(self.len, Ordering::Release);
        let c = &self.counters;
        c.journal_bytes.store(self.len, Ordering::Relaxed);
        c.compactions.fetch_add(1, Ordering::Relaxed);
        c.last_compaction.store((self.clock)(), Ordering::Relaxed);
        Ok(())
    }

    /// Appends journal bytes `mark..len` (records that arrived while the snapshot was
    /// taken and written) to the compacted file and flushes it.
    fn copy_tail(&self, temp: &mut File, mark: u64) -> Result<(), StoreError> {
        let temp_path = self.dir.join(files::COMPACT_TEMP);
        let mut source = File::open(&self.path).map_err(io_err("read", &self.path))?;
        source
            .seek(SeekFrom::Start(mark))
            .map_err(io_err("read", &self.path))?;
        let want = self.len.saturating_sub(mark);
        let copied = io::copy(&mut source.take(want), temp).map_err(io_err("write", &temp_path))?;
        if copied != want {
            return Err(StoreError::CompactionInterrupted);
        }
        temp.sync_all().map_err(io_err("sync", &temp_path))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn writer_on(dir: &std::path::Path, file: File, counters: Arc<Counters>) -> Writer {
        Writer::new(
            dir.join("journal"),
            file,
            0,
            StorageSync::Write,
            counters,
            || 0,
            Sharing {
                ownership: Arc::new(Ownership::new(dir, None, None)),
                caught_up_to: Arc::new(AtomicU64::new(0)),
            },
        )
    }

    /// A writer on an empty journal in `dir` opened read-only: every append fails
    /// before a byte lands, as on a full disk.
    pub(crate) fn unwritable_writer(dir: &std::path::Path) -> (Writer, Arc<Counters>) {
        let path = dir.join("journal");
        std::fs::write(&path, b"").expect("journal");
        let file = File::open(&path).expect("open read-only");
        let counters = Arc::new(Counters::default());
        (writer_on(dir, file, counters.clone()), counters)
    }

    #[test]
    fn a_failed_append_that_wrote_nothing_is_an_outage_not_a_poisoning() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Nothing needs cutting off and the journal stays trustworthy: writes may work
        // again.
        let (mut writer, counters) = unwritable_writer(dir.path());
        let written = writer.write(b"record", 1);
        assert!(written.is_err());
        writer.note(&written, true);
        assert!(matches!(counters.health(), StoreHealth::Failing { .. }));
        assert!(!matches!(
            writer.write(b"record", 1),
            Err(StoreError::Failed { .. })
        ));
    }

    #[test]
    fn a_flush_with_nothing_to_write_does_not_end_an_outage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut writer, counters) = unwritable_writer(dir.path());
        let written = writer.write(b"record", 1);
        writer.note(&written, true);
        assert!(matches!(counters.health(), StoreHealth::Failing { .. }));
        // The device flush of a read-only handle succeeds; appends still fail.
        let (ack, mut rx) = tokio::sync::oneshot::channel();
        writer.turn(&mut vec![Msg::Flush { ack }]);
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
        assert!(
            matches!(counters.health(), StoreHealth::Failing { .. }),
            "{:?}",
            counters.health()
        );
    }

    #[test]
    fn a_poisoned_journal_refuses_later_writes_and_shows_in_the_counters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal");
        std::fs::write(&path, b"").expect("journal");
        let file = files::open_append(&path).expect("open");
        let counters = Arc::new(Counters::default());
        let mut writer = writer_on(dir.path(), file, counters.clone());
        writer.poison(StoreError::CompactionInterrupted);
        assert!(matches!(counters.health(), StoreHealth::Poisoned { .. }));
        assert!(matches!(
            writer.write(b"record", 1),
            Err(StoreError::Failed { .. })
        ));
    }
}
