//! The backends a reload retired (gone from the config, still owning sessions), kept
//! beside the pin journal. Without it, a restart would find pins whose backend is in
//! no configuration and answer their next packet with not-found: the drain would turn
//! into restarts from byte 0.

use crate::config::BackendConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const FILE: &str = "retired-backends.json";

#[derive(Serialize, Deserialize)]
struct Retired {
    id: String,
    address: SocketAddr,
    weight: u32,
    host_id: Option<String>,
    public_host_id: Option<String>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the list (write to a temp file, then rename, so a crash leaves the old or
/// the new list, never half of one).
pub fn save(dir: &Path, backends: &[BackendConfig]) -> std::io::Result<()> {
    let list: Vec<Retired> = backends
        .iter()
        .map(|b| Retired {
            id: b.id.clone(),
            address: b.address,
            weight: b.weight,
            host_id: b.host_id.clone(),
            public_host_id: b.public_host_id.clone(),
        })
        .collect();
    let text = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
    let temp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path(dir))
}

/// Reads the list; a missing file is an empty list.
pub fn load(dir: &Path) -> std::io::Result<Vec<BackendConfig>> {
    let text = match std::fs::read(path(dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let list: Vec<Retired> = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
    Ok(list
        .into_iter()
        .map(|r| BackendConfig {
            id: r.id,
            address: r.address,
            weight: r.weight.max(1),
            host_id: r.host_id,
            public_host_id: r.public_host_id,
            drain: true,
            health_check: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let backend = BackendConfig {
            id: "b3".into(),
            address: "127.0.0.1:8083".parse().unwrap(),
            weight: 2,
            host_id: Some("NODE3".into()),
            public_host_id: None,
            drain: false,
            health_check: None,
        };
        save(dir.path(), std::slice::from_ref(&backend)).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            (loaded[0].id.as_str(), loaded[0].address, loaded[0].weight),
            ("b3", backend.address, 2)
        );
        save(dir.path(), &[]).unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
    }
}
