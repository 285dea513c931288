//! Every metric name, in one place. `docs/metrics.md` lists the same names; a test
//! keeps the two in step.

/// Requests answered, by packet type, backend and status class.
pub const REQUESTS_TOTAL: &str = "bitsgate_requests_total";
/// Acks bitsgate wrote itself, by reason.
pub const LOCAL_ACKS_TOTAL: &str = "bitsgate_local_acks_total";
/// Sessions pinned from a Create-Session Ack, by backend.
pub const SESSIONS_CREATED_TOTAL: &str = "bitsgate_sessions_created_total";
/// Pins removed, by backend and reason.
pub const SESSIONS_ENDED_TOTAL: &str = "bitsgate_sessions_ended_total";
/// Pins held, by backend.
pub const SESSIONS_ACTIVE: &str = "bitsgate_sessions_active";
/// Pins held in total.
pub const PINNED_SESSIONS: &str = "bitsgate_pinned_sessions";
/// `[sessions] max_pinned` in force: Create-Session is refused at this many pins.
pub const MAX_PINNED_SESSIONS: &str = "bitsgate_max_pinned_sessions";
/// Fragment bytes forwarded and acknowledged, by backend.
pub const UPLOADED_BYTES_TOTAL: &str = "bitsgate_uploaded_bytes_total";
/// Request duration, by packet type.
pub const REQUEST_DURATION_SECONDS: &str = "bitsgate_request_duration_seconds";
/// 1 when a backend is considered reachable, else 0.
pub const BACKEND_UP: &str = "bitsgate_backend_up";
/// 1 when a backend takes no new sessions, else 0.
pub const BACKEND_DRAINING: &str = "bitsgate_backend_draining";
/// 1 when a backend left the configuration and is kept only for its sessions, else 0.
pub const BACKEND_RETIRED: &str = "bitsgate_backend_retired";
/// Upstream connect failures, by backend.
pub const UPSTREAM_CONNECT_FAILURES_TOTAL: &str = "bitsgate_upstream_connect_failures_total";
/// TLS connections to a backend that failed (certificate or handshake), by backend
/// and reason.
pub const UPSTREAM_TLS_FAILURES_TOTAL: &str = "bitsgate_upstream_tls_failures_total";
/// New TCP (or TLS) connections bitsgate opened to a backend, by backend.
pub const UPSTREAM_CONNECTS_TOTAL: &str = "bitsgate_upstream_connects_total";
/// Requests sent to a backend over a pooled connection opened earlier, by backend.
pub const UPSTREAM_REUSES_TOTAL: &str = "bitsgate_upstream_reuses_total";
/// Backend health transitions, by backend and new state (`to` = up | down).
pub const BACKEND_TRANSITIONS_TOTAL: &str = "bitsgate_backend_transitions_total";

/// 1 when a draining backend owns no session any more (safe to take down), else 0.
pub const BACKEND_DRAINED: &str = "bitsgate_backend_drained";
/// Config reloads, by outcome (success, failure).
pub const CONFIG_RELOADS_TOTAL: &str = "bitsgate_config_reloads_total";
/// Cancel-Session packets bitsgate sent itself, by reason (expired, admin) and outcome.
pub const CANCELS_SENT_TOTAL: &str = "bitsgate_cancels_sent_total";

/// Pin journal writes that failed (the pin stays in memory only).
pub const STORE_ERRORS_TOTAL: &str = "bitsgate_store_errors_total";
/// Create-Session Acks refused because their session id was pinned to another
/// backend's live session, by the backend that issued the duplicate.
pub const SESSION_ID_COLLISIONS_TOTAL: &str = "bitsgate_session_id_collisions_total";

/// Sessions of each backend in the shared store (`[storage] mode = "redis"`), by
/// backend, as of the replica's last poll of it.
pub const STORE_SESSIONS: &str = "bitsgate_store_sessions";

/// 1 when the pin journal takes no more writes until a restart (after a failed
/// sync or a failed rollback), else 0.
pub const STORE_FAILED: &str = "bitsgate_store_failed";

/// Access-log lines dropped: the writer fell behind or the file could not be written.
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "bitsgate_access_log_dropped_total";

/// Requests served on the fast path (the rest went through Pingora's proxy).
pub const FAST_PATH_REQUESTS_TOTAL: &str = "bitsgate_fast_path_requests_total";

/// Request body bytes the fast path moved with `splice(2)`.
pub const FAST_PATH_SPLICED_BYTES_TOTAL: &str = "bitsgate_fast_path_spliced_bytes_total";

/// Upload-reply routes held: reply paths routed to the backend that issued them.
pub const REPLY_ROUTES: &str = "bitsgate_reply_routes";

/// Client connections open.
pub const CLIENT_CONNECTIONS: &str = "bitsgate_client_connections";
/// Client connections closed by a `[listener]` limit, by reason.
pub const CLIENT_CONNECTIONS_CLOSED_TOTAL: &str = "bitsgate_client_connections_closed_total";

/// Every name above, for the documentation check.
pub const ALL: [&str; 28] = [
    FAST_PATH_REQUESTS_TOTAL,
    REPLY_ROUTES,
    UPSTREAM_TLS_FAILURES_TOTAL,
    CLIENT_CONNECTIONS,
    CLIENT_CONNECTIONS_CLOSED_TOTAL,
    ACCESS_LOG_DROPPED_TOTAL,
    SESSION_ID_COLLISIONS_TOTAL,
    MAX_PINNED_SESSIONS,
    STORE_FAILED,
    BACKEND_RETIRED,
    STORE_ERRORS_TOTAL,
    BACKEND_DRAINED,
    CONFIG_RELOADS_TOTAL,
    CANCELS_SENT_TOTAL,
    REQUESTS_TOTAL,
    LOCAL_ACKS_TOTAL,
    SESSIONS_CREATED_TOTAL,
    SESSIONS_ENDED_TOTAL,
    SESSIONS_ACTIVE,
    PINNED_SESSIONS,
    UPLOADED_BYTES_TOTAL,
    REQUEST_DURATION_SECONDS,
    BACKEND_UP,
    BACKEND_DRAINING,
    UPSTREAM_CONNECT_FAILURES_TOTAL,
    UPSTREAM_CONNECTS_TOTAL,
    UPSTREAM_REUSES_TOTAL,
    BACKEND_TRANSITIONS_TOTAL,
];

/// Label value for requests answered without a backend.
pub const NO_BACKEND: &str = "none";
