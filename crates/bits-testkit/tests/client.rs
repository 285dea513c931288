//! End-to-end tests of the upload client against the reference server on 127.0.0.1:0.
//!
//! The server runs on its own runtime thread, so an observer may block the client's
//! task (for example to cancel a session with `raw::send_blocking` between two
//! fragments) without stalling the server.

use bits_proto::{ErrorCode, PacketType};
use bits_testkit::client::raw::{self, RawRequest};
use bits_testkit::client::{
    upload, Event, NoObserver, Observer, UploadError, UploadOptions, UploadReport, UploadSource,
};
use bits_testkit::server::{spawn, ServerConfig, ServerHandle, Stats};
use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- fixtures

/// A reference server on its own runtime, with a temp root and a temp source dir.
struct Server {
    handle: Option<ServerHandle>,
    runtime: Option<tokio::runtime::Runtime>,
    root: PathBuf,
    sessions_dir: PathBuf,
    src: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&src).unwrap();
        let mut config = ServerConfig::new(&root);
        configure(&mut config);
        let sessions_dir = config.sessions_dir.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.spawn(spawn(config)).await.unwrap().unwrap();
        Server {
            handle: Some(handle),
            runtime: Some(runtime),
            root,
            sessions_dir,
            src,
            _dir: dir,
        }
    }

    fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.handle().addr()
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/up/{name}", self.addr())
    }

    fn stats(&self) -> Stats {
        self.handle().stats()
    }

    fn uploaded(&self, name: &str) -> PathBuf {
        self.root.join("up").join(name)
    }

    /// Writes `len` seeded random bytes to a source file; returns its path and sha256.
    fn source(&self, name: &str, len: u64, seed: u64) -> (PathBuf, String) {
        let path = self.src.join(name);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut hasher = Sha256::new();
        let mut chunk = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            rng.fill_bytes(&mut chunk[..n]);
            hasher.update(&chunk[..n]);
            file.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        file.flush().unwrap();
        (path, hex::encode(hasher.finalize()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Options with test-sized retry delays.
fn options(fragment_size: u64) -> UploadOptions {
    UploadOptions {
        fragment_size,
        min_fragment_size: 512,
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(100),
        ..UploadOptions::default()
    }
}

/// A TCP relay in front of an address that counts connections and bytes sent upstream
/// as they pass, so a test can see which listener the traffic used.
struct Relay {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    bytes_up: Arc<AtomicU64>,
}

async fn relay(to: SocketAddr) -> Relay {
    flaky_relay(to, None).await
}

/// A relay that answers connection number `busy_on` (from 1) itself with a bare 503
/// Ack (no BITS error code: "try later") and closes it. It reads the whole request
/// first, as a well-behaved server does: a server that closes with the body unread
/// resets the connection, and the client then sees a connection error instead.
async fn flaky_relay(to: SocketAddr, busy_on: Option<u64>) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let bytes_up = Arc::new(AtomicU64::new(0));
    let (conns, up) = (connections.clone(), bytes_up.clone());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let number = conns.fetch_add(1, Ordering::SeqCst) + 1;
            let up = up.clone();
            tokio::spawn(async move {
                if busy_on == Some(number) {
                    read_request(&mut inbound).await;
                    let _ = inbound
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nBITS-Packet-Type: Ack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(outbound) = TcpStream::connect(to).await else {
                    return;
                };
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = in_read.read(&mut buf).await {
                    if n == 0 || out_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    up.fetch_add(n as u64, Ordering::SeqCst);
                }
                let _ = out_write.shutdown().await;
            });
        }
    });
    Relay {
        addr,
        connections,
        bytes_up,
    }
}

/// Reads one request head and its `Content-Length` body.
async fn read_request(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Records events and statuses.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    statuses: Mutex<Vec<(PacketType, u16)>>,
}

impl Recorder {
    /// Every `Event::Retry` as (packet, delay, reason).
    fn retries(&self) -> Vec<(PacketType, Duration, String)> {
        let events = self.events.lock().unwrap();
        let retry = |e: &Event| match e {
            Event::Retry {
                packet,
                delay,
                reason,
                ..
            } => Some((*packet, *delay, reason.clone())),
            _ => None,
        };
        events.iter().filter_map(retry).collect()
    }
}

