//! The farm's state every replica shares: the backends an operator drained, the
//! backends a reload retired, how many sessions each backend owns, and which sessions
//! ended. Each replica reads all of it with one poll (one round trip) every second;
//! see [`super::sync`] for what it does with the answer.

use super::RedisPins;
use crate::config::BackendConfig;
use crate::session::retired;
use crate::session::unix_now;
use ::redis::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Ended sessions read per poll at most; more wait for the next poll.
const ENDED_READ: usize = 5_000;

/// What one poll found.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Backend ids an operator drained.
    pub drained: HashSet<String>,
    /// Backends a reload retired, with the settings to reach them.
    pub retired: Vec<BackendConfig>,
    /// Live sessions of each backend polled.
    pub counts: HashMap<String, u64>,
    /// Ids of the sessions that ended since the last poll.
    pub ended: Vec<String>,
    /// The last ended session read, where the next poll goes on (`None`: none new).
    pub ended_until: Option<String>,
    /// Whether this replica recorded no drain while the poll was under way: only then
    /// does its drain set say what this replica last did.
    pub drains_current: bool,
}

/// The stream position before any entry.
pub const STREAM_START: &str = "0-0";

impl RedisPins {
    /// Records an operator's drain (or undrain) of `backend` for every replica, and
    /// waits until Redis has it.
    pub async fn set_drained(&self, backend: &str, drained: bool) -> Result<(), String> {
        let (set, id) = (self.inner.keys.drain(), backend.to_owned());
        let command = if drained { "SADD" } else { "SREM" };
        self.ask_counted(move |mut c| async move {
            ::redis::cmd(command)
                .arg(set)
                .arg(id)
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
        self.inner.drain_changes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Records that this replica retired `backend`; `only_if_missing` leaves a record
    /// another replica wrote alone. Not waited for: the next poll writes it again if
    /// it is missing.
    pub fn publish_retired(&self, backend: &BackendConfig, only_if_missing: bool) {
        let (hash, id, value) = (
            self.inner.keys.retired(),
            backend.id.clone(),
            retired::to_json(backend),
        );
        let command = if only_if_missing { "HSETNX" } else { "HSET" };
        let rx = self.spawn(move |mut c| async move {
            ::redis::cmd(command)
                .arg(hash)
                .arg(id)
                .arg(value)
                .query_async::<()>(&mut c)
                .await
        });
        self.count_failure(rx);
    }

    /// Removes the retired record of `backend` (its sessions ended, or a config lists
    /// it again). Not waited for.
    pub fn forget_retired(&self, backend: &str) {
        let (hash, id) = (self.inner.keys.retired(), backend.to_owned());
        let rx = self.spawn(move |mut c| async move {
            ::redis::cmd("HDEL")
                .arg(hash)
                .arg(id)
                .query_async::<()>(&mut c)
                .await
        });
        self.count_failure(rx);
    }

    /// The live sessions of `backend` in the store now (one `ZCOUNT`); recorded for
    /// [`RedisPins::sessions_of`].
    pub async fn count_sessions(&self, backend: &str) -> Result<u64, String> {
        let owned = self.inner.keys.owned(backend);
        let now = unix_now();
        let asked = Instant::now();
        let counted = self
            .ask_counted(move |mut c| async move {
                ::redis::cmd("ZCOUNT")
                    .arg(owned)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .query_async(&mut c)
                    .await
            })
            .await;
        let backend = backend.to_owned();
        self.record_counts(
            asked,
            std::iter::once((&backend, counted.as_ref().ok().copied())),
        );
        counted
    }

    /// The position of the newest ended session: a replica that starts has nothing
    /// cached, so older ends do not concern it.
    pub async fn ended_head(&self) -> Result<String, String> {
        let stream = self.inner.keys.ended();
        let last: Vec<(String, Value)> = self
            .ask(move |mut c| async move {
                ::redis::cmd("XREVRANGE")
                    .arg(stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(last
            .into_iter()
            .next()
            .map_or_else(|| STREAM_START.to_owned(), |(id, _)| id))
    }

    /// Reads the shared state, the live sessions of each of `backends` and the
    /// sessions ended after `ended_after`; with `trim`, also drops the index entries of
    /// pins Redis expired. One round trip. Records the counts for
    /// [`RedisPins::sessions_of`] (or that they are unknown when the poll fails).
    pub async fn poll(
        &self,
        backends: Vec<String>,
        ended_after: String,
        trim: bool,
    ) -> Result<Snapshot, String> {
        let keys = self.inner.keys.clone();
        let now = unix_now();
        let polled = backends.clone();
        let drains_before = self.inner.drain_changes.load(Ordering::SeqCst);
        let asked = Instant::now();
        let answer = self
            .ask(move |mut c| async move {
                let mut pipe = ::redis::pipe();
                pipe.cmd("SMEMBERS").arg(keys.drain());
                pipe.cmd("HGETALL").arg(keys.retired());
                pipe.cmd("XRANGE")
                    .arg(keys.ended())
                    .arg(format!("({ended_after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(ENDED_READ);
                for backend in &polled {
                    // Alive: expiring after now.
                    pipe.cmd("ZCOUNT")
                        .arg(keys.owned(backend))
                        .arg(format!("({now}"))
                        .arg("+inf");
                }
                if trim {
                    for backend in &polled {
                        pipe.cmd("ZREMRANGEBYSCORE")
                            .arg(keys.owned(backend))
                            .arg("-inf")
                            .arg(now)
                            .ignore();
                    }
                }
                pipe.query_async::<Vec<Value>>(&mut c).await
            })
            .await;
        let mut snapshot = answer.and_then(|values| read_snapshot(values, &backends));
        let counts = snapshot.as_ref().ok().map(|s| &s.counts);
        self.record_counts(
            asked,
            backends
                .iter()
                .map(|b| (b, counts.and_then(|c| c.get(b).copied()))),
        );
        if let Ok(snapshot) = &mut snapshot {
            snapshot.drains_current =
                self.inner.drain_changes.load(Ordering::SeqCst) == drains_before;
        }
        snapshot
    }
}

fn read_snapshot(values: Vec<Value>, backends: &[String]) -> Result<Snapshot, String> {
    let mut values = values.into_iter();
    let mut next = || values.next().ok_or("a short answer to the poll");
    let parse = |e: ::redis::ParsingError| e.to_string();
    let drained: HashSet<String> = ::redis::from_redis_value(next()?).map_err(parse)?;
    let retired_records: HashMap<String, String> =
        ::redis::from_redis_value(next()?).map_err(parse)?;
    let entries: Vec<(String, Vec<String>)> = ::redis::from_redis_value(next()?).map_err(parse)?;
    let mut counts = HashMap::new();
    for backend in backends {
        let count: u64 = ::redis::from_redis_value(next()?).map_err(parse)?;
        counts.insert(backend.clone(), count);
    }
    let mut retired = Vec::new();
    for (id, record) in retired_records {
        match retired::from_json(&record) {
            Some(backend) if backend.id == id => retired.push(backend),
            _ => {
                tracing::warn!(target: "bitsgate::store", backend = %id, "a retired backend's record in Redis cannot be read; ignored")
            }
        }
    }
    let ended_until = entries.last().map(|(id, _)| id.clone());
    let ended = entries
        .into_iter()
        .filter_map(|(_, fields)| match fields.as_slice() {
            [name, session] if name == "s" => Some(session.clone()),
            _ => None,
        })
        .collect();
    Ok(Snapshot {
        drained,
        retired,
        counts,
        ended,
        ended_until,
        drains_current: true,
    })
}
