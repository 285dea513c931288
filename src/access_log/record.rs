//! One access-log line: what the proxy captures when a request ends, and its two
//! spellings (`text`, `json`). Formatting happens on the writer thread.

use crate::config::LogFormat;
use crate::proxy::RequestCtx;
use crate::session::SessionKey;
use bits_proto::headers as h;
use http::HeaderValue;
use pingora::proxy::Session;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Who wrote the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// A backend answered (or failed after the request was sent to it).
    Forwarded,
    /// bitsgate answered itself, for this reason (the `bitsgate_local_acks_total` label).
    Local(&'static str),
}

/// The facts of one finished request: only copies and cheap clones on the worker
/// thread (no formatting, at most one allocation, for the path); the text is made by
/// the writer thread.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request ended.
    pub time: SystemTime,
    /// The client's address: the TCP peer, or the PROXY protocol header's source.
    pub client: Option<SocketAddr>,
    /// Request method.
    pub method: Cow<'static, str>,
    /// URL path (without the query).
    pub path: Box<str>,
    /// `bitsgate_requests_total` packet label.
    pub packet: &'static str,
    /// The request's session id, or the one a Create-Session Ack issued.
    pub session: Option<SessionKey>,
    /// Backend id the request went to.
    pub backend: Option<Arc<str>>,
    /// Status sent to the client (0: none, the client went away first).
    pub status: u16,
    /// `BITS-Error-Code` sent to the client.
    pub error_code: Option<HeaderValue>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// From the start of the request to now.
    pub duration: Duration,
    /// Forwarded or answered locally.
    pub answered: Answered,
}

/// A method's name without an allocation for the ones a BITS farm sees.
fn method_name(method: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 5] = [h::METHOD_BITS_POST, "GET", "HEAD", "POST", "OPTIONS"];
    match KNOWN.iter().find(|known| **known == method) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(method.to_owned()),
    }
}

/// What the access log reads of an answer's headers, however they are held.
pub trait AnswerFields {
    /// The first value of header `name`.
    fn field(&self, name: &http::HeaderName) -> Option<&[u8]>;
}

impl<H: bits_proto::HeaderSource + ?Sized> AnswerFields for H {
    fn field(&self, name: &http::HeaderName) -> Option<&[u8]> {
        self.first(name)
    }
}

/// What the access log reads of one request and its answer.
pub struct Exchange<'a> {
    /// The request's method, as sent.
    pub method: &'a str,
    /// The path of its target.
    pub path: &'a str,
    /// The headers of the answer written to the client, if one was.
    pub response: Option<&'a dyn AnswerFields>,
    /// The client's address.
    pub client: Option<std::net::SocketAddr>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes written to the client.
    pub bytes_out: u64,
}

impl AccessRecord {
    /// Captures a request in the proxy's `logging` phase.
    pub fn of_request(session: &Session, ctx: &RequestCtx, status: u16) -> AccessRecord {
        AccessRecord::of_exchange(
            Exchange {
                method: session.req_header().method.as_str(),
                path: session.req_header().uri.path(),
                response: session
                    .response_written()
                    .map(|r| &r.headers as &dyn AnswerFields),
                client: crate::edge::client_addr(session),
                bytes_in: session.body_bytes_read() as u64,
                bytes_out: session.body_bytes_sent() as u64,
            },
            ctx,
            status,
        )
    }

    /// The record of one exchange, however it was proxied.
    pub fn of_exchange(exchange: Exchange<'_>, ctx: &RequestCtx, status: u16) -> AccessRecord {
        let Exchange {
            method,
            path,
            response,
            client,
            bytes_in,
            bytes_out,
        } = exchange;
        let response_header = |name: &http::HeaderName| response.and_then(|r| r.field(name));
        let session_id = ctx
            .packet
            .as_ref()
            .and_then(|p| p.session.clone())
            .or_else(|| {
                response_header(&h::names::SESSION_ID)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(SessionKey::new)
            });
        AccessRecord {
            time: SystemTime::now(),
            client,
            method: method_name(method),
            path: path.into(),
            packet: ctx.packet_label().as_str(),
            session: session_id,
            backend: ctx.chosen.as_ref().map(|c| c.id.clone()),
            status,
            error_code: response_header(&h::names::ERROR_CODE)
                .and_then(|v| http::HeaderValue::from_bytes(v).ok()),
            bytes_in,
            bytes_out,
            duration: ctx.started.elapsed(),
            answered: match ctx.local {
                Some(reason) => Answered::Local(reason.label()),
                None => Answered::Forwarded,
            },
        }
    }
}

/// Turns records into lines. Keeps what one line can share with the next: the time
/// text (formatted once per millisecond) and scratch space for the session id.
#[derive(Default)]
pub struct LineWriter {
    clock: Option<(Duration, String)>,
    scratch: String,
}

