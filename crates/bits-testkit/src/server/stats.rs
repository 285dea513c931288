//! What the server saw: counters served as JSON at `GET /_bits/stats` and returned by
//! `ServerHandle::stats`, so tests can assert on traffic that reached this node.

use super::config::{MAX_CONNECTIONS_IN_STATS, MAX_ENDED_SESSIONS_IN_STATS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

/// Packet label of requests that were not BITS packets.
pub const LABEL_OTHER: &str = "other";
/// Packet label of BITS packets refused as malformed.
pub const LABEL_REJECTED: &str = "rejected";
/// Label of requests answered 401 by Windows authentication (challenges included).
pub const LABEL_UNAUTHORIZED: &str = "unauthorized";
/// Label of `HEAD` and `GET` requests for an upload-reply job's reply.
pub const LABEL_REPLY: &str = "reply";

/// A snapshot of the server's counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// The server's name.
    pub name: String,
    /// Every HTTP request received, BITS or not, valid or not.
    pub requests_total: u64,
    /// TCP connections accepted: with a client or proxy that keeps its connections
    /// alive, far fewer than requests.
    #[serde(default)]
    pub connections_total: u64,
    /// Requests by label: ping, create_session, fragment, close_session,
    /// cancel_session, rejected, unauthorized, reply, other.
    pub packets: BTreeMap<String, u64>,
    /// Sessions created and not yet closed, cancelled or expired (completed ones
    /// waiting for their Close-Session included).
    pub sessions_open: u64,
    /// Sessions whose file was committed to its destination.
    pub sessions_completed: u64,
    /// Sessions ended by Close-Session.
    pub sessions_closed: u64,
    /// Sessions ended by Cancel-Session.
    pub sessions_cancelled: u64,
    /// Sessions ended by the idle sweeper.
    pub sessions_expired: u64,
    /// Bytes written to session files.
    pub bytes_received: u64,
    /// By session id; ended sessions are kept, the newest 10,000 of them.
    pub sessions: BTreeMap<String, SessionStats>,
    /// By connection id (from 1, in accept order); the newest 10,000 connections.
    pub connections: BTreeMap<u64, ConnectionStats>,
}

/// One TCP connection as seen by this server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ConnectionStats {
    /// The client's address and port.
    pub peer: String,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Requests received on it.
    pub requests: u64,
    /// The user it authenticated as (`DOMAIN\user`), in Windows authentication mode.
    pub user: Option<String>,
    /// Whether the connection is closed.
    pub closed: bool,
    /// The `X-Forwarded-For` value of the latest request on it (values of repeated
    /// headers joined with ", "), so a test can see what a proxy in front added.
    #[serde(default)]
    pub last_forwarded_for: Option<String>,
}

/// Where a request came from: its connection and that connection's user.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin<'a> {
    pub conn: u64,
    pub user: Option<&'a str>,
}

/// One session as seen by this server (since it started: counters are not persisted).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SessionStats {
    /// Packets of this session by label.
    pub packets: BTreeMap<String, u64>,
    /// Bytes of this session written to disk.
    pub bytes: u64,
    /// open | completed | closed | cancelled | expired.
    pub state: String,
    /// Destination, relative to the upload root.
    pub path: String,
    /// Ids of the connections that carried its packets.
    pub connections: BTreeSet<u64>,
    /// Users whose connections carried its packets (Windows authentication mode).
    pub users: BTreeSet<String>,
    /// `HEAD` and `GET` requests for its reply (upload-reply mode).
    pub reply_requests: u64,
}

/// Life-cycle state of a session as reported in [`SessionStats::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Receiving fragments.
    Open,
    /// All bytes received and the file committed; waiting for Close-Session.
    Completed,
    /// Ended by Close-Session.
    Closed,
    /// Ended by Cancel-Session.
    Cancelled,
    /// Ended by the idle sweeper.
    Expired,
}

impl SessionState {
    /// The label used in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Completed => "completed",
            SessionState::Closed => "closed",
            SessionState::Cancelled => "cancelled",
            SessionState::Expired => "expired",
        }
    }

    fn is_ended(self) -> bool {
        matches!(
            self,
            SessionState::Closed | SessionState::Cancelled | SessionState::Expired
        )
    }
}

#[derive(Default)]
struct Inner {
    stats: Stats,
    /// Ended sessions, oldest first, so the oldest is dropped when over the bound.
    ended: VecDeque<String>,
}

/// The live counters. One short lock per update: never held across I/O.
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
}

