//! The journal's queue and who writes it.
//!
//! Every record is queued in call order; the queue's order is the journal's order.
//! Whoever holds the [`Writer`] takes everything queued and turns it into one
//! `write(2)` (and, when asked for, one `fdatasync(2)`): group commit.
//!
//! In `write` mode a request task that queues a record it waits for (a pin) tries to
//! take the writer itself: when nobody holds it, the task writes the queue on its own
//! thread and its record is written before the task goes on, with no thread woken and
//! no context switch. When the writer is busy, or the record needs a device flush
//! (`fsync` mode), a compaction step or a flush, the task rings the writer thread
//! instead and waits, as before. Request tasks never block on the writer's lock.
//!
//! Records nobody waits for (unpins, activity touches) only ring the writer thread
//! once per [`LAZY_DELAY`]; in the meantime the next pin's write usually carries them.

use super::writer::{Counters, Msg, Writer};
use super::{StoreError, StoreHealth};
use crate::config::model::StorageSync;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// Upper bound on messages folded into one write, so one writer turn stays short.
const MAX_BATCH: usize = 4096;

/// How long a record nobody waits for may stay queued when no other write carries it.
/// A crash in that window loses it; such records are safe to lose (a lost unpin leaves a
/// pin that expires, a lost touch an older activity time).
/// Long in unit tests, so that a test can tell a carried record from one written alone.
pub(crate) const LAZY_DELAY: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_millis(20)
};

/// The queue and the writer, shared by every store handle and the writer thread.
pub(crate) struct Queue {
    queued: Mutex<Vec<Msg>>,
    writer: Mutex<Writer>,
    sync: StorageSync,
    /// The writer's counters, so the writer thread reads the journal's health without
    /// taking the writer from a request task that wants it.
    counters: Arc<Counters>,
    /// Set when a lazy record rang the writer thread and the thread has not yet taken
    /// the queue since: later lazy records need not ring again.
    lazy_rung: AtomicBool,
}

/// The writer thread's doorbell. Holding one keeps the thread alive; the thread writes
/// what is left and stops once every doorbell is dropped.
pub(crate) struct Doorbell(SyncSender<()>);

impl Queue {
    /// Starts the writer thread for `writer`.
    pub fn start(writer: Writer) -> std::io::Result<(Arc<Queue>, Doorbell)> {
        let queue = Arc::new(Queue {
            sync: writer.sync,
            counters: writer.counters.clone(),
            queued: Mutex::new(Vec::new()),
            writer: Mutex::new(writer),
            lazy_rung: AtomicBool::new(false),
        });
        // One slot: a ring that finds it full finds the thread already due to run.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread_queue = queue.clone();
        std::thread::Builder::new()
            .name("pin-journal".into())
            .spawn(move || thread_queue.serve(rx))?;
        Ok((queue, Doorbell(tx)))
    }

    /// Queues `msg` behind everything queued before, and sees that it is written: at
    /// once when somebody waits for it, within [`LAZY_DELAY`] otherwise.
    pub fn push(&self, msg: Msg, bell: &Doorbell) -> Result<(), StoreError> {
        let lazy = msg.is_lazy();
        let inline = self.sync == StorageSync::Write && matches!(msg, Msg::Append { .. });
        self.lock_queued().push(msg);
        if lazy {
            if self.lazy_rung.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            return bell.ring();
        }
        if inline && self.write_here() {
            return Ok(());
        }
        bell.ring()
    }

    /// Writes the queue on the caller's thread if nobody holds the writer. False when
    /// the writer thread has something to do: the writer was busy, the queue holds a
    /// step (a flush, a compaction's swap) that may block or more than one turn's worth,
    /// or writes began to fail.
    fn write_here(&self) -> bool {
        let mut writer = match self.writer.try_lock() {
            Ok(writer) => writer,
            Err(TryLockError::WouldBlock) => return false,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
        };
        let mut batch = std::mem::take(&mut *self.lock_queued());
        // At most one writer turn's worth on a request task; the rest waits its turn.
        let cheap = batch
            .iter()
            .position(|m| !matches!(m, Msg::Append { .. } | Msg::Mark))
            .unwrap_or(batch.len())
            .min(MAX_BATCH);
        let rest = batch.split_off(cheap);
        writer.turn(&mut batch);
        if rest.is_empty() {
            // A failed write starts an outage: the writer thread probes until it ends.
            return !writer.is_failing();
        }
        // Back in front of whatever was queued meanwhile, for the writer thread.
        let mut queued = self.lock_queued();
        let later = std::mem::replace(&mut *queued, rest);
        queued.extend(later);
        false
    }

    /// The writer thread: writes whatever is queued each time it is rung, until every
    /// doorbell is gone; then writes the rest and flushes the file.
    fn serve(&self, rings: Receiver<()>) {
        loop {
            // Failing, not poisoned: a poisoned journal takes no writes, probes included.
            let failing = matches!(self.counters.health(), StoreHealth::Failing { .. });
            let rung = if failing {
                // Try a write of its own now and then, so an outage ends even when no
                // Create-Session comes to try one.
                match rings.recv_timeout(super::writer::PROBE_INTERVAL) {
                    Ok(()) => true,
                    Err(RecvTimeoutError::Timeout) => {
                        self.lock_writer().probe();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => false,
                }
            } else {
                rings.recv().is_ok()
            };
            if !rung {
                break;
            }
            if self.lazy_rung.load(Ordering::Acquire) && self.only_lazy() {
                // Give a write that is coming anyway the chance to carry them.
                if let Err(RecvTimeoutError::Disconnected) = rings.recv_timeout(LAZY_DELAY) {
                    break;
                }
            }
            self.write_all();
        }
        self.write_all();
        self.lock_writer().close();
    }

    /// Whether nothing queued is waited for.
    fn only_lazy(&self) -> bool {
        self.lock_queued().iter().all(Msg::is_lazy)
    }

    fn write_all(&self) {
        let mut writer = self.lock_writer();
        self.lazy_rung.store(false, Ordering::Release);
        let mut batch = std::mem::take(&mut *self.lock_queued());
        while !batch.is_empty() {
            let mut rest = batch.split_off(batch.len().min(MAX_BATCH));
            writer.turn(&mut batch);
            std::mem::swap(&mut batch, &mut rest);
        }
    }

    /// Holds the writer, as a write in progress would, so tests can see what a request
    /// task does when it finds the writer busy.
    #[cfg(test)]
    pub fn hold_writer(&self) -> MutexGuard<'_, Writer> {
        self.lock_writer()
    }

    fn lock_queued(&self) -> MutexGuard<'_, Vec<Msg>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Doorbell {
    fn ring(&self) -> Result<(), StoreError> {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => Ok(()),
            Err(TrySendError::Disconnected(())) => Err(StoreError::Closed),
        }
    }
}
