//! Backend health: the background service that probes every backend of the current
//! generation each `health_check.interval`, and the passive hooks the proxy calls on
//! live traffic. Both feed the per-slot counters in `Shared::health` and apply the
//! transitions they return to `BackendStatus`, which routing reads.
//!
//! Recovery when a backend's probe kind is `none`: a backend that live traffic took
//! down is probed with a TCP connect while it is down, since nothing else would ever
//! bring it back; once up again it is not probed at all.

use crate::backend::probe::{ProbeError, Probes};
use crate::backend::tls_failures;
use crate::backend::{Backend, Outcome, Thresholds, Transition};
use crate::config::HealthCheckKind;
use crate::state::{Generation, Shared};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

const LOG: &str = "bitsgate::health";

/// The background service.
pub struct HealthService {
    shared: Arc<Shared>,
}

impl HealthService {
    /// A health service over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        HealthService { shared }
    }

    /// One round over the generation in force: every backend probed concurrently,
    /// each result fed to its counter as it arrives. `probes` carries the checks over
    /// from the last round; they are rebuilt when a reload changed path or timeout.
    /// Returns how many backends flipped.
    pub async fn round(&self, probes: &mut Option<Probes>) -> usize {
        let generation = self.shared.generation();
        let config = &generation.config.health_check;
        let upstream = &generation.config.upstream;
        let probes = match probes {
            Some(p) if p.matches(config, upstream) => p,
            _ => probes.insert(Probes::new(config, upstream)),
        };
        let mut running = JoinSet::new();
        // The farm lists configured backends, then retired ones (still serving their
        // sessions, so still probed): the same order as this chain.
        let configs = generation.config.backends.iter().chain(&generation.retired);
        for (index, (backend, backend_config)) in
            generation.farm.backends.iter().zip(configs).enumerate()
        {
            let kind = probe_kind(
                backend_config.health_check.unwrap_or(config.kind),
                backend.status.is_up(),
            );
            if let Some(probe) = probes.prepare(kind, backend) {
                running.spawn(async move { (index, probe.run().await) });
            }
        }
        let mut flipped = 0;
        while let Some(joined) = running.join_next().await {
            let (index, result) = match joined {
                Ok(done) => done,
                Err(e) => {
                    // A probe task that panicked says nothing about the backend.
                    tracing::error!(target: LOG, error = %e, "health probe task failed");
                    continue;
                }
            };
            let Some(backend) = generation.farm.backends.get(index) else {
                continue;
            };
            if let Err(ProbeError::Tls(failure, detail)) = &result {
                let metrics = &self.shared.metrics;
                tls_failures::report(metrics, &backend.id, *failure, "probe", detail);
            }
            let transition = match &result {
                Ok(()) => record(
                    &self.shared,
                    &generation,
                    backend,
                    Outcome::ProbeSucceeded,
                    "probe answered",
                ),
                Err(e) => record(&self.shared, &generation, backend, Outcome::ProbeFailed, e),
            };
            if transition.is_some() {
                flipped += 1;
            } else if let Err(e) = &result {
                tracing::debug!(target: LOG, backend = %backend.id, error = %e, "health probe failed");
            }
        }
        // Re-publish every gauge so they follow the status even if something other
        // than this service changed it (or a reload added backends meanwhile).
        self.shared.publish_backend_metrics();
        self.shared.status_history.sample(&self.shared);
        flipped
    }
}

/// The probe a backend gets this round: its configured kind, except that a down
/// backend whose kind is `none` gets a TCP connect so it can come back.
pub fn probe_kind(configured: HealthCheckKind, up: bool) -> HealthCheckKind {
    match configured {
        HealthCheckKind::None if !up => HealthCheckKind::Tcp,
        kind => kind,
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut probes = None;
        loop {
            // The first round waits one interval too: backends start up (as in
            // Pingora's own checks), and a restart does not burst probes at the farm.
            let interval = self.shared.generation().config.health_check.interval;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.round(&mut probes) => {}
            }
        }
    }
}

/// Live traffic could not connect to `farm.backends[index]` (from `fail_to_connect`).
pub fn connect_failed(shared: &Shared, generation: &Generation, index: usize) {
    if let Some(backend) = generation.farm.backends.get(index) {
        let detail = format_args!(
            "{} consecutive connect failures of live traffic",
            generation.config.health_check.passive_failures
        );
        record(shared, generation, backend, Outcome::ConnectFailed, detail);
    }
}

/// `farm.backends[index]` answered live traffic (from `upstream_response_filter`).
pub fn responded(shared: &Shared, generation: &Generation, index: usize) {
    if let Some(backend) = generation.farm.backends.get(index) {
        record(shared, generation, backend, Outcome::Responded, "");
    }
}

/// Feeds one outcome to the backend's counter and applies a flip: status, metrics,
/// log line.
fn record(
    shared: &Shared,
    generation: &Generation,
    backend: &Backend,
    outcome: Outcome,
    detail: impl Display,
) -> Option<Transition> {
    let thresholds = Thresholds::from(&generation.config.health_check);
    let up = backend.status.is_up();
    shared.health.record(
        backend.slot,
        up,
        outcome,
        thresholds,
        Instant::now(),
        |transition| {
            backend.status.set_up(transition == Transition::Up);
            let to = transition.label();
            let id = &*backend.id;
            shared
                .metrics
                .backend_transitions
                .with_label_values(&[id, to])
                .inc();
            shared
                .metrics
                .backend_up
                .with_label_values(&[id])
                .set(i64::from(transition == Transition::Up));
            let reason = reason(outcome);
            match transition {
                Transition::Down => {
                    tracing::warn!(target: LOG, backend = id, to, reason, detail = %detail, "backend is down")
                }
                Transition::Up => {
                    tracing::info!(target: LOG, backend = id, to, reason, detail = %detail, "backend is up")
                }
            }
            transition
        },
    )
}

/// The `reason` log field of a transition caused by `outcome`.
fn reason(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::ProbeSucceeded => "probe_succeeded",
        Outcome::ProbeFailed => "probe_failed",
        Outcome::ConnectFailed => "connect_failures",
        Outcome::Responded => "responded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_backend_without_probes_gets_a_tcp_connect_to_come_back() {
        assert_eq!(
            probe_kind(HealthCheckKind::None, false),
            HealthCheckKind::Tcp
        );
    }

    #[test]
    fn an_up_backend_gets_exactly_its_configured_probe() {
        for kind in [
            HealthCheckKind::None,
            HealthCheckKind::Tcp,
            HealthCheckKind::BitsPing,
        ] {
            assert_eq!(probe_kind(kind, true), kind);
        }
        assert_eq!(
            probe_kind(HealthCheckKind::BitsPing, false),
            HealthCheckKind::BitsPing
        );
    }
}
