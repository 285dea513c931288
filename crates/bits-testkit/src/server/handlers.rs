//! What each BITS packet does to a session (spec §4 to §6), as Acks (spec §5, §8).

use super::conn::Conn;
use super::paths::RelPath;
use super::reply;
use super::session::{Session, Slot};
use super::stats::{Origin, SessionState};
use super::storage::{DestinationError, SessionMeta};
use super::upload::{self, End};
use super::Shared;
use bits_proto::headers as h;
use bits_proto::{Ack, ContentRange, ErrorCode, ErrorContext, SupportedProtocols};
use hyper::body::Incoming;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::MutexGuard;
use tracing::{debug, info, warn};

const LOG: &str = "bits_server";

/// An Ack and whether the connection must close after it (the request body was left
/// unread, so the next request on the connection could not be found).
#[derive(Debug)]
pub(crate) struct Reply {
    pub ack: Ack,
    pub close: bool,
}

impl Reply {
    fn keep(ack: Ack) -> Self {
        Reply { ack, close: false }
    }

    fn closing(ack: Ack) -> Self {
        Reply { ack, close: true }
    }
}

fn not_found(id: &str) -> Ack {
    Ack::session_not_found().header(h::SESSION_ID, id.to_owned())
}

fn invalid_arg(id: &str) -> Ack {
    Ack::invalid_arg().header(h::SESSION_ID, id.to_owned())
}

fn access_denied() -> Ack {
    Ack::error(403, ErrorCode::ACCESS_DENIED, ErrorContext::REMOTE_FILE)
}

/// 500 for a failed disk operation; "disk full" gets its own code so operators see it.
fn io_failure(e: &io::Error) -> Ack {
    const ENOSPC: i32 = 28;
    let code = if e.raw_os_error() == Some(ENOSPC) {
        ErrorCode::DISK_FULL
    } else {
        ErrorCode::FAIL
    };
    warn!(target: LOG, error = %e, "disk operation failed");
    Ack::error(500, code, ErrorContext::REMOTE_FILE)
}

fn destination_failure(e: &DestinationError) -> Ack {
    match e {
        DestinationError::Exists => access_denied(),
        DestinationError::Invalid => Ack::invalid_arg(),
        DestinationError::Io(e) => io_failure(e),
    }
}

/// A fresh session id: random, or derived from the path and the count of sessions
/// created so far when `ids_from_path` is set.
fn new_session_id(sh: &Shared, path: &str) -> String {
    if !sh.config.ids_from_path {
        return format!("{{{}}}", uuid::Uuid::new_v4());
    }
    let n = sh
        .ids_issued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // FNV-1a over the path and the count, twice with different offsets for 128 bits.
    let fnv = |offset: u64| {
        let mut hash = offset;
        for byte in path.bytes().chain(n.to_le_bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    };
    let value =
        (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x6c62_272e_07bb_0142));
    format!("{{{}}}", uuid::Uuid::from_u128(value))
}

/// Create-Session: pick the protocol, map the URL to a destination, open a session.
pub(crate) async fn create_session(
    sh: &Shared,
    protocols: Option<SupportedProtocols<'_>>,
    url_path: &str,
    from: Origin<'_>,
) -> Reply {
    let Some(protocol) = protocols.and_then(|p| p.choose()) else {
        debug!(target: LOG, "create-session without BITS 1.5 in BITS-Supported-Protocols");
        return Reply::keep(Ack::invalid_arg());
    };
    let storage = &sh.storage;
    let dest = match RelPath::from_url_path(url_path)
        .and_then(|rel| Ok((rel.under(&storage.root, &storage.sessions_dir)?, rel)))
    {
        Ok(found) => found,
        Err(e) => {
            info!(target: LOG, reason = %e, "refused upload URL");
            return Reply::keep(Ack::invalid_arg());
        }
    };
    let (dest, rel) = dest;
    if let Err(e) = storage
        .check_destination(&dest, sh.config.allow_overwrite)
        .await
    {
        info!(target: LOG, path = %rel.as_string(), reason = %e, "refused upload destination");
        return Reply::keep(destination_failure(&e));
    }
    let meta = SessionMeta {
        id: new_session_id(sh, &rel.as_string()),
        path: rel.as_string(),
        total: None,
        completed: false,
    };
    if let Err(e) = storage.create(&meta).await {
        return Reply::keep(io_failure(&e));
    }
    let id = meta.id.clone();
    sh.stats
        .session_started(&id, &meta.path, SessionState::Open);
    sh.stats.session_packet(&id, "create_session", from);
    info!(target: LOG, session = %id, path = %meta.path, "session created");
    sh.sessions.insert(
        Session {
            meta,
            dest,
            next: 0,
            ended: false,
            reply: None,
        },
        Duration::ZERO,
    );
    let mut ack = Ack::create_session_ok(&id, protocol);
    if let Some(host) = &sh.config.host_id {
        ack = ack.header(h::HOST_ID, host.clone());
        if let Some(timeout) = sh.config.host_id_fallback_timeout {
            ack = ack.header(h::HOST_ID_FALLBACK_TIMEOUT, timeout.to_string());
        }
    }
    Reply::keep(ack)
}

