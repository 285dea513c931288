//! Pins shared by several bitsgate replicas through Redis (or Valkey):
//! `[storage] mode = "redis"`.
//!
//! Each pin is one string key, `PREFIX pin:SESSION`, written (`SET … EX`) before the
//! Create-Session Ack is released, rewritten with a fresh TTL at most once per
//! activity interval per session and replica, and deleted on Close, Cancel and
//! not-found. Redis's TTL is the only expiry: a replica's table is a cache of the
//! store, and forgetting an idle cached pin neither deletes the key nor cancels the
//! session (the session may be busy at another replica). Every pin write also scores
//! the session in its backend's index (`owned:BACKEND`), in the same transaction, and
//! every delete removes it there and announces the end to the other replicas' caches
//! ([`keys`] lists every key). `docs/scaling.md` has the semantics, `docs/storage.md`
//! the data.
//!
//! Commands run on a runtime of their own, on one thread: the connection manager's
//! background task lives there, whatever Pingora runtime a request runs on, and the
//! connection can be made before Pingora starts its runtimes.

mod connection;
pub mod farm;
mod health;
pub mod keys;
pub mod listing;
pub mod lookup;
pub mod replies;
pub mod sync;
pub mod value;

use crate::config::redis::{redacted_url, RedisConfig};
use crate::session::store::{PendingWrite, StoreError};
use crate::session::{unix_now, SessionKey, UnixSecs};
use ::redis::aio::ConnectionManager;
use ::redis::RedisResult;
use connection::Connection;
use keys::Keys;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
pub use value::SharedPin;

/// Ended sessions the `ended` stream keeps (about; Redis trims it in whole nodes). A
/// replica that misses some (an outage longer than the stream) keeps their pins in
/// its cache until their owner answers not-found or they idle out.
const ENDED_KEPT: u64 = 10_000;

/// How often the store is pinged, so `/readyz` and the outage log follow Redis even
/// when no request does.
const PING_EVERY: Duration = Duration::from_secs(2);

/// The shared pin store. Cheap to clone.
#[derive(Clone)]
pub struct RedisPins {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    connection: Arc<Connection>,
    keys: Keys,
    /// Seconds a pin lives in Redis after its last write.
    ttl_secs: u64,
    /// Sessions per backend id in the store, as last counted.
    counts: RwLock<HashMap<String, Count>>,
    /// Drains and undrains this replica recorded, so a poll answered before one of
    /// them does not undo it here for a second.
    drain_changes: std::sync::atomic::AtomicU64,
    /// Failed commands made for requests (`bitsgate_store_errors_total`); pin writes are
    /// counted by their caller, pings not at all.
    errors: prometheus::IntCounter,
    /// Ends the runtime's thread when the last clone is dropped.
    _stop: oneshot::Sender<()>,
}

/// A backend's sessions in the store, and when the command that counted them was sent.
#[derive(Debug, Clone, Copy)]
struct Count {
    sessions: Option<u64>,
    asked: Instant,
}

