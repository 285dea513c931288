//! One process per data directory: an advisory lock (`flock`) on `DATA_DIR/lock`. Two
//! processes appending to one journal would interleave and cut each other's records;
//! the kernel releases the lock when its holder ends, however it ends (kill -9 too).

use super::files::io_err;
use super::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "lock";

/// How long a start waits for a holder that is on its way out (a restart by a service
/// manager may start the new process while the old one is still exiting).
const WAIT: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(5)
};

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, waiting a few seconds for a holder that is exiting; then fails
    /// naming the holder.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let mut file = open(&path)?;
        let deadline = Instant::now() + WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Self::held(file, &path),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::DirInUse {
                        dir: dir.to_path_buf(),
                        holder: holder(&mut file),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
            }
        }
    }

    /// Waits as long as it takes: for the process started with `--upgrade`, whose
    /// predecessor holds the lock until it exits.
    pub fn acquire_blocking(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = open(&path)?;
        file.lock().map_err(io_err("lock", &path))?;
        Self::held(file, &path)
    }

    /// Records the holder's pid for the error message of the next contender.
    fn held(mut file: File, path: &Path) -> Result<DirLock, StoreError> {
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "pid {}", std::process::id()))
            .map_err(io_err("write", path))?;
        Ok(DirLock { _file: file })
    }
}

fn open(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err("open", path))
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    match text.trim() {
        "" => "pid unknown".to_owned(),
        pid => pid.to_owned(),
    }
}

/// Held (`flock`, exclusive) by a process started with `--upgrade` from before it reads
/// the journal until the previous process has exited: while it is held, two processes
/// append to one journal. The kernel drops it with its holder, so a new process that
/// dies early never leaves the old one believing an upgrade is still under way.
pub const UPGRADE_LOCK_FILE: &str = "upgrade.lock";

/// The new process's side of an upgrade; released when dropped.
#[derive(Debug)]
pub struct UpgradeLock {
    _file: File,
}

impl UpgradeLock {
    /// Announces that this process shares the journal from now on. Waits only for a
    /// probe of [`upgrade_in_progress`] in the other process, which holds a shared lock
    /// for an instant.
    pub fn acquire(dir: &Path) -> Result<UpgradeLock, StoreError> {
        let path = dir.join(UPGRADE_LOCK_FILE);
        let file = open(&path)?;
        file.lock().map_err(io_err("lock", &path))?;
        Ok(UpgradeLock { _file: file })
    }
}

/// Whether a process started with `--upgrade` holds the upgrade lock of `dir` now.
/// When in doubt (the file cannot be opened or locked for another reason), it answers
/// yes: the cost is a skipped compaction or a journal read, not a lost record.
pub fn upgrade_in_progress(dir: &Path) -> bool {
    let file = match File::open(dir.join(UPGRADE_LOCK_FILE)) {
        Ok(file) => file,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    match file.try_lock_shared() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => true,
    }
}

/// Which claims this process holds on a data directory.
#[derive(Debug)]
pub struct Ownership {
    dir: std::path::PathBuf,
    dir_lock: std::sync::Mutex<Option<DirLock>>,
    upgrade_lock: std::sync::Mutex<Option<UpgradeLock>>,
}

impl Ownership {
    /// Claims as an ordinary start has them (the data dir's lock), or as a process
    /// started with `--upgrade` has them (the upgrade lock only).
    pub fn new(dir: &Path, dir_lock: Option<DirLock>, upgrade_lock: Option<UpgradeLock>) -> Self {
        Ownership {
            dir: dir.to_path_buf(),
            dir_lock: std::sync::Mutex::new(dir_lock),
            upgrade_lock: std::sync::Mutex::new(upgrade_lock),
        }
    }

    /// Whether this process is the journal's only writer: it holds the data dir's lock
    /// and no process started with `--upgrade` shares the journal. Only then may it
    /// compact the journal or cut it back.
    pub fn sole_writer(&self) -> bool {
        self.holds_dir_lock() && !upgrade_in_progress(&self.dir)
    }

    fn holds_dir_lock(&self) -> bool {
        self.dir_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The previous process is gone: the data dir is this process's alone.
    pub fn take_over(&self, dir_lock: DirLock) {
        *self.dir_lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir_lock);
        drop(
            self.upgrade_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }
}