/// Looks a session up and takes its lock; `None` when it does not exist (any more).
async fn lock<'a>(sh: &Shared, slot: &'a Arc<Slot>) -> Option<MutexGuard<'a, Session>> {
    let session = slot.session.lock().await;
    if session.ended {
        return None;
    }
    sh.sessions.touch(slot);
    Some(session)
}

/// Fragment: append the new bytes at `next`, commit when the last byte arrived.
pub(crate) async fn fragment(
    sh: &Shared,
    conn: &Conn,
    id: &str,
    range: ContentRange,
    mut body: Incoming,
) -> Reply {
    if range.len() > sh.config.max_fragment {
        // Refuse before reading a byte: the client shrinks its fragments (spec §6).
        let ack = Ack::error(413, ErrorCode::http_error(413), ErrorContext::REMOTE_FILE);
        return Reply::closing(ack.header(h::SESSION_ID, id.to_owned()));
    }
    let Some(slot) = sh.sessions.get(id) else {
        return Reply::closing(not_found(id));
    };
    let Some(mut s) = lock(sh, &slot).await else {
        return Reply::closing(not_found(id));
    };
    let was_completed = s.meta.completed;
    let reply = fragment_locked(sh, conn, &mut s, range, &mut body).await;
    let completed_now = !was_completed && s.meta.completed;
    sh.sessions.touch(&slot);
    drop(s);
    if completed_now && sh.config.reply && !sh.config.reply_delay.is_zero() {
        // A server application producing the reply: the final Ack waits for it, the
        // session does not (other packets, and the sweeper, may go on meanwhile).
        debug!(target: LOG, session = %id, delay = ?sh.config.reply_delay, "holding the final Ack");
        tokio::time::sleep(sh.config.reply_delay).await;
    }
    reply
}

async fn fragment_locked(
    sh: &Shared,
    conn: &Conn,
    s: &mut Session,
    range: ContentRange,
    body: &mut Incoming,
) -> Reply {
    let id = s.meta.id.clone();
    if range.total > sh.config.max_upload {
        let ack = Ack::error(500, ErrorCode::TOO_LARGE, ErrorContext::REMOTE_FILE);
        return Reply::closing(ack.header(h::SESSION_ID, id));
    }
    match s.meta.total {
        Some(total) if total != range.total => {
            info!(target: LOG, session = %id, total, sent = range.total, "total length changed");
            return Reply::closing(invalid_arg(&id));
        }
        Some(_) => {}
        None => {
            s.meta.total = Some(range.total);
            if let Err(e) = sh.storage.write_meta(&s.meta).await {
                s.meta.total = None;
                return Reply::closing(io_failure(&e).header(h::SESSION_ID, id));
            }
        }
    }
    if range.first > s.next {
        // No sparse ranges: the client resends from `next` (spec §6).
        return Reply::closing(Ack::fragment_out_of_sync(&id, s.next));
    }
    let skip = s.next - range.first;
    let wanted = (range.last + 1).saturating_sub(s.next);
    let file = if wanted > 0 {
        match sh.storage.open_part(&id, s.next).await {
            Ok(file) => Some(file),
            Err(e) => return Reply::closing(io_failure(&e).header(h::SESSION_ID, id)),
        }
    } else {
        None
    };
    let received = upload::receive(body, skip, file).await;
    match received.end {
        End::Failed(e) => {
            // Unknown how much reached the disk: the next open cuts back to `next`.
            return Reply::closing(io_failure(&e).header(h::SESSION_ID, id));
        }
        End::CutShort => {
            s.next += received.written;
            sh.stats.bytes(&id, received.written);
            debug!(target: LOG, session = %id, next = s.next, "fragment cut short");
            return Reply::closing(Ack::fragment_out_of_sync(&id, s.next));
        }
        End::Complete => {
            s.next += received.written;
            sh.stats.bytes(&id, received.written);
        }
    }
    if s.next == range.total && !s.meta.completed {
        if let Err(e) = commit(sh, s).await {
            return Reply::keep(destination_failure(&e).header(h::SESSION_ID, id));
        }
    }
    let mut ack = Ack::fragment_ok(&id, s.next);
    if sh.config.reply && s.meta.completed && s.meta.total == Some(s.next) {
        // Also on a resent final Fragment: the same Reply-URL again (spec §6).
        if let Err(e) = reply::body(s).await {
            return Reply::keep(io_failure(&e).header(h::SESSION_ID, id));
        }
        let host = sh.config.reply_host.as_deref();
        ack = ack.header(h::REPLY_URL, reply::url(conn, host, &id));
    }
    Reply::keep(ack)
}

