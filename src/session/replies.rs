//! Upload-reply routes: the path (and query) of each live session's reply, and the
//! backend that serves it.
//!
//! A BITS client downloads the reply of an upload-reply job with `HEAD` and ranged
//! `GET`s that carry no session id, on any connection, before its Close-Session; only
//! the node that ran the job has the reply. A route lives as long as its session: it
//! is valid while the session table still pins its session to its backend, so a route
//! whose session ended by any path (Close, Cancel, expiry, not-found, backend removed)
//! is dead even before it is removed.

use super::SessionKey;
use crate::backend::BackendSlot;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::RwLock;

/// Where a reply is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRoute {
    /// The upload-reply job's session.
    pub session: SessionKey,
    /// The backend that issued the reply URL (the session's owner).
    pub backend: BackendSlot,
}

/// Reply routes by path and query, and the path of each session's reply.
#[derive(Debug, Default)]
pub struct ReplyRoutes {
    inner: RwLock<Routes>,
    /// Routes held, read without the lock: the lookup of a `GET` costs an atomic load
    /// while no upload-reply job is running.
    len: AtomicUsize,
    /// Whether a reply URL naming neither a backend nor a relative path was logged.
    foreign_logged: AtomicBool,
}

#[derive(Debug, Default)]
struct Routes {
    by_path: HashMap<Box<str>, ReplyRoute>,
    by_session: HashMap<SessionKey, Box<str>>,
}

impl ReplyRoutes {
    /// Routes `path` (path and query, as the client will request it) to `backend` for
    /// `session`, replacing any earlier reply of that session and any route of that
    /// path.
    pub fn insert(&self, path: &str, session: SessionKey, backend: BackendSlot) {
        let mut routes = self.write();
        let routes = &mut *routes;
        if let Some(old) = routes.by_session.remove(&session) {
            routes.by_path.remove(&old);
        }
        if let Some(old) = routes.by_path.remove(path) {
            routes.by_session.remove(&old.session);
        }
        routes.by_session.insert(session.clone(), path.into());
        routes
            .by_path
            .insert(path.into(), ReplyRoute { session, backend });
        self.len.store(routes.by_path.len(), Ordering::Release);
    }

    /// The route of a request's path and query, if one is held (dead or alive: the
    /// caller checks its session).
    pub fn get(&self, path_and_query: &str) -> Option<ReplyRoute> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.read().by_path.get(path_and_query).cloned()
    }

    /// The reply path of a session, if it has one.
    pub fn path_of(&self, session: &SessionKey) -> Option<Box<str>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.read().by_session.get(session).cloned()
    }

    /// Drops the route of a session that ended; whether it had one.
    pub fn remove_session(&self, session: &SessionKey) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut routes = self.write();
        let Some(path) = routes.by_session.remove(session) else {
            return false;
        };
        routes.by_path.remove(&path);
        self.len.store(routes.by_path.len(), Ordering::Release);
        true
    }

    /// Keeps the routes `alive` accepts; returns how many were dropped.
    pub fn retain(&self, mut alive: impl FnMut(&ReplyRoute) -> bool) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut routes = self.write();
        let routes = &mut *routes;
        let before = routes.by_path.len();
        let by_session = &mut routes.by_session;
        routes.by_path.retain(|_, route| {
            let keep = alive(route);
            if !keep {
                by_session.remove(&route.session);
            }
            keep
        });
        self.len.store(routes.by_path.len(), Ordering::Release);
        before - routes.by_path.len()
    }

    /// Calls `f` with each session and its reply path (for a journal compaction).
    pub fn for_each(&self, mut f: impl FnMut(&SessionKey, &str)) {
        if self.len.load(Ordering::Acquire) == 0 {
            return;
        }
        for (session, path) in &self.read().by_session {
            f(session, path);
        }
    }

    /// Routes held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no route is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True the first time it is called: a reply URL that names another host is
    /// relayed as it is, and said once in the log rather than once per upload.
    pub fn first_foreign_reply_url(&self) -> bool {
        !self.foreign_logged.swap(true, Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Routes> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SessionKey {
        SessionKey::new(&format!("session-{n}"))
    }

    #[test]
    fn a_route_is_found_by_its_exact_path_and_query_and_leaves_with_its_session() {
        let routes = ReplyRoutes::default();
        assert_eq!(routes.get("/r/1"), None);
        routes.insert("/r/1?x=1", key(1), BackendSlot(2));
        routes.insert("/r/2", key(2), BackendSlot(0));
        assert_eq!(
            routes.get("/r/1?x=1").map(|r| r.backend),
            Some(BackendSlot(2))
        );
        assert_eq!(routes.get("/r/1"), None, "the query is part of the route");
        assert_eq!(routes.path_of(&key(2)).as_deref(), Some("/r/2"));
        assert!(routes.remove_session(&key(1)));
        assert!(!routes.remove_session(&key(1)));
        assert_eq!(routes.get("/r/1?x=1"), None);
        assert_eq!(routes.len(), 1);
    }

    #[test]
    fn a_new_reply_of_a_session_replaces_its_old_route() {
        let routes = ReplyRoutes::default();
        routes.insert("/r/old", key(1), BackendSlot(1));
        routes.insert("/r/new", key(1), BackendSlot(1));
        assert_eq!(routes.get("/r/old"), None);
        assert_eq!(routes.len(), 1);
        // The same path issued for another session: the newest wins.
        routes.insert("/r/new", key(2), BackendSlot(0));
        assert_eq!(routes.path_of(&key(1)), None);
        assert_eq!(routes.get("/r/new").map(|r| r.session), Some(key(2)));
    }

    #[test]
    fn retain_drops_dead_routes_both_ways() {
        let routes = ReplyRoutes::default();
        for n in 0..4 {
            routes.insert(&format!("/r/{n}"), key(n), BackendSlot(u16::from(n)));
        }
        assert_eq!(routes.retain(|r| r.backend.0 % 2 == 0), 2);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes.path_of(&key(1)), None);
        let mut seen = Vec::new();
        routes.for_each(|k, p| seen.push((k.clone(), p.to_owned())));
        seen.sort_by_key(|(_, p)| p.clone());
        assert_eq!(
            seen,
            [(key(0), "/r/0".to_owned()), (key(2), "/r/2".to_owned())]
        );
    }
}
