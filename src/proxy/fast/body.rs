//! The request body on the fast path: streamed to the backend behind the head, or
//! read and discarded after an answer of bitsgate's own.

use super::Request;
use crate::config::{ListenerConfig, UpstreamConfig};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The buffer a body is streamed through: it starts small, so a body that trickles
/// in (or stalls) holds little, and doubles while reads fill it, up to the largest.
const BODY_BUFFER_FIRST: usize = 4 << 10;
const BODY_BUFFER_LARGEST: usize = 64 << 10;

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

async fn write_upstream(upstream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> Result<()> {
    match tokio::time::timeout(timeout, upstream.write_all(bytes)).await {
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

/// Writes the request head (the client's, with `forwarded_for` as its one
/// `X-Forwarded-For` when given) and its body upstream.
pub async fn send_request(
    request: &mut Request,
    forwarded_for: Option<&[u8]>,
    upstream: &mut TcpStream,
    config: &UpstreamConfig,
) -> Result<()> {
    let mut out = bytes::BytesMut::new();
    super::head::upstream_head(&request.raw_head, forwarded_for, &mut out);
    // The body's start goes in the same write as the head.
    out.extend_from_slice(&request.take_early_body());
    write_upstream(upstream, &out, config.write_timeout).await?;
    drop(out);
    let mut left = request.body_len - request.body_read;
    if left == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; (left as usize).min(BODY_BUFFER_FIRST)];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = match request.edge.read(&mut buf[..want]).await {
            Ok(0) => {
                return Err(error(
                    ErrorType::ConnectionClosed,
                    ErrorSource::Downstream,
                    "the client closed in the request body",
                ))
            }
            Ok(n) => n,
            Err(_) => {
                return Err(error(
                    ErrorType::ReadError,
                    ErrorSource::Downstream,
                    "reading the request body",
                ))
            }
        };
        request.body_read += n as u64;
        left -= n as u64;
        write_upstream(upstream, &buf[..n], config.write_timeout).await?;
        if n == buf.len() && buf.len() < BODY_BUFFER_LARGEST && left > buf.len() as u64 {
            buf = vec![0u8; (buf.len() * 2).min(BODY_BUFFER_LARGEST)];
        }
    }
    Ok(())
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
