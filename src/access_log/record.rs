//! One access-log line: what the proxy captures when a request ends, and its two
//! spellings (`text`, `json`). Formatting happens on the writer thread.

use crate::config::LogFormat;
use crate::proxy::RequestCtx;
use bits_proto::headers as h;
use http::HeaderValue;
use pingora::proxy::Session;
use serde::Serialize;
use std::fmt::Write as _;
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

/// The facts of one finished request.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request ended.
    pub time: SystemTime,
    /// The client's address: the TCP peer, or the PROXY protocol header's source.
    pub client: Option<String>,
    /// Request method.
    pub method: http::Method,
    /// URL path (without the query).
    pub path: String,
    /// `bitsgate_requests_total` packet label.
    pub packet: &'static str,
    /// The request's session id, or the one a Create-Session Ack issued.
    pub session: Option<String>,
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

impl AccessRecord {
    /// Captures a request in the proxy's `logging` phase.
    pub fn of_request(session: &Session, ctx: &RequestCtx, status: u16) -> AccessRecord {
        let request = session.req_header();
        let response = session.response_written();
        let response_header = |name: &str| response.and_then(|r| r.headers.get(name));
        let session_id = ctx
            .packet
            .as_ref()
            .and_then(|p| p.session.as_ref())
            .map(ToString::to_string)
            .or_else(|| {
                response_header(h::SESSION_ID)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            });
        AccessRecord {
            time: SystemTime::now(),
            client: crate::edge::client_addr(session).map(|a| a.to_string()),
            method: request.method.clone(),
            path: request.uri.path().to_owned(),
            packet: ctx.packet_label().as_str(),
            session: session_id,
            backend: ctx.chosen.as_ref().map(|c| c.id.clone()),
            status,
            error_code: response_header(h::ERROR_CODE).cloned(),
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
            duration: ctx.started.elapsed(),
            answered: match ctx.local {
                Some(reason) => Answered::Local(reason.label()),
                None => Answered::Forwarded,
            },
        }
    }

    /// Appends the line, newline included.
    pub fn write_line(&self, format: LogFormat, out: &mut String) {
        match format {
            LogFormat::Text => self.write_text(out),
            LogFormat::Json => self.write_json(out),
        }
        out.push('\n');
    }

    fn fields(&self) -> Fields<'_> {
        let (answer, reason) = match self.answered {
            Answered::Forwarded => ("forwarded", None),
            Answered::Local(reason) => ("local", Some(reason)),
        };
        Fields {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            client: self.client.as_deref(),
            method: self.method.as_str(),
            path: &self.path,
            packet: self.packet,
            session: self.session.as_deref(),
            backend: self.backend.as_deref(),
            status: self.status,
            bits_error: self
                .error_code
                .as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_ms: (self.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            answer,
            reason,
        }
    }

    fn write_json(&self, out: &mut String) {
        // Serialising plain strings and numbers cannot fail.
        if let Ok(text) = serde_json::to_string(&self.fields()) {
            out.push_str(&text);
        }
    }

    fn write_text(&self, out: &mut String) {
        let f = self.fields();
        let _ = write!(out, "time={}", f.time);
        text_field(out, "client", f.client);
        text_field(out, "method", Some(f.method));
        text_field(out, "path", Some(f.path));
        text_field(out, "packet", Some(f.packet));
        text_field(out, "session", f.session);
        text_field(out, "backend", f.backend);
        let _ = write!(out, " status={}", f.status);
        text_field(out, "bits_error", f.bits_error.as_deref());
        let _ = write!(
            out,
            " bytes_in={} bytes_out={} duration_ms={:.3}",
            f.bytes_in, f.bytes_out, f.duration_ms
        );
        text_field(out, "answer", Some(f.answer));
        if let Some(reason) = f.reason {
            text_field(out, "reason", Some(reason));
        }
    }
}

/// The JSON object; the text line uses the same names.
#[derive(Serialize)]
struct Fields<'a> {
    time: String,
    client: Option<&'a str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// ` key=value`, `-` for none; a value with a space, quote, `=`, control character or
/// nothing in it is quoted and escaped, so a path from a client cannot forge fields
/// or lines.
fn text_field(out: &mut String, key: &str, value: Option<&str>) {
    let _ = write!(out, " {key}=");
    match value {
        None => out.push('-'),
        Some(v)
            if !v.is_empty()
                && v != "-"
                && !v.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\')
                }) =>
        {
            out.push_str(v)
        }
        Some(v) => {
            let _ = write!(out, "{v:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_123),
            client: Some("192.0.2.7:50123".into()),
            method: http::Method::from_bytes(b"BITS_POST").unwrap(),
            path: "/uploads/a b\"=.bin".into(),
            packet: "fragment",
            session: Some("{6f1c2d8e-0000-4000-8000-000000000001}".into()),
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
        let mut line = String::new();
        record().write_line(LogFormat::Text, &mut line);
        assert_eq!(
            line,
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
        let mut line = String::new();
        rec.write_line(LogFormat::Json, &mut line);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["path"], "/uploads/a b\"=.bin");
        assert_eq!(value["backend"], serde_json::Value::Null);
        assert_eq!(value["answer"], "local");
        assert_eq!(value["reason"], "table_full");
        assert_eq!(value["bits_error"], "0x80200012");
        assert_eq!(value["duration_ms"], 1.5);
    }
}
