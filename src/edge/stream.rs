//! The client connection as Pingora reads it, with the listener's limits enforced on
//! every read: the header block's deadline and size, and a request body's least
//! progress. The proxy tells the stream where a request is (`Phase`) through
//! [`super::client`]; the stream keeps the clocks.
//!
//! Why a wrapper around the stream: Pingora's HTTP/1 reader bounds each read (60 s, or
//! the keep-alive timeout on a reused connection), not the header block, so a client
//! sending a byte every 59 s holds its connection forever; and it accepts header
//! blocks up to 1 MiB. Both are decided below Pingora's parser, where the bytes are.

use super::transport::{Arrived, Transport};
use crate::config::EdgeLimits;
use crate::metrics::{EdgeClose, EdgeMetrics};
use async_trait::async_trait;
use bytes::{Buf, Bytes};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Where the connection is in its current request, as the proxy last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Between requests: the keep-alive timeout bounds the wait for a first byte.
    Idle = 0,
    /// Reading a request header block: `header_timeout` and `max_header_block`.
    Header = 1,
    /// The header is parsed and no body is being read: no clock of the edge runs
    /// (the backend may take minutes to answer).
    Request = 2,
    /// Reading a request body: it must make progress.
    Body = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Idle,
            1 => Phase::Header,
            3 => Phase::Body,
            _ => Phase::Request,
        }
    }
}

/// How the wait for a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The request's first bytes are in.
    Bytes,
    /// The client closed the connection (or it failed).
    Closed,
    /// Nothing came in time.
    TimedOut,
}

/// The longest a TLS close_notify may take to write (see [`EdgeStream::close_tls`]).
const TLS_CLOSE_WRITE: Duration = Duration::from_secs(1);

/// The answer to a header block over `max_header_block`: the client learns why, and
/// the connection ends (the rest of the block is not read).
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Length: 0\r\nConnection: close\r\n\r\n";

/// A client connection under the listener's limits.
pub struct EdgeStream {
    inner: Transport,
    /// Bytes already read (past a PROXY protocol header, or by the wait for a
    /// request), handed out before the socket's.
    prefix: Bytes,
    /// The client's address (the PROXY header's source when there is one, else the
    /// TCP peer): the peer address of the socket digest the proxy sees, made for each
    /// request (a waiting connection holds none).
    peer: std::net::SocketAddr,
    limits: EdgeLimits,
    metrics: EdgeMetrics,
    /// Set by the proxy (through a shared reference): see [`Phase`].
    announced: AtomicU8,
    /// Its requests go to Pingora's proxy, not the fast path (set through a shared
    /// reference, by the proxy that bound it for Windows authentication).
    general_only: AtomicBool,
    /// Ended by a failure before its answer was whole (set through a shared
    /// reference, by the proxy): dropped without a close_notify.
    cut_short: AtomicBool,
    /// The phase the clocks below belong to.
    current: Phase,
    /// When the current header block must be complete.
    header_deadline: Instant,
    /// Header bytes read so far in the current block.
    header_bytes: u64,
    /// Bytes since the last line feed (carriage returns aside); zero at the start of
    /// a line, so a line feed then ends the block.
    line_len: u32,
    /// The end of the block was seen; the proxy has not said so yet.
    header_seen: bool,
    /// Body bytes in the current progress window.
    window_bytes: u64,
    /// Time spent waiting for the client in the current progress window.
    window_waited: Duration,
    /// Since when the current read has been waiting for the client.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The 431 being written (bytes written so far), before the connection fails.
    rejecting: Option<usize>,
    /// The limit that ended the connection: every later read fails with it.
    failed: Option<EdgeClose>,
}

impl std::fmt::Debug for EdgeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStream")
            .field("inner", &self.inner)
            .field("phase", &self.current)
            .finish()
    }
}

impl EdgeStream {
    /// Wraps a connection accepted at `accepted`: its first header block is due
    /// `header_timeout` after it. `prefix` holds bytes already read from it;
    /// `client` replaces the TCP peer as the client's address.
    pub fn new(
        inner: Transport,
        prefix: Bytes,
        client: Option<std::net::SocketAddr>,
        limits: EdgeLimits,
        metrics: EdgeMetrics,
        accepted: Instant,
    ) -> EdgeStream {
        let peer = client.unwrap_or(inner.peer());
        EdgeStream {
            inner,
            prefix,
            peer,
            header_deadline: accepted + limits.header_timeout,
            limits,
            metrics,
            announced: AtomicU8::new(Phase::Header as u8),
            general_only: AtomicBool::new(false),
            cut_short: AtomicBool::new(false),
            current: Phase::Header,
            header_bytes: 0,
            line_len: 1,
            header_seen: false,
            window_bytes: 0,
            window_waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
            rejecting: None,
            failed: None,
        }
    }

