//! Answers bitsgate writes itself: BITS Acks for BITS packets, bare statuses otherwise.

use super::ctx::{LocalReason, RequestCtx};
use super::linger;
use crate::config::ListenerConfig;
use crate::metrics::Metrics;
use crate::routing::LocalReply;
use bits_proto::{Ack, ErrorCode, ErrorContext};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// The Ack for a routing decision answered locally.
pub fn ack_for_reply(reply: LocalReply) -> (Ack, LocalReason) {
    match reply {
        LocalReply::SessionNotFound => (Ack::session_not_found(), LocalReason::SessionNotFound),
        LocalReply::OwnerRemoved => (Ack::session_not_found(), LocalReason::OwnerRemoved),
        // No BITS error code: the client treats a bare 5xx as transient and retries.
        LocalReply::OwnerUnavailable => (Ack::new(503), LocalReason::OwnerUnavailable),
        LocalReply::NoBackend => (Ack::new(503), LocalReason::NoBackend),
    }
}

/// 413 for a fragment above the limit: the client shrinks its fragments.
pub fn fragment_too_large() -> Ack {
    Ack::new(413)
}

/// BITS_POST over HTTP/1.0: the protocol requires 1.1.
pub fn http_1_0() -> Ack {
    Ack::error(505, ErrorCode::INVALID_ARG, ErrorContext::REMOTE_FILE)
}

/// A local answer: a BITS Ack for a BITS packet, a bare status for anything else.
pub enum Answer {
    /// A BITS Ack; the request's session id is echoed when it had a valid one.
    Ack(Ack),
    /// A bare status with an empty body.
    Plain(u16),
}

impl Answer {
    /// The Ack for a BITS packet, or its bare status for a request that is not one.
    pub fn for_request(ctx: &RequestCtx, ack: Ack) -> Answer {
        if ctx.packet.is_some() {
            Answer::Ack(ack)
        } else {
            Answer::Plain(ack.status)
        }
    }
}

/// Writes a local answer, records why, and deals with the request body it leaves
/// unread (see [`linger`]): the connection stays open only when that body was small
/// and could be read to its end, and only if the caller left keep-alive on.
pub async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
    listener: &ListenerConfig,
    answer: Answer,
    reason: LocalReason,
) -> Result<()> {
    let header = local_header(ctx, metrics, answer, reason)?;
    if linger::may_keep_alive(session) {
        // Pingora would otherwise close a connection whose body was not read yet.
        session.set_close_on_response_before_downstream_finish(false);
    } else {
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(header), true)
        .await?;
    if !linger::discard_rest_of_body(session, listener).await {
        session.set_keepalive(None);
    }
    Ok(())
}

/// The header of a local answer, counted as answered locally for `reason`.
pub fn local_header(
    ctx: &mut RequestCtx,
    metrics: &Metrics,
    answer: Answer,
    reason: LocalReason,
) -> Result<ResponseHeader> {
    let header = match answer {
        Answer::Ack(ack) => {
            let echo = ctx
                .packet
                .as_ref()
                .and_then(|p| p.session.as_ref())
                .map(ToString::to_string);
            ack_header(ack, echo.as_deref())?
        }
        Answer::Plain(status) => plain_header(status)?,
    };
    record(ctx, metrics, header.status.as_u16(), reason);
    Ok(header)
}

/// The header of an Ack, echoing `session` when given.
fn ack_header(ack: Ack, echo_session: Option<&str>) -> Result<ResponseHeader> {
    let ack = match echo_session {
        Some(id) if ack.get(bits_proto::headers::SESSION_ID).is_none() => {
            ack.header(bits_proto::headers::SESSION_ID, id.to_owned())
        }
        _ => ack,
    };
    let mut header = ResponseHeader::build(ack.status, Some(ack.headers.len()))?;
    for (name, value) in &ack.headers {
        header.append_header(*name, value.as_ref())?;
    }
    Ok(header)
}

/// A bare status with an empty body (for requests that are not BITS packets).
fn plain_header(status: u16) -> Result<ResponseHeader> {
    let mut header = ResponseHeader::build(status, Some(1))?;
    header.append_header("Content-Length", "0")?;
    Ok(header)
}

fn record(ctx: &mut RequestCtx, metrics: &Metrics, status: u16, reason: LocalReason) {
    ctx.status = status;
    ctx.local = Some(reason);
    metrics
        .local_acks
        .with_label_values(&[reason.label()])
        .inc();
}
