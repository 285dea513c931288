//! The request body on the fast path: streamed to the backend behind the head, or
//! read and discarded after an answer of bitsgate's own.

use super::splice::Pipe;
use super::Request;
use crate::config::{ListenerConfig, UpstreamConfig};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

/// The buffer a body is streamed through: it starts small, so a body that trickles
/// in (or stalls) holds little, and doubles while reads fill it, up to the largest.
const BODY_BUFFER_FIRST: usize = 4 << 10;
const BODY_BUFFER_LARGEST: usize = 64 << 10;
/// Bodies this long (past what came with the head) go through a pipe with
/// `splice(2)` (see [`super::splice`]); shorter ones cost less through the buffer.
const SPLICE_FROM: u64 = 64 << 10;

impl Request {
    /// Takes the body bytes read along with the head.
    fn take_early_body(&mut self) -> bytes::BytesMut {
        let wanted = self.body_len - self.body_read;
        let n = (self.early.len() as u64).min(wanted) as usize;
        self.body_read += n as u64;
        self.early.split_to(n)
    }
}

fn error(etype: ErrorType, source: ErrorSource, context: &'static str) -> Box<Error> {
    let mut e = Error::explain(etype, context);
    e.esource = source;
    e
}

async fn write_upstream(upstream: &TcpStream, bytes: &[u8], timeout: Duration) -> Result<()> {
    writing_upstream(timeout, write_all(upstream, bytes)).await
}

/// `write_all` through a shared reference, so that the answer can be watched for on
/// the same socket meanwhile.
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A write of the request to the backend, within `timeout`; errors are the backend's.
async fn writing_upstream(
    timeout: Duration,
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<()> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(error(
            ErrorType::WriteError,
            ErrorSource::Upstream,
            "writing the request",
        )),
        Err(_) => Err(error(
            ErrorType::WriteTimedout,
            ErrorSource::Upstream,
            "writing the request",
        )),
    }
}

/// How many body bytes a read from the client brought; its end before the body's
/// and its failures are the client's errors.
fn body_bytes(read: std::io::Result<usize>) -> Result<usize> {
    match read {
        Ok(0) => Err(error(
            ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
            "the client closed in the request body",
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(error(
            ErrorType::ReadError,
            ErrorSource::Downstream,
            "reading the request body",
        )),
    }
}

/// How sending a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Head and body are with the backend.
    Whole,
    /// The backend started its answer (or closed) before it had the whole body, as a
    /// server refusing a request it will not read does: the answer is what the client
    /// gets, and neither connection carries another request.
    AnsweredEarly,
}

/// Writes the request head (the client's, with `forwarded_for` as its one
/// `X-Forwarded-For` when given) and its body upstream, watching for an answer
/// meanwhile. With `splice` (the counter of the bytes it moves), a long body goes
/// through a pipe (see [`super::splice`]).
pub async fn send_request(
    request: &mut Request,
    forwarded_for: Option<&[u8]>,
    upstream: &TcpStream,
    config: &UpstreamConfig,
    splice: Option<&prometheus::IntCounter>,
) -> Result<Sent> {
    let mut out = bytes::BytesMut::new();
    super::head::upstream_head(&request.raw_head, forwarded_for, &mut out);
    // The body's start goes in the same write as the head.
    out.extend_from_slice(&request.take_early_body());
    let head = write_upstream(upstream, &out, config.write_timeout).await;
    drop(out);
    if request.body_read == request.body_len {
        return head.map(|()| Sent::Whole);
    }
    let mut body = std::pin::pin!(async {
        head?;
        send_body(request, upstream, config, splice).await
    });
    let mut probe = [0u8; 16];
    let watched = tokio::select! {
        biased;
        sent = &mut body => Watched::Sent(sent),
        // Something to read before the body is sent: the answer has begun, unless
        // it is an interim answer (`100 Continue`), which `read_head` skips later.
        peeked = upstream.peek(&mut probe) => match peeked {
            Ok(n) if is_interim(&probe[..n]) => Watched::Interim,
            _ => Watched::Answer,
        },
    };
    let sent = match watched {
        Watched::Sent(sent) => sent.map(|()| Sent::Whole),
        Watched::Answer => Ok(Sent::AnsweredEarly),
        // It stays unread until the body is sent, so the watch ends here.
        Watched::Interim => body.await.map(|()| Sent::Whole),
    };
    match sent {
        // A backend that answered and closed fails the writes that follow.
        Err(e) if e.esource == ErrorSource::Upstream && answer_waiting(upstream).await => {
            Ok(Sent::AnsweredEarly)
        }
        sent => sent,
    }
}

/// What the watch on the backend's socket saw while the body was being sent.
enum Watched {
    Sent(Result<()>),
    Answer,
    Interim,
}

/// Whether `peeked`, the first bytes the backend sent, start an interim (1xx)
/// answer (after the empty lines a server may send first).
fn is_interim(peeked: &[u8]) -> bool {
    let line = &peeked[super::response::empty_lines(peeked)..];
    line.len() >= 10 && line.starts_with(b"HTTP/1.") && &line[8..10] == b" 1"
}

/// Whether the backend has sent something (or closed) that is there to read now.
async fn answer_waiting(upstream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    // A zero timeout still polls the peek once: it answers without waiting.
    let peeked = tokio::time::timeout(Duration::ZERO, upstream.peek(&mut probe)).await;
    matches!(peeked, Ok(Ok(n)) if n > 0)
}

/// Sends the rest of the request body, read from the client.
async fn send_body(
    request: &mut Request,
    upstream: &TcpStream,
    config: &UpstreamConfig,
    splice: Option<&prometheus::IntCounter>,
) -> Result<()> {
    let mut left = request.body_len - request.body_read;
    if let Some(spliced) = splice.filter(|_| left >= SPLICE_FROM) {
        if request.edge.body_on_socket() {
            // No pipe (descriptors exhausted): the buffer below carries the body.
            if let Ok(pipe) = Pipe::new() {
                return splice_body(request, &pipe, upstream, config, spliced).await;
            }
        }
    }
    let mut buf = vec![0u8; (left as usize).min(BODY_BUFFER_FIRST)];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = body_bytes(request.edge.read(&mut buf[..want]).await)?;
        request.body_read += n as u64;
        left -= n as u64;
        write_upstream(upstream, &buf[..n], config.write_timeout).await?;
        if n == buf.len() && buf.len() < BODY_BUFFER_LARGEST && left > buf.len() as u64 {
            buf = vec![0u8; (buf.len() * 2).min(BODY_BUFFER_LARGEST)];
        }
    }
    Ok(())
}

