//! The writer thread: formats queued records and writes them in batches, so lines
//! reach the file within a few milliseconds without a write, or a wake-up of this
//! thread, per line.

use super::Message;
use crate::config::{AccessTarget, LogFormat};
use prometheus::IntCounter;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOG: &str = "bitsgate::access_log";

/// How long the writer lets lines gather while they flow (see `Writer::run`).
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// How often a file that could not be opened is tried again while lines arrive.
const RETRY_OPEN: Duration = Duration::from_secs(1);

/// Starts the thread; it ends when every sender is gone, after writing what is queued.
pub(super) fn spawn(
    receiver: Receiver<Message>,
    target: AccessTarget,
    format: LogFormat,
    reopen: Arc<AtomicBool>,
    dropped: IntCounter,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("bitsgate-access-log".into())
        .spawn(move || {
            Writer {
                target,
                format,
                out: None,
                last_open: None,
                dropped,
                lines: super::record::LineWriter::default(),
                line: Vec::new(),
            }
            .run(receiver, &reopen)
        })
        .map(drop)
}

enum Output {
    Stdout(BufWriter<std::io::Stdout>),
    File(BufWriter<File>),
}

impl Output {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(w) => w,
            Output::File(w) => w,
        }
    }
}

struct Writer {
    target: AccessTarget,
    format: LogFormat,
    out: Option<Output>,
    last_open: Option<Instant>,
    dropped: IntCounter,
    lines: super::record::LineWriter,
    line: Vec<u8>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<Message>, reopen: &AtomicBool) {
        // Opening may block (a FIFO without a reader, a hung network mount); that only
        // fills the queue, and the proxy drops and counts lines meanwhile.
        self.open();
        // Idle, the writer blocks until a line comes. Once lines flow, it writes what
        // is queued, flushes, and naps for BATCH_PAUSE before looking again: a
        // sender then finds nobody waiting to be woken (no system call on the
        // request's thread), and one write carries many lines. A line reaches the file
        // at most BATCH_PAUSE after its request ended.
        while let Ok(first) = receiver.recv() {
            let mut next = Some(first);
            loop {
                while let Some(message) = next {
                    self.handle(message, reopen);
                    next = receiver.try_recv().ok();
                }
                self.flush();
                std::thread::sleep(BATCH_PAUSE);
                match receiver.try_recv() {
                    Ok(message) => next = Some(message),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
        }
        self.flush();
    }

    fn handle(&mut self, message: Message, reopen: &AtomicBool) {
        if reopen.swap(false, Ordering::AcqRel) {
            self.flush();
            self.out = None;
            self.open();
        }
        if let Message::Line(record) = message {
            self.write(&record);
        }
    }

    fn open(&mut self) {
        self.last_open = Some(Instant::now());
        self.out = match &self.target {
            AccessTarget::Off => None,
            AccessTarget::Stdout => Some(Output::Stdout(BufWriter::new(std::io::stdout()))),
            AccessTarget::File(path) => {
                match OpenOptions::new().create(true).append(true).open(path) {
                    Ok(file) => Some(Output::File(BufWriter::new(file))),
                    Err(e) => {
                        tracing::error!(target: LOG, path = %path.display(), error = %e, "cannot open the access log; lines are dropped until it can be");
                        None
                    }
                }
            }
        };
    }

    fn write(&mut self, record: &super::AccessRecord) {
        if self.out.is_none() && self.last_open.is_none_or(|t| t.elapsed() >= RETRY_OPEN) {
            self.open();
        }
        let Some(out) = self.out.as_mut() else {
            self.dropped.inc();
            return;
        };
        self.line.clear();
        self.lines.write_line(record, self.format, &mut self.line);
        if let Err(e) = out.writer().write_all(&self.line) {
            self.dropped.inc();
            tracing::error!(target: LOG, error = %e, "cannot write the access log; reopening");
            self.out = None;
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.writer().flush() {
                tracing::error!(target: LOG, error = %e, "cannot write the access log; reopening");
                self.out = None;
            }
        }
    }
}
