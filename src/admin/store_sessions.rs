//! The session endpoints with the Redis store: they answer from the store, so every
//! replica lists and cancels the same sessions, not only those in its own cache. The
//! store indexes sessions by backend (see `session::shared_store::listing`), so an
//! answer costs what it lists, never a walk over every pin.

use super::filter::{SessionFilter, MAX_LIMIT};
use super::{not_pinned, views, Reply};
use crate::cancels::{CancelJob, CancelReason};
use crate::metrics::EndReason;
use crate::session::shared_store::listing::{Listing, StoredSession};
use crate::session::shared_store::RedisPins;
use crate::session::{SessionKey, SessionUrl};
use crate::state::{Generation, Shared};
use bits_proto::SessionId;
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;

/// The backend ids a filter covers: the one it names, or every backend of the farm.
fn backend_ids(shared: &Shared, generation: &Generation, filter: &SessionFilter) -> Vec<String> {
    match filter.backend {
        Some(slot) => vec![shared.backend_name(slot).to_string()],
        None => generation
            .farm
            .backends
            .iter()
            .map(|b| b.id.to_string())
            .collect(),
    }
}

fn unreachable(error: &str) -> Reply {
    Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the shared pin store (Redis) cannot be read: {error}"),
    )
}

/// The store's sessions a filter selects, at most `limit` of them.
async fn select(
    shared: &Shared,
    store: &RedisPins,
    filter: &SessionFilter,
    limit: usize,
) -> Result<Listing, Reply> {
    let ids = backend_ids(shared, &shared.generation(), filter);
    store
        .list_sessions(ids, filter.idle_over, limit)
        .await
        .map_err(|e| unreachable(&e))
}

/// `GET /sessions` from the store.
pub async fn list(shared: &Shared, store: &RedisPins, filter: &SessionFilter) -> Reply {
    match select(shared, store, filter, filter.limit).await {
        Ok(listing) => {
            let sessions: Vec<_> = listing
                .sessions
                .iter()
                .map(|s| views::stored_session(shared, s))
                .collect();
            Reply::json(
                StatusCode::OK,
                &json!({ "source": "store", "total": listing.total, "sessions": sessions }),
            )
        }
        Err(reply) => reply,
    }
}

/// `GET /sessions/{id}` of a session this replica has not cached.
pub async fn show(shared: &Shared, store: &RedisPins, key: &SessionKey) -> Reply {
    match store.stored_session(key).await {
        Ok(Some(stored)) => Reply::json(StatusCode::OK, &views::stored_session(shared, &stored)),
        Ok(None) => not_pinned(key),
        Err(e) => unreachable(&e),
    }
}

/// The Cancel-Session of a stored session, to its owner at the URL of its
/// Create-Session; `None` when this replica's config does not list the owner.
fn cancel_job(generation: &Generation, stored: &StoredSession) -> Option<CancelJob> {
    let index = generation.farm.index_of_id(&stored.pin.backend)?;
    Some(CancelJob {
        backend: generation.farm.backends[index].slot,
        session: stored.id.clone(),
        url: SessionUrl {
            host: stored.pin.host.as_deref().map(Arc::from),
            path: stored.pin.path.clone(),
        },
        reason: CancelReason::Admin,
    })
}

/// Removes a stored session's pin: from this replica's table when it caches it (its
/// gauges follow), and from the store before the answer, so a listing that follows
/// through any replica no longer shows it. Every replica's cache drops it at its next
/// poll. Returns whether the store confirmed the delete.
async fn unpin(
    shared: &Shared,
    store: &RedisPins,
    key: &SessionKey,
    stored: &StoredSession,
) -> bool {
    // The cache is dropped without a delete of its own: the store's is the one below.
    if shared.forget_cached(key, EndReason::Cancelled).is_some() {
        shared.publish_reply_routes();
    }
    store.unpin_now(key, &stored.pin.backend).await.is_ok()
}

/// `DELETE /sessions/{id}` of a session this replica has not cached: Cancel-Session at
/// its owner, then the pin is removed.
pub async fn cancel(shared: &Shared, store: &RedisPins, key: &SessionKey) -> Reply {
    let stored = match store.stored_session(key).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return not_pinned(key),
        Err(e) => return unreachable(&e),
    };
    let generation = shared.generation();
    let Some(job) = cancel_job(&generation, &stored) else {
        return Reply::error(
            StatusCode::CONFLICT,
            format!(
                "{key} is owned by {}, which this replica's config does not list; cancel it through a replica that lists it",
                stored.pin.backend
            ),
        );
    };
    let answer = shared.cancels.send_now(&generation, job).await;
    if !unpin(shared, store, key, &stored).await {
        return Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{key}: Cancel-Session was sent, but the shared pin store (Redis) did not confirm the pin's removal; retry"),
        );
    }
    Reply::json(
        StatusCode::OK,
        &json!({
            "session": key.to_string(),
            "unpinned": true,
            "cancel": answer.map(|a| json!({
                "status": a.status,
                "error_code": a.error_code.map(|c| c.to_string()),
            })),
        }),
    )
}

/// `DELETE /sessions?…` from the store: at most [`MAX_LIMIT`] sessions per call, each
/// unpinned at once, its owner sent a Cancel-Session from the background queue.
pub async fn cancel_many(
    shared: &Shared,
    store: &RedisPins,
    generation: &Generation,
    filter: &SessionFilter,
) -> Reply {
    let listing = match select(shared, store, filter, MAX_LIMIT).await {
        Ok(listing) => listing,
        Err(reply) => return reply,
    };
    let mut unpinned = 0u64;
    for stored in &listing.sessions {
        let Ok(id) = SessionId::validate(stored.id.as_bytes()) else {
            continue;
        };
        let key = SessionKey::new(id);
        if let Some(job) = cancel_job(generation, stored) {
            shared.cancels.submit(generation, job);
        }
        if unpin(shared, store, &key, stored).await {
            unpinned += 1;
        }
    }
    let remaining = listing.total.saturating_sub(unpinned);
    tracing::warn!(target: "bitsgate::admin", matched = listing.total, unpinned, remaining, "sessions cancelled in bulk from the shared store");
    Reply::json(
        StatusCode::OK,
        &json!({ "source": "store", "matched": listing.total, "unpinned": unpinned, "remaining": remaining }),
    )
}
