//! The single journal writer: a dedicated thread that turns everything queued since its
//! last write into one `write(2)` and, when asked for, one `fdatasync(2)` (group commit).
//! Request tasks never touch the file and never hold a lock while they wait.

use super::files::{self, io_err};
use super::{StoreError, UnixSecs};
use crate::config::model::StorageSync;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where a waiter learns the outcome of its request.
pub(crate) type Ack = oneshot::Sender<Result<(), StoreError>>;

/// Upper bound on messages folded into one write, so one writer turn stays short.
const MAX_BATCH: usize = 4096;

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
    /// Set with [`Writer::failed`]: the journal takes no more writes.
    pub failed: AtomicBool,
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
    pub fn new(
        dir: PathBuf,
        path: PathBuf,
        file: File,
        len: u64,
        sync: StorageSync,
        counters: Arc<Counters>,
        clock: fn() -> UnixSecs,
    ) -> Self {
        counters.journal_bytes.store(len, Ordering::Relaxed);
        Writer {
            dir,
            path,
            file,
            len,
            sync,
            counters,
            clock,
            mark: None,
            failed: None,
        }
    }

    /// Serves requests until every sender is gone.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            self.turn(&mut batch);
        }
        // Dropped without a flush: still hand the device what the kernel holds, so an
        // orderly exit without `flush` loses nothing either. Nobody is left to tell.
        let _ = self.file.sync_data();
    }

    fn turn(&mut self, batch: &mut Vec<Msg>) {
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
        let written = if buf.is_empty() {
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
            return;
        }
        let synced = if write_failed { written } else { self.sync() };
        for ack in after_sync {
            let _ = ack.send(synced.clone());
        }
    }

    /// Refuses every later write, and says so in the counters for the metrics.
    fn poison(&mut self, cause: StoreError) {
        self.counters.failed.store(true, Ordering::Relaxed);
        self.failed = Some(cause);
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
        if let Err(e) = self.file.write_all(buf) {
            let err = io_err("append to", &self.path)(e);
            // Cut a partial write off again, so later appends do not follow garbage that
            // replay would stop at. If even that fails the file is in an unknown state.
            if let Err(e) = self.file.set_len(self.len) {
                self.poison(io_err("roll back a failed append to", &self.path)(e));
            }
            // Offsets after the mark are no longer what the compaction expects.
            self.mark = None;
            return Err(err);
        }
        self.len += buf.len() as u64;
        let c = &self.counters;
        c.records_written.fetch_add(records, Ordering::Relaxed);
        c.writes.fetch_add(1, Ordering::Relaxed);
        c.journal_bytes.store(self.len, Ordering::Relaxed);
        Ok(())
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
mod tests {
    use super::*;

    #[test]
    fn a_failed_rollback_refuses_later_writes_and_shows_in_the_counters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal");
        std::fs::write(&path, b"").expect("journal");
        // Read-only: the append fails, and so does cutting it off again (ftruncate),
        // which leaves the file in a state the writer cannot vouch for.
        let file = File::open(&path).expect("open read-only");
        let counters = Arc::new(Counters::default());
        let mut writer = Writer::new(
            dir.path().to_path_buf(),
            path,
            file,
            0,
            StorageSync::Write,
            counters.clone(),
            || 0,
        );
        assert!(writer.write(b"record", 1).is_err());
        assert!(counters.failed.load(Ordering::Relaxed));
        assert!(matches!(
            writer.write(b"record", 1),
            Err(StoreError::Failed { .. })
        ));
    }
}
