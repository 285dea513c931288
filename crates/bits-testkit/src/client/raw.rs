//! One hand-made request to one address, written byte for byte: for tests that need
//! packets the client never sends (gaps, overlaps, bad ranges, missing headers,
//! foreign sessions). The response is read without any HTTP library, so whatever the
//! server answers is seen as it is.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr) -> Result<(), bits_testkit::client::raw::RawError> {
//! use bits_testkit::client::raw::{send, RawRequest};
//! use bits_proto::PacketType;
//! let response = send(addr, &RawRequest::bits(PacketType::Ping, "/up/f")).await?;
//! assert_eq!(response.status, 200);
//! assert!(response.ack().is_ack);
//! # Ok(()) }
//! ```

use bits_proto::headers as h;
use bits_proto::{AckInfo, PacketType};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a raw exchange may take.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted.
const MAX_RESPONSE: usize = 1024 * 1024;

/// A request exactly as it will be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// Method token, written as is.
    pub method: String,
    /// Request target, written as is.
    pub target: String,
    /// Headers in order, written as is.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Bytes,
    /// Add `Host` (the address) and `Content-Length` (the body length) when the
    /// request has none (and no `Transfer-Encoding`). On by default.
    pub auto_headers: bool,
}

impl RawRequest {
    /// A request with no headers.
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Self {
        RawRequest {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            auto_headers: true,
        }
    }

    /// `BITS_POST target` with `BITS-Packet-Type: packet`.
    pub fn bits(packet: PacketType, target: impl Into<String>) -> Self {
        RawRequest::new(h::METHOD_BITS_POST, target).header(h::PACKET_TYPE, packet.as_str())
    }

    /// A Fragment of `session` carrying `data` at offset `first` of a `total`-byte file,
    /// with a matching `Content-Range` (the body may be empty only if the caller means
    /// to send a broken packet).
    pub fn fragment(
        target: impl Into<String>,
        session: &str,
        first: u64,
        data: Bytes,
        total: u64,
    ) -> Self {
        let last = (first + data.len() as u64).saturating_sub(1);
        RawRequest::bits(PacketType::Fragment, target)
            .header(h::SESSION_ID, session)
            .header(h::CONTENT_RANGE, format!("bytes {first}-{last}/{total}"))
            .body(data)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Turns off the automatic `Host` and `Content-Length`.
    pub fn exact(mut self) -> Self {
        self.auto_headers = false;
        self
    }

    /// The bytes on the wire; `host` is used for the automatic `Host` header.
    pub fn encode(&self, host: &str) -> Vec<u8> {
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, self.target).as_bytes());
        if self.auto_headers && !has("host") {
            out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.auto_headers && !has(h::CONTENT_LENGTH) && !has(h::TRANSFER_ENCODING) {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status (interim 1xx responses are skipped).
    pub status: u16,
    /// Headers; names are case-insensitive.
    pub headers: HeaderMap,
    /// Body as received (chunked bodies are not decoded).
    pub body: Bytes,
}

impl RawResponse {
    /// The BITS parts of the response.
    pub fn ack(&self) -> AckInfo {
        AckInfo::from_headers(&self.headers)
    }

    /// A header value as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a raw exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// Connecting, writing or reading failed.
    #[error("raw request failed: {0}")]
    Io(#[from] io::Error),
    /// No complete response within [`RAW_TIMEOUT`].
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The bytes that came back are not an HTTP/1.x response.
    #[error("malformed response: {0}")]
    BadResponse(String),
}

/// Sends `request` to `addr` on a new connection and reads one response.
pub async fn send(addr: SocketAddr, request: &RawRequest) -> Result<RawResponse, RawError> {
    send_bytes(addr, &request.encode(&addr.to_string())).await
}

/// Writes arbitrary bytes to `addr` on a new connection and reads one response.
pub async fn send_bytes(addr: SocketAddr, bytes: &[u8]) -> Result<RawResponse, RawError> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        // A server may answer and close before reading a body it refuses: keep going and
        // read its answer; report the write error only if there is none.
        let written = stream.write_all(bytes).await;
        let mut parser = Parser::default();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) => return Err(written.err().unwrap_or(e).into()),
            };
            parser.buf.extend_from_slice(&chunk[..n]);
            match parser.complete(n == 0) {
                Ok(Some(response)) => return Ok(response),
                Ok(None) => {}
                Err(e) => return Err(written.err().map(RawError::Io).unwrap_or(e)),
            }
        }
    };
    tokio::time::timeout(RAW_TIMEOUT, exchange)
        .await
        .map_err(|_| RawError::Timeout(RAW_TIMEOUT))?
}

/// [`send`] without a runtime, for synchronous callbacks such as an
/// [`Observer`](super::Observer) that must act between two packets.
pub fn send_blocking(addr: SocketAddr, request: &RawRequest) -> Result<RawResponse, RawError> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, RAW_TIMEOUT)?;
    stream.set_read_timeout(Some(RAW_TIMEOUT))?;
    stream.set_write_timeout(Some(RAW_TIMEOUT))?;
    let written = stream.write_all(&request.encode(&addr.to_string()));
    let mut parser = Parser::default();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => return Err(written.err().unwrap_or(e).into()),
        };
        parser.buf.extend_from_slice(&chunk[..n]);
        if let Some(response) = parser.complete(n == 0)? {
            return Ok(response);
        }
    }
}

