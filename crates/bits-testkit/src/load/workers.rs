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
use tokio::sync::Semaphore;
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
///
/// The starts are released by a thread of its own, not by the runtime's timer: tokio's
/// timer wheel has a 1 ms resolution, so at 20,000 per second it would let 20 requests
/// go at once every millisecond, and those bursts, queued at the target, would be most
/// of the measured tail. The pacer thread sleeps with a 1 ns timer slack and releases
/// each start within microseconds of its due time, or at once if it woke late.
struct Pace {
    schedule: Schedule,
    /// One permit per start whose time has come; `None` without a rate.
    starts: Option<Arc<Semaphore>>,
    /// The pacer thread, joined when the run is over (see `Drop`).
    pacer: Option<std::thread::JoinHandle<()>>,
}

/// The due times of a paced run.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    rate: Option<f64>,
    total: u64,
}

impl Schedule {
    fn due(&self, n: u64) -> Option<Instant> {
        self.rate
            .map(|rate| self.start + Duration::from_secs_f64(n as f64 / rate))
    }

    /// How many starts are due at `now` (number 0 is due at once), at most `total`.
    fn due_by(&self, now: Instant) -> u64 {
        match self.rate {
            None => self.total,
            Some(rate) => {
                let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
                ((elapsed * rate).floor() as u64)
                    .saturating_add(1)
                    .min(self.total)
            }
        }
    }
}

/// The longest a pacer sleeps at once, so that it notices a run that ended early.
const PACER_NAP: Duration = Duration::from_millis(10);

impl Pace {
    fn new(config: &LoadConfig, total: u64) -> Self {
        let schedule = Schedule {
            start: Instant::now(),
            rate: config.rate,
            total,
        };
        // Without a thread (the system refused one), the runtime's timer paces.
        let paced = config.rate.and_then(|_| {
            let starts = Arc::new(Semaphore::new(0));
            let released = starts.clone();
            std::thread::Builder::new()
                .name("bits-load-pacer".into())
                .spawn(move || release_on_time(schedule, &released))
                .ok()
                .map(|pacer| (starts, pacer))
        });
        let (starts, pacer) = paced.unzip();
        Pace {
            schedule,
            starts,
            pacer,
        }
    }

    /// Waits until number `n` may start.
    async fn wait(&self, n: u64) {
        if let Some(starts) = &self.starts {
            if let Ok(permit) = starts.acquire().await {
                permit.forget();
            }
        } else if let Some(due) = self.schedule.due(n) {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// The run is over: the pacer stops, woken from its nap, and ends with the run.
impl Drop for Pace {
    fn drop(&mut self) {
        if let Some(starts) = &self.starts {
            starts.close();
        }
        if let Some(pacer) = self.pacer.take() {
            pacer.thread().unpark();
            let _ = pacer.join();
        }
    }
}

/// The pacer thread: releases each start at its due time until all are released or
/// the run is over.
fn release_on_time(schedule: Schedule, starts: &Semaphore) {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let mut released = 0;
    while released < schedule.total && !starts.is_closed() {
        let due = schedule.due_by(Instant::now());
        if due > released {
            // Never more at once than a semaphore holds (a run of 2^61 starts).
            let add = (due - released).min(1 << 20);
            starts.add_permits(add as usize);
            released += add;
            continue;
        }
        let next = schedule.due(released).unwrap_or_else(Instant::now);
        // Parked, not asleep, so that the end of the run can wake it.
        std::thread::park_timeout(
            next.saturating_duration_since(Instant::now())
                .min(PACER_NAP),
        );
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
    let pace = Arc::new(Pace::new(config, config.uploads));
    let mut workers = JoinSet::new();
    for _ in 0..config.concurrency {
        let pace = pace.clone();
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
    let pace = Arc::new(Pace::new(config, total));
    let mut workers = JoinSet::new();
    for _ in 0..config.concurrency {
        let (counter, pace) = (counter.clone(), pace.clone());
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
        let schedule = Schedule {
            start: Instant::now(),
            rate: Some(4.0),
            total: 5,
        };
        assert_eq!(schedule.due(0), Some(schedule.start));
        assert_eq!(
            schedule.due(6),
            Some(schedule.start + Duration::from_millis(1500))
        );
        let at = |ms| schedule.start + Duration::from_millis(ms);
        assert_eq!(schedule.due_by(at(0)), 1);
        assert_eq!(schedule.due_by(at(249)), 1);
        assert_eq!(schedule.due_by(at(250)), 2);
        assert_eq!(schedule.due_by(at(999)), 4);
        assert_eq!(schedule.due_by(at(60_000)), 5, "never more than the total");
        let unpaced = Schedule {
            rate: None,
            ..schedule
        };
        assert_eq!(unpaced.due(6), None);
        assert_eq!(unpaced.due_by(at(0)), 5);
    }

    #[tokio::test]
    async fn the_pacer_releases_every_start_and_stops_when_the_run_ends() {
        let config = LoadConfig {
            rate: Some(2_000.0),
            ..LoadConfig::new("http://127.0.0.1:1/")
        };
        let pace = Pace::new(&config, 20);
        for n in 0..20 {
            pace.wait(n).await;
        }
        // Number 19 is due 9.5 ms in; none may start before its time.
        assert!(pace.schedule.start.elapsed() >= Duration::from_micros(9_500));
        let starts = pace.starts.clone().expect("a pacer thread");
        assert_eq!(starts.available_permits(), 0, "one permit per start");
        drop(pace);
        assert!(starts.is_closed());
    }

    #[tokio::test]
    async fn a_run_that_ends_early_stops_its_pacer() {
        let config = LoadConfig {
            rate: Some(10.0),
            ..LoadConfig::new("http://127.0.0.1:1/")
        };
        // 1,000 starts at 10 per second: the run ends after the first.
        let mut pace = Pace::new(&config, 1_000);
        pace.wait(0).await;
        let pacer = pace.pacer.take().expect("a pacer thread");
        drop(pace);
        let stopped = Instant::now();
        while !pacer.is_finished() {
            assert!(
                stopped.elapsed() < Duration::from_secs(5),
                "the pacer still runs after its run ended"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
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