impl LineWriter {
    /// Appends the record's line, newline included.
    pub fn write_line(&mut self, record: &AccessRecord, format: LogFormat, out: &mut Vec<u8>) {
        let since_epoch = record
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let millis = Duration::from_millis(since_epoch.as_millis() as u64);
        if self.clock.as_ref().is_none_or(|(at, _)| *at != millis) {
            let text = humantime::format_rfc3339_millis(record.time).to_string();
            self.clock = Some((millis, text));
        }
        let time = self.clock.as_ref().map_or("", |(_, text)| text.as_str());
        self.scratch.clear();
        if let Some(session) = &record.session {
            let _ = write!(self.scratch, "{session}");
        }
        let fields = Fields::of(
            record,
            time,
            record.session.as_ref().map(|_| self.scratch.as_str()),
        );
        match format {
            LogFormat::Text => fields.write_text(out),
            LogFormat::Json => fields.write_json(out),
        }
        out.push(b'\n');
    }
}

/// The fields of a line, under the names both formats use.
struct Fields<'a> {
    time: &'a str,
    client: Option<SocketAddr>,
    method: &'a str,
    path: &'a str,
    packet: &'a str,
    session: Option<&'a str>,
    backend: Option<&'a str>,
    status: u16,
    bits_error: Option<std::borrow::Cow<'a, str>>,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    answer: &'a str,
    reason: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn of(record: &'a AccessRecord, time: &'a str, session: Option<&'a str>) -> Self {
        let (answer, reason) = match record.answered {
            Answered::Forwarded => ("forwarded", None),
            Answered::Local(reason) => ("local", Some(reason)),
        };
        Fields {
            time,
            client: record.client,
            method: &record.method,
            path: &record.path,
            packet: record.packet,
            session,
            backend: record.backend.as_deref(),
            status: record.status,
            bits_error: record
                .error_code
                .as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            bytes_in: record.bytes_in,
            bytes_out: record.bytes_out,
            duration_ms: (record.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            answer,
            reason,
        }
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"time=");
        out.extend_from_slice(self.time.as_bytes());
        out.extend_from_slice(b" client=");
        match self.client {
            Some(client) => write_addr(out, client),
            None => out.push(b'-'),
        }
        text_field(out, "method", Some(self.method));
        text_field(out, "path", Some(self.path));
        text_field(out, "packet", Some(self.packet));
        text_field(out, "session", self.session);
        text_field(out, "backend", self.backend);
        number_field(out, "status", u64::from(self.status));
        text_field(out, "bits_error", self.bits_error.as_deref());
        number_field(out, "bytes_in", self.bytes_in);
        number_field(out, "bytes_out", self.bytes_out);
        out.extend_from_slice(b" duration_ms=");
        write_millis(out, self.duration_ms);
        text_field(out, "answer", Some(self.answer));
        if let Some(reason) = self.reason {
            text_field(out, "reason", Some(reason));
        }
    }
}

impl Fields<'_> {
    /// The JSON object, written by hand: a serializer's generic path cost more per
    /// line than the proxy's whole decision (docs/benchmarks.md, "Access log cost").
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        json_string(out, self.time);
        out.extend_from_slice(b",\"client\":");
        match self.client {
            Some(client) => {
                out.push(b'"');
                write_addr(out, client);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        // A method is an HTTP token (checked by the `http` crate): nothing to escape.
        json_plain(out, "method", self.method);
        json_field(out, "path", Some(self.path));
        json_plain(out, "packet", self.packet);
        json_field(out, "session", self.session);
        json_field(out, "backend", self.backend);
        json_number(out, "status", u64::from(self.status));
        json_field(out, "bits_error", self.bits_error.as_deref());
        json_number(out, "bytes_in", self.bytes_in);
        json_number(out, "bytes_out", self.bytes_out);
        out.extend_from_slice(b",\"duration_ms\":");
        write_millis(out, self.duration_ms);
        json_plain(out, "answer", self.answer);
        if let Some(reason) = self.reason {
            json_plain(out, "reason", reason);
        }
        out.push(b'}');
    }
}

fn json_field(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    match value {
        Some(v) => json_string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A string field whose value needs no escaping: one of bitsgate's own names, or an
/// HTTP token (debug builds check it).
fn json_plain(out: &mut Vec<u8>, key: &str, value: &str) {
    debug_assert!(!value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

fn json_number(out: &mut Vec<u8>, key: &str, value: u64) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7);
/// everything else, UTF-8 included, as it is, copied in runs between escapes.
fn json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut run = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if byte != b'"' && byte != b'\\' && byte >= 0x20 {
            continue;
        }
        out.extend_from_slice(&bytes[run..at]);
        run = at + 1;
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// `a.b.c.d:port` written with `itoa`, as `Display` would; IPv6 through `Display`
/// (rare behind a farm's load balancer, and its shortest form is not worth a copy).
fn write_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(digits.format(v4.port()).as_bytes());
        }
        SocketAddr::V6(_) => {
            let _ = std::io::Write::write_fmt(out, format_args!("{addr}"));
        }
    }
}