    /// Waits, holding nothing but this stream, until the client sends the first bytes
    /// of a request (kept as the prefix the HTTP reader gets first), the connection
    /// closes, or `until` passes. A new connection waits until its header deadline
    /// (counted as a header timeout); a kept-alive one until the keep-alive timeout.
    pub async fn wait_for_request(&mut self, until: Instant) -> Waited {
        if !self.prefix.is_empty() {
            return Waited::Bytes;
        }
        let arrived = self.inner.first_bytes();
        match tokio::time::timeout_at(tokio::time::Instant::from_std(until), arrived).await {
            Ok(Arrived::Closed) => Waited::Closed,
            Ok(Arrived::Bytes(bytes)) => {
                self.prefix = bytes;
                Waited::Bytes
            }
            Err(_) => {
                if self.current == Phase::Header {
                    self.fail(EdgeClose::HeaderTimeout);
                }
                Waited::TimedOut
            }
        }
    }

    /// The request is over: the wait for the next one is not a header phase, whatever
    /// the proxy last announced (a request answered without reading its body may end
    /// with no read that would have followed the announcement).
    pub fn between_requests(&mut self) {
        self.current = Phase::Idle;
        self.announce(Phase::Idle);
        self.waiting_since = None;
    }

    /// Gives back bytes read from the connection but not used, to be read again
    /// first, ahead of any bytes given back earlier and not read yet (a read may have
    /// taken only part of them). They count once towards the header block's size: its
    /// accounting starts again (its deadline stays).
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.prefix = if self.prefix.is_empty() {
            bytes
        } else {
            let mut joined = bytes::BytesMut::with_capacity(bytes.len() + self.prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.prefix);
            joined.freeze()
        };
        if self.current == Phase::Header {
            self.header_bytes = 0;
            self.line_len = 1;
            self.header_seen = false;
        }
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Transport::Tls { .. })
    }

    /// Before bitsgate drops a connection it ends: on TLS, sends the close_notify
    /// (within [`TLS_CLOSE_WRITE`]), so the client sees a close, not a truncation.
    /// Nothing on plain TCP, where dropping the socket closes it.
    /// Nothing either on a connection [cut short](Self::cut_short) (see `Shutdown`).
    pub async fn close_tls(&mut self) {
        if self.is_tls() {
            let _ = tokio::time::timeout(TLS_CLOSE_WRITE, Shutdown::shutdown(self)).await;
        }
    }

    /// The client's address: the PROXY header's source when there was one, else
    /// the TCP peer.
    pub fn client(&self) -> Option<std::net::SocketAddr> {
        Some(self.peer)
    }

    /// Keeps the connection's later requests on Pingora's proxy.
    pub fn stay_on_general_path(&self) {
        self.general_only.store(true, Ordering::Relaxed);
    }

    /// Marks the connection as ended by a failure, its answer incomplete or missing
    /// (see [`super::cut_short`]).
    pub fn cut_short(&self) {
        self.cut_short.store(true, Ordering::Relaxed);
    }

    /// Whether its requests must go to Pingora's proxy.
    pub fn stays_on_general_path(&self) -> bool {
        self.general_only.load(Ordering::Relaxed)
    }

    /// When the first header block of a new connection must be complete.
    pub fn header_deadline(&self) -> Instant {
        self.header_deadline
    }

    /// The proxy's word on where the request is.
    pub fn announce(&self, phase: Phase) {
        self.announced.store(phase as u8, Ordering::Relaxed);
    }

    /// Follows the proxy's announcement, resetting the clocks of a phase entered.
    fn follow(&mut self, now: Instant) {
        let announced = Phase::from_u8(self.announced.load(Ordering::Relaxed));
        if announced == self.current {
            return;
        }
        self.current = announced;
        self.waiting_since = None;
        match announced {
            Phase::Header => self.start_header(now),
            Phase::Body => {
                self.window_bytes = 0;
                self.window_waited = Duration::ZERO;
            }
            Phase::Idle | Phase::Request => {}
        }
    }

    fn start_header(&mut self, now: Instant) {
        self.header_deadline = now + self.limits.header_timeout;
        self.header_bytes = 0;
        self.line_len = 1;
        self.header_seen = false;
    }

    /// Ends the connection for `reason`: counted once, and every read fails from now.
    fn fail(&mut self, reason: EdgeClose) -> io::Error {
        if self.failed.is_none() {
            self.failed = Some(reason);
            self.metrics.closed(reason);
            tracing::debug!(target: "bitsgate::edge", reason = reason.label(), "client connection closed by a listener limit");
        }
        failure(reason)
    }

    /// Accounts bytes just read in the phase they belong to.
    fn account(&mut self, bytes: &[u8], now: Instant) -> Result<(), EdgeClose> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.current == Phase::Idle {
            // The first byte of the next request starts its header clock.
            self.current = Phase::Header;
            self.announce(Phase::Header);
            self.start_header(now);
        }
        match self.current {
            Phase::Header if !self.header_seen => {
                let used = match header_end(&mut self.line_len, bytes) {
                    Some(end) => {
                        self.header_seen = true;
                        end
                    }
                    None => bytes.len(),
                };
                self.header_bytes = self.header_bytes.saturating_add(used as u64);
                if self.header_bytes > self.limits.max_header_block {
                    return Err(EdgeClose::HeaderTooLarge);
                }
            }
            Phase::Body => return self.account_body(bytes.len(), now),
            _ => {}
        }
        Ok(())
    }

    /// Accounts `len` body bytes just read against the body's progress clock.
    fn account_body(&mut self, len: usize, now: Instant) -> Result<(), EdgeClose> {
        if let Some(since) = self.waiting_since.take() {
            self.window_waited += now.saturating_duration_since(since);
        }
        self.window_bytes = self.window_bytes.saturating_add(len as u64);
        if self.window_bytes >= self.limits.body_min_bytes {
            self.window_bytes = 0;
            self.window_waited = Duration::ZERO;
        } else if self.window_waited >= self.limits.body_timeout {
            return Err(EdgeClose::BodyTooSlow);
        }
        Ok(())
    }

    /// Whether the request body's next bytes can be taken straight from the socket
    /// with [`Self::read_body_with`]: a plain TCP connection in its body phase, with
    /// nothing read ahead of the socket.
    pub fn body_on_socket(&mut self) -> bool {
        self.follow(Instant::now());
        matches!(self.inner, Transport::Tcp { .. })
            && self.prefix.is_empty()
            && self.current == Phase::Body
            && self.failed.is_none()
    }

    /// Takes request body bytes from the client's socket with `op` (a `splice(2)`
    /// into a pipe, which must not wait and says `WouldBlock` when there is
    /// nothing), under the same body progress clock as a read. Only when
    /// [`Self::body_on_socket`] said so.
    pub async fn read_body_with(
        &mut self,
        mut op: impl FnMut(&tokio::net::TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_body_with(cx, &mut op)).await
    }

    fn poll_read_body_with(
        &mut self,
        cx: &mut Context<'_>,
        op: &mut impl FnMut(&tokio::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        if let Some(reason) = self.failed {
            return Poll::Ready(Err(failure(reason)));
        }
        let now = Instant::now();
        self.follow(now);
        let (Transport::Tcp { tcp, .. }, Phase::Body, true) =
            (&self.inner, self.current, self.prefix.is_empty())
        else {
            return Poll::Ready(Err(io::Error::other(
                "not a request body on a plain socket",
            )));
        };
        loop {
            match tcp.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {
                    match tcp.try_io(tokio::io::Interest::READABLE, || op(tcp)) {
                        // The end of the stream is the caller's to judge, not the clock's.
                        Ok(0) => return Poll::Ready(Ok(0)),
                        Ok(n) => {
                            return match self.account_body(n, now) {
                                Ok(()) => Poll::Ready(Ok(n)),
                                Err(reason) => Poll::Ready(Err(self.fail(reason))),
                            }
                        }
                        // Readiness was stale: cleared, and polled again.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.poll_clock(cx, now).map(Err),
            }
        }
    }

    /// While a read waits: fails the connection when the phase's clock runs out.
    fn poll_clock(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<io::Error> {
        let Some((deadline, reason)) = self.deadline(now) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(self.fail(reason)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// When the read now waiting must have brought something, if a clock runs.
    fn deadline(&mut self, now: Instant) -> Option<(Instant, EdgeClose)> {
        match self.current {
            Phase::Header => Some((self.header_deadline, EdgeClose::HeaderTimeout)),
            Phase::Body => {
                let since = *self.waiting_since.get_or_insert(now);
                let left = self.limits.body_timeout.saturating_sub(self.window_waited);
                Some((since + left, EdgeClose::BodyTooSlow))
            }
            Phase::Idle | Phase::Request => None,
        }
    }

    /// Writes the 431, then fails.
    fn poll_reject(&mut self, cx: &mut Context<'_>, mut written: usize) -> Poll<io::Error> {
        while written < TOO_LARGE.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &TOO_LARGE[written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => written += n,
                Poll::Pending => {
                    self.rejecting = Some(written);
                    return Poll::Pending;
                }
            }
        }
        if written >= TOO_LARGE.len() && Pin::new(&mut self.inner).poll_flush(cx).is_pending() {
            self.rejecting = Some(written);
            return Poll::Pending;
        }
        self.rejecting = None;
        Poll::Ready(failure(EdgeClose::HeaderTooLarge))
    }
}

fn failure(reason: EdgeClose) -> io::Error {
    let kind = match reason {
        EdgeClose::HeaderTimeout | EdgeClose::BodyTooSlow => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, reason.label())
}

/// Where the header block ends in `bytes` (the index after its final line feed),
/// given `line_len`, the length of the line in progress before them; updates it.
/// A line feed at the start of a line ends the block (`\r\n\r\n` or `\n\n`).
///
/// Only whether the line so far is empty matters, so it looks at line feeds (found
/// with `memchr`) and at most the first byte of each line that is not a carriage
/// return, not at every byte.
fn header_end(line_len: &mut u32, bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', bytes) {
        if *line_len == 0 && bytes[start..i].iter().all(|&b| b == b'\r') {
            return Some(i + 1);
        }
        *line_len = 0;
        start = i + 1;
    }
    if !bytes[start..].iter().all(|&b| b == b'\r') {
        *line_len = line_len.saturating_add(1);
    }
    None
}

impl AsyncRead for EdgeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(written) = this.rejecting {
            return this.poll_reject(cx, written).map(Err);
        }
        if let Some(reason) = this.failed {
            return Poll::Ready(Err(failure(reason)));
        }
        let now = Instant::now();
        this.follow(now);
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            let chunk = this.prefix.split_to(n);
            if this.prefix.is_empty() {
                // Its buffer goes with the last chunk, not kept by an empty view.
                this.prefix = Bytes::new();
            }
            buf.put_slice(&chunk);
            return match this.account(&chunk, now) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(EdgeClose::HeaderTooLarge) => {
                    this.fail(EdgeClose::HeaderTooLarge);
                    this.poll_reject(cx, 0).map(Err)
                }
                Err(reason) => Poll::Ready(Err(this.fail(reason))),
            };
        }
        if this.current == Phase::Header && now >= this.header_deadline {
            return Poll::Ready(Err(this.fail(EdgeClose::HeaderTimeout)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                match this.account(read, now) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(EdgeClose::HeaderTooLarge) => {
                        this.fail(EdgeClose::HeaderTooLarge);
                        this.poll_reject(cx, 0).map(Err)
                    }
                    Err(reason) => Poll::Ready(Err(this.fail(reason))),
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_clock(cx, now).map(Err),
        }
    }
}

