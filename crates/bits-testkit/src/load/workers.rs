//! The workers: each runs uploads (or Pings) one after another, taking numbers from a
//! shared counter until the total or the deadline is reached.

use super::tally::{Tally, TallyObserver};
use super::{merge, LoadConfig};
use crate::client::{upload, Pinger, UploadOptions, UploadSource};
use bytes::Bytes;
use rand::RngCore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Takes the next number below `total`, unless the deadline has passed.
fn next(counter: &AtomicU64, total: u64, deadline: Option<Instant>) -> Option<u64> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return None;
    }
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (n < total).then_some(n)
}

/// When number `n` may start: `n / rate` seconds after `start` (see
/// [`LoadConfig::rate`]); at once without a rate.
#[derive(Clone, Copy)]
struct Pace {
    start: Instant,
    rate: Option<f64>,
}

impl Pace {
    fn new(config: &LoadConfig) -> Self {
        Pace {
            start: Instant::now(),
            rate: config.rate,
        }
    }

    fn due(&self, n: u64) -> Option<Instant> {
        self.rate
            .map(|rate| self.start + Duration::from_secs_f64(n as f64 / rate))
    }

    async fn wait(&self, n: u64) {
        if let Some(due) = self.due(n) {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// The URL of upload number `n` (see [`LoadConfig::url`]).
fn upload_url(base: &str, run: &str, n: u64) -> String {
    if base.contains("{n}") {
        base.replace("{n}", &n.to_string())
    } else {
        format!("{}/load-{run}-{n}.bin", base.trim_end_matches('/'))
    }
}

pub(super) async fn uploads(
    config: &LoadConfig,
    options: UploadOptions,
    size: usize,
    deadline: Option<Instant>,
) -> Tally {
    let mut data = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut data);
    let data = Bytes::from(data);
    let run = format!("{:08x}", rand::random::<u32>());
    let counter = Arc::new(AtomicU64::new(0));
    let options = Arc::new(options);
    let pace = Pace::new(config);
    let mut workers = JoinSet::new();
    for _ in 0..config.concurrency {
        let (data, counter, options) = (data.clone(), counter.clone(), options.clone());
        let (base, run, total) = (config.url.clone(), run.clone(), config.uploads);
        workers.spawn(async move {
            let observer = TallyObserver::default();
            while let Some(n) = next(&counter, total, deadline) {
                pace.wait(n).await;
                let url = upload_url(&base, &run, n);
                let source = UploadSource::Bytes(data.clone());
                let outcome = upload(&url, source, &options, &observer).await;
                observer.with(|t| match outcome {
                    Ok(report) => {
                        t.uploads_ok += 1;
                        t.bytes += report.bytes;
                    }
                    Err(e) => {
                        t.uploads_failed += 1;
                        t.first_error.get_or_insert_with(|| format!("{url}: {e}"));
                    }
                });
            }
            observer.with(|t| t.clone())
        });
    }
    merge(workers.join_all().await)
}

pub(super) async fn pings(
    config: &LoadConfig,
    options: UploadOptions,
    total: u64,
    deadline: Option<Instant>,
) -> Tally {
    let counter = Arc::new(AtomicU64::new(0));
    let pace = Pace::new(config);
    let mut workers = JoinSet::new();
    for _ in 0..config.concurrency {
        let counter = counter.clone();
        // The URL was checked before the workers started.
        let Ok(mut pinger) = Pinger::new(&config.url, &options) else {
            break;
        };
        workers.spawn(async move {
            let mut tally = Tally::default();
            while let Some(n) = next(&counter, total, deadline) {
                pace.wait(n).await;
                match pinger.ping().await {
                    Ok(response) => tally.response(response.status, response.latency),
                    Err(error) => tally.failure(error),
                }
            }
            tally
        });
    }
    merge(workers.join_all().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_are_numbered() {
        assert_eq!(
            upload_url("http://h/up/", "r1", 7),
            "http://h/up/load-r1-7.bin"
        );
        assert_eq!(
            upload_url("http://h/up", "r1", 7),
            "http://h/up/load-r1-7.bin"
        );
        assert_eq!(
            upload_url("http://h/f-{n}.bin", "r1", 7),
            "http://h/f-7.bin"
        );
    }

    #[test]
    fn a_rate_spaces_the_starts_evenly_from_the_first() {
        let pace = Pace {
            start: Instant::now(),
            rate: Some(4.0),
        };
        assert_eq!(pace.due(0), Some(pace.start));
        assert_eq!(pace.due(6), Some(pace.start + Duration::from_millis(1500)));
        let unpaced = Pace { rate: None, ..pace };
        assert_eq!(unpaced.due(6), None);
    }

    #[test]
    fn the_counter_stops_at_the_total_and_at_the_deadline() {
        let counter = AtomicU64::new(0);
        assert_eq!(next(&counter, 2, None), Some(0));
        assert_eq!(next(&counter, 2, None), Some(1));
        assert_eq!(next(&counter, 2, None), None);
        let past = Instant::now();
        assert_eq!(next(&AtomicU64::new(0), 2, Some(past)), None);
    }
}
