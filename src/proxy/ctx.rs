//! Per-request state, as named parts.

use super::binding::AuthCtx;
use crate::backend::BackendSlot;
use crate::metrics::PacketLabel;
use crate::session::SessionKey;
use crate::state::Generation;
use bits_proto::PacketType;
use std::sync::Arc;
use std::time::Instant;

/// The BITS packet being proxied.
#[derive(Debug)]
pub struct PacketInfo {
    /// Its type.
    pub kind: PacketType,
    /// Its session, for Fragment, Close-Session and Cancel-Session.
    pub session: Option<SessionKey>,
    /// Body length.
    pub content_length: u64,
    /// It came as POST + X-Http-Method-Override.
    pub via_method_override: bool,
    /// The client's address, for `[sessions] max_pinned_per_client`.
    pub client: Option<std::net::IpAddr>,
}

/// Where the request was sent.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Index in the generation's farm.
    pub index: usize,
    /// The backend's slot.
    pub slot: BackendSlot,
    /// The backend's id (metrics label).
    pub id: Arc<str>,
}

/// Why bitsgate answered a request itself (metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReason {
    /// bits-proto refused the packet; the label is the reject reason.
    Malformed(&'static str),
    /// BITS_POST over HTTP/1.0.
    Http10,
    /// A non-BITS request with both Transfer-Encoding and Content-Length.
    AmbiguousFraming,
    /// The fragment is larger than `limits.max_fragment_bytes`.
    FragmentTooLarge,
    /// The session is unknown.
    SessionNotFound,
    /// The owner is configured but unreachable.
    OwnerUnavailable,
    /// The owner is no longer configured.
    OwnerRemoved,
    /// No ready backend.
    NoBackend,
    /// The session table is full.
    TableFull,
    /// The client's address holds `[sessions] max_pinned_per_client` pins already.
    ClientLimit,
    /// The backend failed after the request was sent.
    UpstreamError,
}

impl LocalReason {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            LocalReason::Malformed(reason) => reason,
            LocalReason::Http10 => "http_1_0",
            LocalReason::AmbiguousFraming => "ambiguous_framing",
            LocalReason::FragmentTooLarge => "fragment_too_large",
            LocalReason::SessionNotFound => "session_not_found",
            LocalReason::OwnerUnavailable => "owner_unavailable",
            LocalReason::OwnerRemoved => "owner_removed",
            LocalReason::NoBackend => "no_backend",
            LocalReason::TableFull => "table_full",
            LocalReason::ClientLimit => "client_limit",
            LocalReason::UpstreamError => "upstream_error",
        }
    }
}

/// Everything one request carries through the phases.
pub struct RequestCtx {
    /// When the request started.
    pub started: Instant,
    /// The config generation the request was routed with (one per request, so a reload
    /// mid-request never mixes two farms).
    pub generation: Option<Arc<Generation>>,
    /// The BITS packet, when it is one.
    pub packet: Option<PacketInfo>,
    /// The chosen backend.
    pub chosen: Option<Chosen>,
    /// Backends whose connect failed during this request.
    pub tried: Vec<usize>,
    /// Set when bitsgate answered locally.
    pub local: Option<LocalReason>,
    /// A download of an upload reply: only its owner may answer it.
    pub reply: bool,
    /// Status sent downstream.
    pub status: u16,
    /// Connection-bound authentication of the client connection.
    pub auth: AuthCtx,
    /// The client's address (the TCP peer, or the PROXY protocol source).
    pub client: Option<std::net::IpAddr>,
}

impl RequestCtx {
    pub(crate) fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            generation: None,
            packet: None,
            chosen: None,
            tried: Vec::new(),
            local: None,
            reply: false,
            status: 0,
            auth: AuthCtx::default(),
            client: None,
        }
    }

    /// The packet-type label for metrics.
    pub fn packet_label(&self) -> PacketLabel {
        match (&self.packet, self.local) {
            (Some(packet), _) => PacketLabel::Bits(packet.kind),
            (None, Some(LocalReason::Malformed(_) | LocalReason::Http10)) => PacketLabel::Invalid,
            (None, _) => PacketLabel::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LocalReason;
    use crate::metrics::LOCAL_ACK_REASONS;

    #[test]
    fn every_local_reason_has_its_series_created_at_zero() {
        let reasons = [
            LocalReason::Http10,
            LocalReason::AmbiguousFraming,
            LocalReason::FragmentTooLarge,
            LocalReason::SessionNotFound,
            LocalReason::OwnerUnavailable,
            LocalReason::OwnerRemoved,
            LocalReason::NoBackend,
            LocalReason::TableFull,
            LocalReason::ClientLimit,
            LocalReason::UpstreamError,
        ];
        for reason in reasons {
            // Exhaustive, so a new reason does not compile until it is listed here
            // and in LOCAL_ACK_REASONS.
            match reason {
                LocalReason::Malformed(_) => unreachable!("reject reasons are listed apart"),
                LocalReason::Http10
                | LocalReason::AmbiguousFraming
                | LocalReason::FragmentTooLarge
                | LocalReason::SessionNotFound
                | LocalReason::OwnerUnavailable
                | LocalReason::OwnerRemoved
                | LocalReason::NoBackend
                | LocalReason::TableFull
                | LocalReason::ClientLimit
                | LocalReason::UpstreamError => {}
            }
            assert!(LOCAL_ACK_REASONS.contains(&reason.label()), "{reason:?}");
        }
        assert_eq!(reasons.len(), LOCAL_ACK_REASONS.len());
    }
}
