//! `[server] pid_file`: written by `bitsgate run` once the instance is built, removed at
//! shutdown when it still names this process. Pingora writes it only when it
//! daemonizes, which bitsgate never does.

use anyhow::Context;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};

/// Writes this process's pid to `path`, whole or not at all (temp file, then rename),
/// so a reader never sees a half-written pid. After a binary upgrade the file names
/// the new process.
pub fn write(path: &Path) -> anyhow::Result<()> {
    let temp = path.with_extension("pid.tmp");
    std::fs::write(&temp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&temp, path))
        .with_context(|| format!("writing [server] pid_file {}", path.display()))
}

/// Removes `path` if it names this process (after an upgrade it names the successor,
/// which keeps it).
pub fn remove_if_ours(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(target: "bitsgate", file = %path.display(), error = %e, "could not remove the pid file");
        }
    }
}

/// Removes the pid file when the server shuts down.
pub struct PidFileCleanup {
    path: PathBuf,
}

impl PidFileCleanup {
    /// Cleans up `path` at shutdown.
    pub fn new(path: PathBuf) -> Self {
        PidFileCleanup { path }
    }
}

#[async_trait]
impl BackgroundService for PidFileCleanup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        remove_if_ours(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_this_process_and_is_removed_only_while_it_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bitsgate.pid");
        write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        remove_if_ours(&path);
        assert!(!path.exists());

        std::fs::write(&path, "1\n").unwrap();
        remove_if_ours(&path);
        assert!(path.exists(), "a successor's pid file stays");
    }
}
