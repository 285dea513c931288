//! The HTTP face: sorts each request with `bits_proto::classify`, hands BITS packets to
//! their handler, answers the few plain HTTP routes, and turns Acks into responses.

use super::auth::{self, Gate, UNAUTHORIZED_PAGE};
use super::conn::Conn;
use super::handlers::{self, Reply};
use super::reply;
use super::stats::{Origin, LABEL_OTHER, LABEL_REJECTED, LABEL_REPLY, LABEL_UNAUTHORIZED};
use super::Shared;
use bits_proto::{classify, Ack, Classified, ClassifyOptions, PacketType};
use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, SERVER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use std::convert::Infallible;
use std::sync::Arc;
use tracing::debug;

/// Path of the JSON counters.
pub const STATS_PATH: &str = "/_bits/stats";

const LOG: &str = "bits_server";

/// Serves one request. Never fails: every outcome is a response.
pub(crate) async fn serve(
    sh: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    sh.stats
        .connection_forwarded_for(conn.id, forwarded_for(&parts.headers));
    if !host_is_served(&sh, &parts) {
        sh.stats.request(LABEL_OTHER, None, origin(&conn, None));
        let unread = !body.is_end_stream();
        let refusal = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(CONTENT_LENGTH, INVALID_HOSTNAME.len())
            .body(Full::new(Bytes::from_static(INVALID_HOSTNAME.as_bytes())));
        return Ok(finish(&sh, refusal, unread));
    }
    if let Some(challenge) = refusal(&sh, &conn, &parts) {
        return Ok(unauthorized(&sh, body, challenge).await);
    }
    let user = conn.user();
    let from = origin(&conn, user.as_deref());
    if let Some(id) = reply::session_of(parts.uri.path()) {
        if parts.method == Method::GET || parts.method == Method::HEAD {
            sh.stats.request(LABEL_REPLY, Some(&id), from);
            sh.stats.reply_request(&id);
            let unread = !body.is_end_stream();
            let response = reply::serve(&sh, &id, &parts.method, &parts.headers).await;
            return Ok(finish(&sh, response, unread));
        }
    }
    let classified = classify(
        parts.method.as_str(),
        &parts.headers,
        &ClassifyOptions::default(),
    );
    let packet = match classified {
        Ok(Classified::Bits(packet)) => packet,
        Ok(Classified::Other) => {
            sh.stats.request(LABEL_OTHER, None, from);
            let unread = !body.is_end_stream();
            return Ok(finish(
                &sh,
                plain(&sh, &parts.method, parts.uri.path()),
                unread,
            ));
        }
        Err(reject) => {
            let session = reject.session_id.as_ref().map(|id| id.as_str());
            sh.stats.request(LABEL_REJECTED, session, from);
            debug!(target: LOG, reason = reject.reason.label(), "refused malformed packet");
            let unread = !body.is_end_stream();
            return Ok(ack_response(&sh, &reject.ack(), unread));
        }
    };
    sh.stats
        .request(packet.kind.label(), packet.session_id, from);
    // `classify` guarantees a session id on session packets and a range on Fragments;
    // the fallbacks below only keep a broken guarantee from becoming a panic.
    let session = packet.session_id.unwrap_or_default();
    let reply = match (packet.kind, packet.range) {
        (PacketType::Ping, _) => Reply {
            ack: Ack::ping_ok(),
            close: false,
        },
        (PacketType::CreateSession, _) => {
            handlers::create_session(&sh, packet.supported_protocols, parts.uri.path(), from).await
        }
        (PacketType::Fragment, Some(range)) => {
            return Ok(reply_response(
                &sh,
                handlers::fragment(&sh, &conn, session, range, body).await,
            ));
        }
        (PacketType::CloseSession, _) => handlers::close_session(&sh, session).await,
        (PacketType::CancelSession, _) => {
            handlers::cancel_session(&sh, session, parts.uri.path()).await
        }
        (PacketType::Fragment, None) | (PacketType::Ack, _) => Reply {
            ack: Ack::invalid_arg(),
            close: true,
        },
    };
    // Only Fragments have a body; one sent anyway is left unread, so the connection
    // cannot carry another request.
    let close = reply.close || !body.is_end_stream();
    Ok(ack_response(&sh, &reply.ack, close))
}

