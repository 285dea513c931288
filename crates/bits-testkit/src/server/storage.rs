//! The on-disk side: per-session temp data and metadata, commits, recovery.
//!
//! Layout of the sessions directory, per session (file stem = the GUID without braces):
//! `<stem>.part` holds the bytes received so far (its length is the session's `next`:
//! bytes are only ever appended) and `<stem>.json` holds [`SessionMeta`]. Metadata is
//! replaced atomically (write `<stem>.json.tmp`, fsync, rename) so a crash leaves either
//! the old or the new version.

use super::paths::RelPath;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::fs;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// What is persisted about a session.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionMeta {
    /// Session id as sent on the wire, with braces.
    pub id: String,
    /// Destination relative to the upload root, components joined with `/`.
    pub path: String,
    /// File size, once the first fragment told it.
    pub total: Option<u64>,
    /// The file has been committed to its destination.
    pub completed: bool,
}

/// A session found on disk at start-up.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub meta: SessionMeta,
    /// Bytes received contiguously: the temp file's length.
    pub next: u64,
    /// Time since the session's files were last written.
    pub idle_for: Duration,
}

/// Why a destination cannot take an upload.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DestinationError {
    /// A file is already there and overwriting is off.
    #[error("the destination exists")]
    Exists,
    /// The destination is a directory, a parent is a file, or a parent resolves (through
    /// a symbolic link) outside the root.
    #[error("the destination cannot be a file below the root")]
    Invalid,
    /// The file system failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Paths of the upload root and the sessions directory, both canonical.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    pub root: PathBuf,
    pub sessions_dir: PathBuf,
}

const EXDEV: i32 = 18;

