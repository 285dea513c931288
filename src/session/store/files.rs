//! File names and the file-system steps that make replacing a journal atomic.

use super::format::{self, MAX_PAYLOAD};
use super::{PinOwner, StoreError, StoredPin};
use crate::session::SessionKey;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The journal in the data directory.
pub(crate) const JOURNAL: &str = "pins.journal";
/// A journal being built by a compaction; only ever renamed over [`JOURNAL`].
pub(crate) const COMPACT_TEMP: &str = "pins.journal.compact";

/// Builds a [`StoreError::Io`] for `action` on `path`.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source: Arc::new(source),
    }
}

/// Makes a completed rename (or file creation) in `dir` survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// Writes a new journal holding `pins` to `temp` and flushes it to the device. The file
/// is returned open, positioned at its end, so a compaction can append the records that
/// arrived meanwhile before renaming it into place.
pub(crate) fn write_snapshot<'a>(
    temp: &Path,
    pins: impl IntoIterator<Item = (&'a SessionKey, &'a PinOwner, &'a StoredPin)>,
) -> Result<File, StoreError> {
    write_snapshot_with_replies(temp, pins.into_iter().map(|(k, o, p)| (k, o, p, None)))
}

/// [`write_snapshot`] with each pin's upload-reply path, when it has one (written
/// right after its pin).
pub(crate) fn write_snapshot_with_replies<'a>(
    temp: &Path,
    pins: impl IntoIterator<Item = (&'a SessionKey, &'a PinOwner, &'a StoredPin, Option<&'a str>)>,
) -> Result<File, StoreError> {
    let mut writer = SnapshotWriter::create(temp)?;
    for (key, owner, pin, reply) in pins {
        let host = owner.host.as_deref().unwrap_or("");
        writer.pin(key, &owner.backend, host, &owner.path, pin);
        if let Some(path) = reply {
            writer.reply(key, path);
        }
    }
    writer.finish()
}

/// A new journal being written pin by pin: records are encoded into one 64 KiB buffer
/// that is written out whenever it fills, so a snapshot of millions of pins allocates
/// nothing per pin and never holds more than the buffer.
pub struct SnapshotWriter {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    /// The first failure; every later pin is ignored and `finish` reports it.
    error: Option<StoreError>,
}

impl SnapshotWriter {
    pub(crate) fn create(temp: &Path) -> Result<SnapshotWriter, StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(temp)
            .map_err(io_err("create", temp))?;
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(&format::header());
        Ok(SnapshotWriter {
            file,
            path: temp.to_path_buf(),
            buf,
            error: None,
        })
    }

    /// Adds a live pin, created with `host` (empty when not kept) at URL `path`. `pin`
    /// carries the activity as last journaled, never a restored clock (see
    /// `From<&Pin> for StoredPin`).
    pub fn pin(
        &mut self,
        key: &SessionKey,
        backend: &str,
        host: &str,
        path: &str,
        pin: &StoredPin,
    ) {
        if self.error.is_some() {
            return;
        }
        let encoded = format::encode_pin(&mut self.buf, key, backend, host, path, pin);
        self.after_encode(encoded);
    }

    /// Adds the upload-reply path of a pin added before it.
    pub fn reply(&mut self, key: &SessionKey, path: &str) {
        if self.error.is_some() {
            return;
        }
        let encoded = format::encode_reply(&mut self.buf, key, path);
        self.after_encode(encoded);
    }

    /// Records an encoding failure, or writes the buffer out when it is nearly full.
    fn after_encode(&mut self, encoded: Result<(), StoreError>) {
        if let Err(e) = encoded {
            self.error = Some(e);
            return;
        }
        if self.buf.len() >= (1 << 16) - MAX_PAYLOAD {
            if let Err(e) = self.file.write_all(&self.buf) {
                self.error = Some(io_err("write", &self.path)(e));
            }
            self.buf.clear();
        }
    }

    /// Writes what is buffered and flushes the file to the device.
    pub(crate) fn finish(mut self) -> Result<File, StoreError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.file
            .write_all(&self.buf)
            .map_err(io_err("write", &self.path))?;
        self.file.sync_all().map_err(io_err("sync", &self.path))?;
        Ok(self.file)
    }
}

/// Renames a flushed `temp` over the journal and makes the rename durable. Either name
/// holds a complete journal at every instant, which is what makes compaction crash-safe.
pub(crate) fn install(temp: &Path, journal: &Path, dir: &Path) -> Result<(), StoreError> {
    fs::rename(temp, journal).map_err(io_err("rename compacted journal onto", journal))?;
    sync_dir(dir)
}

/// Opens the journal for appends.
pub(crate) fn open_append(journal: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .open(journal)
        .map_err(io_err("open for append", journal))
}

/// Removes a compaction that never reached its rename (a crash or an error midway).
/// The journal it was built from is still complete, so the temp file carries nothing.
pub(crate) fn remove_stale_temp(dir: &Path) -> Result<bool, StoreError> {
    let temp = dir.join(COMPACT_TEMP);
    match fs::remove_file(&temp) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove stale", &temp)(e)),
    }
}

/// Copies the bytes cut off a damaged journal next to it, so that nothing is thrown
/// away without a trace an operator can inspect.
pub(crate) fn save_discarded(
    dir: &Path,
    journal: &File,
    from: u64,
    now: u32,
) -> Result<PathBuf, StoreError> {
    let path = dir.join(format!("{JOURNAL}.discarded-{now}-{from}"));
    let mut source = journal.try_clone().map_err(io_err("read", &path))?;
    io::Seek::seek(&mut source, io::SeekFrom::Start(from)).map_err(io_err("read", &path))?;
    let mut out = File::create(&path).map_err(io_err("create", &path))?;
    io::copy(&mut source, &mut out).map_err(io_err("write", &path))?;
    out.sync_all().map_err(io_err("sync", &path))?;
    Ok(path)
}
