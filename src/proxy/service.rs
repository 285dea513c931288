//! `impl ProxyHttp`: parse in `request_filter`, route there too (so local Acks are
//! written before any upstream work), connect in `upstream_peer`, learn in
//! `upstream_response_filter`, turn failures into Acks in `fail_to_proxy`, count in
//! `logging`.

use super::acks::{self, Answer};
use super::binding::{self, AuthCtx, Binding};
use super::ctx::{Chosen, LocalReason, PacketInfo, RequestCtx};
use super::learn::{learn_from_ack, settle_new_pin, RequestUrl};
use super::view::{AnswerView, RequestView};
use crate::log_gate::LogGate;
use crate::metrics::EndReason;
use crate::routing::{route, LocalReply, Route, RouteRequest, Target};
use crate::session::shared_store::lookup::Lookup;
use crate::session::{unix_now, SessionKey};
use crate::state::{Generation, Shared};
use async_trait::async_trait;
use bits_proto::{headers as h, Ack, Classified, HeaderSource, PacketType};
use bytes::Bytes;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};
use std::any::Any;
use std::sync::Arc;

/// A full table refuses every Create-Session; one line a minute says so.
static TABLE_FULL_LOG: LogGate = LogGate::new(60);
/// Clients at their pin limit: one line a minute.
static CLIENT_LIMIT_LOG: LogGate = LogGate::new(60);

/// The BITS-aware proxy.
pub struct BitsProxy {
    shared: Arc<Shared>,
}

impl BitsProxy {
    /// A proxy over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        BitsProxy { shared }
    }
}

/// What `request_filter` decided, with everything needed to act on it owned, so the
/// request header borrow ends before the answer is written.
pub(super) enum Verdict {
    Forward,
    Local(Answer, LocalReason),
}

