//! Learning from backend Acks: pin on Create-Session (or refuse and cancel a session
//! that cannot be pinned), unpin on Close, Cancel and session-not-found, count the
//! owner's answers as activity, count bytes, apply the BITS-Host-Id policy.

use super::ctx::{Chosen, PacketInfo};
use super::view::AnswerView;
use crate::cancels::{CancelJob, CancelReason};
use crate::config::HostIdMode;
use crate::metrics::EndReason;
use crate::session::store::{PendingWrite, StoredPin};
use crate::session::{PinError, SessionKey, SessionUrl, UnixSecs};
use crate::state::{Generation, Shared};
use bits_proto::headers as h;
use bits_proto::HeaderSource;
use bits_proto::{ErrorCode, PacketType, SessionId};
use pingora::prelude::*;
use std::sync::Arc;

/// Where the client sent its request: kept with a new pin, so bitsgate's own
/// Cancel-Session reaches the session the way the client did.
#[derive(Debug, Clone, Copy)]
pub struct RequestUrl<'a> {
    /// The `Host` header, if any.
    pub host: Option<&'a str>,
    /// The request path.
    pub path: &'a str,
}

/// A session just pinned whose journal record is on its way.
#[must_use = "settle it: the Ack must wait for the journal"]
pub struct NewPin {
    key: SessionKey,
    url: SessionUrl,
    write: PendingWrite,
}

/// Applies what an upstream Ack teaches. Runs before the Ack is released downstream,
/// so a client never holds a session id that bitsgate does not know. Returns a new pin,
/// which the caller settles with [`settle_new_pin`] before releasing the Ack.
pub fn learn_from_ack<A: AnswerView + ?Sized>(
    shared: &Shared,
    generation: &Generation,
    packet: &PacketInfo,
    chosen: &Chosen,
    response: &mut A,
    request: RequestUrl<'_>,
    now: UnixSecs,
) -> Result<Option<NewPin>> {
    let mut new_pin = None;
    let status = response.status();
    let success = (200..300).contains(&status);
    if packet.kind.needs_session() {
        // Any final answer of the owner is activity, whatever its status.
        if let Some(key) = &packet.session {
            record_activity(shared, generation, key, chosen, now);
        }
    }
    match packet.kind {
        PacketType::CreateSession if success => {
            match pin_new_session(shared, chosen, response, request, packet.client, now) {
                Ok(pinned) => {
                    new_pin = pinned;
                    apply_host_id_policy(generation, chosen, response)?;
                }
                Err(refused) => {
                    if let Some((id, reason)) = refused {
                        cancel_unpinned(shared, generation, chosen, id, reason, request);
                    }
                    refuse_create_session(response)?;
                }
            }
        }
        PacketType::Fragment if success => {
            if let Some(key) = &packet.session {
                shared.table.add_bytes(key, packet.content_length);
            }
            generation.series[chosen.index]
                .uploaded_bytes(&shared.metrics)
                .inc_by(packet.content_length);
        }
        PacketType::CloseSession if status == 200 => {
            unpin(shared, packet, chosen, EndReason::Closed);
        }
        PacketType::CancelSession if status == 200 => {
            unpin(shared, packet, chosen, EndReason::Cancelled);
        }
        _ => {}
    }
    if packet.kind.needs_session()
        && bits_proto::ack::error_code(response.headers()) == Some(ErrorCode::SESSION_NOT_FOUND)
    {
        unpin(shared, packet, chosen, EndReason::NotFound);
    }
    Ok(new_pin)
}

/// Waits for a new pin's journal record. A pin that cannot be journaled is undone:
/// the client gets a bare 503 (it retries Create-Session later) and the backend a
/// Cancel-Session, so neither holds a session the other does not know.
pub async fn settle_new_pin<A: AnswerView + ?Sized>(
    shared: &Shared,
    generation: &Generation,
    chosen: &Chosen,
    new_pin: NewPin,
    response: &mut A,
) -> Result<()> {
    let NewPin { key, url, write } = new_pin;
    let Err(e) = write.await else {
        return Ok(());
    };
    shared.metrics.store_errors.inc();
    // The journal logs an error once per outage (see `StoreHealth`); one line per
    // session would flood the log while a disk is full.
    tracing::debug!(target: "bitsgate::store", session = %key, backend = %chosen.id, error = %e, "a pin could not be journaled; the Create-Session is refused and cancelled at its backend");
    // Only the table holds the pin: its record never made it into the journal (a
    // failed append is cut off again, or the journal takes no more writes), so no
    // unpin is journaled either. One would be a write of its own while the disk is
    // full, and a smaller record that fits would read as the end of the outage.
    if shared.table.unpin_owned_by(&key, chosen.slot).is_some() {
        shared
            .metrics
            .session_ended(&chosen.id, EndReason::NotJournaled);
    }
    submit_cancel(
        shared,
        generation,
        chosen,
        key.to_string(),
        url,
        CancelReason::NotPinned,
    );
    refuse_create_session(response)
}

