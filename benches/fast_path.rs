//! The fast path's own work per packet, without the network: parsing a Windows
//! client's Fragment head (and deciding it is one the fast path takes), parsing a
//! backend's Ack head, and relaying a 1 MiB answer body from a loopback socket.
//!
//! Run with `cargo bench --bench fast_path -- --warm-up-time 1 --measurement-time 3`.

use bitsgate::proxy::fast::head::Head;
use bitsgate::proxy::fast::response::{parse_answer, relay_body, Framing};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
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

criterion_group!(benches, parse, relay);
criterion_main!(benches);
