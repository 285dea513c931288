//! Where a request goes: a pure decision over the packet, the pin table's answer and
//! the current farm. No I/O, no Pingora types; every rule has a unit test.

mod balance;
mod bound;
#[cfg(test)]
mod tests;

use crate::backend::{BackendSlot, Farm};
use crate::config::BalancingPolicy;

pub use balance::{fnv1a, pick_ready};
pub use bound::bound_choice;

/// What kind of request is being routed, with the table's answer for session packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `Ping`.
    Ping,
    /// `Create-Session`.
    CreateSession,
    /// `Fragment`, `Close-Session` or `Cancel-Session`, with the pinned owner if known.
    SessionPacket {
        /// The owner the session table knows of.
        owner: Option<BackendSlot>,
    },
    /// `HEAD` or `GET` of a live upload-reply route, with the backend that issued it.
    Reply {
        /// The session's owner, which alone has the reply.
        owner: BackendSlot,
    },
    /// Anything else that is not a BITS packet.
    Other,
}

/// Everything `route` looks at besides the farm.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The request.
    pub target: Target,
    /// The backend the `Host` header names (rewrite/passthrough host names), if any.
    pub host_backend: Option<usize>,
    /// URL path, for the url-hash policy.
    pub path: &'a str,
    /// A per-request counter, for round robin.
    pub tick: u64,
    /// Backends already tried for this request (connect failed).
    pub exclude: &'a [usize],
}

/// A decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Forward to `farm.backends[i]`.
    Forward(usize),
    /// Answer locally.
    Local(LocalReply),
}

/// Local answers `route` can choose (the proxy turns them into Acks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalReply {
    /// The session is unknown: 500 + BG_E_SESSION_NOT_FOUND, so the client restarts.
    SessionNotFound,
    /// The owner is configured but down: 503, pin kept, the client retries later.
    OwnerUnavailable,
    /// The owner left the config: 500 + BG_E_SESSION_NOT_FOUND and the pin is dropped.
    OwnerRemoved,
    /// No backend may take the request: 503.
    NoBackend,
}

/// The routing rules of design.md, as one function.
pub fn route(
    request: &RouteRequest<'_>,
    farm: &Farm,
    policy: BalancingPolicy,
    sessions_of: &dyn Fn(BackendSlot) -> u64,
) -> Route {
    let host = request
        .host_backend
        .filter(|i| !request.exclude.contains(i));
    match request.target {
        Target::SessionPacket { owner: Some(slot) } => match farm.index_of(slot) {
            // Draining owners keep serving their sessions; only "down" stops them.
            Some(i) if farm.backends[i].status.is_up() && !request.exclude.contains(&i) => {
                Route::Forward(i)
            }
            Some(_) => Route::Local(LocalReply::OwnerUnavailable),
            None => Route::Local(LocalReply::OwnerRemoved),
        },
        // An unknown session whose Host names a backend: the client follows a
        // Host-Id, so the name itself says where the session lives (any replica, even
        // one that never saw the Create-Session, routes it right).
        Target::SessionPacket { owner: None } => match request.host_backend {
            Some(i) if farm.backends[i].status.is_up() && !request.exclude.contains(&i) => {
                Route::Forward(i)
            }
            Some(_) => Route::Local(LocalReply::OwnerUnavailable),
            None => Route::Local(LocalReply::SessionNotFound),
        },
        // A Ping to a Host-Id name prepares that node's connection: it must reach it.
        Target::Ping => match request.host_backend {
            Some(i) if farm.backends[i].status.is_up() && !request.exclude.contains(&i) => {
                Route::Forward(i)
            }
            Some(_) => Route::Local(LocalReply::OwnerUnavailable),
            None => any_ready(request, farm),
        },
        // A new session may go anywhere ready, whatever the Host says.
        Target::CreateSession => {
            match pick_ready(
                farm,
                policy,
                request.path,
                request.tick,
                request.exclude,
                sessions_of,
            ) {
                Some(i) => Route::Forward(i),
                None => Route::Local(LocalReply::NoBackend),
            }
        }
        // Only the owner has the reply: never another node, even when it is down.
        Target::Reply { owner } => match farm.index_of(owner) {
            Some(i) if farm.backends[i].status.is_up() && !request.exclude.contains(&i) => {
                Route::Forward(i)
            }
            Some(_) => Route::Local(LocalReply::OwnerUnavailable),
            // The owner left the farm: its session ended with it, and so did the route.
            None => other(host, request, farm),
        },
        Target::Other => other(host, request, farm),
    }
}

fn other(host: Option<usize>, request: &RouteRequest<'_>, farm: &Farm) -> Route {
    match host {
        Some(i) if farm.backends[i].status.is_up() => Route::Forward(i),
        _ => any_ready(request, farm),
    }
}

fn any_ready(request: &RouteRequest<'_>, farm: &Farm) -> Route {
    match pick_ready(
        farm,
        BalancingPolicy::RoundRobin,
        request.path,
        request.tick,
        request.exclude,
        &|_| 0,
    ) {
        Some(i) => Route::Forward(i),
        None => Route::Local(LocalReply::NoBackend),
    }
}
