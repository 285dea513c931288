//! The backend's answer on the fast path: its head read and parsed once, its body
//! relayed as it comes, framed as the backend framed it.

use super::span::{self, Span};
use crate::proxy::AnswerView;
use bits_proto::HeaderSource;
use bytes::{BufMut, BytesMut};
use http::HeaderName;
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
    /// The head as the backend sent it, with what learning changed.
    pub head: RawAnswer,
    pub framing: Framing,
    /// Bytes read past the head: the start of the body.
    pub rest: BytesMut,
    /// The backend lets the connection serve another request.
    pub keepalive: bool,
}

/// A backend's answer head where it was parsed, and what learning changed in it
/// (the status of a refused Create-Session, the Host-Id policy, a rewritten
/// Reply-URL). The decisions read it through [`AnswerView`], edits included;
/// the client gets the backend's bytes with the edits (see [`client_head`]).
pub struct RawAnswer {
    bytes: BytesMut,
    status: u16,
    status_edited: bool,
    headers: Vec<[Span; 2]>,
    /// Headers set (`Some`) or removed (`None`), one entry per name.
    edits: Vec<(&'static str, Option<String>)>,
}

impl RawAnswer {
    /// The edit of header `name`, if it has one.
    fn edit(&self, name: &[u8]) -> Option<&Option<String>> {
        self.edits
            .iter()
            .find(|(edited, _)| edited.as_bytes().eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    fn set_edit(&mut self, name: &'static str, value: Option<String>) {
        match self
            .edits
            .iter_mut()
            .find(|(edited, _)| edited.eq_ignore_ascii_case(name))
        {
            Some(edit) => edit.1 = value,
            None => self.edits.push((name, value)),
        }
    }
}

impl HeaderSource for RawAnswer {
    fn values<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> {
        let name = name.as_str().as_bytes();
        let edit = self.edit(name);
        let sent = span::values(&self.bytes, &self.headers, name).filter(move |_| edit.is_none());
        let edited = edit.and_then(|value| value.as_deref()).map(str::as_bytes);
        edited.into_iter().chain(sent)
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let sent = self
            .headers
            .iter()
            .map(|[n, v]| (n.in_bytes(&self.bytes), v.in_bytes(&self.bytes)))
            .filter(|(name, _)| self.edit(name).is_none());
        let edited = self.edits.iter().filter_map(|(name, value)| {
            value
                .as_deref()
                .map(|value| (name.as_bytes(), value.as_bytes()))
        });
        sent.chain(edited)
    }
}

impl AnswerView for RawAnswer {
    type Headers = Self;

    fn status(&self) -> u16 {
        self.status
    }

    fn headers(&self) -> &Self {
        self
    }

    fn set_status(&mut self, status: u16) -> Result<()> {
        http::StatusCode::from_u16(status)
            .map_err(|_| Error::explain(ErrorType::InternalError, "invalid status"))?;
        self.status = status;
        self.status_edited = true;
        Ok(())
    }

    fn remove_header(&mut self, name: &'static str) {
        self.set_edit(name, None);
    }

    fn insert_header(&mut self, name: &'static str, value: &str) -> Result<()> {
        http::HeaderValue::from_str(value)
            .map_err(|_| Error::explain(ErrorType::InternalError, "invalid header value"))?;
        self.set_edit(name, Some(value.to_owned()));
        Ok(())
    }
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
/// does for a client that did not ask for them), by `deadline`.
pub async fn read_head(upstream: &mut TcpStream, deadline: Instant) -> Result<Answer> {
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
            skip_empty_lines(&mut buf);
            match parse(&buf)? {
                None if buf.len() > MAX_HEAD => {
                    return Err(upstream_error(
                        ErrorType::InvalidHTTPHeader,
                        "answer head too large",
                    ))
                }
                None => break,
                Some(Parsed { status: 101, .. }) => {
                    return Err(upstream_error(
                        ErrorType::InvalidHTTPHeader,
                        "unexpected 101",
                    ))
                }
                Some(Parsed {
                    len,
                    status: 100..=199,
                    ..
                }) => {
                    let _ = buf.split_to(len);
                }
                Some(Parsed {
                    len,
                    status,
                    headers,
                }) => {
                    let rest = buf.split_off(len);
                    return Ok(finish(
                        RawAnswer {
                            bytes: buf,
                            status,
                            status_edited: false,
                            headers,
                            edits: Vec::new(),
                        },
                        rest,
                    ));
                }
            }
        }
    }
}

/// How many bytes of empty lines start `bytes`: a server may send some before a
/// status line, and `httparse` skips them.
pub(super) fn empty_lines(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Drops the empty lines before a status line, so that the head's bytes start
/// with it.
fn skip_empty_lines(buf: &mut BytesMut) {
    let empty = empty_lines(buf);
    if empty > 0 {
        let _ = buf.split_to(empty);
    }
}

/// The answer whose head starts `buf`, if the head is complete there (the bytes
/// after it are its `rest`).
pub fn parse_answer(buf: &[u8]) -> Result<Option<Answer>> {
    let buf = &buf[empty_lines(buf)..];
    let Some(Parsed {
        len,
        status,
        headers,
    }) = parse(buf)?
    else {
        return Ok(None);
    };
    let head = RawAnswer {
        bytes: BytesMut::from(&buf[..len]),
        status,
        status_edited: false,
        headers,
        edits: Vec::new(),
    };
    Ok(Some(finish(head, BytesMut::from(&buf[len..]))))
}

/// A complete answer head at the start of a buffer.
struct Parsed {
    len: usize,
    status: u16,
    /// Spans into the buffer.
    headers: Vec<[Span; 2]>,
}

/// The head at the start of `buf`, if it is complete.
fn parse(buf: &[u8]) -> Result<Option<Parsed>> {
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
    let status = parsed
        .code
        .filter(|code| (100..=999).contains(code))
        .ok_or_else(|| upstream_error(ErrorType::InvalidHTTPHeader, "invalid answer status"))?;
    Ok(Some(Parsed {
        len,
        status,
        headers: span::header_spans(buf, parsed.headers),
    }))
}

fn finish(head: RawAnswer, rest: BytesMut) -> Answer {
    let has_token = |name: &HeaderName, token: &[u8]| {
        head.values(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    let status = head.status;
    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else if head.has(&http::header::TRANSFER_ENCODING) {
        let last_is_chunked = head
            .values(&http::header::TRANSFER_ENCODING)
            .last()
            .and_then(|v| v.split(|&b| b == b',').next_back())
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if last_is_chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match head
            .first_str(&http::header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keepalive = if head.bytes.starts_with(b"HTTP/1.0") {
        has_token(&http::header::CONNECTION, b"keep-alive")
    } else {
        !has_token(&http::header::CONNECTION, b"close")
    };
    Answer {
        keepalive: keepalive && framing != Framing::UntilClose,
        head,
        framing,
        rest,
    }
}

/// Headers bitsgate always writes itself: `Date` and `Connection`, as Pingora's
/// HTTP/1 server sets them on every answer. Learning's edits are the only other
/// change to what the backend wrote.
const REWRITTEN: [&str; 2] = ["date", "connection"];

/// The answer's head as the client gets it: the backend's own bytes, with
/// learning's edits (an edited header in the place of its first line, a new one
/// at the end) and `Date` and `Connection` as Pingora's HTTP/1 server writes them.
pub fn client_head(answer: &Answer, keepalive: bool) -> BytesMut {
    let raw = &answer.head;
    let connection = if keepalive { "keep-alive" } else { "close" };
    let mut buf = BytesMut::with_capacity(raw.bytes.len() + 64);
    let mut edits_written = 0u64;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', &raw.bytes) {
        let line = &raw.bytes[start..=end];
        let first = start == 0;
        start = end + 1;
        if first {
            if raw.status_edited {
                let status = http::StatusCode::from_u16(raw.status).unwrap_or(http::StatusCode::OK);
                buf.put_slice(&line[..line.len().min(9)]);
                buf.put_slice(status.as_str().as_bytes());
                buf.put_u8(b' ');
                buf.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
                buf.put_slice(b"\r\n");
            } else {
                buf.put_slice(line);
            }
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let name = memchr::memchr(b':', line).map_or(&line[..0], |colon| &line[..colon]);
        if REWRITTEN
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
        {
            continue;
        }
        let edit = raw
            .edits
            .iter()
            .position(|(edited, _)| edited.as_bytes().eq_ignore_ascii_case(name));
        match edit {
            None => buf.put_slice(line),
            Some(i) => {
                if edits_written & (1 << i) == 0 {
                    edits_written |= 1 << i;
                    if let Some(value) = &raw.edits[i].1 {
                        put_header(&mut buf, name, value.as_bytes());
                    }
                }
            }
        }
    }
    for (i, (name, value)) in raw.edits.iter().enumerate() {
        if let (Some(value), true) = (value, edits_written & (1 << i) == 0) {
            put_header(&mut buf, name.as_bytes(), value.as_bytes());
        }
    }
    let date = pingora::protocols::http::date::get_cached_date();
    put_header(&mut buf, b"Date", date.as_bytes());
    put_header(&mut buf, b"Connection", connection.as_bytes());
    buf.put_slice(b"\r\n");
    buf
}

fn put_header(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
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

/// Writes to the client within `timeout`; errors are the client's. Flushed: over TLS
/// a write may leave a record in rustls when the socket is full (a no-op on TCP).
pub async fn write_client<W: AsyncWrite + Unpin>(
    client: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<()> {
    let written = async {
        client.write_all(bytes).await?;
        client.flush().await
    };
    match tokio::time::timeout(timeout, written).await {
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

    fn answer(text: &str) -> Answer {
        let answer = parse_answer(text.as_bytes())
            .expect("valid")
            .expect("complete");
        assert!(answer.rest.is_empty());
        answer
    }

    #[test]
    fn an_answer_keeps_its_bytes_but_the_headers_bitsgate_sets() {
        let mut answer = answer(
            "HTTP/1.1 200 OK\r\nbits-packet-type: Ack\r\nDate: then\r\n\
             BITS-Reply-URL: http://node1:8081/r/1\r\nconnection: close\r\n\
             Content-Length: 0\r\n\r\n",
        );
        answer
            .head
            .insert_header(bits_proto::headers::REPLY_URL, "http://farm/r/1")
            .expect("header");
        let head = client_head(&answer, true);
        let text = std::str::from_utf8(&head).expect("text");
        assert_eq!(
            text.strip_suffix("\r\n\r\n")
                .and_then(|t| t.split_once("\r\nDate: "))
                .map(|(kept, date)| (kept, date.split_once("\r\n").map(|(_, c)| c))),
            Some((
                "HTTP/1.1 200 OK\r\nbits-packet-type: Ack\r\n\
                 BITS-Reply-URL: http://farm/r/1\r\nContent-Length: 0",
                Some("Connection: keep-alive")
            )),
            "{text}"
        );
    }

    #[test]
    fn empty_lines_before_the_status_line_are_not_part_of_the_head() {
        let mut answer =
            answer("\r\n\r\nHTTP/1.0 200 OK\r\nBITS-Packet-Type: Ack\r\nContent-Length: 0\r\n\r\n");
        assert!(!answer.keepalive, "HTTP/1.0 without keep-alive");
        answer.head.set_status(503).expect("status");
        let text = String::from_utf8(client_head(&answer, false).to_vec()).expect("text");
        assert!(
            text.starts_with("HTTP/1.0 503 Service Unavailable\r\nBITS-Packet-Type: Ack\r\n"),
            "{text}"
        );
    }

    #[test]
    fn learning_reads_its_own_edits_and_the_client_gets_them() {
        let mut answer = answer(
            "HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nBITS-Session-Id: {s1}\r\n\
             BITS-Host-Id: node1\r\nBITS-Host-Id: node1b\r\nContent-Length: 0\r\n\r\n",
        );
        let head = &mut answer.head;
        let host_id = &bits_proto::headers::names::HOST_ID;
        assert_eq!(head.values(host_id).count(), 2);
        head.remove_header(bits_proto::headers::HOST_ID);
        assert_eq!(head.values(host_id).count(), 0);
        head.insert_header(bits_proto::headers::HOST_ID, "farm")
            .expect("header");
        head.insert_header(bits_proto::headers::HOST_ID_FALLBACK_TIMEOUT, "60")
            .expect("header");
        assert!(head.values(host_id).eq([&b"farm"[..]]));
        assert_eq!(
            head.entries()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"bits-host-id"))
                .count(),
            1
        );
        assert!(head
            .insert_header(bits_proto::headers::HOST_ID, "a\nb")
            .is_err());
        let text = String::from_utf8(client_head(&answer, false).to_vec()).expect("text");
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nBITS-Session-Id: {s1}\r\n\
                 BITS-Host-Id: farm\r\nContent-Length: 0\r\n\
                 BITS-Host-Id-Fallback-Timeout: 60\r\nDate: "
            ),
            "{text}"
        );
        answer.head.set_status(503).expect("status");
        answer.head.remove_header(bits_proto::headers::SESSION_ID);
        assert_eq!(answer.head.status(), 503);
        let text = String::from_utf8(client_head(&answer, false).to_vec()).expect("text");
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\nBITS-Packet-Type: Ack\r\nBITS-Host-Id: farm\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\nConnection: close\r\n\r\n"), "{text}");
    }

    #[test]
    fn framing_follows_the_answer_head() {
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
