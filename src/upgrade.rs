//! After a graceful upgrade, the old process keeps answering its in-flight requests for
//! up to its grace period, and Create-Sessions among them are journaled by it, not by
//! us. Once it must be gone, re-read the journal and take over those pins too.

use crate::state::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

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
        // delay, then its grace period, then its shutdown timeout. Read the journal
        // once it must be gone, and once more in case its settings were longer.
        let gone = OLD_PROCESS_CLOSE_DELAY + server.grace_period + server.shutdown_timeout;
        for wait in [gone + Duration::from_secs(1), Duration::from_secs(10)] {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {
                    let added = self.shared.catch_up_store().await;
                    tracing::info!(target: "bitsgate::store", added, "took over the pins the previous process journaled during the upgrade");
                }
            }
        }
        // The previous process is gone: this one is the journal's only writer again.
        self.shared
            .compaction_allowed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