impl AsyncWrite for EdgeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A TLS connection dropped between requests is not dropped without the close_notify
/// it can still send: the client must see a close, not a truncation, whichever path
/// ended the connection ([`EdgeStream::close_tls`] is the bounded, waiting form, where
/// bitsgate ends it). One dropped with a request under way (a task cut at the end of
/// a shutdown's grace) or cut short by a failure mid-answer closes without one, as
/// nginx's and HAProxy's do after an error: a close_notify there would tell the client
/// that a truncated answer was complete.
impl Drop for EdgeStream {
    fn drop(&mut self) {
        let between_requests = matches!(
            Phase::from_u8(*self.announced.get_mut()),
            Phase::Idle | Phase::Header
        );
        if *self.cut_short.get_mut() || !between_requests {
            return;
        }
        if let Transport::Tls { tls, .. } = &mut self.inner {
            super::tls::close_without_waiting(tls);
        }
    }
}

#[async_trait]
impl Shutdown for EdgeStream {
    async fn shutdown(&mut self) {
        // A TLS connection cut short ends as a truncation (see `EdgeStream::cut_short`).
        if self.is_tls() && *self.cut_short.get_mut() {
            return;
        }
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl UniqueID for EdgeStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

/// No ALPN (the client listener offers none), no client certificates, and no timing
/// or proxy digests: what Pingora's TLS stream reported for the same connection.
impl Ssl for EdgeStream {
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner
            .tls()
            .map(|tls| Arc::new(super::tls::digest(tls)))
    }
}

impl GetTimingDigest for EdgeStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for EdgeStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for EdgeStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.inner.digest(self.peer))
    }
}

#[async_trait]
impl Peek for EdgeStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.len());
            buf[..n].copy_from_slice(&self.prefix.chunk()[..n]);
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::header_end;

    fn end_of(chunks: &[&[u8]]) -> Option<(usize, usize)> {
        let mut line = 1;
        for (i, chunk) in chunks.iter().enumerate() {
            if let Some(end) = header_end(&mut line, chunk) {
                return Some((i, end));
            }
        }
        None
    }

    #[test]
    fn the_block_ends_at_an_empty_line_even_split_across_reads() {
        assert_eq!(
            end_of(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"]),
            Some((0, 27))
        );
        assert_eq!(
            end_of(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n\r", b"\nx"]),
            Some((2, 1))
        );
        assert_eq!(end_of(&[b"GET / HTTP/1.1\nHost: a\n\n"]), Some((0, 24)));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]), None);
        // A line feed before any byte of the request line is not an end.
        assert_eq!(end_of(&[b"\r\nGET / HTTP/1.1\r\n"]), None);
    }
}