impl BitsProxy {
    pub(super) fn decide<R: RequestView + ?Sized>(
        &self,
        req: &R,
        framing_conflict: bool,
        lookup: Lookup,
        generation: &Generation,
        ctx: &mut RequestCtx,
    ) -> Verdict {
        let shared = &*self.shared;
        let limits = &generation.config.limits;
        // During an upgrade, an id neither process is known to have created yet; with
        // a shared store, one the store could not rule out.
        let mut unsettled = lookup == Lookup::Unsettled;
        let packet = match bits_proto::classify(req.method(), req.headers(), &generation.classify) {
            Err(reject) => {
                let reason = LocalReason::Malformed(reject.reason.label());
                return Verdict::Local(Answer::Ack(reject.ack()), reason);
            }
            Ok(Classified::Other) => {
                if framing_conflict {
                    return Verdict::Local(Answer::Plain(400), LocalReason::AmbiguousFraming);
                }
                None
            }
            Ok(Classified::Bits(packet)) => Some(packet),
        };
        let target = match &packet {
            None => super::reply::target_of(shared, req),
            Some(packet) => {
                let content_length = packet.content_length.unwrap_or(0);
                // Recorded first, so even a local refusal is labelled by packet type.
                let info = ctx.packet.insert(PacketInfo {
                    kind: packet.kind,
                    session: packet.session_id.map(SessionKey::new),
                    content_length,
                    via_method_override: packet.via_method_override,
                    client: ctx.client,
                });
                if req.before_http_11() {
                    return Verdict::Local(Answer::Ack(acks::http_1_0()), LocalReason::Http10);
                }
                if packet.kind == PacketType::Fragment && content_length > limits.max_fragment_bytes
                {
                    let ack = acks::fragment_too_large();
                    return Verdict::Local(Answer::Ack(ack), LocalReason::FragmentTooLarge);
                }
                match packet.kind {
                    PacketType::Ping => Target::Ping,
                    PacketType::CreateSession if shared.table.is_full() => {
                        if TABLE_FULL_LOG.allow(u64::from(unix_now())) {
                            tracing::warn!(target: "bitsgate::proxy", max_pinned = generation.config.sessions.max_pinned, "the session table is full: Create-Session is answered 503 until pins end (bitsgate_local_acks_total{{reason=\"table_full\"}} counts them; this line repeats at most once a minute)");
                        }
                        return Verdict::Local(Answer::Ack(Ack::new(503)), LocalReason::TableFull);
                    }
                    PacketType::CreateSession
                        if ctx.client.is_some_and(|ip| shared.clients.at_limit(ip)) =>
                    {
                        if CLIENT_LIMIT_LOG.allow(u64::from(unix_now())) {
                            tracing::warn!(target: "bitsgate::proxy", client = ?ctx.client, limit = generation.config.sessions.max_pinned_per_client, "a client holds [sessions] max_pinned_per_client pins: its Create-Session is answered 503 (bitsgate_local_acks_total{{reason=\"client_limit\"}}; this line repeats at most once a minute)");
                        }
                        return Verdict::Local(
                            Answer::Ack(Ack::new(503)),
                            LocalReason::ClientLimit,
                        );
                    }
                    PacketType::CreateSession => Target::CreateSession,
                    // Activity is recorded when the owner answers, not here: a packet
                    // answered locally (owner down) must not keep a pin alive.
                    _ => Target::SessionPacket {
                        owner: match &info.session {
                            Some(key) => shared.session_owner(key).unwrap_or_else(|_| {
                                unsettled = true;
                                None
                            }),
                            None => None,
                        },
                    },
                }
            }
        };
        let host = req.host();
        let request = RouteRequest {
            target,
            host_backend: host.and_then(|host| generation.farm.index_for_host(host)),
            path: req.path(),
            tick: match target {
                Target::SessionPacket { .. } | Target::Reply { .. } => 0,
                Target::CreateSession => shared.next_tick(true),
                Target::Ping | Target::Other => shared.next_tick(false),
            },
            exclude: &ctx.tried,
        };
        ctx.reply = matches!(target, Target::Reply { .. });
        // A connection bound by Windows authentication keeps its backend when it may.
        let bound = ctx
            .auth
            .binding
            .as_ref()
            .and_then(|b| generation.farm.index_of(b.backend));
        let decision = match crate::routing::bound_choice(&request, &generation.farm, bound) {
            Some(index) => Route::Forward(index),
            None => route(
                &request,
                &generation.farm,
                generation.config.balancing,
                &|slot| shared.table.sessions_of(slot),
            ),
        };
        match decision {
            Route::Forward(index) => {
                let backend = &generation.farm.backends[index];
                ctx.auth.route_to(
                    backend.slot,
                    req.headers(),
                    backend.status.asks_windows_auth(),
                );
                ctx.chosen = Some(Chosen {
                    index,
                    slot: backend.slot,
                    id: backend.id.clone(),
                });
                Verdict::Forward
            }
            Route::Local(reply) => {
                // Not-found would make the client restart its upload from byte 0; a
                // bare 503 makes it retry, by when the journal says more.
                let reply = match reply {
                    LocalReply::SessionNotFound if unsettled => LocalReply::OwnerUnavailable,
                    reply => reply,
                };
                if reply == LocalReply::OwnerRemoved {
                    self.drop_removed_owner(ctx);
                }
                let (ack, reason) = acks::ack_for_reply(reply);
                Verdict::Local(Answer::for_request(ctx, ack), reason)
            }
        }
    }

    /// What a failed connect to the chosen backend means: counted, passive health
    /// told, and the error marked for a retry on another backend only where nothing
    /// was created anywhere yet (Ping, Create-Session).
    pub(super) fn after_connect_failure(
        &self,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(chosen) = ctx.chosen.take() else {
            return e;
        };
        self.shared
            .metrics
            .connect_failures
            .with_label_values(&[&chosen.id])
            .inc();
        if let Some(failure) = crate::backend::tls::TlsFailure::of(&e) {
            let metrics = &self.shared.metrics;
            crate::backend::tls_failures::report(metrics, &chosen.id, failure, "proxy", &e);
        }
        ctx.tried.push(chosen.index);
        // Passive health: enough consecutive failures take the backend down.
        if let Some(generation) = &ctx.generation {
            crate::health_service::connect_failed(&self.shared, generation, chosen.index);
        }
        let session_bound =
            ctx.reply || ctx.packet.as_ref().is_some_and(|p| p.kind.needs_session());
        if session_bound {
            // Never another node for a pinned session: it would answer not-found and the
            // client would restart from byte 0. 503 makes it retry the owner later.
            ctx.local = Some(LocalReason::OwnerUnavailable);
            e.set_retry(false);
        } else {
            // Nothing was created anywhere yet: another backend may take it.
            let farm_size = ctx.generation.as_ref().map_or(0, |g| g.farm.backends.len());
            let retry = ctx.tried.len() < farm_size;
            if !retry {
                ctx.local = Some(LocalReason::NoBackend);
            }
            e.set_retry(retry);
        }
        if ctx.auth.bound_connection_lost(false) {
            // The authenticated connection is gone with its backend: the client must
            // start over on a new connection.
            ctx.auth.lost = true;
            e.set_retry(false);
        }
        e
    }

