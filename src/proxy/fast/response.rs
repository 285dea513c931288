//! The backend's answer on the fast path: its head read and parsed once, its body
//! relayed as it comes, framed as the backend framed it.

use bytes::{BufMut, BytesMut};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Headers an answer may carry.
const MAX_HEADERS: usize = 128;
/// Largest answer head.
const MAX_HEAD: usize = 64 << 10;

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (204, 304, or `Content-Length: 0`).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
}

/// A final answer's head.
pub struct Answer {
    pub header: ResponseHeader,
    /// The head as the backend sent it, when it is relayed as sent (see
    /// [`client_head`]); `header` then keeps no spelling of the names.
    pub raw: Option<BytesMut>,
    pub framing: Framing,
    /// Bytes read past the head: the start of the body.
    pub rest: BytesMut,
    /// The backend lets the connection serve another request.
    pub keepalive: bool,
}

fn upstream_error(etype: ErrorType, context: &'static str) -> Box<Error> {
    let mut e = Error::explain(etype, context);
    e.as_up();
    e
}

/// One read from the backend by `deadline`; 0 at the end of its stream.
async fn read_upstream(
    upstream: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
    context: &'static str,
) -> Result<usize> {
    match tokio::time::timeout_at(deadline, upstream.read_buf(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err(upstream_error(ErrorType::ReadError, context)),
        Err(_) => Err(upstream_error(ErrorType::ReadTimedout, context)),
    }
}

/// Reads the final answer's head (informational answers are skipped, as Pingora
/// does for a client that did not ask for them), by `deadline`. With `as_sent`, the
/// client gets the backend's own bytes (see [`client_head`]).
pub async fn read_head(
    upstream: &mut TcpStream,
    deadline: Instant,
    as_sent: bool,
) -> Result<Answer> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(4096);
        }
        if read_upstream(upstream, &mut buf, deadline, "reading the answer head").await? == 0 {
            return Err(upstream_error(
                ErrorType::ConnectionClosed,
                "the backend closed before its answer",
            ));
        }
        loop {
            match parse(&buf, !as_sent)? {
                None if buf.len() > MAX_HEAD => {
                    return Err(upstream_error(
                        ErrorType::InvalidHTTPHeader,
                        "answer head too large",
                    ))
                }
                None => break,
                Some((len, header)) if header.status.is_informational() => {
                    if header.status == 101 {
                        return Err(upstream_error(
                            ErrorType::InvalidHTTPHeader,
                            "unexpected 101",
                        ));
                    }
                    let _ = buf.split_to(len);
                }
                Some((len, header)) => {
                    let rest = buf.split_off(len);
                    let mut answer = finish(header, rest);
                    answer.raw = as_sent.then_some(buf);
                    return Ok(answer);
                }
            }
        }
    }
}

/// The answer whose head starts `buf`, if the head is complete there (the bytes
/// after it are its `rest`).
pub fn parse_answer(buf: &[u8]) -> Result<Option<Answer>> {
    Ok(parse(buf, true)?.map(|(len, header)| finish(header, BytesMut::from(&buf[len..]))))
}

/// The head at the start of `buf` and its length, if it is complete; with
/// `keep_case`, the header keeps the names' spelling for writing it again.
fn parse(buf: &[u8], keep_case: bool) -> Result<Option<(usize, ResponseHeader)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => {
            return Err(upstream_error(
                ErrorType::InvalidHTTPHeader,
                "invalid answer head",
            ))
        }
    };
    let bad = |_| upstream_error(ErrorType::InvalidHTTPHeader, "invalid answer head");
    let code = parsed.code.unwrap_or(0);
    let version = match parsed.version {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    let header = if keep_case {
        let mut header = ResponseHeader::build(code, Some(parsed.headers.len())).map_err(bad)?;
        header.set_version(version);
        header.set_reason_phrase(parsed.reason).map_err(bad)?;
        for h in parsed.headers.iter() {
            header
                .append_header(h.name.to_owned(), h.value)
                .map_err(bad)?;
        }
        header
    } else {
        // Only read by the decisions: a header map, no spelling kept.
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = http::StatusCode::from_u16(code)
            .map_err(|_| upstream_error(ErrorType::InvalidHTTPHeader, "invalid answer status"))?;
        parts.version = version;
        parts.headers.reserve(parsed.headers.len());
        for h in parsed.headers.iter() {
            let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                upstream_error(ErrorType::InvalidHTTPHeader, "invalid answer header")
            })?;
            let value = http::HeaderValue::from_bytes(h.value).map_err(|_| {
                upstream_error(ErrorType::InvalidHTTPHeader, "invalid answer header")
            })?;
            parts.headers.append(name, value);
        }
        ResponseHeader::from(parts)
    };
    Ok(Some((len, header)))
}