/// Milliseconds with three decimals, from a value already rounded to microseconds.
fn write_millis(out: &mut Vec<u8>, millis: f64) {
    let micros = (millis * 1000.0).round() as u64;
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    out.push(b'.');
    let fraction = micros % 1000;
    out.extend_from_slice(&[
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

fn number_field(out: &mut Vec<u8>, key: &str, value: u64) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// ` key=value`, `-` for none; a value with a space, quote, `=`, control character or
/// nothing in it is quoted and escaped, so a path from a client cannot forge fields
/// or lines.
fn text_field(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    match value {
        None => out.push(b'-'),
        Some(v)
            if !v.is_empty()
                && v != "-"
                && !v.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\')
                }) =>
        {
            out.extend_from_slice(v.as_bytes())
        }
        Some(v) => {
            let _ = std::io::Write::write_fmt(out, format_args!("{v:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_123),
            client: Some("192.0.2.7:50123".parse().unwrap()),
            method: method_name("BITS_POST"),
            path: "/uploads/a b\"=.bin".into(),
            packet: "fragment",
            session: Some(SessionKey::new("{6f1c2d8e-0000-4000-8000-000000000001}")),
            backend: Some(Arc::from("b1")),
            status: 416,
            error_code: Some(HeaderValue::from_static("0x80200012")),
            bytes_in: 1024,
            bytes_out: 0,
            duration: Duration::from_micros(1500),
            answered: Answered::Forwarded,
        }
    }

    #[test]
    fn text_lines_quote_what_could_forge_a_field() {
        let mut line = Vec::new();
        LineWriter::default().write_line(&record(), LogFormat::Text, &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "time=2025-12-06T05:46:40.123Z client=192.0.2.7:50123 method=BITS_POST \
             path=\"/uploads/a b\\\"=.bin\" packet=fragment \
             session={6f1c2d8e-0000-4000-8000-000000000001} backend=b1 status=416 \
             bits_error=0x80200012 bytes_in=1024 bytes_out=0 duration_ms=1.500 \
             answer=forwarded\n"
        );
    }

    #[test]
    fn json_lines_parse_and_name_every_field() {
        let mut rec = record();
        rec.answered = Answered::Local("table_full");
        rec.backend = None;
        let mut line = Vec::new();
        LineWriter::default().write_line(&rec, LogFormat::Json, &mut line);
        let line = String::from_utf8(line).unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["path"], "/uploads/a b\"=.bin");
        assert_eq!(value["backend"], serde_json::Value::Null);
        assert_eq!(value["answer"], "local");
        assert_eq!(value["reason"], "table_full");
        assert_eq!(value["bits_error"], "0x80200012");
        assert_eq!(value["duration_ms"], 1.5);
        assert_eq!(value["client"], "192.0.2.7:50123");
        assert_eq!(value["method"], "BITS_POST");
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        let mut rec = record();
        rec.path = "/a\"b\\c\u{1}d\ne\u{e9}".into();
        let mut line = Vec::new();
        LineWriter::default().write_line(&rec, LogFormat::Json, &mut line);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["path"], "/a\"b\\c\u{1}d\ne\u{e9}");
        assert_eq!(value["status"], 416);
        assert_eq!(value["bytes_in"], 1024);
        assert!(value.get("reason").is_none());
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0:0",
            "10.20.3.255:65535",
            "192.0.2.7:80",
            "[2001:db8::1]:443",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut out = Vec::new();
            write_addr(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
        }
    }

    #[test]
    fn the_time_text_follows_the_clock_to_the_millisecond() {
        let mut writer = LineWriter::default();
        let mut rec = record();
        let mut line = Vec::new();
        writer.write_line(&rec, LogFormat::Text, &mut line);
        rec.time += Duration::from_millis(1);
        writer.write_line(&rec, LogFormat::Text, &mut line);
        rec.time += Duration::from_secs(3600);
        writer.write_line(&rec, LogFormat::Text, &mut line);
        let text = String::from_utf8(line).unwrap();
        let times: Vec<&str> = text.lines().map(|l| &l[5..29]).collect();
        assert_eq!(
            times,
            [
                "2025-12-06T05:46:40.123Z",
                "2025-12-06T05:46:40.124Z",
                "2025-12-06T06:46:40.124Z"
            ]
        );
    }
}
