//! Idle upstream connections of the fast path, per backend address: taken newest
//! first, checked for a close the backend sent while they waited, and closed after
//! `[upstream] idle_timeout`. One sweeping task per pool does that while it holds
//! connections, not a task or timer per connection.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept per backend address; the oldest goes first beyond it.
const MAX_IDLE_PER_BACKEND: usize = 128;

struct Idle {
    stream: TcpStream,
    since: Instant,
}

#[derive(Default)]
struct State {
    /// Per backend address (a farm's few: a list is quicker than hashing).
    idle: Vec<(SocketAddr, Vec<Idle>)>,
    /// The latest `idle_timeout` a connection was put back with.
    idle_timeout: Duration,
    /// A sweeping task runs.
    sweeping: bool,
}

impl State {
    /// Closes what waited too long or was closed by its backend; returns whether
    /// any connection is left.
    fn sweep(&mut self) -> bool {
        let timeout = self.idle_timeout;
        self.idle.retain_mut(|(_, list)| {
            list.retain(|entry| entry.since.elapsed() < timeout && still_open(&entry.stream));
            !list.is_empty()
        });
        !self.idle.is_empty()
    }
}

/// One listener service's idle upstream connections (a service runs on one thread
/// unless work stealing is on, so the lock is rarely contended).
#[derive(Default)]
pub struct Pool {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// An idle connection to `addr` that is still open, if there is one.
    pub fn take(&self, addr: SocketAddr, idle_timeout: Duration) -> Option<TcpStream> {
        let mut state = lock(&self.state);
        let (_, list) = state.idle.iter_mut().find(|(a, _)| *a == addr)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < idle_timeout && still_open(&entry.stream) {
                return Some(entry.stream);
            }
        }
        None
    }

    /// Keeps `stream` for the next request to `addr`.
    pub fn put(&self, addr: SocketAddr, stream: TcpStream, idle_timeout: Duration) {
        let mut state = lock(&self.state);
        state.idle_timeout = idle_timeout;
        let index = match state.idle.iter().position(|(a, _)| *a == addr) {
            Some(index) => index,
            None => {
                state.idle.push((addr, Vec::new()));
                state.idle.len() - 1
            }
        };
        let list = &mut state.idle[index].1;
        if list.len() >= MAX_IDLE_PER_BACKEND {
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
        });
        if !state.sweeping {
            state.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(&self.state)));
        }
    }
}

/// Sweeps the pool while it holds connections (and exists).
async fn sweep(state: Weak<Mutex<State>>) {
    loop {
        let period = match state.upgrade() {
            Some(state) => lock(&state).idle_timeout / 4,
            None => return,
        };
        tokio::time::sleep(period.clamp(Duration::from_millis(50), Duration::from_secs(1))).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let mut state = lock(&state);
        if !state.sweep() {
            state.sweeping = false;
            return;
        }
    }
}

/// An idle connection is usable while it has nothing to read: bytes or an end of
/// stream there mean the backend closed it (or broke the protocol).
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_handed_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = Pool::default();
        let timeout = Duration::from_secs(60);

        let open = TcpStream::connect(addr).await.expect("connect");
        let (_kept, _) = listener.accept().await.expect("accept");
        pool.put(addr, open, timeout);
        assert!(
            pool.take(addr, timeout).is_some(),
            "an open connection is reused"
        );

        let closing = TcpStream::connect(addr).await.expect("connect");
        let (mut server_side, _) = listener.accept().await.expect("accept");
        pool.put(addr, closing, timeout);
        server_side.shutdown().await.expect("shutdown");
        drop(server_side);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            pool.take(addr, timeout).is_none(),
            "a closed one is dropped"
        );
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_timeout_is_closed_without_traffic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = Pool::default();
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (_kept, _) = listener.accept().await.expect("accept");
        pool.put(addr, stream, Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            lock(&pool.state).idle.is_empty(),
            "the sweep closed it with no request asking"
        );
        assert!(!lock(&pool.state).sweeping, "and stopped");
    }
}
