//! Prometheus metrics. Each proxy instance has its own registry, so several instances
//! in one process (tests, the demo) never mix their numbers.

mod edge;
pub mod names;
mod series;
mod zero;

pub use edge::{EdgeClose, EdgeMetrics};
pub use series::{BackendSeries, DurationSeries, PacketLabel};
pub use zero::LOCAL_ACK_REASONS;

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Why a session's pin was removed (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A 200 Ack to Close-Session.
    Closed,
    /// A 200 Ack to Cancel-Session.
    Cancelled,
    /// Idle longer than `sessions.idle_timeout`.
    Expired,
    /// The backend answered BG_E_SESSION_NOT_FOUND.
    NotFound,
    /// Its pin could not be journaled, so its Create-Session was refused.
    NotJournaled,
    /// The owner is no longer in the configuration.
    BackendRemoved,
    /// Another replica ended it (Redis store): dropped from this replica's cache.
    EndedElsewhere,
}

impl EndReason {
    /// Every reason, for series created at zero.
    pub const ALL: [EndReason; 6] = [
        EndReason::Closed,
        EndReason::Cancelled,
        EndReason::Expired,
        EndReason::NotFound,
        EndReason::BackendRemoved,
        EndReason::EndedElsewhere,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Cancelled => "cancelled",
            EndReason::Expired => "expired",
            EndReason::NotFound => "not_found",
            EndReason::NotJournaled => "not_journaled",
            EndReason::BackendRemoved => "backend_removed",
            EndReason::EndedElsewhere => "ended_elsewhere",
        }
    }
}

