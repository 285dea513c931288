//! Series created at zero before their first event.
//!
//! A counter that first appears with the value 1 is invisible to `rate()` and
//! `increase()`: Prometheus needs a sample before the event to see the step. So the
//! series dashboards and alerts rely on exist from the start (global ones) or from the
//! moment a backend joins the farm (per-backend ones), as the Prometheus
//! instrumentation guidelines advise. Every label value used here is bounded.

use super::series::PACKET_LABELS;
use super::{names, EndReason, Metrics, PacketLabel, STATUS_CLASSES};
use crate::backend::Transition;

/// `packet` values a request forwarded to a backend can carry (invalid packets and
/// the `Ack` type are answered by bitsgate itself).
const FORWARDED_PACKETS: [PacketLabel; 6] = [
    PacketLabel::Bits(bits_proto::PacketType::Ping),
    PacketLabel::Bits(bits_proto::PacketType::CreateSession),
    PacketLabel::Bits(bits_proto::PacketType::Fragment),
    PacketLabel::Bits(bits_proto::PacketType::CloseSession),
    PacketLabel::Bits(bits_proto::PacketType::CancelSession),
    PacketLabel::Other,
];

/// `reason` values of `bitsgate_local_acks_total` decided by bitsgate itself (the
/// labels of `LocalReason` other than a refused packet; a test in the proxy keeps
/// them in step).
pub const LOCAL_ACK_REASONS: [&str; 10] = [
    "http_1_0",
    "ambiguous_framing",
    "fragment_too_large",
    "session_not_found",
    "owner_unavailable",
    "owner_removed",
    "no_backend",
    "table_full",
    "client_limit",
    "upstream_error",
];

/// `reason` values of `bitsgate_local_acks_total` from packet validation, one per
/// `bits_proto::RejectReason`.
pub const REJECT_REASONS: [&str; 12] = [
    "missing_packet_type",
    "unknown_packet_type",
    "missing_session_id",
    "invalid_session_id",
    "missing_content_range",
    "invalid_content_range",
    "missing_content_length",
    "invalid_content_length",
    "content_length_mismatch",
    "conflicting_headers",
    "header_too_long",
    "transfer_encoding",
];

/// `outcome` values of `bitsgate_config_reloads_total`.
pub const RELOAD_OUTCOMES: [&str; 2] = ["success", "failure"];

/// `reason` values of `bitsgate_cancels_sent_total`.
pub const CANCEL_REASONS: [&str; 4] = ["expired", "admin", "not_pinned", "id_collision"];

/// `outcome` values of `bitsgate_cancels_sent_total`.
pub const CANCEL_OUTCOMES: [&str; 5] = ["ok", "refused", "error", "skipped", "dropped"];

impl Metrics {
    /// Creates the series that do not depend on the farm.
    pub(super) fn create_global_series(&self) {
        for reason in LOCAL_ACK_REASONS.iter().chain(REJECT_REASONS.iter()) {
            self.local_acks.with_label_values(&[reason]);
        }
        for outcome in RELOAD_OUTCOMES {
            self.reloads.with_label_values(&[outcome]);
        }
        for reason in CANCEL_REASONS {
            for outcome in CANCEL_OUTCOMES {
                self.cancels_sent.with_label_values(&[reason, outcome]);
            }
        }
        for packet in PACKET_LABELS {
            self.duration.with_label_values(&[packet.as_str()]);
        }
        // Requests bitsgate answers itself can carry any packet label.
        self.create_request_series(names::NO_BACKEND, &PACKET_LABELS);
    }

    /// Creates, at zero, every event series of a backend that joins the farm (at
    /// start or by a reload). Series that already exist keep their value, so calling
    /// this for a backend that stays is harmless.
    pub fn add_backend(&self, backend: &str) {
        self.create_request_series(backend, &FORWARDED_PACKETS);
        self.uploaded_bytes.with_label_values(&[backend]);
        self.connect_failures.with_label_values(&[backend]);
        self.session_id_collisions.with_label_values(&[backend]);
        for to in [Transition::Up, Transition::Down] {
            self.backend_transitions
                .with_label_values(&[backend, to.label()]);
        }
        self.sessions_created.with_label_values(&[backend]);
        self.sessions_active.with_label_values(&[backend]);
        for reason in EndReason::ALL {
            self.sessions_ended
                .with_label_values(&[backend, reason.label()]);
        }
    }

