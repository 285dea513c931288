//! Durable pins: an append-only journal with compaction in the data directory.
//!
//! Every pin is appended before the Create-Session Ack is released; unpins are appended
//! too; the journal is replayed at start. Whatever many request tasks queued goes into a
//! single `write(2)` and, in `fsync` mode, a single `fdatasync(2)`, so durability costs
//! one device flush per burst rather than per session; in `write` mode a pin is usually
//! written by its own request task, without waking another thread (see `queue`).
//! `docs/storage.md` gives the format, the crash semantics and the measured costs.

mod errors;
mod files;
mod format;
mod lock;
mod pending;
mod queue;
mod replay;
mod types;
mod writer;

#[cfg(test)]
mod tests;

pub use errors::StoreError;
pub use pending::PendingWrite;
pub use types::{
    restored_last_seen, Loaded, PinOwner, StoreHealth, StoreStats, StoredPin, TailDamage,
};

use super::table::UnixSecs;
use super::SessionKey;
pub use crate::config::model::StorageSync;
pub use files::SnapshotWriter;
use files::{io_err, JOURNAL};
use lock::{DirLock, Ownership, UpgradeLock};
use queue::{Doorbell, Queue};
pub use replay::PinSink;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::oneshot;
pub use types::TailPins;
use writer::{Counters, Msg, Sharing, Writer};

/// What [`PinStore::read_live`] finds: the live pins, and the upload-reply paths of
/// those that have one.
pub type LivePins = (
    Vec<(SessionKey, PinOwner, StoredPin)>,
    Vec<(SessionKey, Box<str>)>,
);

/// A journal smaller than this is never worth compacting.
pub const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// Compact once the journal is this many times the size of the live pins.
pub const COMPACT_RATIO: u64 = 4;

/// The durable pin store. Cheap to clone; every clone feeds the same queue, whose
/// writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct PinStore {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Arc<Queue>,
    doorbell: Doorbell,
    counters: Arc<Counters>,
    dir: PathBuf,
    /// One compaction at a time: each sets the writer's mark.
    compacting: tokio::sync::Mutex<()>,
    /// This process's claims on the data directory: its lock (only once the previous
    /// process has exited when the store was opened for an upgrade) and whether an
    /// upgrade shares the journal.
    ownership: Arc<Ownership>,
    /// Every record before this offset is known to this process (its own appends, and
    /// what [`PinStore::read_tail`] read); the writer moves it over its own appends.
    caught_up_to: Arc<AtomicU64>,
    /// One tail read at a time.
    tail_reader: Mutex<()>,
    /// Whether the journal's header is this format, so reply records may be appended.
    replies_journaled: AtomicBool,
}

impl PinStore {
    /// Opens (or creates) the journal in `dir`: replays it, cuts off a torn tail, and
    /// compacts it when it is mostly dead records. A foreign file, a newer format or an
    /// undecodable record is an error: starting empty would silently drop pins.
    pub fn open(dir: &Path, sync: StorageSync) -> Result<(PinStore, Loaded), StoreError> {
        Self::open_inner(dir, sync, super::unix_now, false, None)
    }

    /// Opens the journal like [`PinStore::open`] (or, with `upgrade`, like
    /// [`PinStore::open_shared`]) but hands its pins to `sink` record by record instead
    /// of collecting them: a start holds its pins once, in the table, rather than in a
    /// map, a list and the table at the same time. [`Loaded::pins`] is empty, and a
    /// journal worth compacting is left to the first compaction check of the running
    /// process (the table is the only copy of the live pins).
    pub fn open_into(
        dir: &Path,
        sync: StorageSync,
        upgrade: bool,
        sink: &mut dyn PinSink,
    ) -> Result<(PinStore, Loaded), StoreError> {
        Self::open_inner(dir, sync, super::unix_now, upgrade, Some(sink))
    }

    /// Opens a journal that the previous process is still appending to (a graceful
    /// upgrade): it is read as it is, never cut or compacted, since a record at its end
    /// may still be in flight. Call [`PinStore::read_live`] once the old process is
    /// gone to pick up what it wrote meanwhile.
    pub fn open_shared(dir: &Path, sync: StorageSync) -> Result<(PinStore, Loaded), StoreError> {
        Self::open_inner(dir, sync, super::unix_now, true, None)
    }