/// Places the finished file at its destination and marks the session completed.
async fn commit(sh: &Shared, s: &mut Session) -> Result<(), DestinationError> {
    let storage = &sh.storage;
    storage
        .commit(&mut s.meta, &s.dest, sh.config.allow_overwrite)
        .await
        .inspect_err(|e| warn!(target: LOG, session = %s.meta.id, error = %e, "commit failed"))?;
    info!(target: LOG, session = %s.meta.id, path = %s.meta.path, bytes = s.next, "upload completed");
    sh.stats.transition(&s.meta.id, SessionState::Completed);
    Ok(())
}

/// Ends a session: deletes what is left on disk and forgets it.
async fn end(sh: &Shared, s: &mut Session, state: SessionState) {
    let id = s.meta.id.clone();
    if let Err(e) = sh.storage.remove(&id).await {
        warn!(target: LOG, session = %id, error = %e, "could not delete session files");
    }
    s.ended = true;
    sh.sessions.remove(&id);
    sh.stats.transition(&id, state);
    info!(target: LOG, session = %id, state = state.as_str(), "session ended");
}

/// Close-Session: the session is done. Complete data stays where it was committed;
/// incomplete data is deleted (no partial uploads, spec §4). A session that received no
/// fragment is a 0-byte upload and commits an empty file.
pub(crate) async fn close_session(sh: &Shared, id: &str) -> Reply {
    let Some(slot) = sh.sessions.get(id) else {
        return Reply::keep(not_found(id));
    };
    let Some(mut s) = lock(sh, &slot).await else {
        return Reply::keep(not_found(id));
    };
    if !s.meta.completed && s.meta.total.is_none() && s.next == 0 {
        match commit(sh, &mut s).await {
            Ok(()) => {}
            Err(DestinationError::Io(e)) => {
                // Transient: the client retries Close on 5xx (spec §5), so keep it.
                return Reply::keep(io_failure(&e).header(h::SESSION_ID, id.to_owned()));
            }
            Err(e) => {
                end(sh, &mut s, SessionState::Closed).await;
                return Reply::keep(destination_failure(&e).header(h::SESSION_ID, id.to_owned()));
            }
        }
    }
    end(sh, &mut s, SessionState::Closed).await;
    Reply::keep(Ack::close_session_ok(id))
}

/// Cancel-Session: delete the temp data; a file already committed stays (spec §4).
pub(crate) async fn cancel_session(sh: &Shared, id: &str, url_path: &str) -> Reply {
    let Some(slot) = sh.sessions.get(id) else {
        return Reply::keep(not_found(id));
    };
    let Some(mut s) = lock(sh, &slot).await else {
        return Reply::keep(not_found(id));
    };
    if sh.config.require_session_url
        && RelPath::from_url_path(url_path)
            .map(|rel| rel.as_string())
            .ok()
            != Some(s.meta.path.clone())
    {
        info!(target: LOG, session = %id, url = %url_path, "Cancel-Session sent to another URL than its session's");
        return Reply::keep(invalid_arg(id));
    }
    end(sh, &mut s, SessionState::Cancelled).await;
    Reply::keep(Ack::cancel_session_ok(id))
}

/// Expires a session unless a packet holds it right now (then it is not idle).
pub(crate) async fn expire(sh: &Shared, slot: &Arc<Slot>) {
    let Ok(mut s) = slot.session.try_lock() else {
        return;
    };
    if s.ended || sh.sessions.idle_for(slot) < sh.config.session_idle_timeout {
        return;
    }
    end(sh, &mut s, SessionState::Expired).await;
}
