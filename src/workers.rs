//! The proxy as one Pingora service per worker thread, all accepting on one listening
//! socket, each with a single-threaded runtime and its own upstream connection pool.
//!
//! Why not one service with `threads` runtimes: Pingora's runtime-per-thread mode
//! spawns the idle watcher of every connection returned to the upstream pool on a
//! randomly chosen worker (`pingora_runtime::current_handle()`). When that is another
//! thread, the watcher may still hold its reference to the pooled connection when the
//! next request takes it (`Arc::try_unwrap` in the connector's `reused_stream`), and
//! the connection is dropped ("failed to acquire reusable stream"): a kept-alive
//! client's upload then reaches its backend over many TCP connections. A service with
//! one thread has one runtime, so every task it spawns, the pool watchers included,
//! runs on the thread that owns the pool.
//!
//! Each worker gets its own duplicate of the listening socket (one open socket, one
//! accept queue, several descriptors). Giving every worker the same descriptor number,
//! as Pingora does for services that share an address, would close it once per worker
//! at shutdown. The process-wide descriptor table, which a graceful upgrade hands to
//! the next process, keeps the original under the listener's address, so an upgrade
//! passes one socket whatever the number of workers on either side.

use pingora::server::ListenFds;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// The client listening socket the workers share.
pub struct SharedListener {
    /// The address as written in the config: the key of the socket in Pingora's table
    /// of listening descriptors.
    key: String,
    /// The socket, when this process bound it (rather than received it in an upgrade).
    bound: Mutex<Option<TcpListener>>,
}

impl SharedListener {
    /// A listener for `address`, bound when the first worker starts.
    pub fn new(address: String) -> Arc<SharedListener> {
        Arc::new(SharedListener {
            key: address,
            bound: Mutex::new(None),
        })
    }

    /// The worker's own duplicate of the socket: the one received from a previous
    /// process when there is one, else one this process binds (once) and records in
    /// the process table for a later upgrade. Non-blocking, as the worker's runtime
    /// needs it (a socket received from a process that did not set it included); the
    /// flag belongs to the shared socket.
    pub fn socket_for_worker(&self, process: &ListenFds) -> io::Result<TcpListener> {
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let duplicate: OwnedFd = match bound.as_ref() {
            Some(listener) => listener.try_clone()?.into(),
            None => {
                let inherited = process.lock().get(&self.key).copied();
                match inherited {
                    Some(fd) => duplicate_inherited(fd)?,
                    None => {
                        let listener = bind(&self.key)?;
                        process.lock().add(self.key.clone(), listener.as_raw_fd());
                        let duplicate = listener.try_clone()?.into();
                        *bound = Some(listener);
                        duplicate
                    }
                }
            }
        };
        let duplicate = TcpListener::from(duplicate);
        duplicate.set_nonblocking(true)?;
        Ok(duplicate)
    }

    /// The address as configured.
    pub fn address(&self) -> &str {
        &self.key
    }
}

/// Binds a listening socket as Pingora does: address reuse (a restart does not wait
/// for the old connections' TIME_WAIT), a long accept queue (the kernel caps it at
/// `net.core.somaxconn`), so a burst of connections waits instead of being dropped,
/// and a second try every `BIND_RETRY_STEP` while the address is in use (a process
/// that is stopping may still hold it), up to `BIND_TRIES` times.
fn bind(address: &str) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let address: std::net::SocketAddr = address
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{address}: {e}")))?;
    let mut tries = 0;
    loop {
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        match socket.bind(&address.into()) {
            Ok(()) => {
                socket.listen(LISTEN_BACKLOG)?;
                return Ok(socket.into());
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries + 1 < BIND_TRIES => {
                tries += 1;
                tracing::warn!(target: "bitsgate::proxy", %address, "the listener address is in use; trying again in a second");
                // Before the worker serves anything: blocking its thread costs nothing.
                std::thread::sleep(BIND_RETRY_STEP);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pingora's accept queue length.
const LISTEN_BACKLOG: i32 = 65535;
/// Pingora's tries at binding an address in use, and the pause between them.
const BIND_TRIES: u32 = 30;
const BIND_RETRY_STEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Duplicates a listening socket received from the previous process in an upgrade.
/// Pingora's bootstrap received it into the process table, and no listener of this
/// process owns it (each worker gets a duplicate), so it stays open for the life of
/// the process, to be handed to the next one.
#[allow(unsafe_code)]
fn duplicate_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is open for the whole life of this process (above), and it is only
    // borrowed for the duplication.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::server::Fds;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn process_fd(table: &ListenFds, key: &str) -> RawFd {
        *table
            .lock()
            .get(key)
            .expect("the process table holds the socket")
    }

    #[test]
    fn workers_get_their_own_descriptors_of_one_socket_recorded_once_for_upgrades() {
        let free = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let address = free.local_addr().expect("address").to_string();
        drop(free);
        let shared = SharedListener::new(address.clone());
        let process: ListenFds = Arc::new(parking_lot::Mutex::new(Fds::new()));
        let first = shared.socket_for_worker(&process).expect("first worker");
        let second = shared.socket_for_worker(&process).expect("second worker");
        let original = process_fd(&process, &address);
        let (a, b) = (first.as_raw_fd(), second.as_raw_fd());
        assert!(
            a != b && a != original && b != original,
            "{original} {a} {b}"
        );

        // One socket: a connection made once is accepted through a worker's descriptor.
        let mut client = TcpStream::connect(&address).expect("connects");
        client.write_all(b"x").expect("writes");
        let accepting = second;
        accepting
            .set_nonblocking(false)
            .expect("blocking for the test");
        let (mut accepted, _) = accepting.accept().expect("accepted through a duplicate");
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).expect("reads");
        assert_eq!(&byte, b"x");
    }

    #[test]
    fn an_address_in_use_is_tried_again_until_it_is_free() {
        let holder = TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = holder.local_addr().expect("address").to_string();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            drop(holder);
        });
        let started = std::time::Instant::now();
        let bound = bind(&address).expect("bound once the holder let go");
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(1),
            "it waited"
        );
        assert_eq!(bound.local_addr().unwrap().to_string(), address);
        release.join().unwrap();
    }

    #[test]
    fn a_socket_received_in_an_upgrade_is_duplicated_not_bound_again() {
        let received = TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = received.local_addr().expect("address").to_string();
        let process: ListenFds = Arc::new(parking_lot::Mutex::new(Fds::new()));
        process.lock().add(address.clone(), received.as_raw_fd());
        let shared = SharedListener::new(address.clone());
        let socket = shared
            .socket_for_worker(&process)
            .expect("no bind: the address is taken by the received socket");
        assert_ne!(socket.as_raw_fd(), received.as_raw_fd());
        assert!(shared.bound.lock().expect("lock").is_none());
        assert_eq!(process_fd(&process, &address), received.as_raw_fd());
    }
}
