//! Per-worker counters and the per-request latency histogram. Each worker owns one
//! `Tally` behind an uncontended lock; they are merged once at the end, so workers never
//! share a hot lock.

use crate::client::{Event, Observer};
use bits_proto::PacketType;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Highest latency the histogram tracks exactly: one hour, in microseconds. Longer
/// requests are recorded as one hour (the request timeout is 6 minutes anyway).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What one worker counted.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    /// Response latency in microseconds, one entry per response.
    pub latency_us: Histogram<u64>,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response.
    pub failures: u64,
    pub restarts: u64,
    pub retries: u64,
    pub uploads_ok: u64,
    pub uploads_failed: u64,
    /// Bytes of uploads that succeeded.
    pub bytes: u64,
    pub first_error: Option<String>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            statuses: BTreeMap::new(),
            failures: 0,
            restarts: 0,
            retries: 0,
            uploads_ok: 0,
            uploads_failed: 0,
            bytes: 0,
            first_error: None,
        }
    }
}

impl Tally {
    pub fn response(&mut self, status: u16, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.max(1));
        *self.statuses.entry(status).or_default() += 1;
    }

    pub fn failure(&mut self, error: String) {
        self.failures += 1;
        self.first_error.get_or_insert(error);
    }

    /// Requests sent: every response plus every request that got none.
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.failures
    }

    /// Requests that failed: no response, or a status of 400 and above other than 416
    /// (a resync is part of the protocol, not an error).
    pub fn errors(&self) -> u64 {
        let bad: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| **status >= 400 && **status != 416)
            .map(|(_, n)| n)
            .sum();
        bad + self.failures
    }

    pub fn merge(&mut self, other: &Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        self.failures += other.failures;
        self.restarts += other.restarts;
        self.retries += other.retries;
        self.uploads_ok += other.uploads_ok;
        self.uploads_failed += other.uploads_failed;
        self.bytes += other.bytes;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// An [`Observer`] that feeds a worker's tally from the client's callbacks.
#[derive(Default)]
pub(crate) struct TallyObserver(pub Mutex<Tally>);

impl TallyObserver {
    pub fn with<R>(&self, f: impl FnOnce(&mut Tally) -> R) -> R {
        // Only this worker takes the lock; a panic elsewhere cannot leave it half-updated
        // in a way that matters for counters.
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Observer for TallyObserver {
    fn on_response(&self, _packet: PacketType, status: u16, latency: Duration) {
        self.with(|t| t.response(status, latency));
    }

    fn on_event(&self, event: &Event) {
        self.with(|t| match event {
            Event::RequestFailed { packet, error } => t.failure(format!("{packet}: {error}")),
            Event::Restart { .. } => t.restarts += 1,
            Event::Retry { .. } => t.retries += 1,
            _ => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_errors_and_merges() {
        let mut a = Tally::default();
        a.response(200, Duration::from_micros(100));
        a.response(416, Duration::from_micros(200));
        a.response(503, Duration::from_micros(300));
        let mut b = Tally::default();
        b.failure("refused".into());
        b.response(200, Duration::from_secs(7200));
        a.merge(&b);
        assert_eq!(a.requests(), 5);
        assert_eq!(a.errors(), 2);
        assert_eq!(a.latency_us.len(), 4);
        assert_eq!(
            a.latency_us.max(),
            a.latency_us.highest_equivalent(MAX_LATENCY_US)
        );
        assert_eq!(a.first_error.as_deref(), Some("refused"));
    }
}
