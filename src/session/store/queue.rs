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
        let (queue, doorbell, rings) = Queue::new(writer);
        let thread_queue = queue.clone();
        std::thread::Builder::new()
            .name("pin-journal".into())
            .spawn(move || thread_queue.serve(rings))?;
        Ok((queue, doorbell))
    }

    /// The queue, its doorbell, and the rings the writer thread is to serve.
    fn new(writer: Writer) -> (Arc<Queue>, Doorbell, Receiver<()>) {
        let queue = Arc::new(Queue {
            sync: writer.sync,
            counters: writer.counters.clone(),
            queued: Mutex::new(Vec::new()),
            writer: Mutex::new(writer),
            lazy_rung: AtomicBool::new(false),
        });
        // One slot: a ring that finds it full finds the thread already due to run.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (queue, Doorbell(tx), rx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::store::files;
    use crate::session::store::writer::tests::{unwritable_writer, writer_on};
    use tokio::sync::oneshot::{self, error::TryRecvError, Receiver as Answer};

    fn append(byte: u8) -> (Msg, Answer<Result<(), StoreError>>) {
        let (ack, answer) = oneshot::channel();
        let msg = Msg::Append {
            bytes: vec![byte; 8],
            records: 1,
            wait_sync: true,
            ack,
        };
        (msg, answer)
    }

    #[test]
    fn a_request_task_writes_up_to_a_queued_flush_and_leaves_the_rest_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal");
        std::fs::write(&path, b"").expect("journal");
        let file = files::open_append(&path).expect("journal");
        let counters = Arc::new(Counters::default());
        // No writer thread yet: the test decides when it runs.
        let (queue, bell, rings) = Queue::new(writer_on(dir.path(), file, counters.clone()));

        // The first pin finds the writer busy and is left queued for the thread.
        let busy = queue.hold_writer();
        let (first, mut first_written) = append(1);
        queue.push(first, &bell).unwrap();
        drop(busy);
        let (ack, mut flushed) = oneshot::channel();
        queue.push(Msg::Flush { ack }, &bell).unwrap();
        let (second, mut second_written) = append(2);
        queue.push(second, &bell).unwrap();

        // The second pin's task wrote what came before the flush, and stopped there.
        assert_eq!(std::fs::read(&path).unwrap(), vec![1; 8]);
        assert!(matches!(first_written.try_recv(), Ok(Ok(()))));
        assert!(matches!(flushed.try_recv(), Err(TryRecvError::Empty)));
        assert!(matches!(
            second_written.try_recv(),
            Err(TryRecvError::Empty)
        ));

        // The writer thread takes the rest, in order.
        let thread = std::thread::spawn({
            let queue = queue.clone();
            move || queue.serve(rings)
        });
        drop(bell);
        thread.join().unwrap();
        let mut journal = vec![1; 8];
        journal.extend([2; 8]);
        assert_eq!(std::fs::read(&path).unwrap(), journal);
        assert!(matches!(flushed.try_recv(), Ok(Ok(()))));
        assert!(matches!(second_written.try_recv(), Ok(Ok(()))));
        assert_eq!(counters.syncs.load(Ordering::Relaxed), 1);
        assert_eq!(counters.writes.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_write_that_fails_on_a_request_task_leaves_the_writer_thread_probing_until_one_works() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, counters) = unwritable_writer(dir.path());
        let (queue, bell) = Queue::start(writer).unwrap();
        // Time for the thread to find the journal healthy and wait for a ring, so that
        // only a ring from the failed write can start its probing.
        std::thread::sleep(Duration::from_millis(100));
        let (pin, mut written) = append(1);
        queue.push(pin, &bell).unwrap();
        assert!(matches!(written.try_recv(), Ok(Err(_))));
        assert!(matches!(counters.health(), StoreHealth::Failing { .. }));

        // Room again, and no request comes to try: the writer thread finds out itself.
        let path = dir.path().join("journal");
        queue.hold_writer().file = files::open_append(&path).expect("reopen");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counters.health() != StoreHealth::Healthy {
            assert!(
                std::time::Instant::now() < deadline,
                "still {:?}",
                counters.health()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(counters.writes.load(Ordering::Relaxed) >= 1);
    }
}
