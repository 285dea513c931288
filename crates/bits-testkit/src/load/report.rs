//! The result of a load run: JSON for machines, a short summary for people.

use super::size::format_size;
use super::tally::Tally;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Per-request latency, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// What a load run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// `upload` or `ping`.
    pub mode: String,
    /// The URL as given.
    pub url: String,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Uploads that completed (Close-Session acknowledged).
    pub uploads_ok: u64,
    /// Uploads that ended with an error.
    pub uploads_failed: u64,
    /// New sessions after `BG_E_SESSION_NOT_FOUND`, over all uploads.
    pub restarts: u64,
    /// Packets resent after transient failures, over all uploads.
    pub retries: u64,
    /// Requests sent (responses plus requests that got none).
    pub requests: u64,
    /// Requests without a response, or answered with a status of 400 and above other
    /// than 416.
    pub errors: u64,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Bytes of the uploads that completed.
    pub bytes: u64,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// `bytes` per second, MiB.
    pub throughput_mib_s: f64,
    /// `requests` per second.
    pub requests_per_s: f64,
    /// Per-request latency (every response, all packet types).
    pub latency_us: Latency,
    /// The first failure seen, to start debugging from.
    pub first_error: Option<String>,
}

impl LoadReport {
    pub(crate) fn new(
        mode: &str,
        url: &str,
        concurrency: usize,
        tally: &Tally,
        elapsed: Duration,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let h = &tally.latency_us;
        let latency_us = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: h.value_at_quantile(0.50),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: h.mean(),
            }
        };
        LoadReport {
            mode: mode.to_owned(),
            url: url.to_owned(),
            concurrency,
            uploads_ok: tally.uploads_ok,
            uploads_failed: tally.uploads_failed,
            restarts: tally.restarts,
            retries: tally.retries,
            requests: tally.requests(),
            errors: tally.errors(),
            statuses: tally.statuses.clone(),
            bytes: tally.bytes,
            elapsed_s: elapsed.as_secs_f64(),
            throughput_mib_s: tally.bytes as f64 / (1024.0 * 1024.0) / secs,
            requests_per_s: tally.requests() as f64 / secs,
            latency_us,
            first_error: tally.first_error.clone(),
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bits-load {} → {} (concurrency {})",
            self.mode, self.url, self.concurrency
        )?;
        if self.mode == "upload" {
            writeln!(
                f,
                "  uploads   {} ok, {} failed ({} restarts, {} retries)",
                self.uploads_ok, self.uploads_failed, self.restarts, self.retries
            )?;
            writeln!(
                f,
                "  data      {} = {:.1} MiB/s",
                format_size(self.bytes),
                self.throughput_mib_s
            )?;
        }
        writeln!(
            f,
            "  requests  {} ({} errors) in {:.3} s = {:.0} req/s",
            self.requests, self.errors, self.elapsed_s, self.requests_per_s
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency   p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs, mean {:.0} µs",
            l.p50, l.p99, l.p999, l.max, l.mean
        )?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        write!(f, "  statuses  {}", statuses.join(", "))?;
        if let Some(error) = &self.first_error {
            write!(f, "\n  first error: {error}")?;
        }
        Ok(())
    }
}