/// A Create-Session Ack bitsgate cannot route must not reach the client: its next
/// packet would be refused as unknown. A bare 503 makes the client retry later.
fn refuse_create_session<A: AnswerView + ?Sized>(response: &mut A) -> Result<()> {
    response.set_status(503)?;
    for name in [
        h::SESSION_ID,
        h::PROTOCOL,
        h::HOST_ID,
        h::HOST_ID_FALLBACK_TIMEOUT,
    ] {
        response.remove_header(name);
    }
    Ok(())
}

/// Touches the pin for an answer of `chosen`, and journals the session's activity when
/// the journal's copy is one interval old.
fn record_activity(
    shared: &Shared,
    generation: &Generation,
    key: &SessionKey,
    chosen: &Chosen,
    now: UnixSecs,
) {
    let every = generation.config.sessions.activity_journal_interval();
    let Some(pin) = shared.table.touch(key, chosen.slot, now, every) else {
        return;
    };
    if let Some(store) = &shared.store {
        let owner = shared.pin_owner(&pin);
        drop(store.touch(
            key,
            &owner.backend,
            owner.host.as_deref(),
            &owner.path,
            &StoredPin::from(&pin),
        ));
    }
    if let Some(redis) = shared.redis.get() {
        let owner = shared.pin_owner(&pin);
        redis.refresh(
            key,
            &owner.backend,
            owner.host.as_deref(),
            &owner.path,
            pin.created,
        );
    }
}

/// Pins the session of a Create-Session Ack. `Err(Some((id, why)))`: the backend
/// created session `id` that bitsgate could not pin; `Err(None)`: no usable id.
fn pin_new_session<A: AnswerView + ?Sized>(
    shared: &Shared,
    chosen: &Chosen,
    response: &A,
    request: RequestUrl<'_>,
    client: Option<std::net::IpAddr>,
    now: UnixSecs,
) -> Result<Option<NewPin>, Option<(String, CancelReason)>> {
    let Some(raw) = response.headers().first(&h::names::SESSION_ID) else {
        tracing::warn!(target: "bitsgate::learn", backend = %chosen.id, "Create-Session Ack without BITS-Session-Id");
        return Err(None);
    };
    let id = match SessionId::validate(raw) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(target: "bitsgate::learn", backend = %chosen.id, error = %e, "Create-Session Ack with an invalid session id");
            return Err(None);
        }
    };
    if shared.generation().farm.index_of(chosen.slot).is_none() {
        // A reload removed the backend while its Ack was on the way: a pin to it could
        // never be routed.
        tracing::warn!(target: "bitsgate::learn", session = id, backend = %chosen.id, "Create-Session answered by a backend that left the configuration");
        return Err(Some((id.to_owned(), CancelReason::NotPinned)));
    }
    let key = SessionKey::new(id);
    let url = shared.urls.intern(request.host, request.path);
    match shared.table.pin(key.clone(), chosen.slot, url, now) {
        Ok(replaced) => {
            if let Some(old) = replaced {
                // The same backend issued the id again: its old session is gone.
                shared
                    .metrics
                    .session_ended(&shared.backend_name(old.backend), EndReason::NotFound);
            }
            shared.metrics.session_created(&chosen.id);
            if let Some(client) = client {
                shared.clients.add(&key, client);
            }
            tracing::debug!(target: "bitsgate::learn", session = id, backend = %chosen.id, "pinned");
            let url = shared.urls.get(url);
            let host = url.host.as_deref();
            let write = match (&shared.store, shared.redis.get()) {
                (Some(store), _) => Some(store.pin(&key, &chosen.id, host, &url.path, now)),
                (None, Some(redis)) => Some(redis.pin(&key, &chosen.id, host, &url.path, now)),
                (None, None) => None,
            };
            Ok(write.map(|write| NewPin { key, url, write }))
        }
        Err(PinError::Taken { owner }) => {
            let owner = shared.backend_name(owner);
            shared
                .metrics
                .session_id_collisions
                .with_label_values(&[&chosen.id])
                .inc();
            tracing::warn!(target: "bitsgate::learn", session = id, backend = %chosen.id, owner = %owner, "backend {} issued a session id that backend {owner} holds for a live session; the new session is refused and cancelled", chosen.id);
            Err(Some((id.to_owned(), CancelReason::IdCollision)))
        }
        Err(e @ PinError::Full) => {
            tracing::error!(target: "bitsgate::learn", session = id, backend = %chosen.id, error = %e, "could not pin a new session; it is refused and cancelled");
            Err(Some((id.to_owned(), CancelReason::NotPinned)))
        }
    }
}

