//! Which sessions a `GET /sessions` lists or a `DELETE /sessions` cancels: one query
//! syntax for both, so what an operator lists is exactly what a bulk cancel would take.

use crate::backend::BackendSlot;
use crate::session::clients::ClientPins;
use crate::session::{Pin, SessionKey, UnixSecs};
use crate::state::Generation;
use std::net::IpAddr;

/// Sessions listed when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The most sessions one answer lists (and one bulk cancel from the Redis store takes).
pub const MAX_LIMIT: usize = 10_000;

/// A parsed query string.
#[derive(Debug, Default)]
pub struct SessionFilter {
    /// `backend=ID`: sessions owned by that backend.
    pub backend: Option<BackendSlot>,
    /// `idle_over=SECS`: sessions whose owner has not answered for longer than that.
    pub idle_over: Option<u64>,
    /// `client=IP`: sessions created from that address (tracked only while
    /// `[sessions] max_pinned_per_client` is on).
    pub client: Option<IpAddr>,
    /// `all=true`: an explicit "every session", which a bulk cancel needs to act on an
    /// unfiltered table.
    pub all: bool,
    /// `limit=N` (listing only).
    pub limit: usize,
}

impl SessionFilter {
    /// Reads `query`, resolving backend ids against `generation`.
    pub fn parse(query: Option<&str>, generation: &Generation) -> Result<SessionFilter, String> {
        let mut filter = SessionFilter {
            limit: DEFAULT_LIMIT,
            ..SessionFilter::default()
        };
        for (key, value) in query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
        {
            match key {
                "backend" => {
                    let id = super::decode(value);
                    let index = generation
                        .farm
                        .index_of_id(&id)
                        .ok_or_else(|| format!("no backend {id:?}"))?;
                    filter.backend = Some(generation.farm.backends[index].slot);
                }
                "idle_over" => {
                    let secs = value
                        .parse::<u64>()
                        .map_err(|_| "idle_over must be a number of seconds".to_owned())?;
                    filter.idle_over = Some(secs);
                }
                "client" => {
                    let ip = super::decode(value)
                        .parse::<IpAddr>()
                        .map_err(|_| "client must be an IP address".to_owned())?;
                    filter.client = Some(ip);
                }
                "all" => filter.all = value == "true",
                "limit" => {
                    let n = value
                        .parse::<usize>()
                        .map_err(|_| "limit must be a number".to_owned())?;
                    filter.limit = n.min(MAX_LIMIT);
                }
                _ => {}
            }
        }
        if filter.client.is_some() && !generation.config.sessions.max_pinned_per_client_on() {
            return Err(
                "client= needs [sessions] max_pinned_per_client: pins are tracked by client only while it is set"
                    .to_owned(),
            );
        }
        Ok(filter)
    }

    /// Whether the query narrows the table at all.
    pub fn narrows(&self) -> bool {
        self.backend.is_some() || self.idle_over.is_some() || self.client.is_some()
    }

    /// Whether the session `key` with `pin` is one of those asked for, at `now`.
    pub fn matches(
        &self,
        key: &SessionKey,
        pin: &Pin,
        now: UnixSecs,
        clients: &ClientPins,
    ) -> bool {
        self.backend.is_none_or(|slot| slot == pin.backend)
            && self
                .client
                .is_none_or(|ip| clients.client_of(key) == Some(ip))
            && self
                .idle_over
                .is_none_or(|secs| u64::from(now.saturating_sub(pin.last_seen)) > secs)
    }
}