/// The registered metrics of one proxy instance.
pub struct Metrics {
    registry: Registry,
    /// See [`names::REQUESTS_TOTAL`].
    pub requests: IntCounterVec,
    /// See [`names::LOCAL_ACKS_TOTAL`].
    pub local_acks: IntCounterVec,
    /// See [`names::SESSIONS_CREATED_TOTAL`].
    pub sessions_created: IntCounterVec,
    /// See [`names::SESSIONS_ENDED_TOTAL`].
    pub sessions_ended: IntCounterVec,
    /// See [`names::SESSIONS_ACTIVE`].
    pub sessions_active: IntGaugeVec,
    /// See [`names::PINNED_SESSIONS`].
    pub pinned: IntGauge,
    /// See [`names::MAX_PINNED_SESSIONS`].
    pub max_pinned: IntGauge,
    /// See [`names::REPLY_ROUTES`].
    pub reply_routes: IntGauge,
    /// See [`names::UPLOADED_BYTES_TOTAL`].
    pub uploaded_bytes: IntCounterVec,
    /// See [`names::REQUEST_DURATION_SECONDS`].
    pub duration: HistogramVec,
    /// See [`names::BACKEND_UP`].
    pub backend_up: IntGaugeVec,
    /// See [`names::BACKEND_DRAINING`].
    pub backend_draining: IntGaugeVec,
    /// See [`names::BACKEND_RETIRED`].
    pub backend_retired: IntGaugeVec,
    /// See [`names::UPSTREAM_CONNECT_FAILURES_TOTAL`].
    pub connect_failures: IntCounterVec,
    /// See [`names::UPSTREAM_TLS_FAILURES_TOTAL`].
    pub upstream_tls_failures: IntCounterVec,
    /// See [`names::UPSTREAM_CONNECTS_TOTAL`].
    pub upstream_connects: IntCounterVec,
    /// See [`names::UPSTREAM_REUSES_TOTAL`].
    pub upstream_reuses: IntCounterVec,
    /// See [`names::BACKEND_DRAINED`].
    pub backend_drained: IntGaugeVec,
    /// Sessions of each backend in the shared store (Redis mode).
    pub store_sessions: IntGaugeVec,
    /// See [`names::STORE_ERRORS_TOTAL`].
    pub store_errors: prometheus::IntCounter,
    /// See [`names::STORE_FAILED`].
    pub store_failed: IntGauge,
    /// See [`names::ACCESS_LOG_DROPPED_TOTAL`].
    pub access_log_dropped: prometheus::IntCounter,
    /// See [`names::FAST_PATH_REQUESTS_TOTAL`].
    pub fast_path_requests: prometheus::IntCounter,
    /// See [`names::FAST_PATH_SPLICED_BYTES_TOTAL`].
    pub fast_path_spliced_bytes: prometheus::IntCounter,
    /// See [`names::CONFIG_RELOADS_TOTAL`].
    pub reloads: IntCounterVec,
    /// See [`names::CANCELS_SENT_TOTAL`].
    pub cancels_sent: IntCounterVec,
    /// See [`names::SESSION_ID_COLLISIONS_TOTAL`].
    pub session_id_collisions: IntCounterVec,
    /// See [`names::BACKEND_TRANSITIONS_TOTAL`].
    pub backend_transitions: IntCounterVec,
    /// Per-request series of requests answered without a backend.
    pub no_backend: BackendSeries,
    /// Per-request duration histograms.
    pub durations: DurationSeries,
    /// Client connections and the limits that closed them.
    pub edge: EdgeMetrics,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let requests = counter(
            names::REQUESTS_TOTAL,
            "Requests answered, by packet type, backend and status class.",
            &["packet", "backend", "class"],
        );
        let local_acks = counter(
            names::LOCAL_ACKS_TOTAL,
            "Acks bitsgate answered itself instead of forwarding, by reason.",
            &["reason"],
        );
        let sessions_created = counter(
            names::SESSIONS_CREATED_TOTAL,
            "Sessions pinned from a successful Create-Session Ack.",
            &["backend"],
        );
        let sessions_ended = counter(
            names::SESSIONS_ENDED_TOTAL,
            "Session pins removed, by reason.",
            &["backend", "reason"],
        );
        let sessions_active = gauge(
            names::SESSIONS_ACTIVE,
            "Sessions pinned to each backend.",
            &["backend"],
        );
        let pinned = IntGauge::new(names::PINNED_SESSIONS, "Sessions pinned in total.")
            .expect("valid metric");
        registry
            .register(Box::new(pinned.clone()))
            .expect("unique metric");
        let max_pinned = IntGauge::new(
            names::MAX_PINNED_SESSIONS,
            "[sessions] max_pinned in force: Create-Session is refused at this many pins.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(max_pinned.clone()))
            .expect("unique metric");
        let reply_routes = IntGauge::new(
            names::REPLY_ROUTES,
            "Upload-reply routes held: reply paths routed to the backend that issued them.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(reply_routes.clone()))
            .expect("unique metric");
        let uploaded_bytes = counter(
            names::UPLOADED_BYTES_TOTAL,
            "Fragment bytes forwarded and acknowledged with 2xx by each backend.",
            &["backend"],
        );
        let duration = HistogramVec::new(
            HistogramOpts::new(
                names::REQUEST_DURATION_SECONDS,
                "Time from request start to the end of the response, by packet type.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ]),
            &["packet"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("unique metric");
        let backend_up = gauge(
            names::BACKEND_UP,
            "1 when the backend is considered reachable.",
            &["backend"],
        );
        let backend_draining = gauge(
            names::BACKEND_DRAINING,
            "1 when the backend takes no new sessions.",
            &["backend"],
        );
        let backend_retired = gauge(
            names::BACKEND_RETIRED,
            "1 when the backend left the configuration and is kept only until its sessions end.",
            &["backend"],
        );
        let connect_failures = counter(
            names::UPSTREAM_CONNECT_FAILURES_TOTAL,
            "Failed connection attempts to each backend.",
            &["backend"],
        );
        let upstream_tls_failures = counter(
            names::UPSTREAM_TLS_FAILURES_TOTAL,
            "TLS connections to each backend that failed, by reason.",
            &["backend", "reason"],
        );
        let upstream_connects = counter(
            names::UPSTREAM_CONNECTS_TOTAL,
            "New connections opened to each backend.",
            &["backend"],
        );
        let upstream_reuses = counter(
            names::UPSTREAM_REUSES_TOTAL,
            "Requests sent to each backend over a pooled connection.",
            &["backend"],
        );
        let backend_drained = gauge(
            names::BACKEND_DRAINED,
            "1 when a draining backend owns no session any more and can be taken down.",
            &["backend"],
        );
        let store_sessions = gauge(
            names::STORE_SESSIONS,
            "Sessions of each backend in the shared store (Redis), as of the last poll.",
            &["backend"],
        );
        let reloads = counter(
            names::CONFIG_RELOADS_TOTAL,
            "Configuration reloads, by outcome.",
            &["outcome"],
        );
        let cancels_sent = counter(
            names::CANCELS_SENT_TOTAL,
            "Cancel-Session packets bitsgate sent to backends itself, by reason and outcome.",
            &["reason", "outcome"],
        );
        let session_id_collisions = counter(
            names::SESSION_ID_COLLISIONS_TOTAL,
            "Create-Session Acks refused because another backend holds a live session with the same id, by the backend that issued it.",
            &["backend"],
        );
        let backend_transitions = counter(
            names::BACKEND_TRANSITIONS_TOTAL,
            "Backend health transitions, by new state (up or down).",
            &["backend", "to"],
        );
        let store_errors = prometheus::IntCounter::new(
            names::STORE_ERRORS_TOTAL,
            "Pin journal writes that failed; the pin stays in memory only.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_errors.clone()))
            .expect("unique metric");
        let store_failed = IntGauge::new(
            names::STORE_FAILED,
            "1 when the pin journal takes no more writes until a restart.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_failed.clone()))
            .expect("unique metric");
        let access_log_dropped = prometheus::IntCounter::new(
            names::ACCESS_LOG_DROPPED_TOTAL,
            "Access-log lines dropped because the writer fell behind or could not write.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(access_log_dropped.clone()))
            .expect("unique metric");
        let fast_path_requests = prometheus::IntCounter::new(
            names::FAST_PATH_REQUESTS_TOTAL,
            "Requests served on the fast path; the rest went through Pingora's proxy.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(fast_path_requests.clone()))
            .expect("unique metric");
        let fast_path_spliced_bytes = prometheus::IntCounter::new(
            names::FAST_PATH_SPLICED_BYTES_TOTAL,
            "Request body bytes the fast path moved with splice(2).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(fast_path_spliced_bytes.clone()))
            .expect("unique metric");
        let edge = EdgeMetrics::register(&registry);
        let metrics = Metrics {
            registry,
            fast_path_requests,
            fast_path_spliced_bytes,
            store_failed,
            store_errors,
            access_log_dropped,
            backend_drained,
            store_sessions,
            reloads,
            cancels_sent,
            session_id_collisions,
            requests,
            local_acks,
            sessions_created,
            sessions_ended,
            sessions_active,
            pinned,
            max_pinned,
            reply_routes,
            uploaded_bytes,
            duration,
            backend_up,
            backend_draining,
            backend_retired,
            connect_failures,
            upstream_tls_failures,
            upstream_connects,
            upstream_reuses,
            backend_transitions,
            no_backend: BackendSeries::new(Arc::from(names::NO_BACKEND)),
            durations: DurationSeries::default(),
            edge,
        };
        metrics.create_global_series();
        metrics
    }

    /// Records a pin removal.
    pub fn session_ended(&self, backend: &str, reason: EndReason) {
        self.sessions_ended
            .with_label_values(&[backend, reason.label()])
            .inc();
        self.sessions_active.with_label_values(&[backend]).dec();
        self.pinned.dec();
    }

    /// Records pins of one backend brought back from the durable store.
    pub fn sessions_restored(&self, backend: &str, count: u64) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.sessions_active
            .with_label_values(&[backend])
            .add(count);
        self.pinned.add(count);
    }

    /// Records a new pin.
    pub fn session_created(&self, backend: &str) {
        self.sessions_created.with_label_values(&[backend]).inc();
        self.sessions_active.with_label_values(&[backend]).inc();
        self.pinned.inc();
    }

    /// Removes the per-backend gauges of a backend that left the farm.
    pub fn forget_backend(&self, backend: &str) {
        for gauge in [
            &self.backend_up,
            &self.backend_draining,
            &self.backend_drained,
            &self.backend_retired,
            &self.store_sessions,
        ] {
            let _ = gauge.remove_label_values(&[backend]);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Every `class` label value, in [`status_class_index`] order.
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The status-class label of a status code.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

fn status_class_index(status: u16) -> usize {
    match status {
        // No response was written (the client went away first).
        0 => 0,
        100..=199 => 1,
        200..=299 => 2,
        300..=399 => 3,
        400..=499 => 4,
        _ => 5,
    }
}