/// Whether both paths name the same file (one is a hard link of the other).
async fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a).await, fs::metadata(b).await) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Storage {
    /// Creates both directories if needed and canonicalises them.
    pub(crate) async fn open(root: &Path, sessions_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(root).await?;
        fs::create_dir_all(sessions_dir).await?;
        Ok(Storage {
            root: fs::canonicalize(root).await?,
            sessions_dir: fs::canonicalize(sessions_dir).await?,
        })
    }

    fn stem(id: &str) -> &str {
        id.trim_start_matches('{').trim_end_matches('}')
    }

    /// The temp data file of a session.
    pub(crate) fn part_path(&self, id: &str) -> PathBuf {
        self.sessions_dir.join(format!("{}.part", Self::stem(id)))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.sessions_dir.join(format!("{}.json", Self::stem(id)))
    }

    /// Checks, before a session is created, that `dest` can become an uploaded file.
    pub(crate) async fn check_destination(
        &self,
        dest: &Path,
        allow_overwrite: bool,
    ) -> Result<(), DestinationError> {
        match fs::symlink_metadata(dest).await {
            Ok(m) if m.is_file() && allow_overwrite => {}
            Ok(m) if m.is_file() => return Err(DestinationError::Exists),
            Ok(_) => return Err(DestinationError::Invalid),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // The nearest existing ancestor must be a directory that really is below the
        // root; a symbolic link there must not carry the upload elsewhere.
        let mut ancestor = dest.parent();
        while let Some(dir) = ancestor {
            match fs::canonicalize(dir).await {
                Ok(real) => {
                    let is_dir = fs::metadata(&real).await?.is_dir();
                    return if is_dir && real.starts_with(&self.root) {
                        Ok(())
                    } else {
                        Err(DestinationError::Invalid)
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => ancestor = dir.parent(),
                Err(_) => return Err(DestinationError::Invalid),
            }
        }
        Err(DestinationError::Invalid)
    }

    /// Creates an empty temp file and the metadata of a new session.
    pub(crate) async fn create(&self, meta: &SessionMeta) -> io::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.part_path(&meta.id))
            .await?;
        self.write_meta(meta).await
    }

    /// Replaces a session's metadata atomically.
    pub(crate) async fn write_meta(&self, meta: &SessionMeta) -> io::Result<()> {
        let path = self.meta_path(&meta.id);
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        let mut file = fs::File::create(&tmp).await?;
        file.write_all(&json).await?;
        file.sync_all().await?;
        drop(file);
        fs::rename(&tmp, &path).await
    }

    /// Opens the temp file for writing at `next`, cutting off anything past it (bytes
    /// that were never acknowledged, e.g. from a write cut short).
    pub(crate) async fn open_part(&self, id: &str, next: u64) -> io::Result<fs::File> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.part_path(id))
            .await?;
        if file.metadata().await?.len() != next {
            file.set_len(next).await?;
        }
        let mut file = file;
        file.seek(io::SeekFrom::Start(next)).await?;
        Ok(file)
    }

    /// Deletes a session's temp data and metadata. Missing files are fine: deleting is
    /// how every ending converges.
    pub(crate) async fn remove(&self, id: &str) -> io::Result<()> {
        for path in [self.part_path(id), self.meta_path(id)] {
            match fs::remove_file(&path).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves the complete temp file to `dest` and marks the session completed.
    ///
    /// Without overwrite the file is hard-linked into place, which fails atomically when
    /// the destination appeared meanwhile (another session committed the same path);
    /// with overwrite it is renamed over it. The temp file must already be synced.
    pub(crate) async fn commit(
        &self,
        meta: &mut SessionMeta,
        dest: &Path,
        allow_overwrite: bool,
    ) -> Result<(), DestinationError> {
        let part = self.part_path(&meta.id);
        let parent = dest.parent().ok_or(DestinationError::Invalid)?;
        fs::create_dir_all(parent)
            .await
            .map_err(|_| DestinationError::Invalid)?;
        let placed = if allow_overwrite {
            fs::rename(&part, dest).await
        } else {
            fs::hard_link(&part, dest).await
        };
        match placed {
            Ok(()) => {}
            // A commit whose request was dropped (the client's connection closed) after
            // the link but before the session was marked completed left our own file
            // in place: that commit happened, it is not somebody else's file.
            Err(_) if same_file(&part, dest).await => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(DestinationError::Exists)
            }
            Err(e) if e.raw_os_error() == Some(EXDEV) => {
                self.commit_across_devices(&part, dest, allow_overwrite)
                    .await?
            }
            Err(e) => return Err(e.into()),
        }
        sync_dir(parent).await?;
        meta.completed = true;
        self.write_meta(meta).await?;
        match fs::remove_file(&part).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Commit when the sessions directory is on another file system than the root:
    /// copy next to the destination first, so the final step is still atomic.
    async fn commit_across_devices(
        &self,
        part: &Path,
        dest: &Path,
        allow_overwrite: bool,
    ) -> Result<(), DestinationError> {
        let parent = dest.parent().ok_or(DestinationError::Invalid)?;
        let staging = parent.join(format!(".bits-commit-{}", uuid::Uuid::new_v4()));
        fs::copy(part, &staging).await?;
        fs::File::open(&staging).await?.sync_all().await?;
        let placed = if allow_overwrite {
            fs::rename(&staging, dest).await
        } else {
            fs::hard_link(&staging, dest).await
        };
        let _ = fs::remove_file(&staging).await;
        match placed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(DestinationError::Exists),
            Err(e) => Err(e.into()),
        }
    }

    /// Finds every session left in the sessions directory. Unreadable metadata is
    /// skipped (and logged) rather than failing the start; leftovers that no session
    /// can reach (half-written metadata, temp data without metadata) are deleted.
    pub(crate) async fn recover(&self) -> io::Result<Vec<Recovered>> {
        let mut found = Vec::new();
        let mut parts = Vec::new();
        let mut entries = fs::read_dir(&self.sessions_dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json.tmp") {
                let _ = fs::remove_file(&path).await;
            } else if name.ends_with(".part") {
                parts.push(path);
            } else if name.ends_with(".json") {
                match self.recover_one(&path).await {
                    Ok(r) => found.push(r),
                    Err(e) => {
                        tracing::warn!(target: "bits_server", path = %path.display(), error = %e, "skipping unreadable session metadata")
                    }
                }
            }
        }
        for part in parts {
            let owned = found.iter().any(|r| self.part_path(&r.meta.id) == part);
            if !owned {
                tracing::warn!(target: "bits_server", path = %part.display(), "deleting temp data without session metadata");
                let _ = fs::remove_file(&part).await;
            }
        }
        Ok(found)
    }

    async fn recover_one(&self, meta_path: &Path) -> io::Result<Recovered> {
        let meta: SessionMeta =
            serde_json::from_slice(&fs::read(meta_path).await?).map_err(io::Error::other)?;
        uuid::Uuid::parse_str(Self::stem(&meta.id)).map_err(io::Error::other)?;
        if self.meta_path(&meta.id) != meta_path {
            return Err(io::Error::other("metadata file name does not match its id"));
        }
        let rel = RelPath::from_stored(&meta.path).map_err(io::Error::other)?;
        let dest = rel
            .under(&self.root, &self.sessions_dir)
            .map_err(io::Error::other)?;
        let mut modified = fs::metadata(meta_path).await?.modified()?;
        let part = fs::metadata(self.part_path(&meta.id)).await.ok();
        if let Some(m) = &part {
            modified = modified.max(m.modified()?);
        }
        let mut meta = meta;
        let mut next = part.as_ref().map_or(0, |m| m.len());
        if let Some(total) = meta.total {
            // A crash between placing the file and recording it leaves a full-size
            // destination behind; count that as the commit it was.
            let dest_len = fs::metadata(&dest).await.ok().filter(|m| m.is_file());
            let placed = dest_len.is_some_and(|m| m.len() == total);
            if !meta.completed && placed && (part.is_none() || next == total) {
                meta.completed = true;
                self.write_meta(&meta).await?;
                let _ = fs::remove_file(self.part_path(&meta.id)).await;
            }
            next = next.min(total);
        }
        if meta.completed {
            next = meta.total.unwrap_or(0);
        }
        let idle_for = SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        Ok(Recovered {
            meta,
            next,
            idle_for,
        })
    }
}

