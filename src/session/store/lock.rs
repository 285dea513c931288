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
