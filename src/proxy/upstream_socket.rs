//! Closing an upstream connection that Pingora's pool holds.
//!
//! Pingora 0.9 offers no way to take one connection out of its pool. A pooled
//! connection is watched by a read, though, and a socket shut down in both directions
//! reads end-of-file: the pool then drops it, and a connection picked from the pool
//! is tested the same way before use. So bitsgate remembers which socket a bound
//! connection is and shuts it down when nobody may use it any more.
//!
//! The descriptor number alone would not do: Pingora may have closed the socket and
//! the number may name another one by then. A mark keeps the socket's inode too, and
//! the shutdown goes through a duplicate of the descriptor whose inode is checked
//! first, so it reaches the remembered socket or nothing.

use std::net::Shutdown;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// One upstream socket, named without holding it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMark {
    fd: RawFd,
    device: u64,
    inode: u64,
}

impl SocketMark {
    /// The socket `fd` names now (`None` if it names nothing).
    pub fn of(fd: RawFd) -> Option<SocketMark> {
        let (device, inode) = identity(duplicate(fd)?).0?;
        Some(SocketMark { fd, device, inode })
    }

    /// The descriptor number the socket had when it was marked.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Shuts the remembered socket down in both directions, if it still exists and
    /// `fd` still names it. Returns whether it did.
    pub fn shut_down(&self) -> bool {
        let Some(copy) = duplicate(self.fd) else {
            return false;
        };
        let (id, copy) = identity(copy);
        if id != Some((self.device, self.inode)) {
            return false;
        }
        std::net::TcpStream::from(copy)
            .shutdown(Shutdown::Both)
            .is_ok()
    }
}

/// A descriptor of its own for whatever `fd` names now.
#[allow(unsafe_code)]
fn duplicate(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: the borrow lasts for one dup(2), which is harmless on any number: a
    // closed one fails, an open one yields a new descriptor owned here. What it names
    // is checked by the caller before anything is done with it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().ok()
}

/// A socket's device and inode, which no other open socket shares, and the
/// descriptor back.
fn identity(fd: OwnedFd) -> (Option<(u64, u64)>, OwnedFd) {
    let file = std::fs::File::from(fd);
    let id = file
        .metadata()
        .ok()
        .filter(|meta| meta.file_type().is_socket())
        .map(|meta| (meta.dev(), meta.ino()));
    (id, file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_marked_socket_is_shut_down_and_its_peer_reads_the_end() {
        let (client, mut server) = pair();
        let mark = SocketMark::of(client.as_raw_fd()).expect("a socket");
        assert!(mark.shut_down());
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).unwrap(), 0, "the peer sees FIN");
        let mut reader = &client;
        assert_eq!(reader.read(&mut buf).unwrap(), 0, "the owner reads the end");
    }

    #[test]
    fn a_number_that_now_names_another_socket_is_left_alone() {
        let (client, _server) = pair();
        let mark = SocketMark::of(client.as_raw_fd()).unwrap();
        drop(client);
        let (other, _other_server) = pair();
        // As if the closed socket's number had been given to `other`.
        let stale = SocketMark {
            fd: other.as_raw_fd(),
            ..mark
        };
        assert!(!stale.shut_down(), "another socket under the same number");
        let mut writer = &other;
        writer.write_all(b"x").expect("still open");
        assert!(SocketMark::of(other.as_raw_fd()).unwrap().shut_down());
    }

    #[test]
    fn anything_but_a_socket_has_no_mark() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(SocketMark::of(file.as_raw_fd()), None);
        assert_eq!(SocketMark::of(-1), None);
    }
}
