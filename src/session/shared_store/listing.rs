//! The store's sessions as the admin API lists them, read through the backends'
//! indexes (`owned:BACKEND`, scored by when each pin expires): counting the sessions of
//! a backend, or those idle for longer than some time, is one `ZCOUNT`; listing `n` of
//! them reads `n` entries and `n` pins. Nothing walks the keyspace, so the cost of an
//! answer follows its `limit`, not the number of pins.

use super::{value, RedisPins, SharedPin};
use crate::session::{unix_now, SessionKey, UnixSecs};

/// One session in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session id.
    pub id: String,
    /// Its pin.
    pub pin: SharedPin,
    /// When a replica last wrote its pin: at Create-Session, then at most once per
    /// activity interval while the owner answers its packets.
    pub written: UnixSecs,
}

/// A bounded listing.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every session that matches.
    pub total: u64,
    /// At most the `limit` asked for, each backend's longest idle first.
    pub sessions: Vec<StoredSession>,
}

/// The score range of live pins written more than `idle_over` seconds ago.
fn score_range(now: u64, ttl: u64, idle_over: Option<u64>) -> (String, String) {
    let max = match idle_over {
        Some(secs) => format!("({}", (now + ttl).saturating_sub(secs)),
        None => "+inf".to_owned(),
    };
    (format!("({now}"), max)
}

impl RedisPins {
    /// The sessions of `backends` (in that order) whose pin was written more than
    /// `idle_over` seconds ago (any, when `None`), with their total; at most `limit`.
    pub async fn list_sessions(
        &self,
        backends: Vec<String>,
        idle_over: Option<u64>,
        limit: usize,
    ) -> Result<Listing, String> {
        let keys = self.inner.keys.clone();
        let ttl = self.inner.ttl_secs;
        let (min, max) = score_range(u64::from(unix_now()), ttl, idle_over);
        let owned: Vec<String> = backends.iter().map(|b| keys.owned(b)).collect();
        let counts: Vec<u64> = {
            let (owned, min, max) = (owned.clone(), min.clone(), max.clone());
            self.ask_counted(move |mut c| async move {
                let mut pipe = ::redis::pipe();
                for key in &owned {
                    pipe.cmd("ZCOUNT").arg(key).arg(&min).arg(&max);
                }
                pipe.query_async(&mut c).await
            })
            .await?
        };
        let total = counts.iter().sum();
        // Only as many entries from each backend as the answer still has room for.
        let mut room = limit as u64;
        let mut wanted = Vec::new();
        for (key, count) in owned.into_iter().zip(counts) {
            let take = count.min(room);
            if take > 0 {
                wanted.push((key, take));
                room -= take;
            }
        }
        if wanted.is_empty() {
            return Ok(Listing {
                total,
                sessions: Vec::new(),
            });
        }
        let entries: Vec<Vec<(String, u64)>> = self
            .ask_counted(move |mut c| async move {
                let mut pipe = ::redis::pipe();
                for (key, take) in &wanted {
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(key)
                        .arg(&min)
                        .arg(&max)
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(*take);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        let entries: Vec<(String, u64)> = entries.into_iter().flatten().collect();
        let pins: Vec<String> = entries.iter().map(|(id, _)| keys.pin(id)).collect();
        // MGET with no key is an error to Redis, not an empty answer.
        let values: Vec<Option<Vec<u8>>> = if pins.is_empty() {
            Vec::new()
        } else {
            self.ask_counted(move |mut c| async move {
                ::redis::cmd("MGET").arg(pins).query_async(&mut c).await
            })
            .await?
        };
        // A pin deleted between the two reads is left out.
        let sessions = entries
            .into_iter()
            .zip(values)
            .filter_map(|((id, expires), value)| {
                let pin = value::decode(&value?)?;
                Some(StoredSession {
                    id,
                    pin,
                    written: written_at(expires, ttl),
                })
            })
            .collect();
        Ok(Listing { total, sessions })
    }

    /// One session of the store, `None` when it has no pin.
    pub async fn stored_session(&self, key: &SessionKey) -> Result<Option<StoredSession>, String> {
        let Some(pin) = self.lookup(key).await? else {
            return Ok(None);
        };
        let (owned, member) = (self.inner.keys.owned(&pin.backend), key.to_string());
        let expires: Option<u64> = self
            .ask_counted(move |mut c| async move {
                ::redis::cmd("ZSCORE")
                    .arg(owned)
                    .arg(member)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let ttl = self.inner.ttl_secs;
        Ok(Some(StoredSession {
            id: key.to_string(),
            written: expires.map_or(pin.created, |e| written_at(e, ttl)),
            pin,
        }))
    }
}

/// When a pin that expires at `expires` was written.
fn written_at(expires: u64, ttl: u64) -> UnixSecs {
    u32::try_from(expires.saturating_sub(ttl)).unwrap_or(UnixSecs::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_over_selects_pins_written_before_now_minus_the_idle_time() {
        // A pin written at 900 with a TTL of 1000 expires at 1900.
        let (min, max) = score_range(1000, 1000, Some(60));
        assert_eq!((min.as_str(), max.as_str()), ("(1000", "(1940"));
        assert_eq!(score_range(1000, 1000, None).1, "+inf");
        assert_eq!(written_at(1900, 1000), 900);
    }
}
