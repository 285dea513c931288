//! Reference BITS upload server.
//!
//! A small but complete implementation of the server side of the BITS upload protocol
//! (spec §2 to §8, §10, §11): sessions with on-disk temp data that survive a restart,
//! strict fragment bookkeeping, atomic commits, idle expiry, and a JSON stats endpoint
//! that tests use to see what reached this node. Optional modes behave like an IIS site:
//! Windows authentication per TCP connection, upload-reply jobs, HTTPS. See
//! `docs/reference-server.md`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use bits_testkit::server::{spawn, ServerConfig};
//! let server = spawn(ServerConfig::new("/srv/uploads")).await?;
//! println!("listening on {}", server.addr());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod auth;
mod config;
mod conn;
mod handlers;
mod http;
mod listener;
mod paths;
mod reply;
mod session;
mod stats;
mod storage;
mod sweeper;
mod upload;

pub use self::config::*;
pub use self::http::STATS_PATH;
pub use self::stats::{ConnectionStats, SessionState, SessionStats, Stats};

use self::paths::RelPath;
use self::session::{Registry, Session};
use self::stats::Recorder;
use self::storage::Storage;
use ::http::HeaderValue;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// State shared by every listener, connection and the sweeper.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub storage: Storage,
    pub sessions: Registry,
    pub stats: Recorder,
    pub server_header: HeaderValue,
    /// Sessions created so far, for ids derived from the path.
    pub ids_issued: std::sync::atomic::AtomicU64,
    /// Set when serving HTTPS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Id of the next accepted connection.
    pub next_conn_id: AtomicU64,
}

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        self.stats.snapshot()
    }
}

/// Resolves once `stop` is true (or its sender is gone). Returns nothing, so no borrow
/// of the channel's value is held by the caller's `select!` across an await.
pub(crate) async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// A running server. Dropping it stops the server like [`ServerHandle::shutdown`] does,
/// without waiting.
pub struct ServerHandle {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Binds every listener, recovers the sessions found in the sessions directory, and
/// serves in background tasks.
pub async fn spawn(config: ServerConfig) -> io::Result<ServerHandle> {
    let server_header = HeaderValue::from_str(&config.name).map_err(|_| {
        invalid(format!(
            "server name {:?} is not a valid header value",
            config.name
        ))
    })?;
    if let Some(host) = &config.host_id {
        HeaderValue::from_str(host)
            .map_err(|_| invalid(format!("host id {host:?} is not a valid header value")))?;
    }
    if let Some(host) = &config.reply_host {
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if !valid {
            return Err(invalid(format!(
                "reply host {host:?} is not HOST or HOST:PORT"
            )));
        }
    }
    if config.listen.is_empty() {
        return Err(invalid("no listen address".into()));
    }
    if config.cleanup_interval.is_zero() {
        return Err(invalid("cleanup interval must be longer than zero".into()));
    }
    let tls = match &config.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config_with_client_ca(
                &files.cert,
                &files.key,
                config.tls_client_ca.as_deref(),
            )?,
        )),
        None => None,
    };
    let storage = Storage::open(&config.root, &config.sessions_dir).await?;
    let sessions = Registry::new();
    let stats = Recorder::new(&config.name);
    recover(&storage, &sessions, &stats).await?;

    let mut listeners = Vec::with_capacity(config.listen.len());
    for addr in &config.listen {
        listeners.push(listener::bind(*addr)?);
    }
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<io::Result<Vec<_>>>()?;

    let shared = Arc::new(Shared {
        config,
        storage,
        sessions,
        stats,
        server_header,
        ids_issued: std::sync::atomic::AtomicU64::new(0),
        tls,
        next_conn_id: AtomicU64::new(1),
    });
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::with_capacity(listeners.len() + 1);
    for (listener, addr) in listeners.into_iter().zip(&addrs) {
        info!(target: "bits_server", name = %shared.config.name, %addr, "listening");
        tasks.push(tokio::spawn(listener::accept_loop(
            listener,
            Arc::clone(&shared),
            stopped.clone(),
        )));
    }
    tasks.push(tokio::spawn(sweeper::run(Arc::clone(&shared), stopped)));
    Ok(ServerHandle {
        shared,
        addrs,
        stop,
        tasks,
    })
}

/// Puts every session found on disk back into the table, with the idle time it had.
async fn recover(storage: &Storage, sessions: &Registry, stats: &Recorder) -> io::Result<()> {
    for found in storage.recover().await? {
        let dest = match RelPath::from_stored(&found.meta.path)
            .and_then(|rel| rel.under(&storage.root, &storage.sessions_dir))
        {
            Ok(dest) => dest,
            Err(e) => {
                warn!(target: "bits_server", session = %found.meta.id, error = %e, "skipping session with a bad destination");
                continue;
            }
        };
        let state = if found.meta.completed {
            SessionState::Completed
        } else {
            SessionState::Open
        };
        info!(target: "bits_server", session = %found.meta.id, next = found.next, state = state.as_str(), "recovered session");
        stats.session_started(&found.meta.id, &found.meta.path, state);
        sessions.insert(
            Session {
                meta: found.meta,
                dest,
                next: found.next,
                ended: false,
                reply: None,
            },
            found.idle_for,
        );
    }
    Ok(())
}

impl ServerHandle {
    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's address, in the order configured.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The server's name (`Server:` header).
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The counters, as served at `GET /_bits/stats`.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops listening, closes connections (requests in progress get a short grace
    /// period) and stops the sweeper. Session state on disk stays, so a new server on
    /// the same directories carries on.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        info!(target: "bits_server", name = %self.shared.config.name, "stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
