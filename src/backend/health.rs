//! Per-backend health: a pure counter of consecutive probe and traffic outcomes that
//! says when a backend flips up or down, and the per-slot table of those counters.
//!
//! The counter never reads a clock and does no I/O: the health service and the proxy
//! feed it outcomes, pass the time in, and apply the transitions it returns to
//! `BackendStatus`.

use super::slots::BackendSlot;
use crate::config::HealthCheckConfig;
use dashmap::DashMap;
use std::time::Instant;

/// The counts that flip a backend, read from the config in force at each step, so a
/// reload applies from the next outcome on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive probe successes that bring a down backend up.
    pub healthy: u32,
    /// Consecutive probe failures that take an up backend down.
    pub unhealthy: u32,
    /// Consecutive connect failures of live traffic that take it down (0: off).
    pub passive: u32,
}

impl From<&HealthCheckConfig> for Thresholds {
    fn from(config: &HealthCheckConfig) -> Self {
        Thresholds {
            healthy: config.healthy_threshold,
            unhealthy: config.unhealthy_threshold,
            passive: config.passive_failures,
        }
    }
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The backend is reachable again.
    Up,
    /// The backend is considered unreachable.
    Down,
}

impl Transition {
    /// The `to` label of `bitsgate_backend_transitions_total` and the log field.
    pub fn label(self) -> &'static str {
        match self {
            Transition::Up => "up",
            Transition::Down => "down",
        }
    }
}

/// What one step observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An active probe got the expected answer.
    ProbeSucceeded,
    /// An active probe failed (no connection, timeout, or not a BITS answer).
    ProbeFailed,
    /// Live traffic could not connect to the backend.
    ConnectFailed,
    /// Live traffic got a response from the backend.
    Responded,
}

/// Consecutive outcomes of one backend. Starts up, as Pingora's own checks do: a
/// fresh process serves at once and lets the probes take nodes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCounter {
    up: bool,
    probe_successes: u32,
    probe_failures: u32,
    connect_failures: u32,
    since: Option<Instant>,
}

impl Default for HealthCounter {
    fn default() -> Self {
        HealthCounter::new(true)
    }
}

impl HealthCounter {
    /// A counter starting in the given state with nothing counted.
    pub fn new(up: bool) -> Self {
        HealthCounter {
            up,
            probe_successes: 0,
            probe_failures: 0,
            connect_failures: 0,
            since: None,
        }
    }

    /// Whether the backend is considered up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// When the last transition happened (`None`: never flipped).
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Consecutive connect failures of live traffic counted so far.
    pub fn connect_failures(&self) -> u32 {
        self.connect_failures
    }

    /// Records an outcome at `now`; returns the transition when the state flips.
    ///
    /// Probes and traffic count separately: each kind of success resets only its own
    /// failure run, so a healthy probe path cannot hide a node that refuses real
    /// connections, and vice versa. A flip resets every count.
    pub fn record(
        &mut self,
        outcome: Outcome,
        thresholds: Thresholds,
        now: Instant,
    ) -> Option<Transition> {
        match outcome {
            Outcome::ProbeSucceeded => {
                self.probe_failures = 0;
                if self.up {
                    return None;
                }
                self.probe_successes = self.probe_successes.saturating_add(1);
                // `>=` so a threshold lowered by a reload takes effect at once.
                (self.probe_successes >= thresholds.healthy).then(|| self.flip(true, now))
            }
            Outcome::ProbeFailed => {
                self.probe_successes = 0;
                if !self.up {
                    return None;
                }
                self.probe_failures = self.probe_failures.saturating_add(1);
                (self.probe_failures >= thresholds.unhealthy).then(|| self.flip(false, now))
            }
            Outcome::ConnectFailed => {
                // A down backend gets no traffic worth counting, and 0 turns this off.
                if !self.up || thresholds.passive == 0 {
                    return None;
                }
                self.connect_failures = self.connect_failures.saturating_add(1);
                (self.connect_failures >= thresholds.passive).then(|| self.flip(false, now))
            }
            Outcome::Responded => {
                self.connect_failures = 0;
                None
            }
        }
    }

    fn flip(&mut self, up: bool, now: Instant) -> Transition {
        *self = HealthCounter::new(up);
        self.since = Some(now);
        if up {
            Transition::Up
        } else {
            Transition::Down
        }
    }
}

/// Counters by slot, shared by the proxy (traffic outcomes) and the health service
/// (probe outcomes). Slots outlive reloads, and so do their counters.
#[derive(Debug, Default)]
pub struct HealthTable {
    counters: DashMap<BackendSlot, HealthCounter>,
}

