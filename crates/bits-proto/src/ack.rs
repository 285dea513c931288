//! Response packets: building Acks, and reading the BITS parts of an Ack.

use crate::error_code::{ErrorCode, ErrorContext};
use crate::header_source::HeaderSource;
use crate::headers as h;
use crate::session_id::SessionId;
use http::HeaderMap;
use std::borrow::Cow;

/// An Ack to send: a status and its headers. `BITS-Packet-Type: Ack` and
/// `Content-Length: 0` are always part of it; the caller only adds the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// HTTP status.
    pub status: u16,
    /// Headers in the order they should be written, canonical spelling.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
}

impl Ack {
    /// A bare Ack with the given status.
    pub fn new(status: u16) -> Self {
        Ack {
            status,
            headers: vec![
                (h::PACKET_TYPE, Cow::Borrowed("Ack")),
                (h::CONTENT_LENGTH, Cow::Borrowed("0")),
            ],
        }
    }

    /// An error Ack: status, `BITS-Error-Code` and `BITS-Error-Context`.
    pub fn error(status: u16, code: ErrorCode, context: ErrorContext) -> Self {
        Ack::new(status)
            .header(h::ERROR_CODE, code.to_string())
            .header(h::ERROR_CONTEXT, context.to_string())
    }

    /// 200 Ack to a Ping.
    pub fn ping_ok() -> Self {
        Ack::new(200)
    }

    /// 200 Ack to a Create-Session: the chosen protocol, the new session id, and
    /// `Accept-Encoding: Identity`.
    pub fn create_session_ok(session: &str, protocol: &str) -> Self {
        Ack::new(200)
            .header(h::PROTOCOL, protocol.to_owned())
            .header(h::SESSION_ID, session.to_owned())
            .header(h::ACCEPT_ENCODING, "Identity")
    }

    /// 200 Ack to a Fragment: the next byte the server wants.
    pub fn fragment_ok(session: &str, next: u64) -> Self {
        Ack::new(200)
            .header(h::SESSION_ID, session.to_owned())
            .header(h::RECEIVED_CONTENT_RANGE, next.to_string())
    }

    /// 416 Ack to a Fragment that starts past the received bytes.
    pub fn fragment_out_of_sync(session: &str, next: u64) -> Self {
        Ack::new(416)
            .header(h::SESSION_ID, session.to_owned())
            .header(h::RECEIVED_CONTENT_RANGE, next.to_string())
    }

    /// 200 Ack to a Close-Session.
    pub fn close_session_ok(session: &str) -> Self {
        Ack::new(200).header(h::SESSION_ID, session.to_owned())
    }

    /// 200 Ack to a Cancel-Session.
    pub fn cancel_session_ok(session: &str) -> Self {
        Ack::new(200).header(h::SESSION_ID, session.to_owned())
    }

    /// 500 + BG_E_SESSION_NOT_FOUND, context remote file.
    pub fn session_not_found() -> Self {
        Ack::error(500, ErrorCode::SESSION_NOT_FOUND, ErrorContext::REMOTE_FILE)
    }

    /// 400 + E_INVALIDARG, context remote file.
    pub fn invalid_arg() -> Self {
        Ack::error(400, ErrorCode::INVALID_ARG, ErrorContext::REMOTE_FILE)
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds `BITS-Session-Id` when an id is known.
    pub fn with_session(self, session: Option<&SessionId>) -> Self {
        match session {
            Some(id) => self.header(h::SESSION_ID, id.as_str().to_owned()),
            None => self,
        }
    }

    /// The value of a header, if present (first occurrence).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// The BITS parts of a received Ack, read leniently.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckInfo {
    /// Whether `BITS-Packet-Type` said `Ack`.
    pub is_ack: bool,
    /// `BITS-Session-Id`, when present and valid.
    pub session_id: Option<SessionId>,
    /// `BITS-Error-Code` or, failing that, `BITS-Error`.
    pub error_code: Option<ErrorCode>,
    /// `BITS-Error-Context`.
    pub error_context: Option<ErrorContext>,
    /// `BITS-Received-Content-Range`.
    pub received: Option<u64>,
    /// `BITS-Protocol`.
    pub protocol: Option<String>,
    /// `BITS-Host-Id`.
    pub host_id: Option<String>,
    /// `BITS-Host-Id-Fallback-Timeout`, seconds.
    pub host_id_fallback_timeout: Option<u64>,
    /// `BITS-Reply-URL`.
    pub reply_url: Option<String>,
}

impl AckInfo {
    /// Reads an Ack's headers. Values that do not parse are left out, never fatal.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bytes = |name: &str| headers.get(name).map(|v| v.as_bytes());
        AckInfo {
            is_ack: bytes(h::PACKET_TYPE)
                .is_some_and(|v| crate::headers::trim_ows(v).eq_ignore_ascii_case(b"Ack")),
            session_id: bytes(h::SESSION_ID)
                .and_then(|v| SessionId::validate(v).ok())
                .and_then(|id| SessionId::parse(id).ok()),
            error_code: error_code(headers),
            error_context: bytes(h::ERROR_CONTEXT).and_then(ErrorContext::parse),
            received: bytes(h::RECEIVED_CONTENT_RANGE)
                .and_then(|v| crate::range::parse_decimal(v).ok()),
            protocol: text(h::PROTOCOL),
            host_id: text(h::HOST_ID),
            host_id_fallback_timeout: bytes(h::HOST_ID_FALLBACK_TIMEOUT)
                .and_then(|v| crate::range::parse_decimal(v).ok()),
            reply_url: text(h::REPLY_URL),
        }
    }
}