/// Cancels at `chosen` a session it created that bitsgate refused.
fn cancel_unpinned(
    shared: &Shared,
    generation: &Generation,
    chosen: &Chosen,
    id: String,
    reason: CancelReason,
    request: RequestUrl<'_>,
) {
    let url = SessionUrl {
        host: request.host.map(Arc::from),
        path: request.path.to_owned(),
    };
    submit_cancel(shared, generation, chosen, id, url, reason);
}

fn submit_cancel(
    shared: &Shared,
    generation: &Generation,
    chosen: &Chosen,
    session: String,
    url: SessionUrl,
    reason: CancelReason,
) {
    shared.cancels.submit(
        generation,
        CancelJob {
            backend: chosen.slot,
            session,
            url,
            reason,
        },
    );
}

fn unpin(shared: &Shared, packet: &PacketInfo, chosen: &Chosen, reason: EndReason) {
    let Some(key) = &packet.session else {
        return;
    };
    // Only the owner's answer ends a pin; a backend reached by Host name that does not
    // own the session must not remove another node's pin.
    if shared
        .end_session_owned_by(key, chosen.slot, reason)
        .is_some()
    {
        tracing::debug!(target: "bitsgate::learn", session = %key, backend = %chosen.id, reason = reason.label(), "unpinned");
    }
}

fn apply_host_id_policy<A: AnswerView + ?Sized>(
    generation: &Generation,
    chosen: &Chosen,
    response: &mut A,
) -> Result<()> {
    match generation.config.host_id.mode {
        HostIdMode::Passthrough => {}
        HostIdMode::Strip => {
            response.remove_header(h::HOST_ID);
            response.remove_header(h::HOST_ID_FALLBACK_TIMEOUT);
        }
        HostIdMode::Rewrite => {
            response.remove_header(h::HOST_ID);
            response.remove_header(h::HOST_ID_FALLBACK_TIMEOUT);
            if let Some(public) = &generation.farm.backends[chosen.index].public_host_id {
                response.insert_header(h::HOST_ID, public.as_str())?;
                let timeout = generation.config.host_id.fallback_timeout.as_secs();
                response.insert_header(h::HOST_ID_FALLBACK_TIMEOUT, &timeout.to_string())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::UrlId;
    use bits_testkit::client::raw::{self, RawRequest};
    use bits_testkit::server::{self, ServerConfig};
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_session_ack_that_finds_the_table_full_is_refused_and_cancelled() {
        let root = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(root.path());
        config.host_name = Some("bits.example".into());
        config.require_session_url = true;
        let backend = server::spawn(config).await.unwrap();
        let address = backend.addrs()[0];
        let shared = Shared::new(
            crate::config::load_str(&format!(
                "[storage]\nmode = \"memory\"\n[health_check]\nkind = \"none\"\n[sessions]\nmax_pinned = 1\n[[backends]]\nid = \"b1\"\naddress = \"{address}\"\n"
            ))
            .unwrap(),
            None,
            None,
        )
        .unwrap();
        let (slot, _) = shared.slots.slot("b1").unwrap();

        // The backend creates a session for a client's Create-Session...
        let path = "/uploads/a.bin";
        let created = raw::send(
            address,
            &RawRequest::bits(PacketType::CreateSession, path)
                .header("Host", "bits.example")
                .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL),
        )
        .await
        .unwrap();
        let id = created.ack().session_id.expect("session id").to_string();
        // ...while another Create-Session filled the table.
        shared
            .table
            .pin(SessionKey::new("other"), slot, UrlId(0), 1)
            .unwrap();

        let mut ack = ResponseHeader::build(200, None).unwrap();
        ack.insert_header(h::PACKET_TYPE, "Ack").unwrap();
        ack.insert_header(h::SESSION_ID, id.as_str()).unwrap();
        ack.insert_header(h::PROTOCOL, bits_proto::BITS_1_5_PROTOCOL)
            .unwrap();
        let packet = PacketInfo {
            kind: PacketType::CreateSession,
            session: None,
            content_length: 0,
            via_method_override: false,
            client: None,
        };
        let chosen = Chosen {
            index: 0,
            slot,
            id: "b1".into(),
        };
        let request = RequestUrl {
            host: Some("bits.example"),
            path,
        };
        let generation = shared.generation();
        let new_pin =
            learn_from_ack(&shared, &generation, &packet, &chosen, &mut ack, request, 2).unwrap();
        assert!(new_pin.is_none());
        assert_eq!(ack.status.as_u16(), 503);
        assert!(ack.headers.get(h::SESSION_ID).is_none());

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = backend.stats().sessions.get(&id).map(|s| s.state.clone());
            if state.as_deref() == Some("cancelled") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the session stayed {state:?} at its backend"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let counted = shared
            .metrics
            .cancels_sent
            .with_label_values(&["not_pinned", "ok"])
            .get();
        assert_eq!(counted, 1);
    }
}
