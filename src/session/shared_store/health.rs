//! Whether Redis answers: one log line when an outage starts, one when it ends, and
//! the error `/readyz` shows meanwhile.

use std::sync::Mutex;
use std::time::Instant;

/// The state of the connection to Redis, as the last command found it.
#[derive(Default)]
pub struct Health {
    outage: Mutex<Option<Outage>>,
}

struct Outage {
    since: Instant,
    error: String,
}

impl Health {
    /// A command failed: starts an outage (logged once) or continues it.
    pub fn failed(&self, error: &::redis::RedisError, url: &str) {
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        match outage.as_mut() {
            Some(outage) => outage.error = error.to_string(),
            None => {
                tracing::error!(target: "bitsgate::store", redis = %url, error = %error, "the shared pin store (Redis) is unreachable: new sessions and packets of sessions this replica has not cached get 503 until it is back");
                *outage = Some(Outage {
                    since: Instant::now(),
                    error: error.to_string(),
                });
            }
        }
    }

    /// A command succeeded: ends an outage, if any.
    pub fn succeeded(&self, url: &str) {
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ended) = outage.take() {
            tracing::warn!(target: "bitsgate::store", redis = %url, failed_for_secs = ended.since.elapsed().as_secs(), "the shared pin store (Redis) answers again");
        }
    }

    /// The last error while an outage lasts.
    pub fn outage(&self) -> Option<String> {
        self.outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|o| o.error.clone())
    }
}