fn finish(header: ResponseHeader, rest: BytesMut) -> Answer {
    let headers = &header.headers;
    let has_token = |name: http::header::HeaderName, token: &[u8]| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    let status = header.status.as_u16();
    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else if headers.contains_key(http::header::TRANSFER_ENCODING) {
        let last_is_chunked = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().split(|&b| b == b',').next_back())
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if last_is_chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keepalive = if header.version == http::Version::HTTP_10 {
        has_token(http::header::CONNECTION, b"keep-alive")
    } else {
        !has_token(http::header::CONNECTION, b"close")
    };
    Answer {
        keepalive: keepalive && framing != Framing::UntilClose,
        header,
        raw: None,
        framing,
        rest,
    }
}

/// Headers bitsgate writes or may rewrite in an answer relayed as sent: `Date` and
/// `Connection` (as Pingora's HTTP/1 server sets them on every answer) and
/// `BITS-Reply-URL` (see `reply::relay_reply_url`); nothing else of an Ack to any
/// packet but Create-Session is changed on the way.
const REWRITTEN: [&str; 3] = ["date", "connection", "bits-reply-url"];

/// The answer's head as the client gets it, with `Date` and `Connection` set as
/// Pingora's HTTP/1 server writes every answer: the backend's own bytes when the
/// answer has them (`raw`), with the headers bitsgate writes taken from `header`;
/// else `header` written out.
pub fn client_head(answer: &mut Answer, keepalive: bool) -> Result<BytesMut> {
    let Some(raw) = &answer.raw else {
        return head_of(&mut answer.header, keepalive);
    };
    let connection = if keepalive { "keep-alive" } else { "close" };
    let mut buf = BytesMut::with_capacity(raw.len() + 64);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', raw) {
        let line = &raw[start..=end];
        let first = start == 0;
        start = end + 1;
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !first && rewritten(line) {
            continue;
        }
        buf.extend_from_slice(line);
    }
    if let Some(url) = answer.header.headers.get(bits_proto::headers::REPLY_URL) {
        put_header(&mut buf, bits_proto::headers::REPLY_URL, url.as_bytes());
    }
    let date = pingora::protocols::http::date::get_cached_date();
    put_header(&mut buf, "Date", date.as_bytes());
    put_header(&mut buf, "Connection", connection.as_bytes());
    buf.put_slice(b"\r\n");
    Ok(buf)
}

fn rewritten(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let name = &line[..colon];
    REWRITTEN
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
}