/// The error code of an Ack, from `BITS-Error-Code` or the alternative `BITS-Error`.
/// Cheap enough for a proxy's response path: no allocation.
///
/// A `BITS-Error-Code` that does not parse does not hide a usable `BITS-Error`: the
/// point of reading leniently is to recover the HRESULT whenever one was sent.
pub fn error_code<H: HeaderSource + ?Sized>(headers: &H) -> Option<ErrorCode> {
    let parse = |name: &http::HeaderName| headers.first(name).and_then(ErrorCode::parse);
    parse(&h::names::ERROR_CODE).or_else(|| parse(&h::names::ERROR_CODE_ALT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn every_ack_has_packet_type_and_zero_content_length() {
        for ack in [
            Ack::ping_ok(),
            Ack::create_session_ok("{s}", crate::BITS_1_5_PROTOCOL),
            Ack::fragment_ok("{s}", 10),
            Ack::fragment_out_of_sync("{s}", 10),
            Ack::close_session_ok("{s}"),
            Ack::cancel_session_ok("{s}"),
            Ack::session_not_found(),
            Ack::invalid_arg(),
            Ack::new(503),
        ] {
            assert_eq!(ack.get("bits-packet-type"), Some("Ack"));
            assert_eq!(ack.get("content-length"), Some("0"));
        }
    }

    #[test]
    fn success_acks_carry_no_error_headers() {
        let ack = Ack::fragment_ok("{s}", 213);
        assert_eq!(ack.get(h::ERROR_CODE), None);
        assert_eq!(ack.get(h::ERROR_CONTEXT), None);
        assert_eq!(ack.get(h::RECEIVED_CONTENT_RANGE), Some("213"));
    }

    #[test]
    fn error_acks_carry_code_and_context() {
        let ack = Ack::session_not_found();
        assert_eq!(ack.status, 500);
        assert_eq!(ack.get(h::ERROR_CODE), Some("0x8020001F"));
        assert_eq!(ack.get(h::ERROR_CONTEXT), Some("0x5"));
    }

    #[test]
    fn create_session_ack_offers_identity_encoding() {
        let ack = Ack::create_session_ok("{s}", crate::BITS_1_5_PROTOCOL);
        assert_eq!(ack.get(h::ACCEPT_ENCODING), Some("Identity"));
        assert_eq!(ack.get(h::SESSION_ID), Some("{s}"));
        assert_eq!(ack.get(h::PROTOCOL), Some(crate::BITS_1_5_PROTOCOL));
    }

    #[test]
    fn reads_either_error_header_spelling() {
        let mut headers = HeaderMap::new();
        headers.insert("BITS-Error", HeaderValue::from_static("0x8020001f"));
        assert_eq!(error_code(&headers), Some(ErrorCode::SESSION_NOT_FOUND));
        headers.insert("bits-error-code", HeaderValue::from_static("80070057"));
        assert_eq!(error_code(&headers), Some(ErrorCode::INVALID_ARG));
    }

    #[test]
    fn an_unreadable_error_code_falls_back_to_the_other_spelling() {
        let mut headers = HeaderMap::new();
        headers.insert("BITS-Error-Code", HeaderValue::from_static("unknown"));
        headers.insert("BITS-Error", HeaderValue::from_static("x8020001F"));
        assert_eq!(error_code(&headers), Some(ErrorCode::SESSION_NOT_FOUND));
        assert_eq!(
            AckInfo::from_headers(&headers).error_code,
            Some(ErrorCode::SESSION_NOT_FOUND)
        );
    }

    #[test]
    fn ack_info_reads_every_bits_header() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("bits-packet-type", "ACK"),
            ("bits-session-id", "{abc}"),
            ("bits-received-content-range", "4096"),
            ("bits-host-id", "node7"),
            ("bits-host-id-fallback-timeout", "60"),
            ("bits-protocol", crate::BITS_1_5_PROTOCOL),
            ("bits-error-context", "0x7"),
            ("bits-reply-url", "/reply/1"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let info = AckInfo::from_headers(&headers);
        assert!(info.is_ack);
        assert_eq!(info.session_id.unwrap().as_str(), "{abc}");
        assert_eq!(info.received, Some(4096));
        assert_eq!(info.host_id.as_deref(), Some("node7"));
        assert_eq!(info.host_id_fallback_timeout, Some(60));
        assert_eq!(info.error_context, Some(ErrorContext::REMOTE_APPLICATION));
        assert_eq!(info.reply_url.as_deref(), Some("/reply/1"));
    }

    #[test]
    fn ack_info_ignores_values_that_do_not_parse() {
        let mut headers = HeaderMap::new();
        headers.insert("bits-session-id", HeaderValue::from_static("a b"));
        headers.insert(
            "bits-received-content-range",
            HeaderValue::from_static("12x"),
        );
        headers.insert("bits-error-code", HeaderValue::from_static("nope"));
        let info = AckInfo::from_headers(&headers);
        assert!(!info.is_ack);
        assert_eq!(info.session_id, None);
        assert_eq!(info.received, None);
        assert_eq!(info.error_code, None);
    }
}
