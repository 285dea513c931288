//! Every key bitsgate keeps in Redis, all under `redis_key_prefix`, named in one place.
//!
//! | key | type | what |
//! |---|---|---|
//! | `pin:SESSION` | string, TTL | the pin ([`super::value`]) |
//! | `owned:BACKEND` | sorted set | the backend's sessions, scored by when their pin expires |
//! | `drain` | set | backend ids an operator drained (admin API) |
//! | `retired` | hash | backend id → settings of a backend a reload retired |
//! | `ended` | stream | ids of sessions whose pin was removed, so caches drop them |
//! | `reply:PATH` | string, TTL | `SESSION\nBACKEND` of an upload-reply route |
//! | `replyof:SESSION` | string, TTL | the reply path of a session, so its end removes the route |
//!
//! `owned:` is what makes the farm's session counts and the admin listing cost one
//! command each instead of a walk over every pin.

use std::fmt::Display;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The pin of a session.
    pub fn pin(&self, session: &impl Display) -> String {
        format!("{}pin:{session}", self.prefix)
    }

    /// The sessions of a backend.
    pub fn owned(&self, backend: &str) -> String {
        format!("{}owned:{backend}", self.prefix)
    }

    /// The backends an operator drained.
    pub fn drain(&self) -> String {
        format!("{}drain", self.prefix)
    }

    /// The backends a reload retired.
    pub fn retired(&self) -> String {
        format!("{}retired", self.prefix)
    }

    /// The stream of ended sessions.
    pub fn ended(&self) -> String {
        format!("{}ended", self.prefix)
    }

    /// The route of an upload reply's path (and query).
    pub fn reply(&self, path: &str) -> String {
        format!("{}reply:{path}", self.prefix)
    }

    /// The reply path of a session.
    pub fn reply_of(&self, session: &impl Display) -> String {
        format!("{}replyof:{session}", self.prefix)
    }
}
