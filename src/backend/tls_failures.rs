//! Counting and logging TLS failures towards a backend. Every failed connection is
//! counted; the log gets one line when a backend's reason changes and then at most one
//! a minute per backend, so a storm of requests to a backend with a bad certificate
//! does not flood it.

use super::tls::TlsFailure;
use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The least time between two log lines for the same backend and reason.
const REPEAT_AFTER: Duration = Duration::from_secs(60);

/// Last line logged per backend: its reason, when, and failures since.
type Logged = HashMap<String, (TlsFailure, Instant, u64)>;

fn logged() -> &'static Mutex<Logged> {
    static LOGGED: OnceLock<Mutex<Logged>> = OnceLock::new();
    LOGGED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A connection to `backend` failed its TLS handshake (`via`: what was connecting:
/// "proxy", "probe" or "cancel"; `detail`: the error).
pub fn report(
    metrics: &Metrics,
    backend: &str,
    failure: TlsFailure,
    via: &str,
    detail: &dyn std::fmt::Display,
) {
    metrics
        .upstream_tls_failures
        .with_label_values(&[backend, failure.label()])
        .inc();
    let suppressed = {
        let mut logged = logged().lock();
        let now = Instant::now();
        match logged.get_mut(backend) {
            Some((reason, at, count))
                if *reason == failure && now.duration_since(*at) < REPEAT_AFTER =>
            {
                *count += 1;
                return;
            }
            Some(entry) => {
                let suppressed = entry.2;
                *entry = (failure, now, 0);
                suppressed
            }
            None => {
                logged.insert(backend.to_owned(), (failure, now, 0));
                0
            }
        }
    };
    tracing::warn!(
        target: "bitsgate::upstream",
        backend,
        reason = failure.label(),
        via,
        error = %detail,
        repeated = suppressed,
        "TLS to the backend failed; it gets no request over this connection"
    );
}
