//! Every backend of the farm, with its address and settings, kept beside the pin
//! journal. The journal names owners by id only; this file is what lets a restart
//! reach a backend that left the config file (a reload retired it, or it was removed
//! while bitsgate was stopped) and keep serving its sessions instead of answering them
//! not-found.
//!
//! The file is replaced like the journal (temp file, fsync, rename, fsync of the
//! directory), so after a crash or power cut it holds the old or the new list. A file
//! that cannot be read or parsed is reported, never a reason to refuse a start: it only
//! costs the sessions of removed backends, which the caller ends with a warning.

use crate::config::BackendConfig;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file in the data directory.
pub const FILE: &str = "known-backends.json";
/// What older releases wrote (the retired backends only); read when [`FILE`] is absent.
pub const LEGACY_FILE: &str = "retired-backends.json";

#[derive(Serialize, Deserialize)]
struct Known {
    id: String,
    address: SocketAddr,
    weight: u32,
    host_id: Option<String>,
    public_host_id: Option<String>,
    /// HTTPS with this server name; absent (older files too) is plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_server_name: Option<String>,
}

/// Why the file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading it failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// It is not the JSON list bitsgate writes.
    #[error("{} is damaged ({source})", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        source: serde_json::Error,
    },
}

impl From<&BackendConfig> for Known {
    fn from(b: &BackendConfig) -> Known {
        Known {
            id: b.id.clone(),
            address: b.address,
            weight: b.weight,
            host_id: b.host_id.clone(),
            public_host_id: b.public_host_id.clone(),
            tls_server_name: b.tls.as_ref().map(|t| t.server_name.clone()),
        }
    }
}

impl From<Known> for BackendConfig {
    /// A backend known only from a record: draining, without health checks of its own.
    fn from(k: Known) -> BackendConfig {
        BackendConfig {
            id: k.id,
            address: k.address,
            weight: k.weight.max(1),
            host_id: k.host_id,
            public_host_id: k.public_host_id,
            drain: true,
            health_check: None,
            tls: k
                .tls_server_name
                .map(|server_name| crate::config::BackendTls { server_name }),
        }
    }
}

/// One backend as the JSON object of the file, for other places that keep the same
/// facts (the shared store's retired backends).
pub fn to_json(backend: &BackendConfig) -> String {
    serde_json::to_string(&Known::from(backend)).unwrap_or_default()
}

/// A backend written by [`to_json`]; `None` when it is not one.
pub fn from_json(text: &str) -> Option<BackendConfig> {
    serde_json::from_str::<Known>(text).ok().map(Into::into)
}

/// Replaces the list with `backends`, durably.
pub fn save(dir: &Path, backends: &[BackendConfig]) -> io::Result<()> {
    let list: Vec<Known> = backends.iter().map(Known::from).collect();
    let text = serde_json::to_vec_pretty(&list).map_err(io::Error::other)?;
    // Per process: during an upgrade two processes may save at the same time.
    let temp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    let written = write_synced(&temp, &text).and_then(|()| fs::rename(&temp, dir.join(FILE)));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable only once the directory is; without this a power cut can
    // bring back the old list (or none).
    File::open(dir)?.sync_all()?;
    // The legacy list would be read only if ours went missing; it is stale by now.
    match fs::remove_file(dir.join(LEGACY_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Reads the list; no file at all is an empty list.
pub fn load(dir: &Path) -> Result<Vec<BackendConfig>, LoadError> {
    let mut path = dir.join(FILE);
    let mut text = fs::read(&path);
    if matches!(&text, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        path = dir.join(LEGACY_FILE);
        text = fs::read(&path);
    }
    let text = match text {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let list: Vec<Known> =
        serde_json::from_slice(&text).map_err(|source| LoadError::Damaged { path, source })?;
    Ok(list.into_iter().map(Into::into).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(id: &str) -> BackendConfig {
        BackendConfig {
            id: id.into(),
            address: "127.0.0.1:8083".parse().unwrap(),
            weight: 2,
            host_id: Some("NODE3".into()),
            public_host_id: None,
            drain: false,
            health_check: None,
            tls: None,
        }
    }

    #[test]
    fn the_list_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let b3 = backend("b3");
        save(dir.path(), std::slice::from_ref(&b3)).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            (loaded[0].id.as_str(), loaded[0].address, loaded[0].weight),
            ("b3", b3.address, 2)
        );
        assert_eq!(loaded[0].host_id.as_deref(), Some("NODE3"));
        save(dir.path(), &[]).unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != FILE)
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn one_backend_round_trips_through_json() {
        let b3 = backend("b3");
        let back = from_json(&to_json(&b3)).expect("decodes");
        assert_eq!(
            (back.id.as_str(), back.address, back.weight),
            ("b3", b3.address, 2)
        );
        assert!(back.drain, "known from a record only: draining");
        assert!(from_json("{\"id\": 1}").is_none());
    }

    #[test]
    fn the_list_of_an_older_release_is_read_until_the_first_save() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(LEGACY_FILE),
            r#"[{"id":"old","address":"127.0.0.1:9","weight":1,"host_id":null,"public_host_id":null}]"#,
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap()[0].id, "old");
        save(dir.path(), &[backend("new")]).unwrap();
        assert!(!dir.path().join(LEGACY_FILE).exists());
        assert_eq!(load(dir.path()).unwrap()[0].id, "new");
    }

    #[test]
    fn a_damaged_or_unreadable_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"[{\"id\": \"b1\", \"addr").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, LoadError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains(FILE), "{err}");

        // A directory where the file should be: reading fails even as root.
        fs::remove_file(dir.path().join(FILE)).unwrap();
        fs::create_dir(dir.path().join(FILE)).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }), "{err}");
    }
}