impl HealthTable {
    /// Records an outcome for `slot`, whose current state is `up` when first seen.
    /// `apply` runs under the slot's lock when the state flips, so two outcomes racing
    /// (a probe and a live connect failure) apply their transitions in order.
    pub fn record<R>(
        &self,
        slot: BackendSlot,
        up: bool,
        outcome: Outcome,
        thresholds: Thresholds,
        now: Instant,
        apply: impl FnOnce(Transition) -> R,
    ) -> Option<R> {
        if outcome == Outcome::Responded {
            // The hot path (every proxied response): a shared lock, and a write only
            // when there is a failure run to reset.
            let pending = self
                .counters
                .get(&slot)
                .is_some_and(|c| c.connect_failures() > 0);
            if !pending {
                return None;
            }
        }
        let mut counter = self
            .counters
            .entry(slot)
            .or_insert_with(|| HealthCounter::new(up));
        counter.record(outcome, thresholds, now).map(apply)
    }

    /// The counter of a slot, if anything was recorded for it.
    pub fn get(&self, slot: BackendSlot) -> Option<HealthCounter> {
        self.counters.get(&slot).map(|c| c.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: Thresholds = Thresholds {
        healthy: 2,
        unhealthy: 3,
        passive: 2,
    };

    fn run(counter: &mut HealthCounter, outcomes: &[Outcome]) -> Vec<Option<Transition>> {
        let now = Instant::now();
        outcomes
            .iter()
            .map(|&o| counter.record(o, T, now))
            .collect()
    }

    fn down() -> HealthCounter {
        HealthCounter::new(false)
    }

    use Outcome::*;

    #[test]
    fn a_backend_starts_up_with_nothing_counted() {
        let counter = HealthCounter::default();
        assert!(counter.is_up());
        assert_eq!(counter.connect_failures(), 0);
        assert_eq!(counter.since(), None);
    }

    #[test]
    fn failed_probes_take_it_down_exactly_at_the_unhealthy_threshold() {
        let mut counter = HealthCounter::default();
        let steps = run(&mut counter, &[ProbeFailed, ProbeFailed, ProbeFailed]);
        assert_eq!(steps, vec![None, None, Some(Transition::Down)]);
        assert!(!counter.is_up());
    }

    #[test]
    fn failures_after_going_down_report_no_further_transition() {
        let mut counter = HealthCounter::default();
        run(&mut counter, &[ProbeFailed; 3]);
        assert_eq!(run(&mut counter, &[ProbeFailed; 5]), vec![None; 5]);
    }

    #[test]
    fn a_successful_probe_between_failures_resets_the_run() {
        let mut counter = HealthCounter::default();
        let steps = run(
            &mut counter,
            &[
                ProbeFailed,
                ProbeFailed,
                ProbeSucceeded,
                ProbeFailed,
                ProbeFailed,
            ],
        );
        assert_eq!(steps, vec![None; 5]);
        assert!(counter.is_up());
        assert_eq!(
            run(&mut counter, &[ProbeFailed]),
            vec![Some(Transition::Down)]
        );
    }

    #[test]
    fn successful_probes_bring_it_up_exactly_at_the_healthy_threshold() {
        let mut counter = down();
        let steps = run(&mut counter, &[ProbeSucceeded, ProbeSucceeded]);
        assert_eq!(steps, vec![None, Some(Transition::Up)]);
        assert!(counter.is_up());
    }

    #[test]
    fn a_failed_probe_between_successes_resets_the_way_back_up() {
        let mut counter = down();
        let steps = run(&mut counter, &[ProbeSucceeded, ProbeFailed, ProbeSucceeded]);
        assert_eq!(steps, vec![None; 3]);
        assert_eq!(
            run(&mut counter, &[ProbeSucceeded]),
            vec![Some(Transition::Up)]
        );
    }

    #[test]
    fn successes_while_up_never_report_a_transition() {
        let mut counter = HealthCounter::default();
        assert_eq!(run(&mut counter, &[ProbeSucceeded; 4]), vec![None; 4]);
    }

    #[test]
    fn connect_failures_of_live_traffic_take_it_down_at_their_own_threshold() {
        let mut counter = HealthCounter::default();
        let steps = run(&mut counter, &[ConnectFailed, ConnectFailed]);
        assert_eq!(steps, vec![None, Some(Transition::Down)]);
    }

    #[test]
    fn a_response_between_connect_failures_resets_the_passive_run() {
        let mut counter = HealthCounter::default();
        let steps = run(&mut counter, &[ConnectFailed, Responded, ConnectFailed]);
        assert_eq!(steps, vec![None; 3]);
        assert_eq!(counter.connect_failures(), 1);
    }

    #[test]
    fn probe_and_traffic_failures_are_counted_apart() {
        let mut counter = HealthCounter::default();
        let steps = run(
            &mut counter,
            &[ProbeFailed, ConnectFailed, ProbeFailed, ProbeSucceeded],
        );
        assert_eq!(steps, vec![None; 4]);
        assert_eq!(
            run(&mut counter, &[ConnectFailed]),
            vec![Some(Transition::Down)],
            "a good probe does not clear live connect failures"
        );
    }

    #[test]
    fn passive_counting_is_off_when_its_threshold_is_zero() {
        let mut counter = HealthCounter::default();
        let off = Thresholds { passive: 0, ..T };
        for _ in 0..10 {
            assert_eq!(counter.record(ConnectFailed, off, Instant::now()), None);
        }
        assert!(counter.is_up());
    }

    #[test]
    fn a_backend_taken_down_passively_comes_back_through_probes() {
        let mut counter = HealthCounter::default();
        run(&mut counter, &[ConnectFailed, ConnectFailed]);
        assert!(!counter.is_up());
        assert_eq!(
            run(&mut counter, &[ConnectFailed, Responded]),
            vec![None; 2]
        );
        let steps = run(&mut counter, &[ProbeSucceeded, ProbeSucceeded]);
        assert_eq!(steps, vec![None, Some(Transition::Up)]);
    }

    #[test]
    fn a_flip_resets_every_count() {
        let mut counter = HealthCounter::default();
        run(
            &mut counter,
            &[ConnectFailed, ProbeFailed, ProbeFailed, ProbeFailed],
        );
        run(&mut counter, &[ProbeSucceeded, ProbeSucceeded]);
        assert!(counter.is_up());
        assert_eq!(counter.connect_failures(), 0);
        assert_eq!(
            run(&mut counter, &[ProbeFailed, ProbeFailed]),
            vec![None, None]
        );
    }

    #[test]
    fn thresholds_changed_by_a_reload_apply_to_the_next_outcome() {
        let mut counter = HealthCounter::default();
        let now = Instant::now();
        counter.record(ProbeFailed, T, now);
        counter.record(ProbeFailed, T, now);
        // Lowered below the run already counted: the next failure flips it.
        let lower = Thresholds { unhealthy: 1, ..T };
        assert_eq!(
            counter.record(ProbeFailed, lower, now),
            Some(Transition::Down)
        );
        // Raised: the way back takes the new count.
        let higher = Thresholds { healthy: 3, ..T };
        assert_eq!(counter.record(ProbeSucceeded, higher, now), None);
        assert_eq!(counter.record(ProbeSucceeded, higher, now), None);
        assert_eq!(
            counter.record(ProbeSucceeded, higher, now),
            Some(Transition::Up)
        );
    }

    #[test]
    fn the_time_of_the_last_transition_is_the_time_passed_in() {
        let mut counter = HealthCounter::default();
        let start = Instant::now();
        let later = start + Duration::from_secs(7);
        counter.record(ConnectFailed, T, start);
        assert_eq!(counter.since(), None);
        counter.record(ConnectFailed, T, later);
        assert_eq!(counter.since(), Some(later));
    }

    #[test]
    fn the_table_applies_a_transition_once_and_keeps_counters_by_slot() {
        let table = HealthTable::default();
        let (a, b) = (BackendSlot(0), BackendSlot(1));
        let now = Instant::now();
        let mut applied = Vec::new();
        for slot in [a, a, b] {
            if let Some(t) = table.record(slot, true, ConnectFailed, T, now, |t| t) {
                applied.push((slot, t));
            }
        }
        assert_eq!(applied, vec![(a, Transition::Down)]);
        assert_eq!(table.get(b).map(|c| c.connect_failures()), Some(1));
        assert!(table.get(a).is_some_and(|c| !c.is_up()));
    }

    #[test]
    fn the_table_starts_a_slot_in_the_state_it_is_told() {
        let table = HealthTable::default();
        let slot = BackendSlot(3);
        let now = Instant::now();
        assert_eq!(
            table.record(slot, false, ProbeSucceeded, T, now, |t| t),
            None
        );
        assert_eq!(
            table.record(slot, false, ProbeSucceeded, T, now, |t| t),
            Some(Transition::Up)
        );
    }

    #[test]
    fn responses_for_a_slot_never_seen_record_nothing() {
        let table = HealthTable::default();
        let slot = BackendSlot(9);
        assert_eq!(
            table.record(slot, true, Responded, T, Instant::now(), |t| t),
            None
        );
        assert!(table.get(slot).is_none());
    }
}
