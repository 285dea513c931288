//! The request head on the fast path: read once into one buffer, parsed once with
//! `httparse`, and taken only when it is a plain BITS packet (see [`Head::parse`]);
//! anything else goes back to the stream for Pingora's proxy.

use super::span::{self, Span};
use crate::edge::EdgeStream;
use crate::proxy::RequestView;
use bits_proto::HeaderSource;
use bytes::BytesMut;
use http::HeaderName;
use tokio::io::AsyncReadExt;

/// Headers a BITS packet may carry on this path; more go to Pingora's proxy.
const MAX_HEADERS: usize = 64;

/// A head taken by the fast path: where its parts lie in the bytes it was parsed
/// from, which [`Head::view`] reads them in. No part is copied.
pub struct Head {
    /// The request target (origin form).
    target: Span,
    /// Each header's name and value, in order.
    headers: Vec<[Span; 2]>,
    /// Its body length (`Content-Length`, 0 without one).
    pub body_len: u64,
    /// The client asked to close the connection after this request.
    pub close: bool,
}

/// A head as the decisions read it: [`Head`] over the bytes it was parsed from.
#[derive(Clone, Copy)]
pub struct HeadView<'a> {
    bytes: &'a [u8],
    head: &'a Head,
}

/// What reading a head found.
// Made once per request and moved once: its size does not matter, an allocation would.
#[allow(clippy::large_enum_variant)]
pub enum Read {
    /// A complete head, at the start of the buffer, `len` bytes long; `head` when
    /// it is one this path takes.
    Complete {
        buf: BytesMut,
        len: usize,
        head: Option<Head>,
    },
    /// Something else (a partial head at the end of the connection, bytes that are
    /// not HTTP/1, a limit hit): the bytes read so far, for Pingora's proxy.
    Other(BytesMut),
}

/// Reads until a complete head is in (the stream keeps the header clock and size
/// limit), or until something else is clear.
pub async fn read(edge: &mut EdgeStream) -> Read {
    // Most BITS heads fit; a head that trickles in holds no more than it sent.
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        match edge.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Read::Other(buf),
            Ok(_) => {}
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                // Taken from this one parse: the head is not parsed again.
                let head = Head::of(&parsed, &buf);
                return Read::Complete { buf, len, head };
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Read::Other(buf),
        }
    }
}

impl Head {
    /// The head in `bytes`, when it is a request this path takes: `BITS_POST` over
    /// HTTP/1.1 in origin form, framed by one `Content-Length` (or none), without
    /// `Transfer-Encoding`, `Expect`, `Upgrade` or `Authorization` (Windows
    /// authentication binds connections, which Pingora's proxy does).
    pub fn parse(bytes: &[u8]) -> Option<Head> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(bytes).ok()? {
            httparse::Status::Complete(_) => Head::of(&parsed, bytes),
            httparse::Status::Partial => None,
        }
    }

    /// The head `parsed` (from `bytes`) describes, when it is one this path takes.
    fn of(parsed: &httparse::Request<'_, '_>, bytes: &[u8]) -> Option<Head> {
        if parsed.method? != bits_proto::headers::METHOD_BITS_POST || parsed.version? != 1 {
            return None;
        }
        let path = parsed.path?;
        if !path.starts_with('/') || !path.bytes().all(is_target_byte) {
            return None;
        }
        let mut headers = Vec::with_capacity(parsed.headers.len());
        let mut body_len = None;
        let mut close = false;
        for header in parsed.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(header.value)
                    .ok()?
                    .trim()
                    .parse::<u64>()
                    .ok()?;
                if body_len.is_some_and(|seen| seen != value) {
                    return None;
                }
                body_len = Some(value);
            } else if name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        return None;
                    }
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("expect")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("authorization")
            {
                return None;
            }
            headers.push([
                Span::of(bytes, name.as_bytes()),
                Span::of(bytes, header.value),
            ]);
        }
        Some(Head {
            target: Span::of(bytes, path.as_bytes()),
            headers,
            body_len: body_len.unwrap_or(0),
            close,
        })
    }

    /// This head over `bytes`, the bytes it was parsed from.
    pub fn view<'a>(&'a self, bytes: &'a [u8]) -> HeadView<'a> {
        HeadView { bytes, head: self }
    }
}

/// A byte this path takes in a request target: RFC 3986's path and query
/// characters. Anything else goes to Pingora's proxy, which judges it.
fn is_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

impl HeaderSource for HeadView<'_> {
    fn values<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> {
        let name = name.as_str().as_bytes();
        span::values(self.bytes, &self.head.headers, name)
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head
            .headers
            .iter()
            .map(|[n, v]| (n.in_bytes(self.bytes), v.in_bytes(self.bytes)))
    }
}

impl RequestView for HeadView<'_> {
    type Headers = Self;

    fn method(&self) -> &str {
        bits_proto::headers::METHOD_BITS_POST
    }

    fn before_http_11(&self) -> bool {
        false
    }

    fn path_and_query(&self) -> &str {
        // Checked to be ASCII when the head was taken.
        std::str::from_utf8(self.head.target.in_bytes(self.bytes)).unwrap_or("/")
    }

    fn host(&self) -> Option<&str> {
        self.first_str(&http::header::HOST)
    }

    fn headers(&self) -> &Self {
        self
    }
}

