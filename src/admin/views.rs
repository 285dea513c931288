//! JSON views of backends and sessions.

use crate::backend::Backend;
use crate::session::shared_store::listing::StoredSession;
use crate::session::{unix_now, Pin, SessionKey};
use crate::state::Shared;
use serde::Serialize;

/// One backend, as `GET /backends` shows it.
#[derive(Debug, Serialize)]
pub struct BackendView {
    /// Id from the config.
    pub id: String,
    /// Address.
    pub address: String,
    /// Share of new sessions.
    pub weight: u32,
    /// Reachable, per health checks.
    pub up: bool,
    /// `active`, `draining` or `drained`.
    pub state: &'static str,
    /// Draining because an operator asked (admin API).
    pub drain_admin: bool,
    /// Draining because the config file says so.
    pub drain_config: bool,
    /// Gone from the config (here, or with the Redis store at another replica's
    /// reload); kept until its sessions end.
    pub retired: bool,
    /// Sessions pinned to it in this process's table (with the Redis store: its cache).
    pub sessions: u64,
    /// With the Redis store: its sessions in the store, every replica's, as of the last
    /// poll (absent while not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_sessions: Option<u64>,
    /// Fragment bytes forwarded to it and acknowledged.
    pub uploaded_bytes: u64,
}

/// One session, as `GET /sessions` shows it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// The session id.
    pub id: String,
    /// Owning backend id.
    pub backend: String,
    /// URL directory it was created under.
    pub dir: String,
    /// Seconds since Create-Session.
    pub age_s: u64,
    /// Seconds since its last packet.
    pub idle_s: u64,
    /// Fragment bytes forwarded.
    pub bytes: u64,
    /// Packets routed.
    pub packets: u32,
    /// The client address that created it, while `[sessions] max_pinned_per_client`
    /// tracks them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// The view of a backend.
pub fn backend(shared: &Shared, backend: &Backend) -> BackendView {
    let status = &backend.status;
    let state = if shared.is_drained(backend) {
        "drained"
    } else if status.is_draining() {
        "draining"
    } else {
        "active"
    };
    BackendView {
        id: backend.id.to_string(),
        address: backend.address.to_string(),
        weight: backend.weight,
        up: status.is_up(),
        state,
        drain_admin: status.is_admin_draining(),
        drain_config: status.is_config_draining(),
        retired: backend.is_retired(),
        sessions: shared.table.sessions_of(backend.slot),
        store_sessions: shared
            .redis
            .get()
            .and_then(|store| store.sessions_of(&backend.id)),
        uploaded_bytes: shared
            .metrics
            .uploaded_bytes
            .with_label_values(&[&*backend.id])
            .get(),
    }
}

/// The view of a session.
pub fn session(shared: &Shared, key: &SessionKey, pin: &Pin) -> SessionView {
    let now = unix_now();
    SessionView {
        id: key.to_string(),
        backend: shared
            .slots
            .name(pin.backend)
            .map_or_else(|| "unknown".to_owned(), |id| id.to_string()),
        dir: crate::session::UrlRegistry::dir_of(&shared.urls.get(pin.url).path).to_owned(),
        age_s: u64::from(now.saturating_sub(pin.created)),
        idle_s: u64::from(now.saturating_sub(pin.last_seen)),
        bytes: pin.bytes,
        packets: pin.packets,
        client: shared.clients.client_of(key).map(|ip| ip.to_string()),
    }
}

/// The view of a session read from the Redis store. What only a replica knows (bytes,
/// packets, the creating client, activity more recent than the store's last write)
/// comes from this replica's cache when it holds the session.
pub fn stored_session(shared: &Shared, stored: &StoredSession) -> SessionView {
    let now = unix_now();
    let key = SessionKey::new(&stored.id);
    let cached = shared.table.get(&key);
    let last_seen = cached
        .map_or(stored.written, |pin| pin.last_seen)
        .max(stored.written);
    SessionView {
        id: stored.id.clone(),
        backend: stored.pin.backend.clone(),
        dir: crate::session::UrlRegistry::dir_of(&stored.pin.path).to_owned(),
        age_s: u64::from(now.saturating_sub(stored.pin.created)),
        idle_s: u64::from(now.saturating_sub(last_seen)),
        bytes: cached.map_or(0, |pin| pin.bytes),
        packets: cached.map_or(0, |pin| pin.packets),
        client: shared.clients.client_of(&key).map(|ip| ip.to_string()),
    }
}