    /// Routes a request again after a failed connect, without the backends tried;
    /// false when none is left (`ctx.local` then says why).
    pub(super) fn route_again<R: RequestView + ?Sized>(
        &self,
        req: &R,
        ctx: &mut RequestCtx,
    ) -> bool {
        let generation = self.generation(ctx);
        match self.decide(req, false, Lookup::Settled, &generation, ctx) {
            Verdict::Forward => true,
            Verdict::Local(_, reason) => {
                ctx.local = Some(reason);
                false
            }
        }
    }

    /// Learns from the backend's final answer before it is released to the client:
    /// Windows authentication offers, passive health, pins, Reply-URL. Returns
    /// whether the client connection must close after this answer.
    pub(super) async fn on_final_response<R: RequestView + ?Sized, A: AnswerView + ?Sized>(
        &self,
        req: &R,
        upstream_response: &mut A,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let mut close_client = false;
        ctx.status = upstream_response.status();
        if let Some(chosen) = &ctx.chosen {
            let offers = ctx
                .auth
                .answered(chosen.slot, ctx.status, upstream_response.headers());
            if offers {
                if let Some(generation) = &ctx.generation {
                    generation.farm.backends[chosen.index]
                        .status
                        .set_asks_windows_auth();
                }
            }
            if ctx.auth.binding.is_some() && binding::closes_after(upstream_response.headers()) {
                // The bound connection ends with this answer: so does the client's.
                close_client = true;
            }
        }
        // Passive health: an answer ends any run of connect failures.
        if let (Some(chosen), Some(generation)) = (&ctx.chosen, &ctx.generation) {
            crate::health_service::responded(&self.shared, generation, chosen.index);
        }
        if let (Some(packet), Some(chosen), Some(generation)) =
            (&ctx.packet, &ctx.chosen, &ctx.generation)
        {
            let request = RequestUrl {
                host: req.headers().first_str(&http::header::HOST),
                path: req.path(),
            };
            let new_pin = learn_from_ack(
                &self.shared,
                generation,
                packet,
                chosen,
                upstream_response,
                request,
                unix_now(),
            )?;
            if let Some(new_pin) = new_pin {
                // The pin must be on disk before the client learns the session id.
                settle_new_pin(&self.shared, generation, chosen, new_pin, upstream_response)
                    .await?;
            }
            super::reply::relay_reply_url(
                &self.shared,
                generation,
                packet,
                chosen,
                upstream_response,
                request,
            )
            .await;
        }
        Ok(close_client)
    }

    /// The Ack a failed request gets, and why; `None` when the client connection is
    /// closed without one (the client went away, or its bound connection was lost).
    pub(super) fn failure_answer(e: &Error, ctx: &RequestCtx) -> Option<(Ack, LocalReason)> {
        if ctx.auth.lost {
            return None;
        }
        Some(match ctx.local {
            Some(LocalReason::OwnerUnavailable) => {
                acks::ack_for_reply(LocalReply::OwnerUnavailable)
            }
            Some(LocalReason::NoBackend) => acks::ack_for_reply(LocalReply::NoBackend),
            Some(other) => (Ack::new(503), other),
            None => {
                let status = match (e.etype(), e.esource()) {
                    (ErrorType::HTTPStatus(code), _) => *code,
                    (_, ErrorSource::Upstream) => 502,
                    (
                        ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                        ErrorSource::Downstream,
                    ) => return None,
                    (_, ErrorSource::Downstream) => 400,
                    _ => 500,
                };
                // No BITS error code: a bare 5xx is transient for the client, which
                // retries the same packet; the pin stays.
                (Ack::new(status), LocalReason::UpstreamError)
            }
        })
    }