fn put_header(buf: &mut BytesMut, name: &str, value: &[u8]) {
    buf.put_slice(name.as_bytes());
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// `header` as the client gets it, with `Date` and `Connection` set.
pub fn head_of(header: &mut ResponseHeader, keepalive: bool) -> Result<BytesMut> {
    header.insert_header(
        http::header::DATE,
        pingora::protocols::http::date::get_cached_date(),
    )?;
    header.insert_header(
        http::header::CONNECTION,
        if keepalive { "keep-alive" } else { "close" },
    )?;
    Ok(written(header))
}

/// `header` written out as an HTTP/1 answer head.
fn written(header: &ResponseHeader) -> BytesMut {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_slice(match header.version {
        http::Version::HTTP_10 => b"HTTP/1.0 ",
        _ => b"HTTP/1.1 ",
    });
    buf.put_slice(header.status.as_str().as_bytes());
    buf.put_u8(b' ');
    if let Some(reason) = header.get_reason_phrase() {
        buf.put_slice(reason.as_bytes());
    }
    buf.put_slice(b"\r\n");
    header.header_to_h1_wire(&mut buf);
    buf.put_slice(b"\r\n");
    buf
}

/// How a body relay ended.
pub struct Relayed {
    /// Body bytes written to the client (chunked: the chunks' data).
    pub bytes: u64,
    /// The body ended where its framing said, nothing past it.
    pub clean: bool,
}

/// Relays the body framed by `framing`, `rest` first, from the backend to the
/// client. Errors name their side.
pub async fn relay_body<W: AsyncWrite + Unpin>(
    upstream: &mut TcpStream,
    client: &mut W,
    framing: Framing,
    mut rest: BytesMut,
    read_timeout: Duration,
    write_timeout: Duration,
) -> Result<Relayed> {
    let mut left = match framing {
        Framing::Empty => {
            return Ok(Relayed {
                bytes: 0,
                clean: rest.is_empty(),
            })
        }
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => u64::MAX,
    };
    let mut chunks = Chunks::default();
    let mut relayed = 0u64;
    loop {
        if rest.is_empty() {
            rest.reserve(16 << 10);
            let deadline = Instant::now() + read_timeout;
            let read = read_upstream(upstream, &mut rest, deadline, "reading the answer body");
            if read.await? == 0 {
                if framing == Framing::UntilClose {
                    return Ok(Relayed {
                        bytes: relayed,
                        clean: true,
                    });
                }
                return Err(upstream_error(
                    ErrorType::ConnectionClosed,
                    "the backend closed in the answer body",
                ));
            }
        }
        let (take, done, payload) = match framing {
            Framing::Chunked => {
                let (used, done, payload) = chunks.scan(&rest)?;
                (used, done, payload)
            }
            _ => {
                let take = (rest.len() as u64).min(left) as usize;
                left -= take as u64;
                (take, left == 0, take as u64)
            }
        };
        let out = rest.split_to(take);
        write_client(client, &out, write_timeout).await?;
        relayed += payload;
        if done {
            return Ok(Relayed {
                bytes: relayed,
                clean: rest.is_empty(),
            });
        }
    }
}

/// Writes to the client within `timeout`; errors are the client's.
pub async fn write_client<W: AsyncWrite + Unpin>(
    client: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<()> {
    match tokio::time::timeout(timeout, client.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Error::explain(
            ErrorType::WriteError,
            "writing to the client",
        )),
        Err(_) => Err(Error::explain(
            ErrorType::WriteTimedout,
            "writing to the client",
        )),
    }
}

/// Where a chunked body is, tracked only as far as finding its end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line (hex digits, then an extension after `;`).
    #[default]
    Size,
    /// In a chunk extension, up to the end of the line.
    Extension,
    /// In chunk data, this many bytes left.
    Data(u64),
    /// After chunk data, up to its line feed.
    DataEnd,
    /// In the trailer section; the line so far has this many bytes.
    Trailer(u32),
}

#[derive(Debug, Default)]
struct Chunks {
    state: ChunkState,
    size: u64,
    digits: u32,
}