    #[cfg(test)]
    pub(crate) fn open_with_clock(
        dir: &Path,
        sync: StorageSync,
        clock: fn() -> UnixSecs,
    ) -> Result<(PinStore, Loaded), StoreError> {
        Self::open_inner(dir, sync, clock, false, None)
    }

    fn open_inner(
        dir: &Path,
        sync: StorageSync,
        clock: fn() -> UnixSecs,
        shared_with_old_process: bool,
        sink: Option<&mut dyn PinSink>,
    ) -> Result<(PinStore, Loaded), StoreError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        // Before anything is read or written: another process may be appending.
        let (dir_lock, upgrade_lock) = if shared_with_old_process {
            (None, Some(UpgradeLock::acquire(dir)?))
        } else {
            (Some(DirLock::acquire(dir)?), None)
        };
        let ownership = Arc::new(Ownership::new(dir, dir_lock, upgrade_lock));
        let removed_stale_temp = !shared_with_old_process && files::remove_stale_temp(dir)?;
        let path = dir.join(JOURNAL);
        let temp = dir.join(files::COMPACT_TEMP);
        let now = clock();
        let fresh = match fs::metadata(&path) {
            Ok(meta) => meta.len() == 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            // Anything else (permissions, I/O) must not be mistaken for "no journal":
            // writing a fresh one over it would drop every pin.
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        if fresh {
            files::write_snapshot(&temp, [])?;
            files::install(&temp, &path, dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        // A journal in an older format is read whole, as `open` reads it, so that it can
        // be rewritten in this format before anything is appended (never an older
        // header with newer records after it); its pins go to the sink after that.
        let (sink, sink_after_rewrite) = match sink {
            Some(sink) if replay::read_version(&path)?.is_some_and(|v| v < format::VERSION) => {
                (None, Some(sink))
            }
            sink => (sink, None),
        };
        // Pin records read and their bytes, when streamed into a sink.
        let (replayed, streamed) = match sink {
            None => (replay::replay(&path, &file)?, None),
            Some(sink) => {
                let streamed = replay::replay_into(&path, &file, sink)?;
                let replayed = replay::Replayed {
                    live: Default::default(),
                    records: streamed.scan.records,
                    valid_len: streamed.scan.valid_len,
                    damage: streamed.scan.damage,
                    version: streamed.version,
                };
                (
                    replayed,
                    Some((streamed.pin_records, streamed.pin_record_bytes)),
                )
            }
        };
        let file_len = file.metadata().map_err(io_err("stat", &path))?.len();

        let truncated_bytes = if shared_with_old_process {
            0
        } else {
            file_len.saturating_sub(replayed.valid_len)
        };
        let mut discarded_to = None;
        if truncated_bytes > 0 {
            discarded_to = Some(files::save_discarded(dir, &file, replayed.valid_len, now)?);
            file.set_len(replayed.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(io_err("truncate", &path))?;
        }
        drop(file);

        let live_bytes = replayed.live_bytes();
        // An older format is rewritten in this one before anything is appended, so a
        // journal's header always tells whether its pins carry activity. Its idle
        // clocks are raised to now as they are loaded (see `restored_last_seen`). A
        // streamed start never sees one (it reads an older journal whole, above).
        let old_format = replayed.version < format::VERSION;
        // Version 2 added activity records; version 3 only the reply record.
        let activity_journaled = replayed.version >= format::ACTIVITY_SINCE;
        let compacted = !shared_with_old_process
            && (old_format
                || (streamed.is_none() && worth_compacting(replayed.valid_len, live_bytes)));
        if compacted {
            let raised: Vec<StoredPin> = replayed
                .live
                .values()
                .map(|p| StoredPin {
                    // A clock without journaled activity is raised to now (see
                    // `restored_last_seen`); one with it is kept as journaled.
                    last_seen: if activity_journaled {
                        p.pin.last_seen
                    } else {
                        restored_last_seen(p.pin.last_seen, now, 0, false)
                    },
                    ..p.pin
                })
                .collect();
            let live = replayed
                .live
                .iter()
                .zip(&raised)
                .map(|((key, p), pin)| (key, &p.owner, pin, p.reply.as_deref()));
            files::write_snapshot_with_replies(&temp, live)?;
            files::install(&temp, &path, dir)?;
        }

        let file = files::open_append(&path)?;
        let len = file.metadata().map_err(io_err("stat", &path))?.len();
        // Shared with an old process, the bytes after the last complete record may be a
        // record it is writing: read them again later rather than skip them.
        let caught_up_to = Arc::new(AtomicU64::new(if shared_with_old_process {
            replayed.valid_len.max(format::HEADER_LEN as u64)
        } else {
            len
        }));
        let counters = Arc::new(Counters::default());
        // Seed the average pin record size from what is on disk, for should_compact.
        let (pin_records, pin_record_bytes) = streamed.unwrap_or((
            replayed.live.len() as u64,
            live_bytes.saturating_sub(format::HEADER_LEN as u64),
        ));
        counters.pin_records.store(pin_records, Ordering::Relaxed);
        counters
            .pin_record_bytes
            .store(pin_record_bytes, Ordering::Relaxed);
        let writer = Writer::new(
            path.clone(),
            file,
            len,
            sync,
            counters.clone(),
            clock,
            Sharing {
                ownership: ownership.clone(),
                caught_up_to: caught_up_to.clone(),
            },
        );
        let (queue, doorbell) =
            Queue::start(writer).map_err(io_err("start the writer thread for", dir))?;

        log_recovery(&path, &replayed, truncated_bytes, discarded_to.as_deref());
        if removed_stale_temp {
            tracing::info!(
                dir = %dir.display(),
                "removed the temp file of a compaction that did not finish; the journal is intact"
            );
        }
        if compacted {
            tracing::info!(
                journal = %path.display(),
                before_bytes = replayed.valid_len,
                after_bytes = len,
                "compacted the pin journal to its live pins"
            );
        }
        let mut replies = Vec::new();
        let pins = match sink_after_rewrite {
            Some(sink) => {
                sink.journal_format(activity_journaled);
                for (key, p) in replayed.live {
                    sink.pin(key.clone(), &p.owner, p.pin);
                    if let Some(path) = &p.reply {
                        sink.reply(&key, path);
                    }
                }
                Vec::new()
            }
            None => replayed
                .live
                .into_iter()
                .map(|(key, p)| {
                    if let Some(path) = p.reply {
                        replies.push((key.clone(), path));
                    }
                    (key, p.owner, p.pin)
                })
                .collect(),
        };
        let loaded = Loaded {
            pins,
            activity_journaled,
            replies,
            records: replayed.records,
            truncated_bytes,
            damage: replayed.damage,
            discarded_to,
            compacted,
            removed_stale_temp,
            loaded_at: now,
        };
        let shared = Arc::new(Shared {
            queue,
            doorbell,
            counters,
            dir: dir.to_path_buf(),
            compacting: tokio::sync::Mutex::new(()),
            ownership: ownership.clone(),
            caught_up_to,
            tail_reader: Mutex::new(()),
            // A journal still in an older format is shared with the process of an
            // older build during an upgrade: it would refuse a reply record.
            replies_journaled: AtomicBool::new(!shared_with_old_process || !old_format),
        });
        if shared_with_old_process {
            claim_dir_when_free(dir, Arc::downgrade(&ownership))?;
        }
        Ok((PinStore { shared }, loaded))
    }

    /// Whether this process is the journal's only writer: it holds the data
    /// directory's lock (after a normal open; after an upgrade, once the previous
    /// process has exited) and no process started with `--upgrade` shares the journal.
    /// While not, another process may append pins this one does not know of (see
    /// [`PinStore::read_tail`]), and the journal is never compacted or cut back.
    pub fn holds_dir_lock(&self) -> bool {
        self.shared.ownership.sole_writer()
    }

    /// The pins other processes appended since this process last looked (during an
    /// upgrade). Reads the file, synchronously: meant for a table miss while the
    /// journal is shared, when the tail is short. `complete` is false when the read
    /// stopped before the end of the file (a record being written, or damage), so a
    /// pin may still be missing.
    pub fn read_tail(&self) -> Result<TailPins, StoreError> {
        let _one_at_a_time = self
            .shared
            .tail_reader
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let path = self.shared.dir.join(JOURNAL);
        let from = self.shared.caught_up_to.load(Ordering::Acquire);
        let (records, scan) = replay::read_tail(&path, from)?;
        self.shared
            .caught_up_to
            .fetch_max(scan.valid_len, Ordering::AcqRel);
        let pins = records
            .into_iter()
            .filter_map(|record| match record {
                format::Record::Pin {
                    key,
                    backend,
                    host,
                    path,
                    pin,
                } => Some((
                    key,
                    PinOwner {
                        backend: backend.into(),
                        host: (!host.is_empty()).then(|| host.into()),
                        path: path.into(),
                    },
                    pin,
                )),
                // An unpin by the other process leaves a pin here that its owner
                // answers not-found for (and that expires): routed right either way.
                format::Record::Unpin { .. } => None,
                // The other process routes the replies it learned until it exits.
                format::Record::Reply { .. } => None,
            })
            .collect();
        Ok(TailPins {
            pins,
            complete: scan.damage.is_none(),
        })
    }

    /// Journals that `key` is owned by `backend_id` since `created`, and was created
    /// with `host` at URL `path`. The record is queued when this is called (so calls are
    /// journaled in call order); the future resolves once it is written (`write`) or
    /// also flushed to the device (`fsync`). Dropping the future does not withdraw the
    /// record.
    pub fn pin(
        &self,
        key: &SessionKey,
        backend_id: &str,
        host: Option<&str>,
        path: &str,
        created: UnixSecs,
    ) -> PendingWrite {
        let queued = self.encode_pin(key, backend_id, host, path, &StoredPin::new(created));
        PendingWrite::new(queued.and_then(|bytes| self.append(bytes, true)))
    }

    /// Re-appends a pin record with the session's current activity, so a restart knows
    /// its idle clock to within one journaling interval. Not waited for and not flushed
    /// on its own: a lost one only makes the session look idle for longer.
    pub fn touch(
        &self,
        key: &SessionKey,
        backend_id: &str,
        host: Option<&str>,
        path: &str,
        pin: &StoredPin,
    ) -> PendingWrite {
        let queued = self.encode_pin(key, backend_id, host, path, pin);
        PendingWrite::new(queued.and_then(|bytes| self.append(bytes, false)))
    }

    fn encode_pin(
        &self,
        key: &SessionKey,
        backend_id: &str,
        host: Option<&str>,
        path: &str,
        pin: &StoredPin,
    ) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::with_capacity(96);
        format::encode_pin(&mut bytes, key, backend_id, host.unwrap_or(""), path, pin)?;
        let c = &self.shared.counters;
        c.pin_records.fetch_add(1, Ordering::Relaxed);
        c.pin_record_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Journals that the upload reply of `key` (pinned earlier) is served at `path`
    /// (path and query). Resolves like [`PinStore::pin`], so a final Fragment's Ack
    /// can wait for it. `None` when the journal cannot take the record yet: shared
    /// during an upgrade with an older build's process, in that build's format, until
    /// the catch-up compaction rewrites it, or when `path` is longer than a record
    /// field (1,024 bytes): such a route lives in memory only.
    pub fn reply(&self, key: &SessionKey, path: &str) -> Option<PendingWrite> {
        if !self.shared.replies_journaled.load(Ordering::Acquire) || path.len() > format::MAX_FIELD
        {
            return None;
        }
        let mut bytes = Vec::with_capacity(32 + path.len());
        let queued =
            format::encode_reply(&mut bytes, key, path).and_then(|()| self.append(bytes, true));
        Some(PendingWrite::new(queued))
    }

    /// Journals that `key` is no longer pinned. Queued when called, so it always lands
    /// after an earlier `pin` of the key; resolves once written, without waiting for a
    /// device flush: a lost unpin only leaves a stale pin that expires.
    pub fn unpin(&self, key: &SessionKey) -> PendingWrite {
        let mut bytes = Vec::with_capacity(32);
        let queued = format::encode_unpin(&mut bytes, key).and_then(|()| self.append(bytes, false));
        PendingWrite::new(queued)
    }

    /// Flushes everything queued so far to the device, in either sync mode. For an
    /// orderly shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, rx) = oneshot::channel();
        self.send(Msg::Flush { ack })?;
        PendingWrite::new(Ok(rx)).await
    }

    /// [`PinStore::flush`] for a thread outside any runtime, waiting at most `limit`
    /// (`None` when it gave up: a disk that stalls must not keep a stopping process
    /// alive, and the process's signal handlers are gone by then). The process's last
    /// step, once its runtimes have stopped: what the requests that ended during the
    /// stop queued without waiting (unpins, activity touches) is on disk before it
    /// exits.
    pub fn flush_blocking(&self, limit: std::time::Duration) -> Option<Result<(), StoreError>> {
        use tokio::sync::oneshot::error::TryRecvError;
        let (ack, mut rx) = oneshot::channel();
        if let Err(e) = self.send(Msg::Flush { ack }) {
            return Some(Err(e));
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            match rx.try_recv() {
                Ok(answer) => return Some(answer),
                Err(TryRecvError::Closed) => return Some(Err(StoreError::Closed)),
                Err(TryRecvError::Empty) if std::time::Instant::now() >= deadline => return None,
                Err(TryRecvError::Empty) => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
    }

    /// Rewrites the journal to hold only the live pins, atomically (temp file, fsync,
    /// rename, fsync of the directory); a crash at any point leaves a loadable journal.
    ///
    /// `snapshot` must return every live pin of the table. It is a closure, not a list,
    /// because it must run after the store marks the journal's end: a pin that races
    /// the snapshot is either in it or was journaled after the mark, and the records
    /// after the mark are carried into the new file. Pins and unpins go on meanwhile;
    /// only the final copy of that short tail and the rename hold up the writer.
    pub async fn compact<F>(&self, snapshot: F) -> Result<(), StoreError>
    where
        F: FnOnce() -> Vec<(SessionKey, PinOwner, StoredPin)>,
    {
        self.compact_streaming(|out| {
            for (key, owner, pin) in snapshot() {
                let host = owner.host.as_deref().unwrap_or("");
                out.pin(&key, &owner.backend, host, &owner.path, &pin);
            }
        })
        .await
    }

    /// [`PinStore::compact`] for a large table: `snapshot` hands each live pin to the
    /// [`SnapshotWriter`], which encodes it straight into the new file's buffer, so
    /// neither a list of the pins nor a string per pin is ever made.
    pub async fn compact_streaming<F>(&self, snapshot: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut SnapshotWriter),
    {
        let _one_at_a_time = self.shared.compacting.lock().await;
        self.send(Msg::Mark)?;
        let temp = self.shared.dir.join(files::COMPACT_TEMP);
        let mut out = SnapshotWriter::create(&temp)?;
        snapshot(&mut out);
        let written = tokio::task::spawn_blocking(move || {
            out.finish().inspect_err(|_| {
                let _ = fs::remove_file(&temp);
            })
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        let (ack, rx) = oneshot::channel();
        self.send(Msg::Swap { temp: written, ack })?;
        PendingWrite::new(Ok(rx)).await?;
        // The new file has this format's header.
        self.shared.replies_journaled.store(true, Ordering::Release);
        Ok(())
    }

    /// Every live pin the journal holds now, after flushing this store's own writes,
    /// and the upload-reply path of each that has one. Reads only; a damaged tail is
    /// ignored (the next ordinary start cuts it).
    pub async fn read_live(&self) -> Result<LivePins, StoreError> {
        self.flush().await?;
        let path = self.shared.dir.join(JOURNAL);
        tokio::task::spawn_blocking(move || {
            let file = fs::File::open(&path).map_err(io_err("open", &path))?;
            let replayed = replay::replay(&path, &file)?;
            let mut replies = Vec::new();
            let pins = replayed
                .live
                .into_iter()
                .map(|(key, p)| {
                    if let Some(path) = p.reply {
                        replies.push((key.clone(), path));
                    }
                    (key, p.owner, p.pin)
                })
                .collect();
            Ok((pins, replies))
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Whether the journal has grown past [`COMPACT_RATIO`] times what `live` pins need
    /// (and past [`COMPACT_MIN_BYTES`]): the table's owner asks this now and then.
    pub fn should_compact(&self, live: u64) -> bool {
        let c = &self.shared.counters;
        let records = c.pin_records.load(Ordering::Relaxed).max(1);
        let average = (c.pin_record_bytes.load(Ordering::Relaxed) / records).max(1);
        let live_bytes = format::HEADER_LEN as u64 + live.saturating_mul(average);
        worth_compacting(c.journal_bytes.load(Ordering::Relaxed), live_bytes)
    }

    /// Whether the journal takes writes now.
    pub fn health(&self) -> StoreHealth {
        self.shared.counters.health()
    }

    /// Current counters.
    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let last = c.last_compaction.load(Ordering::Relaxed);
        StoreStats {
            records_written: c.records_written.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            journal_bytes: c.journal_bytes.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            last_compaction: (last != 0).then_some(last),
            failed: matches!(c.health(), StoreHealth::Poisoned { .. }),
        }
    }

    fn append(
        &self,
        bytes: Vec<u8>,
        wait_sync: bool,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (ack, rx) = oneshot::channel();
        let pending = &self.shared.counters.pending;
        pending.fetch_add(1, Ordering::Relaxed);
        let msg = Msg::Append {
            bytes,
            records: 1,
            wait_sync,
            ack,
        };
        self.send(msg).inspect_err(|_| {
            pending.fetch_sub(1, Ordering::Relaxed);
        })?;
        Ok(rx)
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        self.shared.queue.push(msg, &self.shared.doorbell)
    }
}

fn worth_compacting(journal_bytes: u64, live_bytes: u64) -> bool {
    journal_bytes >= COMPACT_MIN_BYTES && journal_bytes > live_bytes.saturating_mul(COMPACT_RATIO)
}

/// The one warning an operator needs after a crash, and the summary line of every start.
fn log_recovery(path: &Path, replayed: &replay::Replayed, cut: u64, saved: Option<&Path>) {
    if let (Some(damage), Some(saved)) = (replayed.damage, saved) {
        tracing::warn!(
            journal = %path.display(),
            at_byte = replayed.valid_len,
            cut_bytes = cut,
            saved_to = %saved.display(),
            "pin journal: cut off a torn or damaged tail ({damage}); pins journaled in it are lost"
        );
    }
    // Streamed into a sink, the pins are counted by the sink's owner.
    if replayed.live.is_empty() {
        tracing::info!(journal = %path.display(), records = replayed.records, "pin journal loaded");
    } else {
        tracing::info!(
            journal = %path.display(),
            pins = replayed.live.len(),
            records = replayed.records,
            "pin journal loaded"
        );
    }
}

/// After an upgrade, takes the data directory's lock as soon as the previous process
/// releases it by exiting. A store dropped before that lets it go at once.
fn claim_dir_when_free(dir: &Path, slot: Weak<Ownership>) -> Result<(), StoreError> {
    let thread_dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("data-dir-lock".into())
        .spawn(move || match DirLock::acquire_blocking(&thread_dir) {
            Ok(lock) => {
                if let Some(ownership) = slot.upgrade() {
                    ownership.take_over(lock);
                    tracing::info!(target: "bitsgate::store", dir = %thread_dir.display(), "the previous process released the data dir; it is this process's now");
                }
            }
            Err(e) => {
                tracing::error!(target: "bitsgate::store", error = %e, "cannot lock the data dir after the upgrade");
            }
        })
        .map(drop)
        .map_err(io_err("start the lock thread for", dir))
}
