//! After a graceful upgrade, the old process keeps answering its in-flight requests for
//! up to its grace period, and Create-Sessions among them are journaled by it, not by
//! us. Once it is gone (its data dir lock has passed to this process), re-read the
//! journal and take over those pins too.

use crate::state::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the data dir's lock is checked.
const POLL: Duration = Duration::from_millis(250);

/// How long Pingora's old process keeps its listeners after handing them over.
const OLD_PROCESS_CLOSE_DELAY: Duration = Duration::from_secs(5);

/// The catch-up service, added only to a process started with `--upgrade`.
pub struct UpgradeCatchUp {
    shared: Arc<Shared>,
}

impl UpgradeCatchUp {
    /// A catch-up over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        UpgradeCatchUp { shared }
    }
}

#[async_trait]
impl BackgroundService for UpgradeCatchUp {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let server = self.shared.generation().config.server.clone();
        // After handing the listeners over, the old process waits Pingora's 5 s close
        // delay, then its grace period, then its shutdown timeout, then at most as long
        // for its journal's last flush. It is gone when the
        // data dir's lock passes to this process; should that never happen (the old
        // process hangs), read the journal anyway once it should have been gone.
        let started = Instant::now();
        let expected_gone =
            OLD_PROCESS_CLOSE_DELAY + server.grace_period + 2 * server.shutdown_timeout + POLL;
        let mut read_without_lock = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            if self.shared.holds_dir_lock() {
                let added = self.shared.catch_up_store().await;
                tracing::info!(target: "bitsgate::store", added, "the previous process is gone; took over the pins it journaled during the upgrade");
                // This process is the journal's only writer again. Rewrite the journal
                // from the table at once: a compaction the old process ran during the
                // handover replaced the file this process was appending to, and the
                // pins appended to the replaced file are only in memory now.
                self.shared.compact_store().await;
                self.shared
                    .compaction_allowed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            if !read_without_lock && started.elapsed() >= expected_gone {
                read_without_lock = true;
                let added = self.shared.catch_up_store().await;
                tracing::warn!(target: "bitsgate::store", added, "the previous process still holds the data dir after its shutdown timeout; read its pins so far, compaction stays off until it exits");
            }
        }
    }
}