/// The head the backend gets: the client's bytes as they came, with every
/// `X-Forwarded-For` line replaced by one carrying `forwarded_for` when given.
/// `raw` is a complete head (request line, header lines, empty line).
pub fn upstream_head(raw: &[u8], forwarded_for: Option<&[u8]>, out: &mut BytesMut) {
    let Some(forwarded_for) = forwarded_for else {
        out.extend_from_slice(raw);
        return;
    };
    out.reserve(raw.len() + forwarded_for.len() + 20);
    let mut start = 0;
    let mut first = true;
    for end in memchr::memchr_iter(b'\n', raw) {
        let line = &raw[start..=end];
        start = end + 1;
        if first {
            first = false;
        } else if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(super::super::forwarded::X_FORWARDED_FOR.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(forwarded_for);
            out.extend_from_slice(b"\r\n");
        } else if is_forwarded_for(line) {
            continue;
        }
        out.extend_from_slice(line);
    }
}

fn is_forwarded_for(line: &[u8]) -> bool {
    let name = super::super::forwarded::X_FORWARDED_FOR.as_bytes();
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name)
        && line[name.len()] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<Head> {
        Head::parse(text.as_bytes())
    }

    #[test]
    fn a_bits_packet_is_taken_with_its_length_and_header_spelling() {
        let text = "BITS_POST /up/f.bin HTTP/1.1\r\nHost: farm\r\nBITS-Packet-Type: Fragment\r\n\
                    Content-Length: 10\r\nConnection: Keep-Alive\r\n\r\n";
        let head = parse(text).expect("taken");
        assert_eq!(head.body_len, 10);
        assert!(!head.close);
        let view = head.view(text.as_bytes());
        assert_eq!(view.path(), "/up/f.bin");
        assert_eq!(
            view.first(&bits_proto::headers::names::PACKET_TYPE),
            Some(&b"Fragment"[..])
        );
    }

    #[test]
    fn the_backend_gets_the_client_bytes_with_one_x_forwarded_for() {
        let raw = b"BITS_POST /up HTTP/1.1\r\nHost: farm\r\nx-forwarded-for: 203.0.113.9\r\n\
                    BITS-Packet-Type: Ping\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n";
        let mut out = BytesMut::new();
        upstream_head(raw, Some(b"203.0.113.9, 198.51.100.1, 127.0.0.1"), &mut out);
        assert_eq!(
            &out[..],
            &b"BITS_POST /up HTTP/1.1\r\nHost: farm\r\nBITS-Packet-Type: Ping\r\n\
               X-Forwarded-For: 203.0.113.9, 198.51.100.1, 127.0.0.1\r\n\r\n"[..]
        );
        let mut same = BytesMut::new();
        upstream_head(raw, None, &mut same);
        assert_eq!(&same[..], &raw[..]);
    }

    #[test]
    fn anything_that_is_not_a_plain_bits_packet_goes_to_the_general_path() {
        for text in [
            "POST /up HTTP/1.1\r\nX-Http-Method-Override: BITS_POST\r\n\r\n",
            "GET /up HTTP/1.1\r\n\r\n",
            "BITS_POST /up HTTP/1.0\r\n\r\n",
            "BITS_POST http://farm/up HTTP/1.1\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAABAAAA\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
        ] {
            assert!(parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn the_decisions_read_the_parsed_head_as_they_read_a_header_map() {
        let options = bits_proto::ClassifyOptions::default();
        for text in [
            "BITS_POST /up/f.bin?x=1 HTTP/1.1\r\nHost: farm:8080\r\nbits-packet-type: fragment\r\n\
             BITS-Session-Id: {A}\r\nContent-Range: bytes 0-9/20\r\nContent-Length: 10\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nBITS-Packet-Type: Close-Session\r\n\
             BITS-Session-Id: {A}\r\nbits-session-id: {B}\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nBITS-Packet-Type: Create-Session\r\n\
             BITS-Supported-Protocols: {7df0354d-249b-430f-820d-3d2a9bef4931}\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {A}\r\n\r\n",
            "BITS_POST /up HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\nBITS-Packet-Type: Ping\r\n\r\n",
        ] {
            let head = parse(text).expect("taken");
            let view = head.view(text.as_bytes());
            // The header map is built from httparse's own slices, not from the spans.
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Request::new(&mut headers);
            parsed.parse(text.as_bytes()).expect("parses");
            let mut request = pingora::http::RequestHeader::build(
                bits_proto::headers::METHOD_BITS_POST,
                parsed.path.expect("a path").as_bytes(),
                None,
            )
            .expect("request");
            for header in parsed.headers.iter() {
                request
                    .append_header(header.name.to_owned(), header.value)
                    .expect("header");
            }
            assert!(view.entries().eq(parsed
                .headers
                .iter()
                .map(|h| (h.name.as_bytes(), h.value))));
            assert_eq!(
                bits_proto::classify(view.method(), &view, &options),
                bits_proto::classify(request.method(), RequestView::headers(&request), &options),
                "{text}"
            );
            assert_eq!(view.path(), RequestView::path(&request), "{text}");
            assert_eq!(view.host(), request.headers.first_str(&http::header::HOST));
            let forwarded = http::HeaderName::from_static("x-forwarded-for");
            assert!(view
                .values(&forwarded)
                .eq(HeaderSource::values(&request.headers, &forwarded)));
        }
    }

    #[test]
    fn connection_close_is_noted() {
        let head = parse("BITS_POST /up HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
            .expect("taken");
        assert!(head.close);
        assert_eq!(head.body_len, 0);
    }
}
