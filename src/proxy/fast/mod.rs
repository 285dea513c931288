//! The fast path: a BITS packet on a plain client connection, to a farm reached over
//! plain HTTP that has not asked for Windows authentication, is proxied here with
//! one parse of its head and no per-request state beyond the request itself;
//! everything else goes to Pingora's proxy ([`super::BitsProxy`] through
//! `pingora::proxy`).
//!
//! Both paths make the same decisions with the same code: routing (`decide`),
//! failed connects, learning from the Ack, the Ack for a failure, counting and the
//! access log are [`BitsProxy`]'s. What differs is the HTTP/1 work around them: the
//! head is parsed once with `httparse`, read by the decisions where it lies (no header
//! map) and not copied for the upstream request, the
//! body is streamed with one buffer, upstream connections wait in a pool of their
//! own that no task or timer watches, and a timeout's timer exists only while a read
//! or write waits.

mod body;
pub mod head;
mod pool;
pub mod response;
mod span;
pub mod splice;

use super::acks::{self, Answer};
use super::ctx::RequestCtx;
use super::service::Verdict;
use super::BitsProxy;
use super::{AnswerView, RequestView};
use crate::access_log::{AccessRecord, AnswerFields, Exchange};
use crate::edge::{EdgeStream, Phase};
use crate::state::{Generation, Shared};
use bytes::BytesMut;
use head::{Head, Read};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType};
use response::Framing;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// What became of a connection's next request.
pub enum Served {
    /// Answered; the connection may carry another request. A connection the
    /// backend's answer bound for Windows authentication comes with its binding,
    /// for Pingora's proxy to carry on (as its own connection context).
    Kept(Box<EdgeStream>, Option<Box<dyn Any + Send + Sync>>),
    /// The connection is done.
    Closed,
    /// Not one for this path: its bytes are back in the stream for Pingora's proxy.
    NotMine(Box<EdgeStream>),
}

/// The fast path of one listener service.
pub struct FastPath {
    proxy: BitsProxy,
    shared: Arc<Shared>,
    pool: pool::Pool,
}

/// Whether every backend of the farm is one this path can reach: plain HTTP, and not
/// known to ask for Windows authentication. (Every one, up or not: a packet is routed
/// after the path is chosen, and may go to any of them.)
fn farm_takes_fast_path(generation: &Generation) -> bool {
    generation
        .farm
        .backends
        .iter()
        .all(|backend| backend.tls.is_none() && !backend.status.asks_windows_auth())
}

/// The state of one request on the fast path.
struct Request {
    edge: Box<EdgeStream>,
    /// The head, parsed from `raw_head`.
    head: Head,
    /// The head as the client sent it, which the backend gets.
    raw_head: BytesMut,
    ctx: RequestCtx,
    client: Option<SocketAddr>,
    /// Bytes read past the head: the body's start, and maybe the next request's.
    early: BytesMut,
    body_len: u64,
    /// Body bytes read from the client.
    body_read: u64,
    /// The client may keep the connection after this request.
    keepalive: bool,
    /// The answer as written to the client.
    written: Option<Written>,
    bytes_out: u64,
    /// Counted and logged already.
    logged: bool,
}

/// An answer written to a client.
enum Written {
    /// bitsgate's own.
    Local(ResponseHeader),
    /// The backend's, as sent bar learning's edits.
    Relayed(response::RawAnswer),
}

impl Written {
    fn status(&self) -> u16 {
        match self {
            Written::Local(header) => header.status.as_u16(),
            Written::Relayed(answer) => answer.status(),
        }
    }

    fn fields(&self) -> &dyn AnswerFields {
        match self {
            Written::Local(header) => &header.headers,
            Written::Relayed(answer) => answer,
        }
    }
}