/// IIS's answer to a Host its site is not bound to.
const INVALID_HOSTNAME: &str = "Bad Request - Invalid Hostname\n";

/// Whether the request's `Host` (port aside) is the configured host name, if any.
fn host_is_served(sh: &Shared, parts: &http::request::Parts) -> bool {
    let Some(name) = &sh.config.host_name else {
        return true;
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let without_port = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    without_port.eq_ignore_ascii_case(name)
}

/// Runs Windows authentication (when on) for one request: `Some` with the
/// `WWW-Authenticate` values of a 401 when the request may not be served.
fn refusal(sh: &Shared, conn: &Conn, parts: &http::request::Parts) -> Option<Vec<String>> {
    let mode = sh.config.auth?;
    if parts.uri.path() == STATS_PATH {
        return None;
    }
    let challenge = match auth::gate(mode, &sh.config.auth_domain, conn, &parts.headers) {
        Gate::Pass(Some(user)) => {
            tracing::info!(target: LOG, conn = conn.id, peer = %conn.peer, %user, "connection authenticated");
            sh.stats.connection_user(conn.id, &user);
            return None;
        }
        Gate::Pass(None) => return None,
        Gate::Challenge(value) => vec![value],
        Gate::Deny => mode
            .offers()
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
    };
    sh.stats
        .request(LABEL_UNAUTHORIZED, None, origin(conn, None));
    Some(challenge)
}

/// Every `X-Forwarded-For` value of a request, joined as one list.
fn forwarded_for(headers: &http::HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn origin<'a>(conn: &Conn, user: Option<&'a str>) -> Origin<'a> {
    Origin {
        conn: conn.id,
        user,
    }
}

/// IIS's 401: an HTML page, one `WWW-Authenticate` per value, no BITS headers. The
/// request body is read first, so the connection (and its handshake) can go on.
async fn unauthorized(
    sh: &Shared,
    body: Incoming,
    challenge: Vec<String>,
) -> Response<Full<Bytes>> {
    let limit = usize::try_from(sh.config.max_fragment).unwrap_or(usize::MAX);
    let drained = body.is_end_stream() || Limited::new(body, limit).collect().await.is_ok();
    let mut builder = Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(CONTENT_TYPE, "text/html")
        .header(CONTENT_LENGTH, UNAUTHORIZED_PAGE.len());
    for value in challenge {
        builder = builder.header(WWW_AUTHENTICATE, value);
    }
    let built = builder.body(Full::new(Bytes::from_static(UNAUTHORIZED_PAGE.as_bytes())));
    finish(sh, built, !drained)
}

fn reply_response(sh: &Shared, reply: Reply) -> Response<Full<Bytes>> {
    ack_response(sh, &reply.ack, reply.close)
}

/// An Ack as an HTTP response: its status, its headers in order, `Server`, an empty
/// body with `Content-Length: 0` (spec §2: never chunked).
pub(crate) fn ack_response(sh: &Shared, ack: &Ack, close: bool) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(ack.status);
    for (name, value) in &ack.headers {
        builder = builder.header(*name, value.as_ref());
    }
    finish(sh, builder.body(Full::new(Bytes::new())), close)
}

/// Adds `Server` (and `Connection: close` when asked) to a built response.
fn finish(
    sh: &Shared,
    built: http::Result<Response<Full<Bytes>>>,
    close: bool,
) -> Response<Full<Bytes>> {
    let mut response = built.unwrap_or_else(|e| {
        // Only a header value the server itself produced can get here.
        tracing::error!(target: LOG, error = %e, "could not build a response");
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    });
    let headers = response.headers_mut();
    headers.insert(SERVER, sh.server_header.clone());
    if close {
        headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// The non-BITS routes: the stats JSON; everything else is 404 or 405.
fn plain(sh: &Shared, method: &Method, path: &str) -> http::Result<Response<Full<Bytes>>> {
    let text = |status: StatusCode, body: &'static str| {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(CONTENT_LENGTH, body.len())
            .header(ALLOW, "GET, HEAD, BITS_POST")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
    };
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    if path != STATS_PATH {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let json = match serde_json::to_vec_pretty(&sh.stats()) {
        Ok(json) => json,
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "stats unavailable\n"),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, json.len())
        .body(Full::new(Bytes::from(json)))
}
