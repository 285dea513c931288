//! Cancel-Session sent by bitsgate itself (expired pins, admin deletes), so the owning
//! backend frees the session's temp files instead of keeping them until its own cleanup.

use bits_proto::headers as h;
use bits_proto::{AckInfo, ErrorCode, PacketType};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOutcome {
    /// HTTP status of the Ack.
    pub status: u16,
    /// Its BITS error code, if any.
    pub error_code: Option<ErrorCode>,
}

impl CancelOutcome {
    /// The session is gone from the backend: cancelled now, or unknown already.
    pub fn session_is_gone(&self) -> bool {
        self.status == 200 || self.error_code == Some(ErrorCode::SESSION_NOT_FOUND)
    }
}

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// Connecting, writing or reading failed.
    #[error("talking to {addr}: {source}")]
    Io {
        /// The backend.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// No complete answer within the timeout.
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    /// The answer was not HTTP.
    #[error("unreadable answer from {0}")]
    Malformed(SocketAddr),
}

/// Sends `Cancel-Session` for `session` to `addr`, under URL directory `path`.
pub async fn send_cancel(
    addr: SocketAddr,
    path: &str,
    session: &str,
    timeout: Duration,
) -> Result<CancelOutcome, CancelError> {
    tokio::time::timeout(timeout, exchange(addr, path, session))
        .await
        .map_err(|_| CancelError::Timeout(addr))?
}

async fn exchange(
    addr: SocketAddr,
    path: &str,
    session: &str,
) -> Result<CancelOutcome, CancelError> {
    let io = |source| CancelError::Io { addr, source };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{packet}: {cancel}\r\n{sid}: {session}\r\nContent-Length: 0\r\nUser-Agent: bitsgate\r\nConnection: close\r\n\r\n",
        method = h::METHOD_BITS_POST,
        packet = h::PACKET_TYPE,
        cancel = PacketType::CancelSession.as_str(),
        sid = h::SESSION_ID,
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(CancelError::Malformed(addr));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = response.code.ok_or(CancelError::Malformed(addr))?;
                if (100..200).contains(&status) {
                    // An interim answer; the real one follows, maybe already read.
                    buf.drain(..head_len);
                    continue;
                }
                let mut map = http::HeaderMap::new();
                for header in response.headers.iter() {
                    if let (Ok(name), Ok(value)) = (
                        http::HeaderName::from_bytes(header.name.as_bytes()),
                        http::HeaderValue::from_bytes(header.value),
                    ) {
                        map.append(name, value);
                    }
                }
                return Ok(CancelOutcome {
                    status,
                    error_code: AckInfo::from_headers(&map).error_code,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => continue,
            _ => return Err(CancelError::Malformed(addr)),
        }
    }
}
