//! The one connection to Redis every command of a replica goes through: made on first
//! use, re-established by the connection manager, and, with sentinels, pointed at
//! whichever server they name master now.

use super::health::Health;
use crate::config::redis::{redacted_url, RedisConfig};
use crate::config::sentinel::SentinelUrl;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, RedisResult};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Where the server is.
enum Target {
    /// At the configured URL.
    Direct(::redis::Client),
    /// Wherever the sentinels say the master is.
    Sentinel {
        sentinels: Mutex<SentinelClient>,
        /// How long asking them may take.
        limit: Duration,
    },
}

/// After a failed connect, commands fail at once for this long rather than each
/// trying again: while Redis (or every sentinel) is away, requests queued behind one
/// attempt would otherwise wait for one attempt each.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// The client and its connection manager, made on first use (and again after a first
/// connect failed, or after the master moved), with the health it reports to.
pub struct Connection {
    target: Target,
    config: ConnectionManagerConfig,
    state: Mutex<State>,
    pub(super) health: Health,
    /// For logs, without a password.
    url: String,
}

impl Connection {
    /// A connection to the server `config` names; nothing is connected yet.
    pub fn new(config: &RedisConfig) -> RedisResult<Connection> {
        let target = match &config.sentinel {
            None => {
                let mut info = config.url.as_str().into_connection_info()?;
                if let Some(password) = &config.password {
                    let settings = info.redis_settings().clone().set_password(password);
                    info = info.set_redis_settings(settings);
                }
                Target::Direct(::redis::Client::open(info)?)
            }
            Some(sentinel) => Target::Sentinel {
                sentinels: Mutex::new(sentinel_client(sentinel, config.password.as_deref())?),
                limit: config.connect_timeout + config.timeout,
            },
        };
        // A command fails after `timeout` rather than waiting for reconnects: a
        // request answers 503 and its client retries.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        Ok(Connection {
            target,
            config: manager_config,
            state: Mutex::new(State::default()),
            health: Health::default(),
            url: redacted_url(&config.url),
        })
    }

    /// Runs `command` on the connection, and records how it went.
    pub async fn run<T, F, Fut>(&self, command: F) -> RedisResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let result = match self.manager().await {
            Ok(manager) => command(manager).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.health.succeeded(&self.url),
            Err(e) => {
                if matches!(self.target, Target::Sentinel { .. }) && master_may_have_moved(e) {
                    // The next command asks the sentinels again.
                    self.state.lock().await.manager = None;
                }
                self.health.failed(e, &self.url);
            }
        }
        result
    }

    async fn manager(&self) -> RedisResult<ConnectionManager> {
        let mut state = self.state.lock().await;
        if let Some(manager) = state.manager.as_ref() {
            return Ok(manager.clone());
        }
        if let Some((at, error)) = &state.failed {
            if at.elapsed() < RECONNECT_PAUSE {
                return Err(error.clone());
            }
        }
        match self.connect().await {
            Ok(manager) => {
                *state = State {
                    manager: Some(manager.clone()),
                    failed: None,
                };
                Ok(manager)
            }
            Err(e) => {
                state.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// A connection manager to the server, or to the master the sentinels name now.
    async fn connect(&self) -> RedisResult<ConnectionManager> {
        let client = match &self.target {
            Target::Direct(client) => client.clone(),
            Target::Sentinel { sentinels, limit } => {
                let mut sentinels = sentinels.lock().await;
                tokio::time::timeout(*limit, sentinels.async_get_client())
                    .await
                    .map_err(|_| {
                        RedisError::from((
                            ::redis::ErrorKind::Io,
                            "the sentinels did not name a master in time",
                        ))
                    })??
            }
        };
        client
            .get_connection_manager_with_config(self.config.clone())
            .await
    }
}

/// The connection manager once made, or the last failure to make one.
#[derive(Default)]
struct State {
    manager: Option<ConnectionManager>,
    failed: Option<(Instant, RedisError)>,
}

/// Whether an error may mean the master is no longer where the connection points:
/// gone (connection refused, dropped, timed out) or demoted (it refuses writes).
fn master_may_have_moved(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.code() == Some("READONLY")
}

/// A client of the sentinels that names the master, with the master's password and
/// database.
fn sentinel_client(url: &SentinelUrl, password: Option<&str>) -> RedisResult<SentinelClient> {
    let sentinels = url
        .sentinels
        .iter()
        .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port).into_connection_info())
        .collect::<RedisResult<Vec<_>>>()?;
    let mut master = RedisConnectionInfo::default().set_db(url.db);
    if let Some(password) = password.or(url.password.as_deref()) {
        master = master.set_password(password);
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
    SentinelClient::build(
        sentinels,
        url.master.clone(),
        Some(node),
        SentinelServerType::Master,
    )
}
