//! What can go wrong with the pin journal, worded for the operator who reads the log.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A pin journal failure. Clone, because one failed write is reported to every waiter
/// of its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A file-system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        source: Arc<io::Error>,
    },
    /// The journal file is not one (wrong magic or too short for a header).
    #[error(
        "{} is not a bitsgate pin journal (wrong magic); refusing to start rather than \
         overwrite it: move it aside or set storage.data_dir to another directory",
        path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The journal has a format version this build does not read.
    #[error(
        "{} is pin journal format v{found}, this bitsgate reads v{supported}: run a \
         bitsgate that reads v{found}, or move the file aside to start without its pins",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A record passed its checksum but does not decode: written by something else,
    /// not torn by a crash, so it is not silently dropped.
    #[error(
        "{}: the record at byte {offset} has a valid checksum but cannot be read \
         ({reason}); refusing to start rather than drop it and the pins after it: move \
         the file aside to start without its pins",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A session id or backend id longer than the format takes.
    #[error("{what} is {len} bytes; the pin journal takes at most {max}")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An earlier write or sync failed in a way that leaves the journal's state unknown;
    /// no more writes are accepted until a restart replays it.
    #[error("the pin journal takes no more writes after an earlier failure: {cause}")]
    Failed {
        /// The first failure.
        cause: Arc<StoreError>,
    },
    /// An append failed while a compaction was in flight; nothing was replaced.
    #[error("the compaction was overtaken by a failed append; the journal is unchanged")]
    CompactionInterrupted,
    /// Another process shares the journal (an upgrade is under way): it is not
    /// compacted until this process is its only writer.
    #[error(
        "the pin journal is shared with another bitsgate process during an upgrade; not compacted"
    )]
    Shared,
    /// The writer thread is gone.
    #[error("the pin journal writer has stopped")]
    Closed,
    /// The shared store (Redis) refused or did not answer a write.
    #[error("the shared pin store (Redis) failed: {0}")]
    Remote(String),
    /// Another process holds the data directory.
    #[error(
        "{} is in use by another bitsgate process ({holder}); two processes on one data \
         dir would mix their pin journals: stop the other process, give this one its own \
         storage.data_dir, or start it with --upgrade to take over from the running one",
        dir.display()
    )]
    DirInUse {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
}
