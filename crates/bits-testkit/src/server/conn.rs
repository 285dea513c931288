//! What the server knows about one TCP connection: its id, its ends, whether it is
//! TLS, and its Windows authentication state (which lives and dies with it).

use super::auth::AuthState;
use std::net::SocketAddr;
use std::sync::Mutex;

/// One accepted connection.
pub(crate) struct Conn {
    /// Unique per server process, from 1, in accept order.
    pub id: u64,
    pub peer: SocketAddr,
    /// The address the client connected to: replies are announced at it.
    pub local: SocketAddr,
    pub tls: bool,
    auth: Mutex<AuthState>,
}

impl Conn {
    pub(crate) fn new(id: u64, peer: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        Conn {
            id,
            peer,
            local,
            tls,
            auth: Mutex::new(AuthState::Anonymous),
        }
    }

    /// `http` or `https`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    pub(crate) fn with_auth<R>(&self, f: impl FnOnce(&mut AuthState) -> R) -> R {
        // Only this connection's requests touch the state, one at a time; a poisoned
        // lock cannot hold anything half-updated that matters.
        let mut guard = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The user this connection authenticated as, if it did.
    pub(crate) fn user(&self) -> Option<String> {
        self.with_auth(|state| match state {
            AuthState::Authenticated(user) => Some(user.clone()),
            _ => None,
        })
    }
}
