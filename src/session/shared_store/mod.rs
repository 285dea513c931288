//! Pins shared by several bitsgate replicas through Redis (or Valkey):
//! `[storage] mode = "redis"`.
//!
//! Each pin is one string key, `PREFIX pin:SESSION`, written (`SET … EX`) before the
//! Create-Session Ack is released, rewritten with a fresh TTL at most once per
//! activity interval per session and replica, and deleted on Close, Cancel and
//! not-found. Redis's TTL is the only expiry: a replica's table is a cache of the
//! store, and forgetting an idle cached pin neither deletes the key nor cancels the
//! session (the session may be busy at another replica). `docs/scaling.md` has the
//! semantics, `docs/storage.md` the data.
//!
//! Commands run on a runtime of their own, on one thread: the connection manager's
//! background task lives there, whatever Pingora runtime a request runs on, and the
//! connection can be made before Pingora starts its runtimes.

mod health;
pub mod lookup;
pub mod value;

use crate::config::redis::{redacted_url, RedisConfig};
use crate::session::store::{PendingWrite, StoreError};
use crate::session::{SessionKey, UnixSecs};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{IntoConnectionInfo, RedisResult};
use health::Health;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, OnceCell};
pub use value::SharedPin;

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
    prefix: String,
    /// Seconds a pin lives in Redis after its last write.
    ttl_secs: u64,
    /// Failed commands made for requests (`bitsgate_store_errors_total`); pin writes are
    /// counted by their caller, pings not at all.
    errors: prometheus::IntCounter,
    /// Ends the runtime's thread when the last clone is dropped.
    _stop: oneshot::Sender<()>,
}

/// The client and its connection manager, made on first use (and again after a first
/// connect failed), with the health it reports to.
struct Connection {
    client: ::redis::Client,
    config: ConnectionManagerConfig,
    manager: OnceCell<ConnectionManager>,
    health: Health,
    /// For logs, without a password.
    url: String,
}

impl Connection {
    async fn run<T, F, Fut>(&self, command: F) -> RedisResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let result = match self
            .manager
            .get_or_try_init(|| {
                self.client
                    .get_connection_manager_with_config(self.config.clone())
            })
            .await
        {
            Ok(manager) => command(manager.clone()).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.health.succeeded(&self.url),
            Err(e) => self.health.failed(e, &self.url),
        }
        result
    }
}

impl RedisPins {
    /// Starts the store's thread; connects on first use. `ttl` is how long a pin
    /// outlives its last write, `errors` counts failed commands.
    pub fn start(
        config: &RedisConfig,
        ttl: Duration,
        errors: prometheus::IntCounter,
    ) -> anyhow::Result<RedisPins> {
        let mut info = config.url.as_str().into_connection_info()?;
        if let Some(password) = &config.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = ::redis::Client::open(info)?;
        // A command fails after `timeout` rather than waiting for reconnects: a
        // request answers 503 and its client retries.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = Arc::new(Connection {
            client,
            config: manager_config,
            manager: OnceCell::new(),
            health: Health::default(),
            url: redacted_url(&config.url),
        });
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
                prefix: config.key_prefix.clone(),
                ttl_secs: ttl.as_secs().max(1),
                errors,
                _stop: stop,
            }),
        })
    }

    /// The Redis key of a session's pin.
    pub fn key(&self, key: &SessionKey) -> String {
        format!("{}pin:{key}", self.inner.prefix)
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
        let rx = self.set(key, value::encode(backend, host, path, created));
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
        let rx = self.set(key, value::encode(backend, host, path, created));
        self.count_failure(rx);
    }

    fn set(&self, key: &SessionKey, value: String) -> oneshot::Receiver<RedisResult<()>> {
        let key = self.key(key);
        let ttl = self.inner.ttl_secs;
        self.spawn(move |mut c| async move {
            ::redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(&mut c)
                .await
        })
    }

    /// Deletes a pin, without waiting: a delete lost to an outage leaves a key whose
    /// owner answers not-found, and which expires.
    pub fn unpin(&self, key: &SessionKey) {
        let key = self.key(key);
        let rx = self.spawn(move |mut c| async move {
            ::redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await
        });
        self.count_failure(rx);
    }

    /// The pin of a session this replica does not hold. `Ok(None)` only when Redis
    /// answered that there is none (or a value this build cannot read).
    pub async fn lookup(&self, key: &SessionKey) -> Result<Option<SharedPin>, String> {
        let key = self.key(key);
        let rx = self.spawn(move |mut c| async move {
            ::redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
        });
        match rx.await {
            Ok(Ok(value)) => Ok(value.as_deref().and_then(value::decode)),
            Ok(Err(e)) => {
                self.inner.errors.inc();
                Err(e.to_string())
            }
            Err(_) => Err("the Redis store stopped".into()),
        }
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