    /// Counts a finished request: by backend, packet type and status, and its
    /// duration.
    pub(super) fn count(&self, ctx: &RequestCtx, status: u16) {
        let packet = ctx.packet_label();
        let metrics = &self.shared.metrics;
        let series = match (&ctx.chosen, ctx.local, &ctx.generation) {
            (Some(chosen), None, Some(generation)) => &generation.series[chosen.index],
            _ => &metrics.no_backend,
        };
        series.requests(metrics, packet, status).inc();
        metrics
            .durations
            .of(metrics, packet)
            .observe(ctx.started.elapsed().as_secs_f64());
    }

    fn drop_removed_owner(&self, ctx: &RequestCtx) {
        let Some(key) = ctx.packet.as_ref().and_then(|p| p.session.as_ref()) else {
            return;
        };
        self.shared.end_session(key, EndReason::BackendRemoved);
    }

    fn generation(&self, ctx: &mut RequestCtx) -> Arc<Generation> {
        ctx.generation
            .get_or_insert_with(|| self.shared.generation())
            .clone()
    }

    fn build_peer(&self, generation: &Generation, index: usize, auth: &AuthCtx) -> Box<HttpPeer> {
        let backend = &generation.farm.backends[index];
        let upstream = &generation.config.upstream;
        let mut peer = crate::backend::peer::upstream_peer(backend, upstream);
        let keepalive = generation.config.listener.keepalive_timeout;
        binding::apply_to_peer(auth, &mut peer, upstream.idle_timeout, keepalive);
        Box::new(peer)
    }
}

/// The connection's phase once `req`'s header is in: reading its body, if it has one.
fn body_phase(req: &RequestHeader) -> crate::edge::Phase {
    match super::linger::declared_body_length(req) {
        Some(0) => crate::edge::Phase::Request,
        _ => crate::edge::Phase::Body,
    }
}

/// Whether the request came with both Transfer-Encoding and Content-Length. Pingora
/// drops Content-Length in that case (TE wins, RFC 9112 §6.3), so the raw header is
/// the only place left to see it; it is read only when TE is present, which BITS
/// clients never send.
fn te_with_content_length(session: &Session) -> bool {
    if !session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
    {
        return false;
    }
    match session.as_downstream() {
        ServerSession::H1(h1) => h1
            .get_headers_raw_bytes()
            .split(|&b| b == b'\n')
            .any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:")),
        _ => false,
    }
}