impl RedisPins {
    /// Starts the store's thread; connects on first use. `ttl` is how long a pin
    /// outlives its last write, `errors` counts failed commands.
    pub fn start(
        config: &RedisConfig,
        ttl: Duration,
        errors: prometheus::IntCounter,
    ) -> anyhow::Result<RedisPins> {
        let connection = Arc::new(Connection::new(config)?);
        let (stop, stopped) = oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let pinger = Arc::downgrade(&connection);
        std::thread::Builder::new()
            .name("pin-store-redis".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.spawn(ping_while_alive(pinger));
                // Until the last clone of the store is dropped.
                let _ = runtime.block_on(stopped);
            })?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the Redis store thread did not start"))??;
        Ok(RedisPins {
            inner: Arc::new(Inner {
                runtime,
                connection,
                keys: Keys::new(&config.key_prefix),
                ttl_secs: ttl.as_secs().max(1),
                counts: RwLock::new(HashMap::new()),
                drain_changes: std::sync::atomic::AtomicU64::new(0),
                errors,
                _stop: stop,
            }),
        })
    }

    /// The Redis key of a session's pin.
    pub fn key(&self, key: &SessionKey) -> String {
        self.inner.keys.pin(key)
    }

    /// Seconds a pin lives in Redis after its last write.
    pub fn ttl_secs(&self) -> u64 {
        self.inner.ttl_secs
    }

    /// The sessions of `backend` in the store as last counted; `None` when the last
    /// count failed, or it was never counted (it joined the farm since the last poll).
    pub fn sessions_of(&self, backend: &str) -> Option<u64> {
        let counts = self.inner.counts.read().unwrap_or_else(|e| e.into_inner());
        counts.get(backend).and_then(|c| c.sessions)
    }

    /// Records the counts of a command sent at `asked` (`None`: it failed), except
    /// where a command sent later recorded one already: a poll sent before a session
    /// was created must not undo the count a reload made after it.
    fn record_counts<'a>(
        &self,
        asked: Instant,
        counted: impl Iterator<Item = (&'a String, Option<u64>)>,
    ) {
        let mut counts = self.inner.counts.write().unwrap_or_else(|e| e.into_inner());
        for (backend, sessions) in counted {
            match counts.get_mut(backend) {
                Some(count) if count.asked > asked => {}
                Some(count) => *count = Count { sessions, asked },
                None => {
                    counts.insert(backend.clone(), Count { sessions, asked });
                }
            }
        }
    }

    /// Runs `command` on the store's runtime; the result comes back whether or not
    /// the caller still waits for it.
    fn spawn<T, F, Fut>(&self, command: F) -> oneshot::Receiver<RedisResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let connection = self.inner.connection.clone();
        self.inner.runtime.spawn(async move {
            let _ = tx.send(connection.run(command).await);
        });
        rx
    }

    /// Runs `task` on the store's runtime and waits for its result from blocking code
    /// (a start, before any runtime of Pingora's runs), at most `limit`.
    pub fn wait_for<T, F, Fut>(&self, limit: Duration, task: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(RedisPins) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let store = self.clone();
        self.inner.runtime.spawn(async move {
            let _ = tx.send(task(store).await);
        });
        rx.recv_timeout(limit).ok()
    }

    /// Runs `command` and waits for its answer; `Err` holds the error's text. Not
    /// counted as a failure of a request (background work).
    async fn ask<T, F, Fut>(&self, command: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send,
    {
        match self.spawn(command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the Redis store stopped".into()),
        }
    }

    /// [`Self::ask`] for a request or an operator: a failure counts in
    /// `bitsgate_store_errors_total`.
    async fn ask_counted<T, F, Fut>(&self, command: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send,
    {
        let answer = self.ask(command).await;
        if answer.is_err() {
            self.inner.errors.inc();
        }
        answer
    }

    /// Writes a new pin; the future resolves once Redis has it. The caller holds the
    /// Create-Session Ack until then.
    pub fn pin(
        &self,
        key: &SessionKey,
        backend: &str,
        host: Option<&str>,
        path: &str,
        created: UnixSecs,
    ) -> PendingWrite {
        let rx = self.write_pin(key, backend, value::encode(backend, host, path, created));
        self.pending(rx)
    }

    /// A write the caller waits for, as the journal's writes are waited for.
    fn pending(&self, rx: oneshot::Receiver<RedisResult<()>>) -> PendingWrite {
        let (ack, acked) = oneshot::channel();
        self.inner.runtime.spawn(async move {
            let result = match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StoreError::Remote(e.to_string())),
                Err(_) => Err(StoreError::Closed),
            };
            let _ = ack.send(result);
        });
        PendingWrite::new(Ok(acked))
    }

    /// Writes a pin again with a fresh TTL (activity), without waiting. A rewrite
    /// rather than `EXPIRE`, so pins of active sessions come back after Redis lost
    /// its data.
    pub fn refresh(
        &self,
        key: &SessionKey,
        backend: &str,
        host: Option<&str>,
        path: &str,
        created: UnixSecs,
    ) {
        let rx = self.write_pin(key, backend, value::encode(backend, host, path, created));
        self.count_failure(rx);
    }

    /// The pin and its place in the backend's index, in one transaction, so the index
    /// never names a session whose pin write failed.
    fn write_pin(
        &self,
        key: &SessionKey,
        backend: &str,
        value: String,
    ) -> oneshot::Receiver<RedisResult<()>> {
        let keys = &self.inner.keys;
        let (pin, owned, member) = (keys.pin(key), keys.owned(backend), key.to_string());
        let ttl = self.inner.ttl_secs;
        let expires = u64::from(unix_now()) + ttl;
        self.spawn(move |mut c| async move {
            ::redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(pin)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("ZADD")
                .arg(owned)
                .arg(expires)
                .arg(member)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
    }

    /// Deletes a pin owned by `backend`, its index entry and its reply route, and
    /// announces its end to the other replicas' caches; without waiting: a delete lost
    /// to an outage leaves a key whose owner answers not-found, and which expires.
    pub fn unpin(&self, key: &SessionKey, backend: &str) {
        let rx = self.spawn(self.delete(key, backend));
        self.count_failure(rx);
    }

    /// As [`Self::unpin`], answering once Redis has done it.
    pub async fn unpin_now(&self, key: &SessionKey, backend: &str) -> Result<(), String> {
        self.ask_counted(self.delete(key, backend)).await
    }

    /// The command that deletes the pin of `key`, owned by `backend`.
    fn delete(
        &self,
        key: &SessionKey,
        backend: &str,
    ) -> impl FnOnce(
        ConnectionManager,
    ) -> std::pin::Pin<Box<dyn Future<Output = RedisResult<()>> + Send>>
           + Send
           + 'static {
        let (keys, backend, member) =
            (self.inner.keys.clone(), backend.to_owned(), key.to_string());
        move |mut c| Box::pin(async move { delete_pin(&mut c, &keys, &backend, &member).await })
    }

    /// Deletes every pin of `backend` in the store, as [`Self::unpin`] does each, in
    /// batches, without waiting: `[reload] removed_backends = "end"` ends the sessions
    /// of every replica, not only those this one cached.
    pub fn unpin_all_of(&self, backend: &str) {
        let (keys, backend) = (self.inner.keys.clone(), backend.to_owned());
        let rx = self.spawn(move |mut c| async move {
            loop {
                let batch: Vec<String> = ::redis::cmd("ZRANGE")
                    .arg(keys.owned(&backend))
                    .arg(0)
                    .arg(999)
                    .query_async(&mut c)
                    .await?;
                if batch.is_empty() {
                    return Ok(());
                }
                for member in &batch {
                    delete_pin(&mut c, &keys, &backend, member).await?;
                }
            }
        });
        self.count_failure(rx);
    }

    /// The pin of a session this replica does not hold. `Ok(None)` only when Redis
    /// answered that there is none (or a value this build cannot read).
    pub async fn lookup(&self, key: &SessionKey) -> Result<Option<SharedPin>, String> {
        let key = self.key(key);
        let value = self
            .ask_counted(move |mut c| async move {
                ::redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await?;
        Ok(value.as_deref().and_then(value::decode))
    }

    /// The error while Redis is unreachable, for `/readyz`.
    pub fn outage(&self) -> Option<String> {
        self.inner.connection.health.outage()
    }

    fn count_failure(&self, rx: oneshot::Receiver<RedisResult<()>>) {
        let errors = self.inner.errors.clone();
        self.inner.runtime.spawn(async move {
            if let Ok(Err(_)) = rx.await {
                errors.inc();
            }
        });
    }
}

/// Deletes the pin of session `member` owned by `backend`, its index entry and its
/// reply route, and announces its end on the stream of ended sessions.
async fn delete_pin(
    c: &mut ConnectionManager,
    keys: &Keys,
    backend: &str,
    member: &str,
) -> RedisResult<()> {
    // The reply path, if the session has one, whichever replica learnt it.
    let (reply,): (Option<String>,) = ::redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg(keys.pin(&member))
        .ignore()
        .cmd("ZREM")
        .arg(keys.owned(backend))
        .arg(member)
        .ignore()
        .cmd("XADD")
        .arg(keys.ended())
        .arg("MAXLEN")
        .arg("~")
        .arg(ENDED_KEPT)
        .arg("*")
        .arg("s")
        .arg(member)
        .ignore()
        .cmd("GETDEL")
        .arg(keys.reply_of(&member))
        .query_async(c)
        .await?;
    match reply {
        Some(path) => {
            ::redis::cmd("DEL")
                .arg(keys.reply(&path))
                .query_async::<()>(c)
                .await
        }
        None => Ok(()),
    }
}

/// Pings Redis every [`PING_EVERY`] while the store exists.
async fn ping_while_alive(connection: std::sync::Weak<Connection>) {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        let Some(connection) = connection.upgrade() else {
            return;
        };
        let _ = connection
            .run(|mut c| async move { ::redis::cmd("PING").query_async::<()>(&mut c).await })
            .await;
    }
}

/// Starts the shared store when the config asks for one (`[storage] mode = "redis"`).
pub fn start_for(shared: &crate::state::Shared) -> anyhow::Result<()> {
    let generation = shared.generation();
    let Some(config) = &generation.config.storage.redis else {
        return Ok(());
    };
    let sessions = &generation.config.sessions;
    // Refreshed at most once per activity interval by each replica that answers for
    // the session, so a pin outlives its last activity by at least `idle_timeout`.
    let interval = u64::from(sessions.activity_journal_interval());
    let ttl = sessions.idle_timeout + Duration::from_secs(interval);
    let store = RedisPins::start(config, ttl, shared.metrics.store_errors.clone())?;
    tracing::info!(target: "bitsgate::store", redis = %redacted_url(&config.url), prefix = %config.key_prefix, ttl_secs = ttl.as_secs(), "pins are shared through Redis");
    let _ = shared.redis.set(store);
    Ok(())
}
