//! Learning from backend Acks: pin on Create-Session, unpin on Close, Cancel and
//! session-not-found, count bytes, apply the BITS-Host-Id policy.

use super::ctx::{Chosen, PacketInfo};
use crate::config::HostIdMode;
use crate::metrics::EndReason;
use crate::session::store::PendingWrite;
use crate::session::{DirId, SessionKey, UnixSecs};
use crate::state::{Generation, Shared};
use bits_proto::headers as h;
use bits_proto::{ErrorCode, PacketType, SessionId};
use pingora::http::ResponseHeader;
use pingora::prelude::*;

/// Applies what an upstream Ack teaches. Runs before the Ack is released downstream,
/// so a client never holds a session id that bitsgate does not know. Returns the
/// journal write of a new pin, which the caller awaits before releasing the Ack.
pub fn learn_from_ack(
    shared: &Shared,
    generation: &Generation,
    packet: &PacketInfo,
    chosen: &Chosen,
    response: &mut ResponseHeader,
    path: &str,
    now: UnixSecs,
) -> Result<Option<PendingWrite>> {
    let mut journal = None;
    let status = response.status.as_u16();
    let success = (200..300).contains(&status);
    match packet.kind {
        PacketType::CreateSession if success => {
            // The URL directory is interned only for a session a backend accepted, so
            // requests alone cannot fill the registry.
            let dir = shared.dirs.intern_path(path);
            if let Some(key) = pin_new_session(shared, dir, chosen, response, now) {
                journal = shared
                    .store
                    .as_ref()
                    .map(|store| store.pin(&key, &chosen.id, &shared.dirs.name(dir), now));
                apply_host_id_policy(generation, chosen, response)?;
            } else {
                // A session bitsgate cannot route must not reach the client: its
                // next packet would be refused as unknown. A bare 503 makes the client
                // retry Create-Session later.
                response.set_status(503)?;
                for name in [
                    h::SESSION_ID,
                    h::PROTOCOL,
                    h::HOST_ID,
                    h::HOST_ID_FALLBACK_TIMEOUT,
                ] {
                    response.remove_header(name);
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
        && bits_proto::ack::error_code(&response.headers) == Some(ErrorCode::SESSION_NOT_FOUND)
    {
        unpin(shared, packet, chosen, EndReason::NotFound);
    }
    Ok(journal)
}

fn pin_new_session(
    shared: &Shared,
    dir: DirId,
    chosen: &Chosen,
    response: &ResponseHeader,
    now: UnixSecs,
) -> Option<SessionKey> {
    let Some(raw) = response.headers.get(&h::names::SESSION_ID) else {
        tracing::warn!(target: "bitsgate::learn", backend = %chosen.id, "Create-Session Ack without BITS-Session-Id");
        return None;
    };
    let id = match SessionId::validate(raw.as_bytes()) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(target: "bitsgate::learn", backend = %chosen.id, error = %e, "Create-Session Ack with an invalid session id");
            return None;
        }
    };
    if shared.generation().farm.index_of(chosen.slot).is_none() {
        // A reload removed the backend while its Ack was on the way: a pin to it could
        // never be routed.
        tracing::warn!(target: "bitsgate::learn", session = id, backend = %chosen.id, "Create-Session answered by a backend that left the configuration");
        return None;
    }
    let key = SessionKey::new(id);
    match shared.table.pin(key.clone(), chosen.slot, dir, now) {
        Ok(replaced) => {
            if let Some(old) = replaced {
                // The same id issued twice: the old pin is gone, count it as such.
                shared
                    .metrics
                    .session_ended(&shared.backend_name(old.backend), EndReason::NotFound);
            }
            shared.metrics.session_created(&chosen.id);
            tracing::debug!(target: "bitsgate::learn", session = id, backend = %chosen.id, "pinned");
            Some(key)
        }
        Err(e) => {
            tracing::error!(target: "bitsgate::learn", session = id, backend = %chosen.id, error = %e, "could not pin a new session");
            None
        }
    }
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

fn apply_host_id_policy(
    generation: &Generation,
    chosen: &Chosen,
    response: &mut ResponseHeader,
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
                response.insert_header(
                    h::HOST_ID_FALLBACK_TIMEOUT,
                    generation
                        .config
                        .host_id
                        .fallback_timeout
                        .as_secs()
                        .to_string(),
                )?;
            }
        }
    }
    Ok(())
}
