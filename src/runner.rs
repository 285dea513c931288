//! Running an instance on a thread of its own, with a handle to stop it. The demo and
//! the integration tests use this; `bitsgate run` uses Pingora's own signal handling.
//!
//! One process may start only one instance with `[server] work_stealing = false`:
//! Pingora's runtime-per-thread mode finds its runtime through a thread-local keyed by
//! thread ids, which are reused once a thread exits, so an instance started after
//! another one stopped may find the stopped one's runtime and never accept. Code that
//! starts several instances in turn (the integration tests) sets `work_stealing = true`.

use crate::app::{self, ProcessOptions};
use crate::config::Config;
use crate::state::Shared;
use async_trait::async_trait;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A bitsgate instance running on its own thread.
pub struct RunningProxy {
    /// Its shared state.
    pub shared: Arc<Shared>,
    /// The client-facing address.
    pub proxy_addr: SocketAddr,
    /// The admin address.
    pub admin_addr: SocketAddr,
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct StopSignal {
    notify: Notify,
    kind: Mutex<Option<Stop>>,
}

#[derive(Clone, Copy)]
enum Stop {
    Fast,
    Graceful,
}

struct StopWatch(Arc<StopSignal>);

#[async_trait]
impl ShutdownSignalWatch for StopWatch {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notify.notified().await;
        match *self.0.kind.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(Stop::Graceful) => ShutdownSignal::GracefulTerminate,
            _ => ShutdownSignal::FastShutdown,
        }
    }
}

/// Starts an instance. Port 0 in the listener or admin address is replaced by a free
/// port first, since Pingora binds inside its own runtime and cannot report it.
pub fn spawn(config: Config) -> anyhow::Result<RunningProxy> {
    spawn_with(config, ProcessOptions::default())
}

/// Starts an instance with process options (e.g. a config file to reload from).
pub fn spawn_with(mut config: Config, process: ProcessOptions) -> anyhow::Result<RunningProxy> {
    config.listener.address = resolve_port_zero(config.listener.address)?;
    config.admin.address = resolve_port_zero(config.admin.address)?;
    let proxy_addr = config.listener.address;
    let admin_addr = config.admin.address;
    let instance = app::build(config, &process)?;
    let shared = instance.shared.clone();
    let stop = Arc::new(StopSignal::default());
    let signal = stop.clone();
    let thread = std::thread::Builder::new()
        .name("bitsgate".into())
        .spawn(move || {
            instance.run(RunArgs {
                shutdown_signal: Box::new(StopWatch(signal)),
            })
        })?;
    let running = RunningProxy {
        shared,
        proxy_addr,
        admin_addr,
        stop,
        thread: Some(thread),
    };
    wait_until_listening(&[proxy_addr, admin_addr], Duration::from_secs(30))?;
    Ok(running)
}

impl RunningProxy {
    /// Stops at once (in-flight requests are cut).
    pub fn stop(mut self) {
        self.shutdown(Stop::Fast);
    }

    /// Stops after in-flight requests finish (bounded by the grace period).
    pub fn stop_gracefully(mut self) {
        self.shutdown(Stop::Graceful);
    }

    /// Blocks until the instance stops by itself (e.g. on a signal).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn shutdown(&mut self, kind: Stop) {
        *self.stop.kind.lock().unwrap_or_else(|e| e.into_inner()) = Some(kind);
        self.stop.notify.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown(Stop::Fast);
        }
    }
}

/// Picks a free port below Linux's ephemeral range (32768 and up). A port handed out
/// by `bind(0)` and released again can be handed straight to the next `bind(0)` of
/// another listener or client in the same process before Pingora binds it; ports
/// taken from a counter below that range are never handed out by the kernel.
fn resolve_port_zero(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if addr.port() != 0 {
        return Ok(addr);
    }
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    let _ = NEXT.compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..2_000 {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = if (20_000..32_000).contains(&port) {
            port
        } else {
            NEXT.store(20_001, Ordering::Relaxed);
            20_000
        };
        let candidate = SocketAddr::new(addr.ip(), port);
        if TcpListener::bind(candidate).is_ok() {
            return Ok(candidate);
        }
    }
    TcpListener::bind(addr)?.local_addr()
}

/// Waits until every address accepts TCP connections, or fails at the deadline.
pub fn wait_until_listening(addrs: &[SocketAddr], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    for addr in addrs {
        loop {
            if TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("nothing listens on {addr} after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}
