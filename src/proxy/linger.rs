//! What happens to a request body that bitsgate did not read because it answered the
//! request itself (413, 400, 500 session not found, 503, ...).
//!
//! Closing a socket with unread bytes in its receive queue makes Linux send a reset,
//! and a client still writing its fragment then gets `EPIPE`/`ECONNRESET` instead of
//! the Ack: it never learns to restart (not found) or to shrink its fragments (413).
//! So, as nginx's lingering close does, the rest of the body is read and discarded
//! after the Ack, bounded in time, before the connection is closed; a small rest is
//! drained and the connection kept for the next request.

use crate::config::ListenerConfig;
use http::header;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

/// Largest unread body after which the connection is still kept alive: draining it
/// costs no more than one read buffer. A larger one is drained (so the Ack arrives)
/// and the connection closed, so a client cannot make bitsgate read a large body it
/// refused and then go on using the connection.
pub const KEEPALIVE_DRAIN_MAX_BYTES: u64 = 64 << 10;

/// Whether the connection may stay open after a local answer to this request: its
/// body is framed by one clear `Content-Length` (or it has none), at most
/// [`KEEPALIVE_DRAIN_MAX_BYTES`] of it are left, and the client is not waiting for a
/// `100 Continue` (it may then never send the body it announced, and its next
/// request would be read as that body).
pub fn may_keep_alive(session: &Session) -> bool {
    let request = session.req_header();
    match declared_body_length(request) {
        Some(length) => {
            let left = length.saturating_sub(session.body_bytes_read() as u64);
            left <= KEEPALIVE_DRAIN_MAX_BYTES && !expects_continue(request)
        }
        None => false,
    }
}

/// Reads and discards what is left of the request body, for at most
/// `lingering_time` in all and `lingering_timeout` per read that brings nothing.
/// Returns whether the body was read to its end (the connection is then in a clean
/// state); on `false` it must be closed.
pub async fn discard_rest_of_body(session: &mut Session, listener: &ListenerConfig) -> bool {
    if session.is_body_done() {
        return true;
    }
    session.set_read_timeout(Some(listener.lingering_timeout));
    match tokio::time::timeout(listener.lingering_time, session.drain_request_body()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(target: "bitsgate::proxy", error = %e, "the rest of a refused request body could not be read");
            false
        }
        Err(_) => {
            tracing::debug!(target: "bitsgate::proxy", limit = ?listener.lingering_time, "gave up reading the rest of a refused request body");
            false
        }
    }
}

/// The body length the request announces: `Some(0)` without a body, `None` when it
/// is framed otherwise (chunked) or the framing is unclear (several different
/// `Content-Length` values, or one that is not a number).
pub(super) fn declared_body_length(request: &RequestHeader) -> Option<u64> {
    if request.headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    let mut values = request.headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Some(0);
    };
    if values.any(|other| other != first) {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

fn expects_continue(request: &RequestHeader) -> bool {
    request
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("BITS_POST", b"/u", None).expect("request");
        for (name, value) in headers {
            request
                .append_header(name.to_string(), *value)
                .expect("header");
        }
        request
    }

    #[test]
    fn the_declared_length_needs_one_clear_content_length() {
        assert_eq!(declared_body_length(&request(&[])), Some(0));
        assert_eq!(
            declared_body_length(&request(&[("Content-Length", "10")])),
            Some(10)
        );
        assert_eq!(
            declared_body_length(&request(&[
                ("Content-Length", "10"),
                ("Content-Length", "10")
            ])),
            Some(10)
        );
        assert_eq!(
            declared_body_length(&request(&[
                ("Content-Length", "10"),
                ("Content-Length", "11")
            ])),
            None
        );
        assert_eq!(
            declared_body_length(&request(&[("Content-Length", "ten")])),
            None
        );
        assert_eq!(
            declared_body_length(&request(&[
                ("Content-Length", "10"),
                ("Transfer-Encoding", "chunked")
            ])),
            None
        );
    }

    #[test]
    fn a_client_waiting_for_100_continue_is_recognised() {
        assert!(expects_continue(&request(&[("Expect", "100-Continue")])));
        assert!(!expects_continue(&request(&[])));
    }
}
