//! A replica that does not hold a session asks the shared store before routing its
//! packet, and caches the answer: only a definite "not there" may become a
//! session-not-found, which makes the client restart its upload from byte 0. The same
//! goes for the `HEAD`/`GET` of an upload reply another replica routed.

use super::{RedisPins, SharedPin};
use crate::proxy::RequestView;
use crate::session::{unix_now, Pin, SessionKey};
use crate::state::Shared;
use bits_proto::HeaderSource;
use bits_proto::{headers as h, SessionId};
use http::Method;

/// What the shared store said about a packet's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing to ask (no shared store, no session id, or held here), or asked and
    /// answered: the table now says what there is to know.
    Settled,
    /// The store could not be asked, or names an owner this replica cannot route
    /// to: the packet gets a bare 503, never session-not-found.
    Unsettled,
}

impl Shared {
    /// Before a request is decided: a session id the table does not hold is looked up
    /// in the shared store, and a pin found there is cached in the table; a `HEAD` or
    /// `GET` without one may be the download of a reply another replica routed.
    pub async fn look_up_shared<R: RequestView + ?Sized>(&self, req: &R) -> Lookup {
        let Some(store) = self.redis.get() else {
            return Lookup::Settled;
        };
        let Some(id) = req.headers().first(&h::names::SESSION_ID) else {
            if req.method() == Method::GET || req.method() == Method::HEAD {
                self.look_up_shared_reply(store, req.path_and_query()).await;
            }
            return Lookup::Settled;
        };
        let Ok(id) = SessionId::validate(id) else {
            return Lookup::Settled;
        };
        let key = SessionKey::new(id);
        if self.table.owner(&key).is_some() {
            return Lookup::Settled;
        }
        match store.lookup(&key).await {
            Ok(None) => Lookup::Settled,
            Ok(Some(pin)) => self.cache_shared_pin(key, pin),
            Err(e) => {
                // The outage itself is logged once, by the store.
                tracing::debug!(target: "bitsgate::store", session = %key, error = %e, "cannot look the session up in the shared store; answered 503");
                Lookup::Unsettled
            }
        }
    }

    /// Takes over the reply route of `path` another replica learnt, while its session
    /// lives. Redis unreachable: the request is routed as one that is not a reply
    /// (the client retries a download that fails).
    async fn look_up_shared_reply(&self, store: &RedisPins, path: &str) {
        if self.reply_owner(path).is_some() {
            return;
        }
        let route = match store.reply_route(path).await {
            Ok(Some(route)) => route,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(target: "bitsgate::store", path, error = %e, "cannot look a reply route up in the shared store; routed as any request");
                return;
            }
        };
        let Ok(id) = SessionId::validate(route.session.as_bytes()) else {
            return;
        };
        let key = SessionKey::new(id);
        let generation = self.generation();
        let Some(backend) = generation
            .farm
            .index_of_id(&route.backend)
            .map(|i| &generation.farm.backends[i])
        else {
            return;
        };
        if self.table.owner(&key) != Some(backend.slot) {
            match store.lookup(&key).await {
                Ok(Some(pin)) if pin.backend == route.backend => {
                    self.cache_shared_pin(key.clone(), pin);
                }
                // The session ended: its route is dead.
                Ok(_) => {
                    store.forget_reply(path);
                    return;
                }
                Err(_) => return,
            }
        }
        if self.table.owner(&key) == Some(backend.slot) {
            self.replies.insert(path, key, backend.slot);
            self.publish_reply_routes();
        }
    }

    /// Puts a pin another replica created into this replica's table. Its idle clock
    /// starts now, and its stored activity is taken as old, so this replica's first
    /// answer for it refreshes the key's TTL.
    fn cache_shared_pin(&self, key: SessionKey, pin: SharedPin) -> Lookup {
        let generation = self.generation();
        let Some(backend) = generation
            .farm
            .index_of_id(&pin.backend)
            .map(|i| &generation.farm.backends[i])
        else {
            // Replicas with different backend lists: another replica may route it.
            // Dropping the pin here would delete it for every replica.
            tracing::debug!(target: "bitsgate::store", session = %key, backend = %pin.backend, "the shared store pins the session to a backend this replica does not know; answered 503");
            return Lookup::Unsettled;
        };
        let url = self.urls.intern(pin.host.as_deref(), &pin.path);
        self.table.restore(
            key,
            Pin {
                backend: backend.slot,
                url,
                created: pin.created,
                last_seen: unix_now(),
                journaled_seen: 0,
                packets: 0,
                bytes: 0,
            },
        );
        self.metrics.sessions_restored(&backend.id, 1);
        Lookup::Settled
    }
}
