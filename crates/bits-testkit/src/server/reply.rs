//! Upload-reply jobs: the reply announced in `BITS-Reply-URL` on the final Fragment's
//! Ack, and served with `HEAD` and ranged `GET` until the session ends (spec §5, §7).
//! Its content is described in [`crate::reply`].

use super::conn::Conn;
use super::session::Session;
use super::Shared;
use crate::reply::{reply_body, REPLY_PATH_PREFIX};
use bytes::Bytes;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use std::io;
use tokio::io::AsyncReadExt;

/// Read size while hashing a committed file.
const HASH_CHUNK: usize = 256 * 1024;

/// The absolute URL of a session's reply, naming `host` or else the address the
/// client connected to.
pub(crate) fn url(conn: &Conn, host: Option<&str>, session_id: &str) -> String {
    let authority = host.map_or_else(|| conn.local.to_string(), str::to_owned);
    format!(
        "{}://{authority}{REPLY_PATH_PREFIX}{}",
        conn.scheme(),
        session_id.trim_matches(['{', '}'])
    )
}

/// The session id a reply path names, `None` for any other path.
pub(crate) fn session_of(path: &str) -> Option<String> {
    let uuid = path.strip_prefix(REPLY_PATH_PREFIX)?;
    uuid::Uuid::parse_str(uuid).ok()?;
    Some(format!("{{{uuid}}}"))
}

/// The reply of a completed session, computed from the committed file once.
pub(crate) async fn body(s: &mut Session) -> io::Result<Bytes> {
    if let Some(reply) = &s.reply {
        return Ok(reply.clone());
    }
    let mut file = tokio::fs::File::open(&s.dest).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let reply = Bytes::from(reply_body(&hasher.finalize(), &s.meta.path));
    s.reply = Some(reply.clone());
    Ok(reply)
}

/// Answers `HEAD` or `GET` of a reply path: 404 unless the session is live, completed
/// and this server is in reply mode; 206 for one satisfiable range, 416 for an
/// unsatisfiable one, 200 otherwise (a range that cannot be parsed is ignored, as
/// RFC 9110 allows).
pub(crate) async fn serve(
    sh: &Shared,
    id: &str,
    method: &Method,
    headers: &HeaderMap,
) -> http::Result<Response<Full<Bytes>>> {
    let Some(reply) = live_reply(sh, id).await else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(CONTENT_LENGTH, 10)
            .body(Full::new(Bytes::from_static(b"not found\n")));
    };
    let len = reply.len() as u64;
    let range = headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| http_range_header::parse_range_header(v).ok())
        .map(|parsed| parsed.validate(len));
    let builder = Response::builder()
        .header(ACCEPT_RANGES, "bytes")
        .header(CONTENT_TYPE, "text/plain; charset=utf-8");
    let (builder, part) = match range {
        Some(Ok(ranges)) if ranges.len() == 1 => {
            let (first, last) = (*ranges[0].start(), *ranges[0].end());
            let part = reply.slice(first as usize..=last as usize);
            let builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(CONTENT_RANGE, format!("bytes {first}-{last}/{len}"));
            (builder, part)
        }
        Some(Err(http_range_header::RangeUnsatisfiableError::Unsatisfiable)) => {
            let builder = builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(CONTENT_RANGE, format!("bytes */{len}"));
            (builder, Bytes::new())
        }
        _ => (builder.status(StatusCode::OK), reply),
    };
    let builder = builder.header(CONTENT_LENGTH, part.len());
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        part
    };
    builder.body(Full::new(body))
}

async fn live_reply(sh: &Shared, id: &str) -> Option<Bytes> {
    if !sh.config.reply {
        return None;
    }
    let slot = sh.sessions.get(id)?;
    let mut s = slot.session.lock().await;
    if s.ended || !s.meta.completed {
        return None;
    }
    // Downloading the reply is activity: the session must not expire under it.
    sh.sessions.touch(&slot);
    body(&mut s)
        .await
        .inspect_err(|e| tracing::warn!(target: "bits_server", session = %id, error = %e, "could not read the reply"))
        .ok()
}
