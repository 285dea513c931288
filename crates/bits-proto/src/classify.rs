//! The per-request entry point: is this a BITS packet, which one, and is it well formed?
//!
//! [`classify`] reads only the method and the headers, borrows from them, and allocates
//! nothing on success, so a proxy can call it on every request.

use crate::ack::Ack;
use crate::error_code::{ErrorCode, ErrorContext};
use crate::header_source::HeaderSource;
use crate::headers::{self as h, trim_ows};
use crate::packet::PacketType;
use crate::protocols::SupportedProtocols;
use crate::range::{parse_decimal, ContentRange, RangeError};
use crate::session_id::{SessionId, SessionIdError};
use http::header;

/// What [`classify`] may accept beyond the strict protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifyOptions {
    /// Accept `POST` with `X-Http-Method-Override: BITS_POST` as a BITS packet.
    pub allow_method_override: bool,
    /// Longest value accepted for a protocol header (`BITS-*` and `Content-*`), in
    /// bytes. Other headers, `Authorization` above all, are not limited here.
    pub max_header_value: usize,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            allow_method_override: true,
            max_header_value: h::MAX_HEADER_VALUE_BYTES,
        }
    }
}

/// A request, sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified<'a> {
    /// A well-formed BITS request packet.
    Bits(Packet<'a>),
    /// Not a BITS packet (GET of a reply URL, a probe, ...): not ours to judge.
    Other,
}

/// A well-formed BITS request packet, borrowing from the request headers.
///
/// Invariants: `session_id` is set for Fragment, Close-Session and Cancel-Session;
/// `range` and `content_length` are set for Fragment and agree with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Which packet.
    pub kind: PacketType,
    /// `BITS-Session-Id`, validated (only read for packets that need one).
    pub session_id: Option<&'a str>,
    /// `Content-Range` of a Fragment.
    pub range: Option<ContentRange>,
    /// `Content-Length`, when sent.
    pub content_length: Option<u64>,
    /// `BITS-Supported-Protocols` of a Create-Session, when sent.
    pub supported_protocols: Option<SupportedProtocols<'a>>,
    /// The packet came as `POST` + `X-Http-Method-Override: BITS_POST`.
    pub via_method_override: bool,
}

/// Why a BITS packet was refused. Each reason maps to the status and error code the
/// spec prescribes (all are E_INVALIDARG today: the spec has one code for bad input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// No `BITS-Packet-Type` header.
    #[error("BITS-Packet-Type is missing")]
    MissingPacketType,
    /// A value that is not a request packet type (including `Ack`).
    #[error("BITS-Packet-Type is not a request packet type")]
    UnknownPacketType,
    /// Fragment, Close-Session or Cancel-Session without `BITS-Session-Id`.
    #[error("BITS-Session-Id is missing")]
    MissingSessionId,
    /// `BITS-Session-Id` is empty, too long, or has bytes outside visible ASCII.
    #[error("BITS-Session-Id is invalid: {0}")]
    InvalidSessionId(SessionIdError),
    /// Fragment without `Content-Range`.
    #[error("Content-Range is missing")]
    MissingContentRange,
    /// `Content-Range` does not parse or breaks `F <= L < T`.
    #[error("Content-Range is invalid: {0}")]
    InvalidContentRange(RangeError),
    /// Fragment without `Content-Length`.
    #[error("Content-Length is missing")]
    MissingContentLength,
    /// `Content-Length` is not a decimal number.
    #[error("Content-Length is not a decimal number")]
    InvalidContentLength,
    /// `Content-Length` differs from the range's length.
    #[error("Content-Length does not match Content-Range")]
    ContentLengthMismatch,
    /// The same header twice with different values.
    #[error("{0} is sent twice with different values")]
    ConflictingHeaders(&'static str),
    /// A header value longer than the limit.
    #[error("a header value is longer than the limit")]
    HeaderTooLong,
    /// `Transfer-Encoding` on a BITS packet: bodies must be framed by Content-Length.
    #[error("Transfer-Encoding is not allowed on a BITS packet")]
    TransferEncoding,
}

impl RejectReason {
    /// HTTP status of the Ack.
    pub fn status(self) -> u16 {
        400
    }

    /// `BITS-Error-Code` of the Ack.
    pub fn error_code(self) -> ErrorCode {
        ErrorCode::INVALID_ARG
    }

    /// A stable, bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::MissingPacketType => "missing_packet_type",
            RejectReason::UnknownPacketType => "unknown_packet_type",
            RejectReason::MissingSessionId => "missing_session_id",
            RejectReason::InvalidSessionId(_) => "invalid_session_id",
            RejectReason::MissingContentRange => "missing_content_range",
            RejectReason::InvalidContentRange(_) => "invalid_content_range",
            RejectReason::MissingContentLength => "missing_content_length",
            RejectReason::InvalidContentLength => "invalid_content_length",
            RejectReason::ContentLengthMismatch => "content_length_mismatch",
            RejectReason::ConflictingHeaders(_) => "conflicting_headers",
            RejectReason::HeaderTooLong => "header_too_long",
            RejectReason::TransferEncoding => "transfer_encoding",
        }
    }
}

/// A refused BITS packet: the reason and, when the request carried a valid one, its
/// session id to echo in the error Ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Why.
    pub reason: RejectReason,
    /// The request's session id, when it was valid.
    pub session_id: Option<SessionId>,
}

