//! The fast path's own work per packet, without the network: parsing a Windows
//! client's Fragment head (and deciding it is one the fast path takes), parsing a
//! backend's Ack head, relaying a 1 MiB answer body from a loopback socket, and
//! moving request bodies from one loopback socket to another through a pipe with
//! `splice(2)`, next to the same through a 64 KiB buffer (in the moving thread's CPU
//! time per MiB: what splice saves is CPU, not time on an idle machine).
//!
//! Run with `cargo bench --bench fast_path -- --warm-up-time 1 --measurement-time 3`.

use bitsgate::proxy::fast::head::Head;
use bitsgate::proxy::fast::response::{parse_answer, relay_body, Framing};
use bitsgate::proxy::fast::splice::Pipe;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::time::{clock_gettime, ClockId};
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The header set of a Windows client's Fragment (as in the `classify` bench).
const FRAGMENT: &[u8] = b"BITS_POST /uploads/reports/file.bin HTTP/1.1\r\n\
Host: bits.example.com\r\nUser-Agent: Microsoft BITS/7.8\r\nAccept: */*\r\n\
BITS-Packet-Type: Fragment\r\nBITS-Session-Id: {5B1C6A8E-1E2F-4C5D-9A7B-3E4F5A6B7C8D}\r\n\
Content-Name: file.bin\r\nContent-Range: bytes 1048576-2097151/10485760\r\n\
Content-Length: 1048576\r\nConnection: Keep-Alive\r\n\r\n";

/// A Fragment Ack as the reference server sends it.
const ACK: &[u8] = b"HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\n\
BITS-Session-Id: {5B1C6A8E-1E2F-4C5D-9A7B-3E4F5A6B7C8D}\r\nBITS-Received-Content-Range: 2097152\r\n\
Content-Length: 0\r\nDate: Mon, 07 Dec 2026 12:00:00 GMT\r\n\r\n";

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("fast_path");
    group.bench_function("parse_fragment_head", |b| {
        b.iter(|| Head::parse(black_box(FRAGMENT)).expect("taken"))
    });
    group.bench_function("parse_ack_head", |b| {
        b.iter(|| {
            parse_answer(black_box(ACK))
                .expect("valid")
                .expect("complete")
        })
    });
    group.finish();
}

fn relay(c: &mut Criterion) {
    const BODY: usize = 1 << 20;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("fast_path");
    group.throughput(Throughput::Bytes(BODY as u64));
    group.bench_function("relay_1mib_answer_body", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                let writer = tokio::spawn(async move {
                    let (mut backend, _) = listener.accept().await.expect("accept");
                    backend.write_all(&vec![7u8; BODY]).await.expect("write");
                });
                let mut upstream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let mut client = tokio::io::sink();
                let relayed = relay_body(
                    &mut upstream,
                    &mut client,
                    Framing::Length(BODY as u64),
                    bytes::BytesMut::new(),
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                )
                .await
                .expect("relayed");
                assert_eq!(relayed.bytes, BODY as u64);
                writer.await.expect("writer");
            })
        })
    });
    group.finish();
}

/// A client socket feeding `from`, and `to` draining into a backend socket: the
/// two ends a request body passes between, with a writer and a reader thread.
struct Sockets {
    from: TcpStream,
    to: TcpStream,
    client: std::thread::JoinHandle<()>,
    backend: std::thread::JoinHandle<usize>,
}

fn sockets(body: usize) -> Sockets {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = std::thread::spawn(move || {
        let mut client = TcpStream::connect(addr).expect("connect");
        let chunk = vec![7u8; 1 << 20];
        let mut sent = 0;
        while sent < body {
            let n = chunk.len().min(body - sent);
            client.write_all(&chunk[..n]).expect("write");
            sent += n;
        }
    });
    let (from, _) = listener.accept().expect("accept");
    let backend = std::thread::spawn(move || {
        let mut backend = TcpStream::connect(addr).expect("connect");
        let mut sink = vec![0u8; 256 << 10];
        let mut got = 0;
        while got < body {
            got += backend.read(&mut sink).expect("read");
        }
        got
    });
    let (to, _) = listener.accept().expect("accept");
    Sockets {
        from,
        to,
        client,
        backend,
    }
}

/// The CPU time this thread has used: the cost of moving the bytes, without the
/// time spent waiting for the writer or the reader.
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Runs a splice that does not wait, waiting with poll(2) for `fd` to be ready
/// (`events`) whenever it finds nothing to move, as the fast path waits for
/// readiness in its runtime.
fn when_ready(
    fd: &TcpStream,
    events: PollFlags,
    mut op: impl FnMut() -> std::io::Result<usize>,
) -> usize {
    loop {
        match op() {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(fd.as_fd(), events)];
                poll(&mut fds, PollTimeout::NONE).expect("poll");
            }
            Err(e) => panic!("splice: {e}"),
        }
    }
}

/// Times moving `iters` MiB from one socket to the other with `mover`, in the
/// mover's own CPU time.
fn cpu_per_mib(iters: u64, mover: impl FnOnce(&mut Sockets, usize)) -> Duration {
    let total = iters as usize * (1 << 20);
    let mut s = sockets(total);
    let start = thread_cpu();
    mover(&mut s, total);
    let spent = thread_cpu() - start;
    s.client.join().expect("client");
    assert_eq!(s.backend.join().expect("backend"), total);
    spent
}

/// Moving a request body between two loopback sockets, in CPU time of the thread
/// that moves it: through a pipe with splice(2), and through a 64 KiB buffer.
fn move_body(c: &mut Criterion) {
    let mut group = c.benchmark_group("fast_path");
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("move_1mib_request_body_splice_cpu", |b| {
        b.iter_custom(|iters| {
            cpu_per_mib(iters, |s, total| {
                let pipe = Pipe::new().expect("pipe");
                let mut moved = 0;
                while moved < total {
                    let want = (total - moved).min(pipe.capacity);
                    let n =
                        when_ready(&s.from, PollFlags::POLLIN, || pipe.fill_from(&s.from, want));
                    let mut out = 0;
                    while out < n {
                        out += when_ready(&s.to, PollFlags::POLLOUT, || {
                            pipe.drain_into(&s.to, n - out)
                        });
                    }
                    moved += n;
                }
            })
        })
    });
    group.bench_function("move_1mib_request_body_buffer_cpu", |b| {
        b.iter_custom(|iters| {
            cpu_per_mib(iters, |s, total| {
                let mut buf = vec![0u8; 64 << 10];
                let mut moved = 0;
                while moved < total {
                    let n = s.from.read(&mut buf).expect("read");
                    s.to.write_all(&buf[..n]).expect("write");
                    moved += n;
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, parse, relay, move_body);
criterion_main!(benches);
