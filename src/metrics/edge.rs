//! Metrics of the client edge: connections held, and connections bitsgate closed
//! because a limit of `[listener]` triggered.

use super::names;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Why bitsgate closed a client connection (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeClose {
    /// The request header block did not arrive within `header_timeout`.
    HeaderTimeout,
    /// The request header block grew past `max_header_block`.
    HeaderTooLarge,
    /// A request body brought less than `body_min_bytes` in a `body_timeout`.
    BodyTooSlow,
    /// `max_connections` were open already.
    OverCapacity,
    /// `proxy_protocol` is on and the connection did not open with a valid header.
    ProxyHeaderInvalid,
    /// A TLS listener's client sent something that is not a TLS handshake bitsgate
    /// can complete (plain HTTP, no common version or cipher suite).
    TlsHandshakeFailed,
}

impl EdgeClose {
    /// Every reason, for series created at zero.
    pub const ALL: [EdgeClose; 6] = [
        EdgeClose::HeaderTimeout,
        EdgeClose::HeaderTooLarge,
        EdgeClose::BodyTooSlow,
        EdgeClose::OverCapacity,
        EdgeClose::ProxyHeaderInvalid,
        EdgeClose::TlsHandshakeFailed,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            EdgeClose::HeaderTimeout => "header_timeout",
            EdgeClose::HeaderTooLarge => "header_too_large",
            EdgeClose::BodyTooSlow => "body_too_slow",
            EdgeClose::OverCapacity => "over_capacity",
            EdgeClose::ProxyHeaderInvalid => "proxy_header_invalid",
            EdgeClose::TlsHandshakeFailed => "tls_handshake_failed",
        }
    }
}

/// The registered edge metrics.
#[derive(Clone)]
pub struct EdgeMetrics {
    /// See [`names::CLIENT_CONNECTIONS`].
    pub open: IntGauge,
    /// See [`names::CLIENT_CONNECTIONS_CLOSED_TOTAL`].
    pub closed: IntCounterVec,
}

impl EdgeMetrics {
    /// Registers the edge metrics in `registry`, every reason at zero.
    pub fn register(registry: &Registry) -> EdgeMetrics {
        let open = IntGauge::new(
            names::CLIENT_CONNECTIONS,
            "Client connections open (held by the listener's limits).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(open.clone()))
            .expect("unique metric");
        let closed = IntCounterVec::new(
            Opts::new(
                names::CLIENT_CONNECTIONS_CLOSED_TOTAL,
                "Client connections bitsgate closed because a [listener] limit triggered, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(closed.clone()))
            .expect("unique metric");
        for reason in EdgeClose::ALL {
            closed.with_label_values(&[reason.label()]);
        }
        EdgeMetrics { open, closed }
    }

    /// Counts one connection closed for `reason`.
    pub fn closed(&self, reason: EdgeClose) {
        self.closed.with_label_values(&[reason.label()]).inc();
    }
}