impl Reject {
    /// The error Ack to answer with.
    pub fn ack(&self) -> Ack {
        Ack::error(
            self.reason.status(),
            self.reason.error_code(),
            ErrorContext::REMOTE_FILE,
        )
        .with_session(self.session_id.as_ref())
    }
}

/// Sorts one request. `Ok(Classified::Other)` for anything that is not a BITS packet;
/// `Err` for a BITS packet the spec says to refuse.
pub fn classify<'a, H: HeaderSource + ?Sized>(
    method: &str,
    headers: &'a H,
    options: &ClassifyOptions,
) -> Result<Classified<'a>, Reject> {
    let via_method_override = if method == h::METHOD_BITS_POST {
        false
    } else if options.allow_method_override
        && method.eq_ignore_ascii_case("POST")
        && headers
            .first(&h::names::METHOD_OVERRIDE)
            .is_some_and(|v| trim_ows(v) == h::METHOD_BITS_POST.as_bytes())
    {
        true
    } else {
        return Ok(Classified::Other);
    };

    // Read the session id first so every refusal can echo it when it is valid.
    let session_raw = single_value(
        headers.values(&h::names::SESSION_ID),
        h::SESSION_ID,
        same_bytes,
    );
    let session_id = match session_raw {
        Ok(Some(raw)) => Some(SessionId::validate(raw)),
        Ok(None) => None,
        Err(_) => None,
    };
    let reject = |reason| {
        let echo = match session_id {
            Some(Ok(id)) => SessionId::parse(id).ok(),
            _ => None,
        };
        Err(Reject {
            reason,
            session_id: echo,
        })
    };

    if protocol_header_too_long(headers, options.max_header_value) {
        return reject(RejectReason::HeaderTooLong);
    }

    let kind = match single_value(
        headers.values(&h::names::PACKET_TYPE),
        h::PACKET_TYPE,
        same_ignoring_case,
    ) {
        Err(reason) => return reject(reason),
        Ok(None) => return reject(RejectReason::MissingPacketType),
        Ok(Some(value)) => match PacketType::parse(value) {
            Ok(PacketType::Ack) | Err(_) => return reject(RejectReason::UnknownPacketType),
            Ok(kind) => kind,
        },
    };

    let session_id = if kind.needs_session() {
        if let Err(reason) = session_raw {
            return reject(reason);
        }
        match session_id {
            None => return reject(RejectReason::MissingSessionId),
            Some(Err(e)) => return reject(RejectReason::InvalidSessionId(e)),
            Some(Ok(id)) => Some(id),
        }
    } else {
        // Ping and Create-Session have no session yet: a stray header, even a repeated
        // or malformed one, says nothing about this packet, so it is ignored.
        None
    };

    if headers.has(&header::TRANSFER_ENCODING) {
        return reject(RejectReason::TransferEncoding);
    }

    let content_length = match single_value(
        headers.values(&header::CONTENT_LENGTH),
        h::CONTENT_LENGTH,
        same_bytes,
    ) {
        Err(reason) => return reject(reason),
        Ok(None) => None,
        Ok(Some(value)) => match parse_decimal(value) {
            Ok(length) => Some(length),
            Err(_) => return reject(RejectReason::InvalidContentLength),
        },
    };

    let range = if kind == PacketType::Fragment {
        let range = match single_value(
            headers.values(&header::CONTENT_RANGE),
            h::CONTENT_RANGE,
            same_bytes,
        ) {
            Err(reason) => return reject(reason),
            Ok(None) => return reject(RejectReason::MissingContentRange),
            Ok(Some(value)) => match ContentRange::parse(value) {
                Ok(range) => range,
                Err(e) => return reject(RejectReason::InvalidContentRange(e)),
            },
        };
        match content_length {
            None => return reject(RejectReason::MissingContentLength),
            Some(length) if range.check_length(length).is_err() => {
                return reject(RejectReason::ContentLengthMismatch)
            }
            Some(_) => Some(range),
        }
    } else {
        None
    };

    let supported_protocols = if kind == PacketType::CreateSession {
        headers
            .first_str(&h::names::SUPPORTED_PROTOCOLS)
            .map(SupportedProtocols)
    } else {
        None
    };

    Ok(Classified::Bits(Packet {
        kind,
        session_id,
        range,
        content_length,
        supported_protocols,
        via_method_override,
    }))
}

/// Whether a protocol header (`BITS-*` or `Content-*`) has a value over `max`. The
/// protocol's 4 KB bound is about its own headers: an `Authorization: Negotiate` token
/// of a user in many groups is often longer, and the whole header block is bounded by
/// the HTTP layer, not here.
fn protocol_header_too_long<H: HeaderSource + ?Sized>(headers: &H, max: usize) -> bool {
    headers
        .entries()
        .any(|(name, value)| value.len() > max && h::is_protocol_header(name))
}

/// The one value of a header that may appear more than once only with equal values.
fn single_value<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    name: &'static str,
    same: fn(&[u8], &[u8]) -> bool,
) -> Result<Option<&'a [u8]>, RejectReason> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.all(|other| same(first, other)) {
        Ok(Some(first))
    } else {
        Err(RejectReason::ConflictingHeaders(name))
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    trim_ows(a) == trim_ows(b)
}

fn same_ignoring_case(a: &[u8], b: &[u8]) -> bool {
    trim_ows(a).eq_ignore_ascii_case(trim_ows(b))
}
