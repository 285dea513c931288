//! Assembles a bitsgate instance: the Pingora server, the proxy and admin services,
//! and the background services, over one shared state.

use crate::admin::AdminApp;
use crate::config::{Config, StorageMode};
use crate::edge::{Accepting, Arrival, Gate, Places};
use crate::health_service::HealthService;
use crate::proxy::BitsProxy;
use crate::reload::ReloadService;
use crate::session::store::PinStore;
use crate::state::{Restored, Shared};
use crate::sweeper::IdleSweeper;
use crate::upgrade::UpgradeCatchUp;
use crate::workers::SharedListener;
use anyhow::Context;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Options of the process rather than of the config file.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Take the listeners over from a running instance (zero-downtime upgrade).
    pub upgrade: bool,
    /// The file the config came from (enables reloads).
    pub config_path: Option<std::path::PathBuf>,
    /// Reload on SIGHUP (only for a process that owns its signals, not in tests).
    pub reload_on_sighup: bool,
    /// Write `[server] pid_file` (only for `bitsgate run`: in-process instances share
    /// one pid).
    pub write_pid_file: bool,
}

/// A built, not yet running, instance.
pub struct Instance {
    /// The Pingora server with every service added.
    pub server: Server,
    /// Its shared state (tests and the demo look at it).
    pub shared: Arc<Shared>,
}

impl Instance {
    /// Serves until told to stop, waits for the runtimes to stop, then flushes the pin
    /// journal, within `[server] shutdown_timeout`: records queued while requests wound
    /// down would otherwise die with the process (Pingora's own `run_forever` exits
    /// without a last step).
    pub fn run(self, args: RunArgs) {
        self.server.run(args);
        let Some(store) = &self.shared.store else {
            return;
        };
        // As long as the runtimes had to stop.
        let limit = self.shared.generation().config.server.shutdown_timeout;
        match store.flush_blocking(limit) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::error!(target: "bitsgate::store", error = %e, "flushing the pin journal at exit failed");
            }
            None => {
                tracing::error!(target: "bitsgate::store", limit_s = limit.as_secs_f64(), "the pin journal did not flush within [server] shutdown_timeout; exiting without it (unpins since the last write may be lost: stale pins that expire)");
            }
        }
    }
}

/// Opens the pin journal in durable mode, replaying its pins straight into the table
/// of `restored`; it is read before any listener starts, so no packet is routed before
/// the pins it refers to are back.
fn open_store(
    storage: &crate::config::StorageConfig,
    upgrade: bool,
    restored: &mut Restored,
) -> anyhow::Result<(Option<PinStore>, Option<crate::session::store::Loaded>)> {
    match storage.mode {
        // Redis mode: the replica starts with an empty table, a cache of the store.
        StorageMode::Memory | StorageMode::Redis => Ok((None, None)),
        StorageMode::Durable => {
            // During an upgrade the old process still appends to the journal.
            let (store, loaded) =
                PinStore::open_into(&storage.data_dir, storage.sync, upgrade, restored)
                    .with_context(|| {
                        format!("opening the pin journal in {}", storage.data_dir.display())
                    })?;
            if let Some(damage) = &loaded.damage {
                tracing::warn!(target: "bitsgate::store", %damage, truncated_bytes = loaded.truncated_bytes, "the pin journal ended in a damaged record; it was cut there");
            }
            Ok((Some(store), Some(loaded)))
        }
    }
}

/// A proxy service on the client listener, with its own upstream connection pool.
/// The HTTP application of one client listener service, behind its Gate.
fn client_gate(
    server: &Server,
    shared: &Arc<Shared>,
    arrival: Arrival,
    places: &Places,
) -> Gate<HttpProxy<BitsProxy>> {
    let http = pingora::proxy::http_proxy(&server.configuration, BitsProxy::new(shared.clone()));
    Gate::new(http, shared.clone(), places.clone(), arrival)
}

