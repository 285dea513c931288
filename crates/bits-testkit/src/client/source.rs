//! The bytes being uploaded: a file read range by range, or an in-memory buffer sliced
//! without copying.

use super::body::PacketBody;
use super::{UploadError, UploadSource};
use bits_proto::ContentRange;
use bytes::Bytes;
use std::io::SeekFrom;
use std::path::PathBuf;
use tokio::io::AsyncSeekExt;

/// An opened upload source.
pub(crate) enum Source {
    File { path: PathBuf, len: u64 },
    Bytes(Bytes),
}

impl Source {
    /// Checks the source and learns its length. A file's length is read once: a file
    /// that shrinks later fails the upload when a fragment cannot be filled.
    pub async fn open(source: UploadSource) -> Result<Source, UploadError> {
        match source {
            UploadSource::Bytes(bytes) => Ok(Source::Bytes(bytes)),
            UploadSource::File(path) => {
                let meta = tokio::fs::metadata(&path)
                    .await
                    .map_err(|source| io_error(&path, source))?;
                if !meta.is_file() {
                    return Err(UploadError::Io {
                        context: format!("{} is not a regular file", path.display()),
                        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
                    });
                }
                Ok(Source::File {
                    len: meta.len(),
                    path,
                })
            }
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Source::File { len, .. } => *len,
            Source::Bytes(bytes) => bytes.len() as u64,
        }
    }

    /// The local file name (`Content-Name`), when the source is a file.
    pub fn name(&self) -> Option<String> {
        match self {
            Source::File { path, .. } => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned()),
            Source::Bytes(_) => None,
        }
    }

    /// The body of the fragment `range`. Files are reopened per fragment so that a
    /// request abandoned on a dead connection can never move the reader of the next.
    pub async fn body(&self, range: ContentRange) -> Result<PacketBody, UploadError> {
        match self {
            Source::Bytes(bytes) => {
                let slice = bytes.slice(range.first as usize..=range.last as usize);
                Ok(PacketBody::Bytes(Some(slice)))
            }
            Source::File { path, .. } => {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|source| io_error(path, source))?;
                file.seek(SeekFrom::Start(range.first))
                    .await
                    .map_err(|source| io_error(path, source))?;
                Ok(PacketBody::file(file, range.len()))
            }
        }
    }
}

fn io_error(path: &std::path::Path, source: std::io::Error) -> UploadError {
    UploadError::Io {
        context: format!("reading {}", path.display()),
        source,
    }
}