/// Makes a rename or link durable: the directory entry itself must reach the disk.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).await?.sync_all().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn storage_with_part(
        id: &str,
        bytes: &[u8],
    ) -> (tempfile::TempDir, Storage, SessionMeta) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let sessions = dir.path().join("sessions");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&sessions).unwrap();
        let storage = Storage::open(&root, &sessions).await.unwrap();
        let meta = SessionMeta {
            id: id.to_owned(),
            path: "f.bin".to_owned(),
            total: Some(bytes.len() as u64),
            completed: false,
        };
        storage.create(&meta).await.unwrap();
        std::fs::write(storage.part_path(id), bytes).unwrap();
        (dir, storage, meta)
    }

    #[tokio::test]
    async fn a_commit_cut_off_after_placing_the_file_completes_when_repeated() {
        let id = "{00000000-0000-4000-8000-000000000001}";
        let (_dir, storage, mut meta) = storage_with_part(id, b"payload").await;
        let dest = storage.root.join("f.bin");
        // What a dropped commit leaves: the file linked into place, the session not
        // marked completed.
        std::fs::hard_link(storage.part_path(id), &dest).unwrap();
        storage.commit(&mut meta, &dest, false).await.unwrap();
        assert!(meta.completed);
        assert_eq!(std::fs::read(&dest).unwrap(), b"payload");
        assert!(!storage.part_path(id).exists());
    }

    #[tokio::test]
    async fn another_file_at_the_destination_still_refuses_the_commit() {
        let id = "{00000000-0000-4000-8000-000000000002}";
        let (_dir, storage, mut meta) = storage_with_part(id, b"payload").await;
        let dest = storage.root.join("f.bin");
        std::fs::write(&dest, b"someone else's").unwrap();
        let refused = storage.commit(&mut meta, &dest, false).await;
        assert!(matches!(refused, Err(DestinationError::Exists)));
        assert!(!meta.completed);
        assert_eq!(std::fs::read(&dest).unwrap(), b"someone else's");
    }
}