impl Recorder {
    pub(crate) fn new(name: &str) -> Self {
        let mut inner = Inner::default();
        inner.stats.name = name.to_owned();
        Recorder {
            inner: Mutex::new(inner),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A panic while holding this lock cannot leave the counters inconsistent in a
        // way that matters, so a poisoned lock is simply taken over.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Registers a new connection (and counts it: the map keeps only the latest).
    pub(crate) fn connection_opened(&self, id: u64, peer: &str, tls: bool) {
        self.with(|inner| {
            inner.stats.connections_total += 1;
            let connections = &mut inner.stats.connections;
            connections.insert(
                id,
                ConnectionStats {
                    peer: peer.to_owned(),
                    tls,
                    ..ConnectionStats::default()
                },
            );
            while connections.len() > MAX_CONNECTIONS_IN_STATS {
                connections.pop_first();
            }
        });
    }

    /// Records the user a connection authenticated as.
    pub(crate) fn connection_user(&self, id: u64, user: &str) {
        self.with(|inner| {
            if let Some(c) = inner.stats.connections.get_mut(&id) {
                c.user = Some(user.to_owned());
            }
        });
    }

    /// Records the `X-Forwarded-For` of a request on connection `id`.
    pub(crate) fn connection_forwarded_for(&self, id: u64, value: Option<String>) {
        self.with(|inner| {
            if let Some(c) = inner.stats.connections.get_mut(&id) {
                c.last_forwarded_for = value;
            }
        });
    }

    /// Marks a connection closed.
    pub(crate) fn connection_closed(&self, id: u64) {
        self.with(|inner| {
            if let Some(c) = inner.stats.connections.get_mut(&id) {
                c.closed = true;
            }
        });
    }

    /// Counts one HTTP request and its label, and the packet against a known session.
    pub(crate) fn request(&self, label: &str, session: Option<&str>, from: Origin<'_>) {
        self.with(|inner| {
            inner.stats.requests_total += 1;
            *inner.stats.packets.entry(label.to_owned()).or_default() += 1;
            if let Some(c) = inner.stats.connections.get_mut(&from.conn) {
                c.requests += 1;
            }
            if let Some(s) = session.and_then(|id| inner.stats.sessions.get_mut(id)) {
                count_session_packet(s, label, from);
            }
        });
    }

    /// Counts a packet against a session that exists now (used for Create-Session,
    /// whose session only exists once the packet succeeded).
    pub(crate) fn session_packet(&self, id: &str, label: &str, from: Origin<'_>) {
        self.with(|inner| {
            if let Some(s) = inner.stats.sessions.get_mut(id) {
                count_session_packet(s, label, from);
            }
        });
    }

    /// Counts a request for a session's reply (besides [`Recorder::request`]).
    pub(crate) fn reply_request(&self, id: &str) {
        self.with(|inner| {
            if let Some(s) = inner.stats.sessions.get_mut(id) {
                s.reply_requests += 1;
            }
        });
    }

    /// Registers a session that is open or completed (new, or recovered after a restart).
    pub(crate) fn session_started(&self, id: &str, path: &str, state: SessionState) {
        self.with(|inner| {
            inner.stats.sessions_open += 1;
            inner.stats.sessions.insert(
                id.to_owned(),
                SessionStats {
                    path: path.to_owned(),
                    state: state.as_str().to_owned(),
                    ..SessionStats::default()
                },
            );
        });
    }

    /// Records bytes written to a session's file.
    pub(crate) fn bytes(&self, id: &str, n: u64) {
        self.with(|inner| {
            inner.stats.bytes_received += n;
            if let Some(s) = inner.stats.sessions.get_mut(id) {
                s.bytes += n;
            }
        });
    }

    /// Moves a session to a new state and counts the transition.
    pub(crate) fn transition(&self, id: &str, state: SessionState) {
        self.with(|inner| {
            let stats = &mut inner.stats;
            match state {
                SessionState::Open => {}
                SessionState::Completed => stats.sessions_completed += 1,
                SessionState::Closed => stats.sessions_closed += 1,
                SessionState::Cancelled => stats.sessions_cancelled += 1,
                SessionState::Expired => stats.sessions_expired += 1,
            }
            if state.is_ended() {
                stats.sessions_open = stats.sessions_open.saturating_sub(1);
                inner.ended.push_back(id.to_owned());
                while inner.ended.len() > MAX_ENDED_SESSIONS_IN_STATS {
                    if let Some(old) = inner.ended.pop_front() {
                        inner.stats.sessions.remove(&old);
                    }
                }
            }
            if let Some(s) = inner.stats.sessions.get_mut(id) {
                s.state = state.as_str().to_owned();
            }
        });
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> Stats {
        self.with(|inner| inner.stats.clone())
    }
}

fn count_session_packet(s: &mut SessionStats, label: &str, from: Origin<'_>) {
    *s.packets.entry(label.to_owned()).or_default() += 1;
    s.connections.insert(from.conn);
    if let Some(user) = from.user {
        s.users.insert(user.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: Origin<'static> = Origin {
        conn: 1,
        user: None,
    };

    #[test]
    fn counts_requests_and_session_packets() {
        let r = Recorder::new("n1");
        r.session_started("{a}", "x.bin", SessionState::Open);
        r.session_packet("{a}", "create_session", FROM);
        r.request("fragment", Some("{a}"), FROM);
        r.request("fragment", Some("{unknown}"), FROM);
        r.bytes("{a}", 10);
        r.transition("{a}", SessionState::Completed);
        r.transition("{a}", SessionState::Closed);
        let s = r.snapshot();
        assert_eq!(s.name, "n1");
        assert_eq!(s.requests_total, 2);
        assert_eq!(s.packets["fragment"], 2);
        assert_eq!(s.sessions["{a}"].packets["fragment"], 1);
        assert_eq!(s.sessions["{a}"].packets["create_session"], 1);
        assert_eq!(s.sessions["{a}"].bytes, 10);
        assert_eq!(s.sessions["{a}"].state, "closed");
        assert_eq!(
            (s.sessions_open, s.sessions_completed, s.sessions_closed),
            (0, 1, 1)
        );
        assert!(!s.sessions.contains_key("{unknown}"));
    }

    #[test]
    fn keeps_only_the_newest_ended_sessions() {
        let r = Recorder::new("n");
        r.session_started("open", "p", SessionState::Open);
        for i in 0..MAX_ENDED_SESSIONS_IN_STATS + 5 {
            let id = format!("{i}");
            r.session_started(&id, "p", SessionState::Open);
            r.transition(&id, SessionState::Cancelled);
        }
        let s = r.snapshot();
        assert_eq!(s.sessions.len(), MAX_ENDED_SESSIONS_IN_STATS + 1);
        assert!(s.sessions.contains_key("open"));
        assert!(!s.sessions.contains_key("0"));
        assert!(s
            .sessions
            .contains_key(&format!("{}", MAX_ENDED_SESSIONS_IN_STATS + 4)));
    }
}
