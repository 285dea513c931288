//! Upload-reply routes in Redis, so a reply's `HEAD`/`GET` reaches its owner through
//! any replica: `reply:PATH` names the session and its backend, `replyof:SESSION`
//! names the path, so the session's end (at whichever replica) removes the route.
//! Both live as long as a pin: a route is only followed while its session's pin
//! exists, so one whose delete was lost is dead anyway, and expires.

use super::RedisPins;
use crate::session::store::PendingWrite;
use crate::session::SessionKey;

/// A route another replica learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedReply {
    /// The upload-reply session's id.
    pub session: String,
    /// The id of the backend that issued the reply URL.
    pub backend: String,
}

impl RedisPins {
    /// Records the reply route of `key`, owned by `backend`, at `path` (path and
    /// query); the future resolves once Redis has it (the Ack waits, as for a pin).
    pub fn route_reply(&self, key: &SessionKey, backend: &str, path: &str) -> PendingWrite {
        let keys = &self.inner.keys;
        let (route, reply_of) = (keys.reply(path), keys.reply_of(key));
        let (value, path) = (format!("{key}\n{backend}"), path.to_owned());
        let ttl = self.inner.ttl_secs;
        let rx = self.spawn(move |mut c| async move {
            ::redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(route)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("SET")
                .arg(reply_of)
                .arg(path)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        });
        self.pending(rx)
    }

    /// The route of a reply path, if any replica learnt one. `Err` when Redis could
    /// not be asked.
    pub async fn reply_route(&self, path: &str) -> Result<Option<SharedReply>, String> {
        let route = self.inner.keys.reply(path);
        let value = self
            .ask_counted(move |mut c| async move {
                ::redis::cmd("GET")
                    .arg(route)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await?;
        Ok(value.and_then(|v| {
            let (session, backend) = v.split_once('\n')?;
            Some(SharedReply {
                session: session.to_owned(),
                backend: backend.to_owned(),
            })
        }))
    }

    /// Removes a route found dead (its session has no pin any more). Not waited for.
    pub fn forget_reply(&self, path: &str) {
        let route = self.inner.keys.reply(path);
        let rx = self.spawn(move |mut c| async move {
            ::redis::cmd("DEL")
                .arg(route)
                .query_async::<()>(&mut c)
                .await
        });
        self.count_failure(rx);
    }
}