/// Accumulates bytes until they hold one complete response.
#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    /// `Some` once a whole response is buffered; `eof`: the peer closed.
    fn complete(&self, eof: bool) -> Result<Option<RawResponse>, RawError> {
        if self.buf.len() > MAX_RESPONSE {
            return Err(RawError::BadResponse(format!(
                "larger than {MAX_RESPONSE} bytes"
            )));
        }
        let mut start = 0;
        loop {
            let Some(end) = find(&self.buf[start..], b"\r\n\r\n").map(|i| start + i + 4) else {
                return truncated(eof, "the connection closed inside the response head");
            };
            let (status, headers) = parse_head(&self.buf[start..end])?;
            if (100..200).contains(&status) {
                start = end;
                continue;
            }
            let body = &self.buf[end..];
            let chunked = headers
                .get(h::TRANSFER_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            let length = headers
                .get(h::CONTENT_LENGTH)
                .map(|v| {
                    v.to_str()
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .ok_or_else(|| RawError::BadResponse("unparsable Content-Length".into()))
                })
                .transpose()?;
            let body = match (chunked, length) {
                (true, _) if body.ends_with(b"0\r\n\r\n") || eof => body,
                (false, Some(len)) if body.len() >= len => &body[..len],
                (false, Some(_)) if eof => {
                    return truncated(true, "the connection closed inside the body")
                }
                (false, None) if eof => body,
                _ => return Ok(None),
            };
            return Ok(Some(RawResponse {
                status,
                headers,
                body: Bytes::copy_from_slice(body),
            }));
        }
    }
}

fn truncated(eof: bool, what: &str) -> Result<Option<RawResponse>, RawError> {
    if eof {
        Err(RawError::BadResponse(what.to_owned()))
    } else {
        Ok(None)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<(u16, HeaderMap), RawError> {
    let bad = |what: &str| RawError::BadResponse(what.to_owned());
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let mut parts = status_line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") {
        return Err(bad("the status line does not start with HTTP/1."));
    }
    let status = parts
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| bad("no three-digit status"))?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad("a header line without ':'"))?;
        let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| bad("a bad header name"))?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
            .map_err(|_| bad("a bad header value"))?;
        headers.append(name, value);
    }
    Ok((status, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], eof: bool) -> Result<Option<RawResponse>, RawError> {
        Parser {
            buf: bytes.to_vec(),
        }
        .complete(eof)
    }

    #[test]
    fn encodes_headers_in_order_with_automatic_host_and_length() {
        let request = RawRequest::bits(PacketType::Ping, "/up/f").header("X-Test", "1");
        assert_eq!(
            String::from_utf8(request.encode("h:1")).unwrap(),
            "BITS_POST /up/f HTTP/1.1\r\nHost: h:1\r\nBITS-Packet-Type: Ping\r\nX-Test: 1\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn exact_requests_get_nothing_added() {
        let request = RawRequest::new("GET", "/").exact().body("xy");
        assert_eq!(request.encode("h"), b"GET / HTTP/1.1\r\n\r\nxy");
    }

    #[test]
    fn a_fragment_carries_a_matching_range() {
        let request = RawRequest::fragment("/f", "{s}", 10, Bytes::from_static(b"abc"), 20);
        let text = String::from_utf8(request.encode("h")).unwrap();
        assert!(text.contains("Content-Range: bytes 10-12/20\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\nabc"));
    }

    #[test]
    fn parses_an_ack_and_waits_for_its_body() {
        let head = b"HTTP/1.1 416 Requested Range Not Satisfiable\r\nBITS-Packet-Type: Ack\r\nBITS-Received-Content-Range: 42\r\nContent-Length: 2\r\n\r\n";
        assert!(parse(head, false).unwrap().is_none());
        let mut full = head.to_vec();
        full.extend_from_slice(b"ok");
        let response = parse(&full, false).unwrap().unwrap();
        assert_eq!(response.status, 416);
        assert_eq!(response.ack().received, Some(42));
        assert_eq!(&response.body[..], b"ok");
    }

    #[test]
    fn skips_interim_responses() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(bytes, false).unwrap().unwrap().status, 200);
    }

    #[test]
    fn a_body_without_length_ends_at_close() {
        let bytes = b"HTTP/1.0 500 Oops\r\n\r\npage";
        assert!(parse(bytes, false).unwrap().is_none());
        assert_eq!(&parse(bytes, true).unwrap().unwrap().body[..], b"page");
    }

    #[test]
    fn refuses_what_is_not_http() {
        assert!(parse(b"SSH-2.0-x\r\n\r\n", false).is_err());
        assert!(parse(b"HTTP/1.1 2000 X\r\n\r\n", false).is_err());
        assert!(parse(b"HTTP/1.1 200", true).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true).is_err());
    }
}