#[async_trait]
impl ProxyHttp for BitsProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let generation = self.generation(ctx);
        // Pingora keeps idle client connections forever unless told otherwise, and reads
        // Some(0) as forever too: whole seconds, at least one.
        let keepalive = generation
            .config
            .listener
            .keepalive_timeout
            .as_secs()
            .max(1);
        session.set_keepalive(Some(keepalive));
        crate::edge::announce(session, body_phase(session.req_header()));
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if end_of_stream {
            // The body is in: waiting for the backend's answer is no client's delay.
            crate::edge::announce(session, crate::edge::Phase::Request);
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let generation = self.generation(ctx);
        ctx.client = crate::edge::client_addr(session).map(|a| a.ip());
        let framing_conflict = te_with_content_length(session);
        // The one await before deciding: a session another replica created.
        let lookup = self.shared.look_up_shared(session.req_header()).await;
        match self.decide(
            session.req_header(),
            framing_conflict,
            lookup,
            &generation,
            ctx,
        ) {
            Verdict::Forward => Ok(false),
            Verdict::Local(answer, reason) => {
                let listener = &generation.config.listener;
                acks::answer(session, ctx, &self.shared.metrics, listener, answer, reason).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let generation = self.generation(ctx);
        // A retry after a failed connect: route again without the failed backends.
        if ctx.chosen.is_none() && !self.route_again(session.req_header(), ctx) {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no backend left to try",
            ));
        }
        let index = ctx
            .chosen
            .as_ref()
            .map(|c| c.index)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no backend chosen"))?;
        Ok(self.build_peer(&generation, index, &ctx.auth))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.after_connect_failure(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if !client_reused && crate::backend::tls::TlsFailure::refused_after_handshake(&e) {
            // Under TLS 1.3 a backend refuses bitsgate's client certificate only after
            // bitsgate's side of the handshake is done, at the first read: the request
            // never reached it, so this is answered as a failed connect.
            return self.after_connect_failure(ctx, e);
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A connection dropped instead of pooled shows here as a new connect.
        if let (Some(chosen), Some(generation)) = (&ctx.chosen, &ctx.generation) {
            generation.series[chosen.index]
                .upstream_connection(&self.shared.metrics, reused)
                .inc();
        }
        if ctx.auth.bound_connection_lost(reused) {
            // The backend closed the authenticated connection: sending the request on
            // a new one would reach it anonymous. Closing the client connection makes
            // the client start its handshake again.
            ctx.auth.lost = true;
            tracing::debug!(target: "bitsgate::proxy", backend = ctx.chosen.as_ref().map(|c| &*c.id), "bound upstream connection closed by the backend; closing the client connection");
            return Err(Error::explain(
                ErrorType::ConnectionClosed,
                "the backend closed the bound connection",
            ));
        }
        ctx.auth.sent_on(fd, reused);
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(generation) = &ctx.generation {
            super::forwarded::apply(
                upstream_request,
                crate::edge::client_addr(session),
                &generation.config.upstream,
            )?;
        }
        if ctx.packet.as_ref().is_some_and(|p| p.via_method_override) {
            // Backends only know the extension method.
            upstream_request.set_method(
                Method::from_bytes(h::METHOD_BITS_POST.as_bytes())
                    .map_err(|e| Error::because(ErrorType::InternalError, "method", e))?,
            );
            upstream_request.remove_header(h::METHOD_OVERRIDE);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Also called for 100 Continue: learn only from the final answer.
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        let close_client = self
            .on_final_response(session.req_header(), upstream_response, ctx)
            .await?;
        if close_client {
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            ctx.auth.answer_read();
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let no_reuse = |error_code| FailToProxy {
            error_code,
            can_reuse_downstream: false,
        };
        if session.response_written().is_some() {
            // Mid-response: the status is out, all that is left is to close, as a
            // truncation the client can tell.
            crate::edge::cut_short(session);
            return no_reuse(0);
        }
        let Some((ack, reason)) = Self::failure_answer(e, ctx) else {
            // The client went away, or its bound connection was lost: closed without
            // an answer.
            crate::edge::cut_short(session);
            return no_reuse(0);
        };
        let status = ack.status;
        let answer = Answer::for_request(ctx, ack);
        let generation = self.generation(ctx);
        // The connection is closed after a failure whatever its body: say so in the Ack.
        session.set_keepalive(None);
        if let Err(write_error) = acks::answer(
            session,
            ctx,
            &self.shared.metrics,
            &generation.config.listener,
            answer,
            reason,
        )
        .await
        {
            tracing::debug!(target: "bitsgate::proxy", error = %write_error, "could not write the error Ack");
        }
        no_reuse(status)
    }

    fn persist_connection_context(
        &self,
        session: &Session,
        ctx: &RequestCtx,
    ) -> Option<Box<dyn Any + Send + Sync>> {
        // The binding lives with the client connection: carried to its next request,
        // dropped with it.
        let binding = ctx.auth.binding.as_ref().filter(|_| !ctx.auth.lost)?;
        // Its requests stay on this path, where the binding lives.
        crate::edge::stay_on_general_path(session);
        Some(Box::new(binding.clone()))
    }

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        previous: Box<dyn Any + Send + Sync>,
    ) {
        if let Ok(binding) = previous.downcast::<Binding>() {
            ctx.auth.binding = Some(*binding);
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        self.count(ctx, status);
        self.shared
            .access_log
            .record(|| crate::access_log::AccessRecord::of_request(session, ctx, status));
        if ctx.local.is_none() && session.response_written().is_some() && !session.is_body_done() {
            // The backend answered before it had the whole body (a server refusing a
            // request it will not read): the client, still writing it, must not be
            // reset before it reads that answer.
            let generation = self.generation(ctx);
            super::linger::discard_rest_of_body(session, &generation.config.listener).await;
        }
        // The next request's header clock starts with its first byte.
        crate::edge::announce(session, crate::edge::Phase::Idle);
    }
}
