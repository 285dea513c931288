//! Reloading the configuration: read and validate the file off to the side, keep the
//! old generation on any error, then swap atomically. Listeners are never re-bound and
//! the session table is never dropped.

use crate::config::{self, ConfigErrors, RemovedBackends};
use crate::metrics::EndReason;
use crate::state::Shared;
use serde::Serialize;
use std::collections::HashSet;

/// What a successful reload changed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Backends new in this config.
    pub added: Vec<String>,
    /// Backends gone from this config.
    pub removed: Vec<String>,
    /// Removed backends kept, draining, until their sessions end.
    pub retired: Vec<String>,
    /// Sessions forgotten because their backend left (`removed_backends = "end"`).
    pub ended_sessions: u64,
    /// Changes that need a restart to take effect (listener addresses, TLS, threads).
    pub warnings: Vec<String>,
}

/// Why a reload was refused; the old configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The instance was started from an in-memory config.
    #[error("this instance has no configuration file to reload")]
    NoConfigFile,
    /// The file is invalid.
    #[error("the new configuration is invalid:\n{0}")]
    Invalid(ConfigErrors),
    /// The new generation could not be built.
    #[error("the new configuration could not be applied: {0}")]
    Apply(String),
}

/// Reloads from the instance's config file.
pub fn reload(shared: &Shared) -> Result<ReloadReport, ReloadError> {
    let outcome = reload_inner(shared);
    let label = if outcome.is_ok() {
        "success"
    } else {
        "failure"
    };
    shared.metrics.reloads.with_label_values(&[label]).inc();
    if outcome.is_ok() {
        // For logrotate: a reload also reopens the access log.
        shared.access_log.reopen();
    }
    match &outcome {
        Ok(report) => {
            tracing::info!(target: "bitsgate::reload", added = ?report.added, removed = ?report.removed, retired = ?report.retired, warnings = ?report.warnings, "configuration reloaded")
        }
        Err(e) => {
            tracing::error!(target: "bitsgate::reload", error = %e, "configuration reload refused; the old configuration stays")
        }
    }
    outcome
}

fn reload_inner(shared: &Shared) -> Result<ReloadReport, ReloadError> {
    let path = shared
        .config_path
        .as_ref()
        .ok_or(ReloadError::NoConfigFile)?;
    let mut new = config::load_file(path).map_err(ReloadError::Invalid)?;
    let _guard = shared.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
    let old = shared.generation();
    let mut report = ReloadReport::default();

    // Bound sockets and runtime threads belong to the running process.
    let old_config = &old.config;
    if new.listener.address != old_config.listener.address
        || new.listener.tls != old_config.listener.tls
        || new.listener.proxy_protocol != old_config.listener.proxy_protocol
        || new.listener.edge.max_connections != old_config.listener.edge.max_connections
    {
        report.warnings.push(format!(
            "listener changes need a restart; still serving {}",
            old_config.listener.address
        ));
        new.listener.address = old_config.listener.address;
        new.listener.tls = old_config.listener.tls.clone();
        new.listener.proxy_protocol = old_config.listener.proxy_protocol;
        new.listener.edge.max_connections = old_config.listener.edge.max_connections;
    }
    if new.admin.address != old_config.admin.address || new.admin.tls != old_config.admin.tls {
        report.warnings.push(format!(
            "admin.address and [admin.tls] changes need a restart; still serving {}",
            old_config.admin.address
        ));
        new.admin.address = old_config.admin.address;
        new.admin.tls = old_config.admin.tls.clone();
    }
    if new.server != old_config.server {
        report
            .warnings
            .push("[server] changes need a restart".to_owned());
        new.server = old_config.server.clone();
    }
    if new.storage != old_config.storage {
        report
            .warnings
            .push("[storage] changes need a restart".to_owned());
        new.storage = old_config.storage.clone();
    }

    let new_ids: HashSet<&str> = new.backends.iter().map(|b| b.id.as_str()).collect();
    let old_ids: HashSet<&str> = old_config.backends.iter().map(|b| b.id.as_str()).collect();
    report.added = sorted(new_ids.difference(&old_ids));
    report.removed = sorted(old_ids.difference(&new_ids));

    // Everything that is out of the new config but still owns sessions: the backends
    // removed now and those retired by an earlier reload.
    let leaving: Vec<_> = old_config
        .backends
        .iter()
        .chain(old.retired.iter())
        .filter(|b| !new_ids.contains(b.id.as_str()))
        .cloned()
        .collect();
    let mut retired = Vec::new();
    for backend in leaving {
        let Some(index) = old.farm.index_of_id(&backend.id) else {
            continue;
        };
        let slot = old.farm.backends[index].slot;
        match new.reload.removed_backends {
            RemovedBackends::Drain => {
                // With the Redis store, sessions this replica never saw count too.
                if shared.owns_sessions_now(&old.farm.backends[index]) {
                    report.retired.push(backend.id.clone());
                    retired.push(backend);
                }
            }
            RemovedBackends::End => {
                if let Some(store) = shared.redis.get() {
                    // The sessions other replicas created too.
                    store.unpin_all_of(&backend.id);
                }
                for (key, _) in shared.table.take_backend(slot) {
                    shared.journal_unpin(&key, slot);
                    shared
                        .metrics
                        .session_ended(&backend.id, EndReason::BackendRemoved);
                    report.ended_sessions += 1;
                }
            }
        }
    }
    // Backends this replica had retired that the new config lists again.
    let back: Vec<String> = old
        .retired
        .iter()
        .filter(|b| new_ids.contains(b.id.as_str()))
        .map(|b| b.id.clone())
        .collect();
    let published = retired.clone();
    shared
        .install(new, retired)
        .map_err(|e| ReloadError::Apply(e.to_string()))?;
    if let Some(store) = shared.redis.get() {
        // Every replica routes them as retired from its next poll of the store.
        for backend in &published {
            store.publish_retired(backend, false);
        }
        for id in &back {
            store.forget_retired(id);
        }
    }
    Ok(report)
}

fn sorted<'a>(ids: impl Iterator<Item = &'a &'a str>) -> Vec<String> {
    let mut out: Vec<String> = ids.map(|id| id.to_string()).collect();
    out.sort();
    out
}

/// Reloads on SIGHUP (when the process owns its signals) and, with `reload.watch`,
/// when the config file changes.
pub struct ReloadService {
    shared: std::sync::Arc<Shared>,
    sighup: bool,
}

/// How often the config file is looked at when `reload.watch` is on.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl ReloadService {
    /// A reload service; `sighup` installs the signal handler.
    pub fn new(shared: std::sync::Arc<Shared>, sighup: bool) -> Self {
        ReloadService { shared, sighup }
    }

    async fn run_reload(&self) {
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || reload(&shared)).await;
    }
}

fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut hangup = if self.sighup {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    tracing::error!(target: "bitsgate::reload", error = %e, "cannot listen for SIGHUP");
                    None
                }
            }
        } else {
            None
        };
        let path = self.shared.config_path.clone();
        let mut stamp = path.as_deref().and_then(file_stamp);
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup => {
                    tracing::info!(target: "bitsgate::reload", "SIGHUP: reloading");
                    self.run_reload().await;
                }
                _ = tokio::time::sleep(WATCH_INTERVAL) => {
                    if !self.shared.generation().config.reload.watch {
                        continue;
                    }
                    let now = path.as_deref().and_then(file_stamp);
                    if now.is_some() && now != stamp {
                        stamp = now;
                        tracing::info!(target: "bitsgate::reload", "config file changed: reloading");
                        self.run_reload().await;
                    }
                }
            }
        }
    }
}