impl Observer for Recorder {
    fn on_response(&self, packet: PacketType, status: u16, _latency: Duration) {
        self.statuses.lock().unwrap().push((packet, status));
    }
    fn on_event(&self, event: &Event) {
        self.events.lock().unwrap().push(event.clone());
    }
}

async fn upload_file(url: &str, path: &Path, options: &UploadOptions) -> UploadReport {
    upload(url, UploadSource::File(path.into()), options, &NoObserver)
        .await
        .unwrap()
}

// ---------------------------------------------------------------- byte-exact uploads

#[tokio::test]
async fn files_around_the_fragment_size_arrive_byte_identical() {
    let server = Server::start(|_| {}).await;
    let fragment = 1000;
    for len in [0, 1, fragment - 1, fragment, fragment + 1, 3 * fragment + 7] {
        let name = format!("edge-{len}.bin");
        let (path, sha) = server.source(&name, len, len);
        let report = upload_file(&server.url(&name), &path, &options(fragment)).await;
        assert_eq!(sha256_file(&server.uploaded(&name)), sha, "{len} bytes");
        assert_eq!(report.bytes, len);
        assert_eq!(report.fragments, len.div_ceil(fragment), "{len} bytes");
        assert!(report.close_acknowledged);
        // Ping + Create-Session + fragments + Close-Session, nothing resent.
        assert_eq!(report.requests, 3 + report.fragments, "{len} bytes");
        assert_eq!((report.retries, report.restarts, report.resyncs), (0, 0, 0));
    }
    let stats = server.stats();
    assert_eq!(stats.sessions_closed, 6);
    assert_eq!(stats.sessions_open, 0);
}

#[tokio::test]
async fn a_64_mib_file_with_random_fragment_sizes_arrives_byte_identical() {
    let server = Server::start(|_| {}).await;
    let (path, sha) = server.source("big.bin", 64 << 20, 7);
    let options = UploadOptions {
        random_fragment_sizes: Some((1, 3 << 20, 99)),
        ..options(0)
    };
    let report = upload_file(&server.url("big.bin"), &path, &options).await;
    assert_eq!(sha256_file(&server.uploaded("big.bin")), sha);
    assert_eq!(report.bytes_sent, 64 << 20);
    assert!(report.fragments > 30, "{} fragments", report.fragments);
}