/// Moves the rest of the body from the client's socket to the backend's through
/// `pipe`, a pipe-full at a time.
async fn splice_body(
    request: &mut Request,
    pipe: &Pipe,
    upstream: &TcpStream,
    config: &UpstreamConfig,
    spliced: &prometheus::IntCounter,
) -> Result<()> {
    while request.body_read < request.body_len {
        let want = ((request.body_len - request.body_read) as usize).min(pipe.capacity);
        let read = request.edge.read_body_with(|tcp| pipe.fill_from(tcp, want));
        let n = body_bytes(read.await)?;
        request.body_read += n as u64;
        drain_pipe(pipe, n, upstream, config.write_timeout).await?;
        spliced.inc_by(n as u64);
    }
    Ok(())
}

/// Moves the `len` bytes in `pipe` to the backend within `timeout`.
async fn drain_pipe(
    pipe: &Pipe,
    mut len: usize,
    upstream: &TcpStream,
    timeout: Duration,
) -> Result<()> {
    let drain = async {
        while len > 0 {
            upstream.writable().await?;
            match upstream.try_io(Interest::WRITABLE, || pipe.drain_into(upstream, len)) {
                Ok(n) => len -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    writing_upstream(timeout, drain).await
}

/// Reads and discards what is left of the request body, for at most
/// `lingering_time` in all and `lingering_timeout` per read that brings nothing, as
/// [`super::super::linger`] does on Pingora's path. Returns whether it was read to
/// its end.
pub async fn discard(request: &mut Request, listener: &ListenerConfig) -> bool {
    drop(request.take_early_body());
    if request.body_read >= request.body_len {
        return true;
    }
    let per_read = listener.lingering_timeout;
    let drain = async {
        let mut buf = vec![0u8; 16 << 10];
        while request.body_read < request.body_len {
            let want = ((request.body_len - request.body_read) as usize).min(buf.len());
            match tokio::time::timeout(per_read, request.edge.read(&mut buf[..want])).await {
                Ok(Ok(n)) if n > 0 => request.body_read += n as u64,
                _ => return false,
            }
        }
        true
    };
    tokio::time::timeout(listener.lingering_time, drain)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::is_interim;

    #[test]
    fn only_a_1xx_status_line_is_an_interim_answer() {
        assert!(is_interim(b"HTTP/1.1 100 Continue\r\n"));
        assert!(is_interim(b"\r\nHTTP/1.1 103 Ea"));
        assert!(!is_interim(b"HTTP/1.1 413 Request"));
        assert!(!is_interim(b"HTTP/1.1 200 OK\r\n"));
        // Too little to tell: taken for the answer, as a close would be.
        assert!(!is_interim(b"HTTP/1.1 "));
        assert!(!is_interim(b""));
    }
}
