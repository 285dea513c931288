//! Cancel-Session packets bitsgate sends on its own, run in the background: a sweep
//! that expires thousands of pins, or a Create-Session Ack that cannot be pinned, hands
//! each cancel over and goes on. At most [`CANCEL_CONCURRENCY`] are in flight and at
//! most [`MAX_QUEUED_CANCELS`] wait; beyond that a cancel is dropped (counted), since
//! the backend's own idle cleanup frees the session later anyway. A cancel to an owner
//! that is down is skipped for the same reason: it could only time out.

use crate::backend::cancel::{CancelClient, CancelOutcome, CancelRequest};
use crate::backend::peer::upstream_peer;
use crate::backend::BackendSlot;
use crate::session::{Pin, SessionKey, SessionUrl, UrlRegistry};
use crate::state::Generation;
use prometheus::IntCounterVec;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Cancels sent at once.
pub const CANCEL_CONCURRENCY: usize = 16;
/// Cancels waiting for a turn; more are dropped.
pub const MAX_QUEUED_CANCELS: usize = 10_000;

/// Why bitsgate cancels a session itself (metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The pin expired.
    Expired,
    /// An operator deleted the session through the admin API.
    Admin,
    /// A backend created the session but bitsgate could not pin it.
    NotPinned,
    /// A backend issued an id that another backend's live session holds.
    IdCollision,
}

impl CancelReason {
    /// Every reason, for the series created at zero.
    pub const ALL: [CancelReason; 4] = [
        CancelReason::Expired,
        CancelReason::Admin,
        CancelReason::NotPinned,
        CancelReason::IdCollision,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            CancelReason::Expired => "expired",
            CancelReason::Admin => "admin",
            CancelReason::NotPinned => "not_pinned",
            CancelReason::IdCollision => "id_collision",
        }
    }
}

/// One session to cancel at one backend.
#[derive(Debug, Clone)]
pub struct CancelJob {
    /// The backend holding the session.
    pub backend: BackendSlot,
    /// The session id.
    pub session: String,
    /// Where the session was created.
    pub url: SessionUrl,
    /// Why.
    pub reason: CancelReason,
}

impl CancelJob {
    /// The Cancel-Session of a pinned session, to its owner at the URL it was created
    /// with.
    pub fn for_pin(urls: &UrlRegistry, key: &SessionKey, pin: &Pin, reason: CancelReason) -> Self {
        CancelJob {
            backend: pin.backend,
            session: key.to_string(),
            url: urls.get(pin.url),
            reason,
        }
    }
}

/// The background sender.
pub struct Cancels {
    client: Arc<CancelClient>,
    turns: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    counted: IntCounterVec,
}

/// A cancel ready to go: everything resolved from the generation it was made in.
struct Prepared {
    peer: pingora::upstreams::peer::HttpPeer,
    request: CancelRequest,
    backend: Arc<str>,
    limit: std::time::Duration,
    reason: CancelReason,
}

impl Cancels {
    /// A sender that counts into `counted` (labels: reason, outcome).
    pub fn new(counted: IntCounterVec) -> Self {
        Cancels {
            client: Arc::new(CancelClient::default()),
            turns: Arc::new(Semaphore::new(CANCEL_CONCURRENCY)),
            queued: Arc::new(AtomicUsize::new(0)),
            counted,
        }
    }

    /// Cancels waiting or in flight.
    pub fn pending(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Sends `job` in the background; returns at once.
    pub fn submit(&self, generation: &Generation, job: CancelJob) {
        let Some(prepared) = self.prepare(generation, job) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.count(prepared.reason, "dropped");
            return;
        };
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_CANCELS {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.count(prepared.reason, "dropped");
            return;
        }
        let (client, turns, queued, counted) = (
            self.client.clone(),
            self.turns.clone(),
            self.queued.clone(),
            self.counted.clone(),
        );
        runtime.spawn(async move {
            // The semaphore is never closed.
            let _turn = turns.acquire_owned().await;
            let outcome = client
                .send(&prepared.peer, &prepared.request, prepared.limit)
                .await;
            report(&counted, &prepared, &outcome);
            queued.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Sends `job` now and waits for the answer (an admin delete reports it). `None`
    /// when the owner is gone or down, or did not answer.
    pub async fn send_now(&self, generation: &Generation, job: CancelJob) -> Option<CancelOutcome> {
        let prepared = self.prepare(generation, job)?;
        let outcome = self
            .client
            .send(&prepared.peer, &prepared.request, prepared.limit)
            .await;
        report(&self.counted, &prepared, &outcome);
        outcome.ok()
    }

    /// Resolves the owner in `generation`; counts and skips a cancel to an owner that
    /// left the farm or is down.
    fn prepare(&self, generation: &Generation, job: CancelJob) -> Option<Prepared> {
        let Some(index) = generation.farm.index_of(job.backend) else {
            self.count(job.reason, "skipped");
            return None;
        };
        let backend = &generation.farm.backends[index];
        if !backend.status.is_up() {
            tracing::debug!(target: "bitsgate::cancel", session = job.session, backend = %backend.id, "owner is down; Cancel-Session skipped");
            self.count(job.reason, "skipped");
            return None;
        }
        let config = &generation.config;
        Some(Prepared {
            peer: upstream_peer(backend, &config.upstream),
            request: CancelRequest {
                // Without the client's Host (an old journal), the backend's address.
                host: job
                    .url
                    .host
                    .as_deref()
                    .map_or_else(|| backend.address.to_string(), str::to_owned),
                path: job.url.path,
                session: job.session,
            },
            backend: backend.id.clone(),
            // A Cancel-Session Ack is immediate: no reason to wait the upload-reply
            // read timeout that proxied packets allow.
            limit: config.upstream.connect_timeout + config.health_check.timeout,
            reason: job.reason,
        })
    }

    fn count(&self, reason: CancelReason, outcome: &str) {
        self.counted
            .with_label_values(&[reason.label(), outcome])
            .inc();
    }
}

fn report(
    counted: &IntCounterVec,
    prepared: &Prepared,
    outcome: &Result<CancelOutcome, crate::backend::cancel::CancelError>,
) {
    let label = match outcome {
        Ok(answer) if answer.session_is_gone() => "ok",
        Ok(_) => "refused",
        Err(_) => "error",
    };
    let reason = prepared.reason.label();
    counted.with_label_values(&[reason, label]).inc();
    let (session, backend) = (&prepared.request.session, &prepared.backend);
    match outcome {
        Ok(answer) => {
            tracing::info!(target: "bitsgate::cancel", session, backend = %backend, status = answer.status, reason, "Cancel-Session sent");
        }
        Err(e) => {
            tracing::warn!(target: "bitsgate::cancel", session, backend = %backend, error = %e, reason, "Cancel-Session failed");
        }
    }
}
