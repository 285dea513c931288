//! The access log: one line per request, written after the request ends.
//!
//! The proxy only builds a small record and hands it to a bounded channel; a writer
//! thread of its own formats and writes it. A full channel drops the line and counts
//! it, so a slow or stuck disk never holds up a request. The file is reopened on
//! SIGUSR1 and on every reload, so logrotate can rename it away.

mod record;
mod signal;
mod writer;

pub use record::{AccessRecord, AnswerFields, Answered, Exchange};
pub use signal::ReopenOnSignal;

use crate::config::{AccessTarget, LogConfig, LogFormat};
use arc_swap::ArcSwapOption;
use prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

/// What travels to the writer thread. A record moves by value into a slot the bounded
/// channel allocated up front: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Message {
    Line(AccessRecord),
    /// Wakes the writer so it sees the reopen flag.
    Reopen,
}

/// The settings a writer was started with; a reload that changes them starts a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    target: AccessTarget,
    format: LogFormat,
    buffer: usize,
}

/// One running writer and the way to it.
struct Channel {
    settings: Settings,
    sender: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
}

/// The access log of one instance.
pub struct AccessLog {
    current: ArcSwapOption<Channel>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Starts the writer the config asks for (none when `access = "off"`). `dropped`
    /// counts lines lost to back-pressure or to a file that cannot be written.
    pub fn new(config: &LogConfig, dropped: IntCounter) -> AccessLog {
        let log = AccessLog {
            current: ArcSwapOption::empty(),
            dropped,
        };
        log.apply(config);
        log
    }

    /// Follows a new configuration: same settings keep the writer, other settings
    /// replace it (the old one writes what it has queued, then ends).
    pub fn apply(&self, config: &LogConfig) {
        let settings = Settings {
            target: config.access.clone(),
            format: config.format,
            buffer: config.access_buffer,
        };
        let current = self.current.load();
        if current.as_ref().map(|c| &c.settings) == Some(&settings)
            || (current.is_none() && settings.target == AccessTarget::Off)
        {
            return;
        }
        let next = match settings.target {
            AccessTarget::Off => None,
            _ => match self.start(settings) {
                Ok(channel) => Some(Arc::new(channel)),
                Err(e) => {
                    tracing::error!(target: "bitsgate::access_log", error = %e, "cannot start the access-log writer; no access log");
                    None
                }
            },
        };
        self.current.store(next);
    }

    fn start(&self, settings: Settings) -> std::io::Result<Channel> {
        let (sender, receiver) = sync_channel(settings.buffer);
        let reopen = Arc::new(AtomicBool::new(false));
        writer::spawn(
            receiver,
            settings.target.clone(),
            settings.format,
            reopen.clone(),
            self.dropped.clone(),
        )?;
        Ok(Channel {
            settings,
            sender,
            reopen,
        })
    }

    /// Whether lines are being written at all.
    pub fn is_on(&self) -> bool {
        self.current.load().is_some()
    }

    /// Queues a line; `build` runs only when the log is on.
    pub fn record(&self, build: impl FnOnce() -> AccessRecord) {
        let current = self.current.load();
        let Some(channel) = current.as_ref() else {
            return;
        };
        match channel.sender.try_send(Message::Line(build())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Asks the writer to close and reopen its file (after logrotate renamed it).
    pub fn reopen(&self) {
        if let Some(channel) = self.current.load().as_ref() {
            channel.reopen.store(true, Ordering::Release);
            // A full queue wakes the writer soon anyway; the flag is what counts.
            let _ = channel.sender.try_send(Message::Reopen);
        }
    }
}
