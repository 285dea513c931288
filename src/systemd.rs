//! systemd's readiness protocol for `Type=notify` units: `READY=1` once the client
//! and admin listeners accept connections, `WATCHDOG=1` while the admin listener
//! answers its liveness probe (when the unit sets `WatchdogSec=`), and `STOPPING=1`
//! when a stop begins. Outside systemd (no `NOTIFY_SOCKET`) it does nothing.
//!
//! Pingora binds its listeners inside each service's runtime and reports nothing
//! when it is done, so readiness is observed from outside: a listener that accepts
//! a TCP connection is bound.

use crate::reach::connectable;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often the listeners are tried while waiting for them to be bound.
const LISTEN_POLL: Duration = Duration::from_millis(10);

/// Tells systemd when bitsgate is ready and that it is still alive.
pub struct SystemdNotifier {
    listeners: Vec<SocketAddr>,
    admin: SocketAddr,
}

impl SystemdNotifier {
    /// Watches the client listener(s) and the admin listener.
    pub fn new(listeners: Vec<SocketAddr>, admin: SocketAddr) -> Self {
        SystemdNotifier {
            listeners: listeners.into_iter().map(connectable).collect(),
            admin: connectable(admin),
        }
    }

    /// True when this process was started by systemd with a notification socket.
    pub fn wanted() -> bool {
        std::env::var_os("NOTIFY_SOCKET").is_some()
    }
}

#[async_trait]
impl BackgroundService for SystemdNotifier {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut every = self.listeners.clone();
        every.push(self.admin);
        tokio::select! {
            _ = wait_until_listening(&every) => {}
            _ = shutdown.changed() => return,
        }
        send(&[NotifyState::Ready]);
        tracing::info!(target: "bitsgate", "listening; READY=1 sent to systemd");

        // systemd restarts the unit when pings stop for WatchdogSec; ping twice as often.
        let watchdog = sd_notify::watchdog_enabled().map(|limit| limit / 2);
        let period = watchdog.unwrap_or(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    send(&[NotifyState::Stopping]);
                    return;
                }
                _ = tokio::time::sleep(period), if watchdog.is_some() => {
                    if admin_is_live(self.admin, period).await {
                        send(&[NotifyState::Watchdog]);
                    } else {
                        tracing::warn!(target: "bitsgate", admin = %self.admin, "the admin listener did not answer /livez; no watchdog ping");
                    }
                }
            }
        }
    }
}

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(target: "bitsgate", error = %e, "cannot notify systemd");
    }
}

async fn wait_until_listening(addresses: &[SocketAddr]) {
    for address in addresses {
        while TcpStream::connect(address).await.is_err() {
            tokio::time::sleep(LISTEN_POLL).await;
        }
    }
}

/// `GET /livez` answered `200` within `limit`.
async fn admin_is_live(admin: SocketAddr, limit: Duration) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(admin).await?;
        stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: bitsgate\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(limit, probe).await, Ok(Ok(true)))
}