impl FastPath {
    /// The fast path over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        FastPath {
            proxy: BitsProxy::new(shared.clone()),
            shared,
            pool: pool::Pool::default(),
        }
    }

    /// Serves the request whose first bytes are in `edge`, or hands it back.
    pub async fn serve(&self, mut edge: Box<EdgeStream>, shutting_down: bool) -> Served {
        if edge.stays_on_general_path() {
            return Served::NotMine(edge);
        }
        // One load of the configuration for the rule and the request.
        let generation = self.shared.generation();
        if !generation.config.listener.fast_path || !farm_takes_fast_path(&generation) {
            return Served::NotMine(edge);
        }
        // The request's clock starts with its first bytes, as on Pingora's path.
        let mut ctx = RequestCtx::new();
        let (mut buf, len, head) = match head::read(&mut edge).await {
            Read::Complete { buf, len, head } => (buf, len, head),
            Read::Other(buf) => {
                edge.unread(buf.freeze());
                return Served::NotMine(edge);
            }
        };
        let Some(head) = head else {
            edge.unread(buf.freeze());
            return Served::NotMine(edge);
        };
        let (body_len, close) = (head.body_len, head.close);
        let early = buf.split_off(len);
        edge.announce(if body_len == 0 {
            Phase::Request
        } else {
            Phase::Body
        });
        let client = edge.client();
        ctx.generation = Some(generation.clone());
        ctx.client = client.map(|a| a.ip());
        let request = Request {
            edge,
            head,
            raw_head: buf,
            ctx,
            client,
            early,
            body_len,
            body_read: 0,
            keepalive: !close && !shutting_down,
            written: None,
            bytes_out: 0,
            logged: false,
        };
        self.proxy_request(request, &generation).await
    }

    async fn proxy_request(&self, mut request: Request, generation: &Generation) -> Served {
        let view = request.head.view(&request.raw_head);
        let lookup = self.shared.look_up_shared(&view).await;
        let verdict = self
            .proxy
            .decide(&view, false, lookup, generation, &mut request.ctx);
        let kept = match verdict {
            Verdict::Local(answer, reason) => {
                match acks::local_header(&mut request.ctx, &self.shared.metrics, answer, reason) {
                    Ok(header) => self.answer_locally(&mut request, header, generation).await,
                    Err(_) => {
                        request.edge.cut_short();
                        false
                    }
                }
            }
            Verdict::Forward => match self.forward(&mut request, generation).await {
                Ok(kept) => kept,
                Err(e) => self.answer_failure(&mut request, &e, generation).await,
            },
        };
        self.log(&mut request);
        if !kept {
            request.edge.close_tls().await;
            return Served::Closed;
        }
        let Request {
            mut edge,
            early,
            mut ctx,
            ..
        } = request;
        if !early.is_empty() {
            // The client sent its next request already.
            edge.unread(early.freeze());
        }
        let binding = ctx.auth.binding.take().filter(|_| !ctx.auth.lost);
        Served::Kept(
            edge,
            binding.map(|b| Box::new(b) as Box<dyn Any + Send + Sync>),
        )
    }

    /// Counts the request and writes its access log line, once.
    fn log(&self, request: &mut Request) {
        if std::mem::replace(&mut request.logged, true) {
            return;
        }
        self.shared.metrics.fast_path_requests.inc();
        let status = request
            .written
            .as_ref()
            .map_or(request.ctx.status, Written::status);
        self.proxy.count(&request.ctx, status);
        self.shared.access_log.record(|| {
            AccessRecord::of_exchange(
                Exchange {
                    method: bits_proto::headers::METHOD_BITS_POST,
                    path: request.head.view(&request.raw_head).path(),
                    response: request.written.as_ref().map(Written::fields),
                    client: request.client,
                    bytes_in: request.body_read,
                    bytes_out: request.bytes_out,
                },
                &request.ctx,
                status,
            )
        });
    }

    /// Writes an answer of bitsgate's own, then reads and discards the body it
    /// leaves (see [`super::linger`]). Returns whether the connection stays open.
    async fn answer_locally(
        &self,
        request: &mut Request,
        mut header: ResponseHeader,
        generation: &Generation,
    ) -> bool {
        let listener = &generation.config.listener;
        let left = request.body_left();
        let mut keepalive = request.keepalive && left <= super::linger::KEEPALIVE_DRAIN_MAX_BYTES;
        let Ok(head) = response::head_of(&mut header, keepalive) else {
            request.edge.cut_short();
            return false;
        };
        request.written = Some(Written::Local(header));
        let write_timeout = generation.config.upstream.write_timeout;
        if response::write_client(&mut request.edge, &head, write_timeout)
            .await
            .is_err()
        {
            // Not written whole, and the client is not reading: no close to wait on.
            request.edge.cut_short();
            return false;
        }
        if !body::discard(request, listener).await {
            keepalive = false;
        }
        keepalive
    }

    /// Answers a request that failed before its answer was written, as Pingora's
    /// proxy does (`fail_to_proxy`): the connection closes after it.
    async fn answer_failure(
        &self,
        request: &mut Request,
        e: &Error,
        generation: &Generation,
    ) -> bool {
        if request.written.is_some() {
            // Mid-answer: closed as a truncation the client can tell.
            request.edge.cut_short();
            return false;
        }
        let Some((ack, reason)) = BitsProxy::failure_answer(e, &request.ctx) else {
            request.edge.cut_short();
            return false;
        };
        let answer = Answer::for_request(&request.ctx, ack);
        let Ok(header) = acks::local_header(&mut request.ctx, &self.shared.metrics, answer, reason)
        else {
            request.edge.cut_short();
            return false;
        };
        request.keepalive = false;
        self.answer_locally(request, header, generation).await;
        false
    }

    /// Sends the request to the backend chosen (another one after a failed connect,
    /// where that is allowed) and relays its answer. Returns whether the client
    /// connection stays open.
    async fn forward(
        &self,
        request: &mut Request,
        generation: &Generation,
    ) -> pingora::Result<bool> {
        let upstream_config = &generation.config.upstream;
        let view = request.head.view(&request.raw_head);
        let forwarded_for = super::forwarded::value_for(&view, request.client, upstream_config);
        let (mut upstream, addr) = loop {
            let Some(chosen) = request.ctx.chosen.as_ref() else {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "no backend chosen",
                ));
            };
            let index = chosen.index;
            let addr = generation.farm.backends[index].address;
            if let Some(stream) = self.pool.take(addr, upstream_config.idle_timeout) {
                generation.series[index]
                    .upstream_connection(&self.shared.metrics, true)
                    .inc();
                break (stream, addr);
            }
            match connect(addr, upstream_config.connect_timeout).await {
                Ok(stream) => {
                    generation.series[index]
                        .upstream_connection(&self.shared.metrics, false)
                        .inc();
                    break (stream, addr);
                }
                Err(e) => {
                    let e = self.proxy.after_connect_failure(&mut request.ctx, e);
                    if !e.retry() {
                        return Err(e);
                    }
                    let view = request.head.view(&request.raw_head);
                    if !self.proxy.route_again(&view, &mut request.ctx) {
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(503),
                            "no backend left to try",
                        ));
                    }
                }
            }
        };
        let splice = generation.config.listener.splice;
        let sent = body::send_request(
            request,
            forwarded_for.as_deref(),
            &upstream,
            upstream_config,
            splice.then_some(&self.shared.metrics.fast_path_spliced_bytes),
        )
        .await?;
        // An answer that came before the whole body ends both connections: the
        // backend's was not sent a whole request, the client's body is drained
        // after the answer (see `super::linger`), not forwarded.
        let early = sent == body::Sent::AnsweredEarly;
        if early {
            request.keepalive = false;
        }
        request.edge.announce(Phase::Request);
        let deadline = tokio::time::Instant::now() + upstream_config.read_timeout;
        // The answer reaches the client as the backend wrote it, bar the headers
        // bitsgate sets and learning's edits (see `response::client_head`).
        let mut answer = response::read_head(&mut upstream, deadline).await?;
        answer.keepalive &= !early;
        let close_client = self
            .proxy
            .on_final_response(
                &request.head.view(&request.raw_head),
                &mut answer.head,
                &mut request.ctx,
            )
            .await?;
        if request.ctx.auth.binding.is_some() {
            // The backend offered Windows authentication, which binds connections:
            // Pingora's proxy carries this client connection from now on, and this
            // shared upstream connection closes once its answer is read, as there.
            request.edge.stay_on_general_path();
            answer.keepalive = false;
        }
        let keep_client =
            request.keepalive && !close_client && answer.framing != Framing::UntilClose;
        let mut head = response::client_head(&answer, keep_client);
        let framing = answer.framing;
        let mut rest = answer.rest;
        let whole_body_here = match framing {
            Framing::Length(n) => rest.len() as u64 == n,
            Framing::Empty => rest.is_empty(),
            _ => false,
        };
        request.written = Some(Written::Relayed(answer.head));
        let write_timeout = upstream_config.write_timeout;
        if whole_body_here {
            // One write for a small answer, as most Acks are. The exchange with the
            // backend is over: its connection is pooled, and the request counted
            // and logged, before the client can send its next request.
            if answer.keepalive {
                self.pool.put(addr, upstream, upstream_config.idle_timeout);
            }
            request.bytes_out = rest.len() as u64;
            head.extend_from_slice(&rest);
            rest.clear();
            if !early {
                // After an early answer, once the drain below has counted the body.
                self.log(request);
            }
            response::write_client(&mut request.edge, &head, write_timeout)
                .await
                .map_err(downstream)?;
            if early {
                body::discard(request, &generation.config.listener).await;
            }
            return Ok(keep_client);
        }
        response::write_client(&mut request.edge, &head, write_timeout)
            .await
            .map_err(downstream)?;
        // Past the head, a failure can only close the connection.
        let relayed = match response::relay_body(
            &mut upstream,
            &mut request.edge,
            framing,
            rest,
            upstream_config.read_timeout,
            write_timeout,
        )
        .await
        {
            Ok(relayed) => relayed,
            Err(_) => {
                // Closed as a truncation the client can tell.
                request.edge.cut_short();
                return Ok(false);
            }
        };
        request.bytes_out = relayed.bytes;
        if answer.keepalive && relayed.clean {
            self.pool.put(addr, upstream, upstream_config.idle_timeout);
        }
        if early {
            body::discard(request, &generation.config.listener).await;
        }
        Ok(keep_client)
    }
}

impl Request {
    /// Body bytes the client has not sent (or bitsgate not read) yet.
    fn body_left(&self) -> u64 {
        let in_early = (self.early.len() as u64).min(self.body_len - self.body_read);
        self.body_len - self.body_read - in_early
    }
}

/// Marks an error as the client's side.
fn downstream(mut e: Box<Error>) -> Box<Error> {
    e.as_down();
    e
}

/// A new connection to a backend, within `timeout`.
async fn connect(addr: SocketAddr, timeout: std::time::Duration) -> pingora::Result<TcpStream> {
    let upstream = |etype, context: String| {
        let mut e = Error::explain(etype, context);
        e.as_up();
        e
    };
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(upstream(
            ErrorType::ConnectRefused,
            format!("connecting to {addr}: {e}"),
        )),
        Err(_) => Err(upstream(
            ErrorType::ConnectTimedout,
            format!("connecting to {addr}: timed out after {timeout:?}"),
        )),
    }
}
