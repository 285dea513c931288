//! Handles of the series every request touches, resolved once and then kept.
//!
//! `with_label_values` hashes the label values and takes a lock on every call; on the
//! request path that is paid for every packet. Each handle here is looked up on first
//! use only and read with one atomic load afterwards. The series themselves exist
//! from the start, at zero (see `zero.rs`); only the handles are resolved lazily.

use super::{status_class_index, Metrics, STATUS_CLASSES};
use bits_proto::PacketType;
use prometheus::{Histogram, IntCounter};
use std::sync::{Arc, OnceLock};

/// The `packet` label of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketLabel {
    /// A BITS packet of this type.
    Bits(PacketType),
    /// A request refused before its packet type was known.
    Invalid,
    /// Not a BITS packet.
    Other,
}

/// Every `packet` label value, in [`PacketLabel::index`] order.
pub(super) const PACKET_LABELS: [PacketLabel; 8] = [
    PacketLabel::Bits(PacketType::Ping),
    PacketLabel::Bits(PacketType::CreateSession),
    PacketLabel::Bits(PacketType::Fragment),
    PacketLabel::Bits(PacketType::CloseSession),
    PacketLabel::Bits(PacketType::CancelSession),
    PacketLabel::Bits(PacketType::Ack),
    PacketLabel::Invalid,
    PacketLabel::Other,
];

impl PacketLabel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PacketLabel::Bits(kind) => kind.label(),
            PacketLabel::Invalid => "invalid",
            PacketLabel::Other => "other",
        }
    }

    fn index(self) -> usize {
        match self {
            PacketLabel::Bits(PacketType::Ping) => 0,
            PacketLabel::Bits(PacketType::CreateSession) => 1,
            PacketLabel::Bits(PacketType::Fragment) => 2,
            PacketLabel::Bits(PacketType::CloseSession) => 3,
            PacketLabel::Bits(PacketType::CancelSession) => 4,
            PacketLabel::Bits(PacketType::Ack) => 5,
            PacketLabel::Invalid => 6,
            PacketLabel::Other => 7,
        }
    }
}

/// The per-request series of one `backend` label value.
pub struct BackendSeries {
    backend: Arc<str>,
    requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; PACKET_LABELS.len()],
    uploaded_bytes: OnceLock<IntCounter>,
    upstream_connects: OnceLock<IntCounter>,
    upstream_reuses: OnceLock<IntCounter>,
}

impl BackendSeries {
    /// Series labelled with `backend` (a backend id, or [`super::names::NO_BACKEND`]).
    pub fn new(backend: Arc<str>) -> Self {
        BackendSeries {
            backend,
            requests: Default::default(),
            uploaded_bytes: OnceLock::new(),
            upstream_connects: OnceLock::new(),
            upstream_reuses: OnceLock::new(),
        }
    }

    /// `bitsgate_requests_total{packet, backend, class}` for a response status.
    pub fn requests(&self, metrics: &Metrics, packet: PacketLabel, status: u16) -> &IntCounter {
        let class = status_class_index(status);
        self.requests[packet.index()][class].get_or_init(|| {
            metrics.requests.with_label_values(&[
                packet.as_str(),
                &self.backend,
                STATUS_CLASSES[class],
            ])
        })
    }

    /// `bitsgate_uploaded_bytes_total{backend}`.
    pub fn uploaded_bytes(&self, metrics: &Metrics) -> &IntCounter {
        self.uploaded_bytes
            .get_or_init(|| metrics.uploaded_bytes.with_label_values(&[&self.backend]))
    }

    /// `bitsgate_upstream_connects_total{backend}` for a new connection,
    /// `bitsgate_upstream_reuses_total{backend}` for a pooled one.
    pub fn upstream_connection(&self, metrics: &Metrics, reused: bool) -> &IntCounter {
        if reused {
            self.upstream_reuses
                .get_or_init(|| metrics.upstream_reuses.with_label_values(&[&self.backend]))
        } else {
            self.upstream_connects.get_or_init(|| {
                metrics
                    .upstream_connects
                    .with_label_values(&[&self.backend])
            })
        }
    }
}

/// `bitsgate_request_duration_seconds{packet}`, one histogram per label value.
#[derive(Default)]
pub struct DurationSeries([OnceLock<Histogram>; PACKET_LABELS.len()]);

impl DurationSeries {
    /// The histogram of one packet label.
    pub fn of(&self, metrics: &Metrics, packet: PacketLabel) -> &Histogram {
        self.0[packet.index()]
            .get_or_init(|| metrics.duration.with_label_values(&[packet.as_str()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_its_own_slot() {
        for (i, label) in PACKET_LABELS.iter().enumerate() {
            assert_eq!(label.index(), i, "{}", label.as_str());
        }
    }

    #[test]
    fn a_cached_handle_counts_in_the_registered_series() {
        let metrics = Metrics::new();
        let series = BackendSeries::new(Arc::from("b1"));
        let ping = PacketLabel::Bits(PacketType::Ping);
        series.requests(&metrics, ping, 200).inc();
        series.requests(&metrics, ping, 204).inc();
        series.requests(&metrics, PacketLabel::Other, 503).inc();
        series.uploaded_bytes(&metrics).inc_by(7);
        let requests = |packet, class| {
            metrics
                .requests
                .with_label_values(&[packet, "b1", class])
                .get()
        };
        assert_eq!(requests("ping", "2xx"), 2);
        assert_eq!(requests("other", "5xx"), 1);
        assert_eq!(metrics.uploaded_bytes.with_label_values(&["b1"]).get(), 7);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            !text.contains(r#"backend="b1",class="2xx",packet="fragment""#),
            "a handle registers only its own series"
        );
    }
}
