//! Background expiry of idle sessions (spec §10: BITSSessionTimeout and cleanup).

use super::{handlers, Shared};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// Every `cleanup_interval`, expires the sessions idle for `session_idle_timeout`,
/// deleting their temp data, until `stop` turns true.
pub(crate) async fn run(sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(sh.config.cleanup_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = super::until_stopped(&mut stop) => break,
            _ = ticks.tick() => sweep(&sh).await,
        }
    }
}

async fn sweep(sh: &Shared) {
    for slot in sh.sessions.idle(sh.config.session_idle_timeout) {
        handlers::expire(sh, &slot).await;
    }
}