    fn create_request_series(&self, backend: &str, packets: &[PacketLabel]) {
        for packet in packets {
            for class in STATUS_CLASSES {
                self.requests
                    .with_label_values(&[packet.as_str(), backend, class]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bits_proto::RejectReason;

    /// Fails to compile when a reason is added, so the list above is updated too.
    fn reject_label_is_listed(reason: RejectReason) -> bool {
        match reason {
            RejectReason::MissingPacketType
            | RejectReason::UnknownPacketType
            | RejectReason::MissingSessionId
            | RejectReason::InvalidSessionId(_)
            | RejectReason::MissingContentRange
            | RejectReason::InvalidContentRange(_)
            | RejectReason::MissingContentLength
            | RejectReason::InvalidContentLength
            | RejectReason::ContentLengthMismatch
            | RejectReason::ConflictingHeaders(_)
            | RejectReason::HeaderTooLong
            | RejectReason::TransferEncoding => REJECT_REASONS.contains(&reason.label()),
        }
    }

    #[test]
    fn every_reject_reason_is_created_at_zero() {
        for reason in [
            RejectReason::MissingPacketType,
            RejectReason::UnknownPacketType,
            RejectReason::MissingSessionId,
            RejectReason::MissingContentRange,
            RejectReason::MissingContentLength,
            RejectReason::InvalidContentLength,
            RejectReason::ContentLengthMismatch,
            RejectReason::HeaderTooLong,
            RejectReason::TransferEncoding,
        ] {
            assert!(reject_label_is_listed(reason), "{}", reason.label());
        }
        // The variants with a payload, by their labels.
        for label in [
            "invalid_session_id",
            "invalid_content_range",
            "conflicting_headers",
        ] {
            assert!(REJECT_REASONS.contains(&label), "{label}");
        }
    }

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .map(|value| value.trim().to_owned())
    }

    #[test]
    fn global_series_exist_at_zero_from_the_start() {
        let text = String::from_utf8(Metrics::new().render()).expect("utf-8");
        for series in [
            r#"bitsgate_local_acks_total{reason="table_full"}"#,
            r#"bitsgate_local_acks_total{reason="transfer_encoding"}"#,
            r#"bitsgate_config_reloads_total{outcome="failure"}"#,
            r#"bitsgate_cancels_sent_total{outcome="error",reason="expired"}"#,
            r#"bitsgate_requests_total{backend="none",class="5xx",packet="create_session"}"#,
            r#"bitsgate_request_duration_seconds_count{packet="fragment"}"#,
            "bitsgate_store_errors_total",
            "bitsgate_store_failed",
        ] {
            assert_eq!(sample(&text, series).as_deref(), Some("0"), "{series}");
        }
    }

    #[test]
    fn a_new_backend_has_its_event_series_at_zero() {
        let metrics = Metrics::new();
        metrics.add_backend("b7");
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        for series in [
            r#"bitsgate_backend_transitions_total{backend="b7",to="down"}"#,
            r#"bitsgate_backend_transitions_total{backend="b7",to="up"}"#,
            r#"bitsgate_upstream_connect_failures_total{backend="b7"}"#,
            r#"bitsgate_requests_total{backend="b7",class="5xx",packet="fragment"}"#,
            r#"bitsgate_uploaded_bytes_total{backend="b7"}"#,
            r#"bitsgate_sessions_created_total{backend="b7"}"#,
            r#"bitsgate_sessions_active{backend="b7"}"#,
            r#"bitsgate_sessions_ended_total{backend="b7",reason="expired"}"#,
        ] {
            assert_eq!(sample(&text, series).as_deref(), Some("0"), "{series}");
        }
        assert!(
            !text.contains(r#"backend="b7",class="2xx",packet="invalid""#),
            "invalid packets are never forwarded"
        );
    }

    #[test]
    fn adding_a_backend_again_keeps_its_counts() {
        let metrics = Metrics::new();
        metrics.add_backend("b1");
        metrics.connect_failures.with_label_values(&["b1"]).inc();
        metrics.add_backend("b1");
        assert_eq!(metrics.connect_failures.with_label_values(&["b1"]).get(), 1);
    }

    #[test]
    fn every_cancel_reason_is_created_at_zero() {
        for reason in crate::cancels::CancelReason::ALL {
            assert!(CANCEL_REASONS.contains(&reason.label()), "{reason:?}");
        }
    }
}