#[tokio::test]
async fn in_memory_sources_upload_like_files() {
    let server = Server::start(|_| {}).await;
    let data = Bytes::from((0..50_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let report = upload(
        &server.url("mem.bin"),
        UploadSource::Bytes(data.clone()),
        &options(4096),
        &NoObserver,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(server.uploaded("mem.bin")).unwrap(), data);
    assert_eq!(report.fragments, 13);
}

// ---------------------------------------------------------------- resume and overlap

/// After `after` acknowledged bytes, pushes the server `ahead` bytes further with a
/// raw fragment, so the client's next fragment overlaps data the server already has.
struct PushAhead {
    server: SocketAddr,
    path: String,
    data: Bytes,
    after: u64,
    ahead: u64,
    session: Mutex<Option<String>>,
    pushed: Mutex<Option<u16>>,
}

impl Observer for PushAhead {
    fn on_event(&self, event: &Event) {
        if let Event::SessionCreated { session_id } = event {
            *self.session.lock().unwrap() = Some(session_id.clone());
        }
    }
    fn on_progress(&self, acked: u64, total: u64) {
        let mut pushed = self.pushed.lock().unwrap();
        if pushed.is_some() || acked < self.after {
            return;
        }
        let session = self.session.lock().unwrap().clone().unwrap();
        let end = (acked + self.ahead).min(total);
        let slice = self.data.slice(acked as usize..end as usize);
        let request = RawRequest::fragment(&self.path, &session, acked, slice, total);
        *pushed = Some(raw::send_blocking(self.server, &request).unwrap().status);
    }
}

#[tokio::test]
async fn the_client_resumes_where_the_server_says_when_the_server_is_ahead() {
    let server = Server::start(|_| {}).await;
    let mut data = vec![0u8; 10_000];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
    let data = Bytes::from(data);
    // 500 ahead: the client's next fragment (2000-2999) overlaps the server's offset;
    // the server writes only the new tail and answers 200 + 3000, or answers 416 + 2500
    // (spec §6) — either way nothing is resent twice over the received bytes.
    // 2500 ahead: the next fragment is a pure duplicate; the answer points to 4500 and
    // the client jumps there.
    for ahead in [500, 2500] {
        let name = format!("ahead-{ahead}.bin");
        let observer = PushAhead {
            server: server.addr(),
            path: format!("/up/{name}"),
            data: data.clone(),
            after: 2000,
            ahead,
            session: Mutex::default(),
            pushed: Mutex::default(),
        };
        let report = upload(
            &server.url(&name),
            UploadSource::Bytes(data.clone()),
            &options(1000),
            &observer,
        )
        .await
        .unwrap();
        assert_eq!(*observer.pushed.lock().unwrap(), Some(200));
        assert_eq!(
            std::fs::read(server.uploaded(&name)).unwrap(),
            data,
            "{ahead}"
        );
        if ahead == 500 {
            assert!(report.resyncs <= 1, "{report:?}");
        } else {
            assert_eq!(report.resyncs, 1, "{report:?}");
            // 0-1999, the duplicate 2000-2999, then 4500-9999: what the server already
            // had is not resent.
            assert_eq!(report.bytes_sent, 2000 + 1000 + 5500, "{report:?}");
        }
    }
}

#[tokio::test]
async fn a_gap_gets_416_with_the_offset_and_an_overlap_never_overwrites() {
    let server = Server::start(|_| {}).await;
    let addr = server.addr();
    let created = raw::send(
        addr,
        &RawRequest::bits(PacketType::CreateSession, "/up/raw.bin")
            .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 200);
    let id = created.ack().session_id.unwrap().as_str().to_owned();
    let good: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let fragment = |first: usize, data: &[u8]| {
        RawRequest::fragment(
            "/up/raw.bin",
            &id,
            first as u64,
            Bytes::copy_from_slice(data),
            300,
        )
    };

    // A gap: the server wants byte 0.
    let gap = raw::send(addr, &fragment(100, &good[100..200]))
        .await
        .unwrap();
    assert_eq!(gap.status, 416);
    assert_eq!(gap.ack().received, Some(0));

    let first = raw::send(addr, &fragment(0, &good[..100])).await.unwrap();
    assert_eq!((first.status, first.ack().received), (200, Some(100)));

    // An overlap whose already-received part is garbage: either answer is conformant,
    // but the received bytes must stay as they were.
    let mut overlap = vec![0xEEu8; 50];
    overlap.extend_from_slice(&good[100..200]);
    let answer = raw::send(addr, &fragment(50, &overlap)).await.unwrap();
    let next = answer.ack().received.unwrap();
    assert!(
        matches!((answer.status, next), (200, 200) | (416, 100)),
        "{answer:?}"
    );

    let rest = raw::send(addr, &fragment(next as usize, &good[next as usize..]))
        .await
        .unwrap();
    assert_eq!((rest.status, rest.ack().received), (200, Some(300)));
    let close = raw::send(
        addr,
        &RawRequest::bits(PacketType::CloseSession, "/up/raw.bin").header("BITS-Session-Id", &id),
    )
    .await
    .unwrap();
    assert_eq!(close.status, 200);
    assert_eq!(std::fs::read(server.uploaded("raw.bin")).unwrap(), good);
}

// ---------------------------------------------------------------- 413, restart, cancel

#[tokio::test]
async fn a_413_makes_the_client_shrink_its_fragments_and_succeed() {
    let server = Server::start(|c| c.max_fragment = 16 * 1024).await;
    let (path, sha) = server.source("shrink.bin", 100_000, 3);
    let recorder = Recorder::default();
    let report = upload(
        &server.url("shrink.bin"),
        UploadSource::File(path),
        &UploadOptions {
            min_fragment_size: 4096,
            ..options(256 * 1024)
        },
        &recorder,
    )
    .await
    .unwrap();
    assert_eq!(sha256_file(&server.uploaded("shrink.bin")), sha);
    // The whole 100,000-byte file fits one 256 KiB fragment; 413 halves it to 50,000,
    // 25,000 and 12,500 bytes, which the 16 KiB limit takes.
    assert_eq!(report.shrinks, 3);
    let statuses = recorder.statuses.lock().unwrap();
    assert_eq!(statuses.iter().filter(|(_, s)| *s == 413).count(), 3);
}

#[tokio::test]
async fn a_413_at_the_minimum_fragment_size_is_fatal() {
    let server = Server::start(|c| c.max_fragment = 1000).await;
    let (path, _) = server.source("tiny-limit.bin", 5000, 3);
    let err = upload(
        &server.url("tiny-limit.bin"),
        UploadSource::File(path),
        &UploadOptions {
            min_fragment_size: 2000,
            ..options(4000)
        },
        &NoObserver,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            UploadError::Fatal {
                status: 413,
                packet: PacketType::Fragment,
                ..
            }
        ),
        "{err}"
    );
}

/// Cancels the session behind the client's back once `after` bytes are acknowledged.
struct CancelBehindTheBack {
    server: SocketAddr,
    after: u64,
    session: Mutex<Option<String>>,
    done: Mutex<bool>,
}

impl Observer for CancelBehindTheBack {
    fn on_event(&self, event: &Event) {
        if let Event::SessionCreated { session_id } = event {
            *self.session.lock().unwrap() = Some(session_id.clone());
        }
    }
    fn on_progress(&self, acked: u64, _total: u64) {
        let mut done = self.done.lock().unwrap();
        if *done || acked < self.after {
            return;
        }
        let id = self.session.lock().unwrap().clone().unwrap();
        let cancel = RawRequest::bits(PacketType::CancelSession, "/up/restart.bin")
            .header("BITS-Session-Id", id);
        assert_eq!(
            raw::send_blocking(self.server, &cancel).unwrap().status,
            200
        );
        *done = true;
    }
}

#[tokio::test]
async fn a_lost_session_makes_the_client_restart_from_byte_zero_and_succeed() {
    let server = Server::start(|_| {}).await;
    let (path, sha) = server.source("restart.bin", 20_000, 5);
    let observer = CancelBehindTheBack {
        server: server.addr(),
        after: 3000,
        session: Mutex::default(),
        done: Mutex::default(),
    };
    let report = upload(
        &server.url("restart.bin"),
        UploadSource::File(path),
        &options(1000),
        &observer,
    )
    .await
    .unwrap();
    assert_eq!(report.restarts, 1);
    assert_eq!(sha256_file(&server.uploaded("restart.bin")), sha);
    // 3 fragments, then the refused one, then all 20 again.
    assert_eq!(report.fragments, 3 + 1 + 20);
    let stats = server.stats();
    assert_eq!((stats.sessions_cancelled, stats.sessions_closed), (1, 1));
}

#[tokio::test]
async fn restarts_are_bounded() {
    let server = Server::start(|_| {}).await;
    // Every session is cancelled as soon as one fragment is in.
    struct CancelEverySession(SocketAddr);
    impl Observer for CancelEverySession {
        fn on_event(&self, event: &Event) {
            if let Event::SessionCreated { session_id } = event {
                let cancel = RawRequest::bits(PacketType::CancelSession, "/up/doomed.bin")
                    .header("BITS-Session-Id", session_id);
                raw::send_blocking(self.0, &cancel).unwrap();
            }
        }
    }
    let err = upload(
        &server.url("doomed.bin"),
        UploadSource::Bytes(Bytes::from_static(b"some bytes")),
        &UploadOptions {
            max_restarts: 2,
            ..options(4)
        },
        &CancelEverySession(server.addr()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, UploadError::TooManyRestarts { restarts: 2 }),
        "{err}"
    );
    assert_eq!(err.error_code(), Some(ErrorCode::SESSION_NOT_FOUND));
}

#[tokio::test]
async fn cancel_after_sends_cancel_session_and_the_temp_data_is_gone() {
    let server = Server::start(|_| {}).await;
    let (path, _) = server.source("cancel.bin", 10_000, 9);
    let report = upload_file(
        &server.url("cancel.bin"),
        &path,
        &UploadOptions {
            cancel_after: Some(2),
            ..options(1000)
        },
    )
    .await;
    assert!(report.cancelled);
    assert_eq!(report.fragments, 2);
    let stats = server.stats();
    assert_eq!((stats.sessions_cancelled, stats.sessions_open), (1, 0));
    let session = report.session_id.unwrap();
    assert_eq!(stats.sessions[&session].state, "cancelled");
    assert!(!server.uploaded("cancel.bin").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&server.sessions_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------- BITS-Host-Id

#[tokio::test]
async fn a_host_id_sends_the_rest_of_the_session_to_that_host() {
    let any = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(|c| {
        c.listen = vec![any, any];
        c.host_id = Some("node-b".into());
        c.host_id_fallback_timeout = Some(60);
    })
    .await;
    let second = server.handle().addrs()[1];
    let relay = relay(second).await;
    let (path, sha) = server.source("hostid.bin", 50_000, 11);
    let recorder = Recorder::default();
    let report = upload(
        &server.url("hostid.bin"),
        UploadSource::File(path),
        &UploadOptions {
            resolve: HashMap::from([("node-b".to_owned(), relay.addr)]),
            ..options(10_000)
        },
        &recorder,
    )
    .await
    .unwrap();
    assert_eq!(sha256_file(&server.uploaded("hostid.bin")), sha);
    assert_eq!(report.host_id.as_deref(), Some("node-b"));
    assert!(!report.fell_back);
    // Every fragment byte went through the relay to the second listener.
    assert!(relay.bytes_up.load(Ordering::SeqCst) > 50_000);
    // The new host is Pinged before the first fragment (spec §4).
    let statuses = recorder.statuses.lock().unwrap();
    let kinds: Vec<_> = statuses.iter().map(|(p, _)| *p).take(4).collect();
    use PacketType::*;
    assert_eq!(kinds, [Ping, CreateSession, Ping, Fragment]);
}

#[tokio::test]
async fn an_unreachable_host_id_falls_back_to_the_url_after_the_timeout() {
    let dead = closed_port().await;
    let server = Server::start(|c| {
        c.host_id = Some("node-dead".into());
        c.host_id_fallback_timeout = Some(1);
    })
    .await;
    let (path, sha) = server.source("fallback.bin", 5000, 13);
    let report = upload_file(
        &server.url("fallback.bin"),
        &path,
        &UploadOptions {
            resolve: HashMap::from([("node-dead".to_owned(), dead)]),
            max_retries: 2,
            ..options(1000)
        },
    )
    .await;
    assert!(report.fell_back);
    assert!(
        report.elapsed >= Duration::from_secs(1),
        "{:?}",
        report.elapsed
    );
    // The retries spent waiting for the Host-Id server did not count against max_retries.
    assert!(report.retries > 2, "{report:?}");
    assert_eq!(sha256_file(&server.uploaded("fallback.bin")), sha);
}

#[tokio::test]
async fn without_a_fallback_timeout_the_client_never_falls_back() {
    let dead = closed_port().await;
    let server = Server::start(|c| c.host_id = Some("node-dead".into())).await;
    let err = upload(
        &server.url("nofallback.bin"),
        UploadSource::Bytes(Bytes::from_static(b"data")),
        &UploadOptions {
            resolve: HashMap::from([("node-dead".to_owned(), dead)]),
            max_retries: 2,
            ..options(1000)
        },
        &NoObserver,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            UploadError::RetriesExhausted {
                packet: PacketType::Ping,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------- connections

#[tokio::test]
async fn one_connection_is_reused_by_default_and_new_ones_are_opened_on_request() {
    let server = Server::start(|_| {}).await;
    let relay = relay(server.addr()).await;
    let (path, sha) = server.source("conns.bin", 8000, 17);
    let url = |name: &str| format!("http://{}/up/{name}", relay.addr);

    let report = upload_file(&url("kept.bin"), &path, &options(1000)).await;
    assert_eq!(relay.connections.load(Ordering::SeqCst), 1);
    assert_eq!(report.requests, 11);

    let fresh = UploadOptions {
        new_connection_per_packet: true,
        ..options(1000)
    };
    let report = upload_file(&url("fresh.bin"), &path, &fresh).await;
    assert_eq!(
        relay.connections.load(Ordering::SeqCst),
        1 + report.requests
    );
    assert_eq!(sha256_file(&server.uploaded("kept.bin")), sha);
    assert_eq!(sha256_file(&server.uploaded("fresh.bin")), sha);
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_packet() {
    let server = Server::start(|_| {}).await;
    // One connection per packet: Ping, Create-Session, fragment 1, then fragment 2 is
    // answered 503 by the relay.
    let relay = flaky_relay(server.addr(), Some(4)).await;
    let (path, sha) = server.source("busy.bin", 3000, 19);
    let recorder = Recorder::default();
    let report = upload(
        &format!("http://{}/up/busy.bin", relay.addr),
        UploadSource::File(path),
        &UploadOptions {
            new_connection_per_packet: true,
            ..options(1000)
        },
        &recorder,
    )
    .await
    .unwrap();
    assert_eq!(sha256_file(&server.uploaded("busy.bin")), sha);
    assert_eq!(report.retries, 1);
    assert_eq!(report.fragments, 4);
    let retries: Vec<_> = recorder
        .retries()
        .into_iter()
        .map(|(packet, _, reason)| (packet, reason))
        .collect();
    assert_eq!(retries, [(PacketType::Fragment, "status 503".to_owned())]);
}

#[tokio::test]
async fn two_hundred_concurrent_uploads_all_succeed() {
    let server = Server::start(|_| {}).await;
    let data = Bytes::from((0..20_000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let url = server.url(&format!("many/{i}.bin"));
        let data = data.clone();
        tasks.spawn(async move {
            upload(&url, UploadSource::Bytes(data), &options(8192), &NoObserver).await
        });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        let report = result.unwrap().unwrap();
        assert_eq!(report.fragments, 3);
        ok += 1;
    }
    assert_eq!(ok, 200);
    for i in 0..200 {
        let got = std::fs::read(server.uploaded(&format!("many/{i}.bin"))).unwrap();
        assert!(got == data, "upload {i} differs");
    }
    assert_eq!(server.stats().sessions_closed, 200);
}

// ---------------------------------------------------------------- failures

#[tokio::test]
async fn refusals_are_fatal_and_name_the_code() {
    let server = Server::start(|c| c.max_upload = 1000).await;
    let err = upload(
        &server.url("huge.bin"),
        UploadSource::Bytes(Bytes::from(vec![0u8; 5000])),
        &options(1000),
        &NoObserver,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("BG_E_TOO_LARGE (0x80200020)"),
        "{err}"
    );

    // The destination exists and overwriting is off.
    std::fs::create_dir_all(server.root.join("up")).unwrap();
    std::fs::write(server.uploaded("exists.bin"), b"old").unwrap();
    let err = upload(
        &server.url("exists.bin"),
        UploadSource::Bytes(Bytes::from_static(b"new")),
        &options(1000),
        &NoObserver,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, UploadError::Fatal { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(
        std::fs::read(server.uploaded("exists.bin")).unwrap(),
        b"old"
    );
}

#[tokio::test]
async fn an_unreachable_server_exhausts_the_retries_with_backoff() {
    let dead = closed_port().await;
    let recorder = Recorder::default();
    let err = upload(
        &format!("http://{dead}/up/x.bin"),
        UploadSource::Bytes(Bytes::from_static(b"x")),
        &UploadOptions {
            max_retries: 3,
            ..options(1000)
        },
        &recorder,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, UploadError::RetriesExhausted { attempts: 4, .. }),
        "{err}"
    );
    let delays: Vec<u128> = recorder
        .retries()
        .iter()
        .map(|(_, delay, _)| delay.as_millis())
        .collect();
    assert_eq!(delays, [10, 20, 40]);
}

#[tokio::test]
async fn bad_urls_and_missing_files_fail_before_any_request() {
    let err = upload(
        "ftp://h/x",
        UploadSource::Bytes(Bytes::new()),
        &options(1),
        &NoObserver,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, UploadError::InvalidUrl { .. }), "{err}");
    let err = upload(
        "http://127.0.0.1:1/x",
        UploadSource::File("/nonexistent/file".into()),
        &options(1),
        &NoObserver,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, UploadError::Io { .. }), "{err}");
}
