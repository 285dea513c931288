//! A request body moved from the client's socket to the backend's through a pipe
//! with `splice(2)`: the kernel hands the socket's pages to the pipe and on to the
//! other socket, so the bytes are not copied into bitsgate and out again, and a
//! fragment costs two system calls per pipe-full instead of a read and a write of
//! every byte.

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// How many bytes a pipe is asked to hold; the kernel may grant less (its
/// `fs.pipe-max-size` bounds it), and 64 KiB, the default, is enough to work.
const PIPE_SIZE: i32 = 256 << 10;

/// A non-blocking pipe, for one request body.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes it holds at most.
    pub capacity: usize,
}

impl Pipe {
    /// A new pipe, as large as the kernel grants up to 256 KiB.
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let capacity = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE))
            .or_else(|_| fcntl(&write, FcntlArg::F_GETPIPE_SZ))
            .map_or(64 << 10, |size| size as usize);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Moves up to `len` bytes from socket `from` into the pipe without waiting; 0
    /// at the end of the socket's stream, `WouldBlock` when it has nothing.
    pub fn fill_from(&self, from: impl AsFd, len: usize) -> io::Result<usize> {
        Ok(splice(from, None, &self.write, None, len, flags())?)
    }

    /// Moves up to `len` bytes from the pipe into socket `to` without waiting;
    /// `WouldBlock` when the socket takes no more now.
    pub fn drain_into(&self, to: impl AsFd, len: usize) -> io::Result<usize> {
        Ok(splice(&self.read, None, to, None, len, flags())?)
    }
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn bytes_go_from_one_socket_to_another_through_the_pipe() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (from, _) = listener.accept().expect("accept");
        let mut backend =
            TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (to, _) = listener.accept().expect("accept");
        let pipe = Pipe::new().expect("pipe");
        assert!(pipe.capacity >= 64 << 10);
        from.set_nonblocking(true).expect("non-blocking");
        let nothing = pipe.fill_from(&from, 10).expect_err("nothing sent yet");
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&body).expect("write");
        let mut moved = 0;
        while moved < body.len() {
            match pipe.fill_from(&from, body.len() - moved) {
                Ok(n) => {
                    let mut out = 0;
                    while out < n {
                        out += pipe.drain_into(&to, n - out).expect("drain");
                    }
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("splice: {e}"),
            }
        }
        let mut got = vec![0u8; body.len()];
        backend.read_exact(&mut got).expect("read");
        assert_eq!(got, body);
        drop(client);
        let end = loop {
            match pipe.fill_from(&from, 10) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                other => break other.expect("end"),
            }
        };
        assert_eq!(end, 0);
    }
}