impl Chunks {
    /// Scans `bytes`: how many belong to the body, whether it ended there, and how
    /// many of them were chunk data.
    fn scan(&mut self, bytes: &[u8]) -> Result<(usize, bool, u64)> {
        let bad = || upstream_error(ErrorType::InvalidHTTPHeader, "invalid chunked answer body");
        let mut i = 0;
        let mut payload = 0u64;
        while i < bytes.len() {
            match self.state {
                ChunkState::Data(left) => {
                    let take = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += take;
                    payload += take as u64;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    continue;
                }
                ChunkState::Size => match bytes[i] {
                    b @ (b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(bad());
                        }
                        self.size = self.size * 16 + digit;
                    }
                    b';' | b' ' | b'\t' => self.state = ChunkState::Extension,
                    b'\r' => {}
                    b'\n' => self.end_size_line().map_err(|_| bad())?,
                    _ => return Err(bad()),
                },
                ChunkState::Extension => {
                    if bytes[i] == b'\n' {
                        self.end_size_line().map_err(|_| bad())?;
                    }
                }
                ChunkState::DataEnd => match bytes[i] {
                    b'\r' => {}
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err(bad()),
                },
                ChunkState::Trailer(line) => match bytes[i] {
                    b'\n' if line == 0 => return Ok((i + 1, true, payload)),
                    b'\n' => self.state = ChunkState::Trailer(0),
                    b'\r' => {}
                    _ => self.state = ChunkState::Trailer(line.saturating_add(1)),
                },
            }
            i += 1;
        }
        Ok((i, false, payload))
    }

    fn end_size_line(&mut self) -> std::result::Result<(), ()> {
        if self.digits == 0 {
            return Err(());
        }
        self.state = if self.size == 0 {
            ChunkState::Trailer(0)
        } else {
            ChunkState::Data(self.size)
        };
        self.size = 0;
        self.digits = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailer_even_split() {
        let body = b"5;x=1\r\nhello\r\n0\r\nTrailer: v\r\n\r\nNEXT";
        for split in 1..body.len() {
            let mut chunks = Chunks::default();
            let (a, done_a, p_a) = chunks.scan(&body[..split]).expect("valid");
            let (end, done, payload) = if done_a {
                (a, true, p_a)
            } else {
                let (b, done_b, p_b) = chunks.scan(&body[split..]).expect("valid");
                (split + b, done_b, p_a + p_b)
            };
            assert!(done, "split at {split}");
            assert_eq!(end, body.len() - 4, "split at {split}");
            assert_eq!(payload, 5);
        }
    }

    #[test]
    fn a_bad_chunk_size_is_an_upstream_error() {
        let mut chunks = Chunks::default();
        assert!(chunks.scan(b"zz\r\n").is_err());
        let mut chunks = Chunks::default();
        assert!(chunks.scan(b"\r\n").is_err());
    }

    #[test]
    fn an_answer_relayed_as_sent_keeps_its_bytes_but_the_headers_bitsgate_sets() {
        let raw = b"HTTP/1.1 200 OK\r\nbits-packet-type: Ack\r\nDate: then\r\n\
                    BITS-Reply-URL: http://node1:8081/r/1\r\nconnection: close\r\n\
                    Content-Length: 0\r\n\r\n";
        let (len, header) = parse(raw, false).expect("valid").expect("complete");
        let mut answer = finish(header, BytesMut::new());
        answer.raw = Some(BytesMut::from(&raw[..len]));
        answer
            .header
            .insert_header(bits_proto::headers::REPLY_URL, "http://farm/r/1")
            .expect("header");
        let head = client_head(&mut answer, true).expect("head");
        let text = std::str::from_utf8(&head).expect("text");
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nbits-packet-type: Ack\r\nContent-Length: 0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nBITS-Reply-URL: http://farm/r/1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
        assert!(!text.contains("then") && !text.contains("node1"), "{text}");
        assert_eq!(text.matches("Date: ").count(), 1, "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn framing_follows_the_answer_head() {
        let answer = |text: &str| {
            let (len, header) = parse(text.as_bytes(), true)
                .expect("valid")
                .expect("complete");
            assert_eq!(len, text.len());
            finish(header, BytesMut::new())
        };
        let a = answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(a.framing, Framing::Empty);
        assert!(a.keepalive);
        let a = answer("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\n");
        assert_eq!(a.framing, Framing::Length(7));
        assert!(!a.keepalive);
        let a = answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(a.framing, Framing::Chunked);
        let a = answer("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(a.framing, Framing::UntilClose);
        assert!(!a.keepalive);
        let a = answer("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!a.keepalive);
        assert_eq!(
            answer("HTTP/1.1 204 No Content\r\n\r\n").framing,
            Framing::Empty
        );
    }
}
