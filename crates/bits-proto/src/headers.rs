//! Header names and method tokens, spelled as the Windows client and IIS spell them.
//!
//! Header names are case-insensitive on the wire; these constants are the spelling we
//! emit. `http::HeaderMap` lookups with them are case-insensitive.

/// The extension method every BITS request packet uses.
pub const METHOD_BITS_POST: &str = "BITS_POST";
/// Header some non-Windows clients use to carry `BITS_POST` on a plain `POST`.
pub const METHOD_OVERRIDE: &str = "X-Http-Method-Override";

/// Packet type of every request and response.
pub const PACKET_TYPE: &str = "BITS-Packet-Type";
/// Session id issued in the Create-Session Ack and echoed on every later packet.
pub const SESSION_ID: &str = "BITS-Session-Id";
/// Protocol GUIDs the client supports, most preferred first.
pub const SUPPORTED_PROTOCOLS: &str = "BITS-Supported-Protocols";
/// Protocol GUID the server chose.
pub const PROTOCOL: &str = "BITS-Protocol";
/// HRESULT of a failed packet (the spelling every implementation uses).
pub const ERROR_CODE: &str = "BITS-Error-Code";
/// HRESULT of a failed packet, the spelling used by the open specification only.
pub const ERROR_CODE_ALT: &str = "BITS-Error";
/// Where the error was raised (see [`crate::ErrorContext`]).
pub const ERROR_CONTEXT: &str = "BITS-Error-Context";
/// Next byte offset the server wants (a single decimal number).
pub const RECEIVED_CONTENT_RANGE: &str = "BITS-Received-Content-Range";
/// Node the client should talk to directly for the rest of the session.
pub const HOST_ID: &str = "BITS-Host-Id";
/// Seconds after which a client that cannot reach the Host-Id node falls back.
pub const HOST_ID_FALLBACK_TIMEOUT: &str = "BITS-Host-Id-Fallback-Timeout";
/// Location of the reply of an upload-reply job.
pub const REPLY_URL: &str = "BITS-Reply-URL";
/// The client's local file name.
pub const CONTENT_NAME: &str = "Content-Name";
/// `bytes F-L/T` on a Fragment.
pub const CONTENT_RANGE: &str = "Content-Range";
/// Body length.
pub const CONTENT_LENGTH: &str = "Content-Length";
/// Transfer coding of the body; a BITS packet never has one.
pub const TRANSFER_ENCODING: &str = "Transfer-Encoding";
/// Sent by the server on a successful Create-Session Ack.
pub const ACCEPT_ENCODING: &str = "Accept-Encoding";

/// The header names looked up on every request, pre-parsed: a lookup by `&str` lowercases
/// and classifies the name again on every call, a lookup by [`HeaderName`] only hashes it.
pub mod names {
    use http::HeaderName;

    /// [`super::METHOD_OVERRIDE`].
    pub static METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");
    /// [`super::PACKET_TYPE`].
    pub static PACKET_TYPE: HeaderName = HeaderName::from_static("bits-packet-type");
    /// [`super::SESSION_ID`].
    pub static SESSION_ID: HeaderName = HeaderName::from_static("bits-session-id");
    /// [`super::SUPPORTED_PROTOCOLS`].
    pub static SUPPORTED_PROTOCOLS: HeaderName =
        HeaderName::from_static("bits-supported-protocols");
    /// [`super::HOST_ID`].
    pub static HOST_ID: HeaderName = HeaderName::from_static("bits-host-id");
    /// [`super::ERROR_CODE`].
    pub static ERROR_CODE: HeaderName = HeaderName::from_static("bits-error-code");
    /// [`super::REPLY_URL`].
    pub static REPLY_URL: HeaderName = HeaderName::from_static("bits-reply-url");
    /// [`super::ERROR_CODE_ALT`].
    pub static ERROR_CODE_ALT: HeaderName = HeaderName::from_static("bits-error");
}

/// Largest header value the protocol allows (spec §2: "SHOULD NOT exceed 4 KB").
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// Whether a header is one of the protocol's own, whose values
/// [`MAX_HEADER_VALUE_BYTES`] bounds: `BITS-*` and `Content-*`, in any case.
pub fn is_protocol_header(name: &[u8]) -> bool {
    let starts = |prefix: &str| {
        name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    starts("bits-") || starts("content-")
}

/// Strips HTTP optional white space (space and horizontal tab, RFC 9110 §5.6.3) from
/// both ends. `<[u8]>::trim_ascii` is deliberately not used: it also strips CR, LF and
/// form feed, which would let a value such as `"{id}\r\n"` pass as a clean token.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    trim_ows_end(trim_ows_start(value))
}

/// Strips leading space and horizontal tab.
pub(crate) fn trim_ows_start(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    &value[start..]
}

fn trim_ows_end(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |last| last + 1);
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ows_trimming_strips_only_spaces_and_tabs() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"  \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"id\r\n"), b"id\r\n");
        assert_eq!(trim_ows(b"\x0cid"), b"\x0cid");
        assert_eq!(trim_ows_start(b" \tx "), b"x ");
    }

    #[test]
    fn protocol_headers_are_the_bits_and_content_ones() {
        assert!(is_protocol_header(b"bits-session-id"));
        assert!(is_protocol_header(b"content-name"));
        assert!(is_protocol_header(b"content-length"));
        assert!(!is_protocol_header(b"authorization"));
        assert!(!is_protocol_header(b"x-trace"));
        assert!(!is_protocol_header(b"cookie"));
        assert!(is_protocol_header(b"BITS-Session-Id"));
        assert!(is_protocol_header(b"Content-Range"));
    }
}