/// Builds the server for a validated config.
pub fn build(config: Config, process: &ProcessOptions) -> anyhow::Result<Instance> {
    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        // Pingora counts whole seconds; a sub-second setting still gets one.
        grace_period_seconds: Some(config.server.grace_period.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs().max(1)),
        upgrade_sock: config.server.upgrade_sock.to_string_lossy().into_owned(),
        pid_file: config.server.pid_file.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: process.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let listener = config.listener.clone();
    let admin_address = config.admin.address;
    let admin_tls = config.admin.tls.clone();
    let mut restored = Restored::new(&config);
    let (store, loaded) = open_store(&config.storage, process.upgrade, &mut restored)?;
    let shared = Shared::from_restored(config, process.config_path.clone(), store, restored)?;
    crate::session::shared_store::start_for(&shared)?;
    if let Some(loaded) = loaded {
        let restored = shared.table.len();
        tracing::info!(target: "bitsgate::store", restored, records = loaded.records, truncated_bytes = loaded.truncated_bytes, "pins loaded from the journal");
        shared.settle_unconfigured_owners();
        shared.save_known_backends();
    }

    let threads = shared.generation().config.server.threads;
    let work_stealing = shared.generation().config.server.work_stealing;

    let mut admin = Service::new("bitsgate admin".to_owned(), AdminApp::new(shared.clone()));
    match &admin_tls {
        Some(tls) => admin.add_tls(
            &admin_address.to_string(),
            &tls.cert_path.to_string_lossy(),
            &tls.key_path.to_string_lossy(),
        )?,
        None => admin.add_tcp(&admin_address.to_string()),
    }
    // The admin API is light: one thread keeps it off the proxy's workers.
    admin.threads = Some(1);

    let sweeper = background_service("idle sweeper", IdleSweeper::new(shared.clone()));
    let reloader = background_service(
        "config reload",
        ReloadService::new(shared.clone(), process.reload_on_sighup),
    );
    let health = background_service("health checks", HealthService::new(shared.clone()));

    // One count of client connections for every worker of the listener.
    let places = crate::edge::places(listener.edge.max_connections);
    let shared_listener = SharedListener::new(listener.address.to_string());
    // One runtime (shared by every thread when stealing), so one pool; otherwise one
    // single-threaded service per worker.
    let (services, threads_each) = if work_stealing || threads == 1 {
        (1, threads)
    } else {
        (threads, 1)
    };
    let arrival = match &listener.tls {
        None => Arrival::Plain {
            proxy_protocol: listener.proxy_protocol,
        },
        Some(tls) => Arrival::Tls {
            acceptor: crate::edge::tls_acceptor(tls).context("the client listener's TLS")?,
            proxy_protocol: listener.proxy_protocol,
        },
    };
    for worker in 0..services {
        let name = match services {
            1 => "bitsgate proxy".to_owned(),
            _ => format!("bitsgate proxy {worker}"),
        };
        let gate = client_gate(&server, &shared, arrival.clone(), &places);
        let accepting = Accepting::new(name, gate, shared_listener.clone(), threads_each);
        server.add_service(accepting);
    }
    server.add_service(admin);
    server.add_service(sweeper);
    server.add_service(reloader);
    if process.reload_on_sighup {
        server.add_service(background_service(
            "access log reopen",
            crate::access_log::ReopenOnSignal::new(shared.clone()),
        ));
    }
    if process.upgrade {
        shared
            .compaction_allowed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        server.add_service(background_service(
            "upgrade catch-up",
            UpgradeCatchUp::new(shared.clone()),
        ));
    }
    server.add_service(health);
    server.add_service(background_service(
        "allocator tidy",
        crate::allocator::AllocatorTidy,
    ));
    // With the Redis store: the farm state other replicas share, read before serving.
    if let Some(sync) = crate::session::shared_store::sync::SharedStateSync::start(&shared) {
        server.add_service(background_service("shared state", sync));
    }
    if process.write_pid_file {
        let path = shared.generation().config.server.pid_file.clone();
        crate::pid_file::write(&path)?;
        server.add_service(background_service(
            "pid file",
            crate::pid_file::PidFileCleanup::new(path),
        ));
    }
    Ok(Instance { server, shared })
}
