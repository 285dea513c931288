//! A short history of the farm for the status page: a ring of samples of the counters
//! that already exist, taken after each health-check round and when the page is
//! viewed. Nothing is added to the request path; rates are differences of samples.

use crate::backend::Backend;
use crate::state::Shared;
use prometheus::core::Collector;
use prometheus::IntCounterVec;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Samples kept: ten minutes at the default health-check interval of 5 s.
const CAPACITY: usize = 120;
/// Samples closer together than this are not taken (the page and the health round
/// may both ask at once).
const MIN_SPACING: Duration = Duration::from_secs(1);
/// Rates are averaged over at most this much history.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// What a backend looked like at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Up and taking new sessions.
    Up,
    /// Unreachable per health checks.
    Down,
    /// Up, taking no new sessions.
    Draining,
    /// Gone from the config, serving its last sessions.
    Retired,
}

impl Condition {
    /// Of a backend now.
    pub fn of(backend: &Backend) -> Condition {
        if backend.is_retired() {
            Condition::Retired
        } else if !backend.status.is_up() {
            Condition::Down
        } else if backend.status.is_draining() {
            Condition::Draining
        } else {
            Condition::Up
        }
    }

    /// The word shown, also the CSS class.
    pub fn label(self) -> &'static str {
        match self {
            Condition::Up => "up",
            Condition::Down => "down",
            Condition::Draining => "draining",
            Condition::Retired => "retired",
        }
    }
}

/// Counters of one `backend` label value (`none`: answered by bitsgate itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests answered.
    pub requests: u64,
    /// Of which with a 4xx status.
    pub client_errors: u64,
    /// Of which with a 5xx status.
    pub server_errors: u64,
    /// Fragment bytes acknowledged.
    pub bytes: u64,
}

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    counts: HashMap<String, Counts>,
    conditions: HashMap<Arc<str>, Condition>,
}

/// Per-second rates of one backend.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Requests per second.
    pub requests: f64,
    /// Fragment bytes per second.
    pub bytes: f64,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub struct StatusHistory {
    samples: Mutex<VecDeque<Sample>>,
}

/// What the page shows: counters now, rates over the window, conditions over time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Counters now, by backend label.
    pub counts: HashMap<String, Counts>,
    /// Rates by backend label, when two samples far enough apart exist.
    pub rates: HashMap<String, Rates>,
    /// Seconds the rates are averaged over (0: no rate yet).
    pub rate_window_s: f64,
    /// Conditions of each backend id, oldest first.
    pub conditions: HashMap<Arc<str>, Vec<Condition>>,
    /// Seconds between the oldest sample and now.
    pub history_s: u64,
}

impl StatusHistory {
    /// Takes a sample unless one was taken less than a second ago.
    pub fn sample(&self, shared: &Shared) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples
            .back()
            .is_some_and(|last| last.at.elapsed() < MIN_SPACING)
        {
            return;
        }
        let generation = shared.generation();
        let conditions = generation
            .farm
            .backends
            .iter()
            .map(|b| (b.id.clone(), Condition::of(b)))
            .collect();
        let counts = read_counts(&shared.metrics.requests, &shared.metrics.uploaded_bytes);
        if samples.len() == CAPACITY {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at: Instant::now(),
            counts,
            conditions,
        });
    }

    /// Samples now (for fresh numbers) and summarises the ring.
    pub fn snapshot(&self, shared: &Shared) -> Snapshot {
        self.sample(shared);
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = samples.back() else {
            return Snapshot::default();
        };
        let mut snapshot = Snapshot {
            counts: last.counts.clone(),
            history_s: samples
                .front()
                .map_or(0, |first| last.at.duration_since(first.at).as_secs()),
            ..Snapshot::default()
        };
        let base = samples
            .iter()
            .find(|s| last.at.duration_since(s.at) <= RATE_WINDOW && s.at < last.at);
        if let Some(base) = base {
            let seconds = last.at.duration_since(base.at).as_secs_f64();
            snapshot.rate_window_s = seconds;
            for (label, now) in &last.counts {
                let before = base.counts.get(label).copied().unwrap_or_default();
                snapshot.rates.insert(
                    label.clone(),
                    Rates {
                        requests: now.requests.saturating_sub(before.requests) as f64 / seconds,
                        bytes: now.bytes.saturating_sub(before.bytes) as f64 / seconds,
                    },
                );
            }
        }
        for sample in samples.iter() {
            for (id, condition) in &sample.conditions {
                snapshot
                    .conditions
                    .entry(id.clone())
                    .or_default()
                    .push(*condition);
            }
        }
        snapshot
    }
}

/// Sums the request counter by backend and status class, and reads the byte counter,
/// without creating any series.
fn read_counts(requests: &IntCounterVec, bytes: &IntCounterVec) -> HashMap<String, Counts> {
    let mut counts: HashMap<String, Counts> = HashMap::new();
    for (labels, value) in counter_series(requests, &["backend", "class"]) {
        let [backend, class] = <[String; 2]>::try_from(labels).unwrap_or_default();
        let entry = counts.entry(backend).or_default();
        entry.requests += value;
        match class.as_str() {
            "4xx" => entry.client_errors += value,
            "5xx" => entry.server_errors += value,
            _ => {}
        }
    }
    for (labels, value) in counter_series(bytes, &["backend"]) {
        for backend in labels {
            counts.entry(backend).or_default().bytes += value;
        }
    }
    counts
}

/// Every series of a counter as (values of the `names` labels, in that order; value).
/// Reads only what exists: no series is created.
pub(super) fn counter_series(counter: &IntCounterVec, names: &[&str]) -> Vec<(Vec<String>, u64)> {
    let mut out = Vec::new();
    for family in counter.collect() {
        for metric in family.get_metric() {
            let labels = names
                .iter()
                .map(|name| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == *name)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default()
                })
                .collect();
            out.push((labels, metric.get_counter().value() as u64));
        }
    }
    out
}
