//! Raw HTTP/1.1 over a TcpStream, so tests control every byte (a fragment's headers
//! without its body, a raw backslash in the target) and see every header as sent.

#![allow(dead_code)]

use bits_testkit::server::{spawn, ServerConfig, ServerHandle};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BITS_1_5: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";
pub const NAME: &str = "node-under-test";
/// Upper bound for any single wait; generous for slow CI, never reached when passing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn session(&self) -> String {
        self.header("BITS-Session-Id")
            .expect("session id")
            .to_owned()
    }

    pub fn received(&self) -> u64 {
        self.header("BITS-Received-Content-Range")
            .expect("BITS-Received-Content-Range")
            .parse()
            .expect("decimal")
    }

    pub fn error(&self) -> Option<(&str, &str)> {
        Some((
            self.header("BITS-Error-Code")?,
            self.header("BITS-Error-Context")?,
        ))
    }
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect deadline")
            .expect("connect");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes a request head; `Content-Length` is added from `body_len` unless given.
    pub async fn write_head(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body_len: usize,
    ) {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {body_len}\r\n"));
        }
        head.push_str("\r\n");
        self.write(head.as_bytes()).await;
    }

    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.write_head(method, target, headers, body.len()).await;
        self.write(body).await;
        self.read_response().await
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("read deadline")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    pub async fn read_response(&mut self) -> Resp {
        let mut resp = self.read_head().await;
        let len: usize = resp
            .header("Content-Length")
            .expect("every response has Content-Length")
            .parse()
            .expect("decimal Content-Length");
        while self.buf.len() < len {
            assert!(self.fill().await > 0, "connection closed inside a body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    /// A response without a body, whatever its `Content-Length` says (the answer to
    /// a `HEAD`).
    pub async fn read_head(&mut self) -> Resp {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill().await > 0, "connection closed before a response");
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("utf-8 head");
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Resp {
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// Whether the server closes the connection (EOF or reset) within the deadline.
    pub async fn closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// One request on a fresh connection.
pub async fn once(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    Conn::connect(addr)
        .await
        .request(method, target, headers, body)
        .await
}

pub async fn ping(addr: SocketAddr) -> Resp {
    once(
        addr,
        "BITS_POST",
        "/x",
        &[("BITS-Packet-Type", "Ping")],
        b"",
    )
    .await
}

pub async fn create(addr: SocketAddr, path: &str) -> Resp {
    once(
        addr,
        "BITS_POST",
        path,
        &[
            ("BITS-Packet-Type", "Create-Session"),
            ("BITS-Supported-Protocols", BITS_1_5),
        ],
        b"",
    )
    .await
}

/// Creates a session and returns its id, asserting success.
pub async fn open(addr: SocketAddr, path: &str) -> String {
    let resp = create(addr, path).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.session()
}

pub async fn fragment(
    addr: SocketAddr,
    path: &str,
    id: &str,
    first: u64,
    total: u64,
    bytes: &[u8],
) -> Resp {
    let range = format!(
        "bytes {}-{}/{}",
        first,
        first + bytes.len() as u64 - 1,
        total
    );
    once(
        addr,
        "BITS_POST",
        path,
        &[
            ("BITS-Packet-Type", "Fragment"),
            ("BITS-Session-Id", id),
            ("Content-Range", &range),
        ],
        bytes,
    )
    .await
}

pub async fn end(addr: SocketAddr, path: &str, id: &str, kind: &str) -> Resp {
    once(
        addr,
        "BITS_POST",
        path,
        &[("BITS-Packet-Type", kind), ("BITS-Session-Id", id)],
        b"",
    )
    .await
}

pub async fn close(addr: SocketAddr, path: &str, id: &str) -> Resp {
    end(addr, path, id, "Close-Session").await
}

pub async fn cancel(addr: SocketAddr, path: &str, id: &str) -> Resp {
    end(addr, path, id, "Cancel-Session").await
}

/// Uploads `data` in fragments of `chunk` bytes and closes; asserts every Ack.
pub async fn upload(addr: SocketAddr, path: &str, data: &[u8], chunk: usize) -> String {
    let id = open(addr, path).await;
    for (i, part) in data.chunks(chunk).enumerate() {
        let first = (i * chunk) as u64;
        let resp = fragment(addr, path, &id, first, data.len() as u64, part).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.received(), first + part.len() as u64);
    }
    let resp = close(addr, path, &id).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    id
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic test data.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A server on 127.0.0.1:0 over a fresh temp directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub server: ServerHandle,
}

impl Fixture {
    pub fn config(dir: &Path) -> ServerConfig {
        let mut config = ServerConfig::new(dir.join("root"));
        config.name = NAME.to_owned();
        config
    }

    pub async fn start() -> Fixture {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut ServerConfig)) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Self::config(dir.path());
        change(&mut config);
        let server = spawn(config).await.expect("spawn");
        Fixture { dir, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.root().join(".bits-sessions")
    }

    /// Length of a session's temp file, if it exists.
    pub fn part_len(&self, id: &str) -> Option<u64> {
        let stem = id.trim_matches(|c| c == '{' || c == '}');
        std::fs::metadata(self.sessions_dir().join(format!("{stem}.part")))
            .ok()
            .map(|m| m.len())
    }

    /// Files left in the sessions directory that belong to `id`.
    pub fn session_files(&self, id: &str) -> Vec<String> {
        let stem = id.trim_matches(|c| c == '{' || c == '}');
        std::fs::read_dir(self.sessions_dir())
            .expect("sessions dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(stem))
            .collect()
    }
}

/// Polls `check` until it holds or the deadline passes.
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
