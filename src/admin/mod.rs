//! The admin listener: the status page, metrics, probes, and the operations API
//! (backends, sessions, drain, reload). JSON in, JSON out, except the page; documented
//! in docs/admin-api.md.

mod auth;
mod filter;
mod history;
mod html;
mod status_page;
mod store_sessions;
mod views;

use crate::cancels::{CancelJob, CancelReason};
pub use history::StatusHistory;

use crate::metrics::EndReason;
use crate::reload::{self, ReloadError};
use crate::session::store::StoreHealth;
use crate::session::{unix_now, SessionKey};
use crate::state::Shared;
use async_trait::async_trait;
use bits_proto::SessionId;
use filter::SessionFilter;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// The admin application.
pub struct AdminApp {
    shared: Arc<Shared>,
}

/// A response before it is encoded.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status,
            content_type: JSON,
            body,
        }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    fn html(status: StatusCode, page: String) -> Reply {
        Reply {
            status,
            content_type: HTML,
            body: page.into_bytes(),
        }
    }

    fn text(status: StatusCode, text: &str) -> Reply {
        Reply {
            status,
            content_type: TEXT,
            body: text.as_bytes().to_vec(),
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl AdminApp {
    /// An admin app over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        // A first sample at start, so the status page has rates from its first view.
        shared.status_history.sample(&shared);
        AdminApp { shared }
    }

    async fn dispatch(&self, method: &Method, path: &str, query: Option<&str>) -> Reply {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let read = *method == Method::GET || *method == Method::HEAD;
        match (read, method, segments.as_slice()) {
            (true, _, [""]) => Reply::html(
                StatusCode::OK,
                status_page::render(&self.shared, &self.shared.status_history),
            ),
            (true, _, ["metrics"]) => {
                self.shared.publish_backend_metrics();
                Reply {
                    status: StatusCode::OK,
                    content_type: PROMETHEUS,
                    body: self.shared.metrics.render(),
                }
            }
            (true, _, ["livez"]) => Reply::text(StatusCode::OK, "ok\n"),
            (true, _, ["readyz"]) => self.readyz(),
            (true, _, ["backends"]) => self.backends(),
            (true, _, ["sessions"]) => self.sessions(query).await,
            (true, _, ["sessions", id]) => self.session(id).await,
            (_, &Method::POST, ["backends", id, "drain"]) => self.drain(id, true).await,
            (_, &Method::POST, ["backends", id, "undrain"]) => self.drain(id, false).await,
            (_, &Method::DELETE, ["sessions"]) => self.delete_sessions(query).await,
            (_, &Method::DELETE, ["sessions", id]) => self.delete_session(id).await,
            (_, &Method::POST, ["config", "reload"]) => self.reload().await,
            _ => Reply::error(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} {path}"),
            ),
        }
    }

    fn readyz(&self) -> Reply {
        // No Create-Session can be answered while pins cannot be journaled.
        match self.shared.store.as_ref().map(|store| store.health()) {
            Some(StoreHealth::Failing { error, .. }) => {
                let body = format!("pin journal failing: {error}\n");
                return Reply::text(StatusCode::SERVICE_UNAVAILABLE, &body);
            }
            Some(StoreHealth::Poisoned { error }) => {
                let body = format!("pin journal failed, restart needed: {error}\n");
                return Reply::text(StatusCode::SERVICE_UNAVAILABLE, &body);
            }
            Some(StoreHealth::Healthy) | None => {}
        }
        if let Some(error) = self.shared.redis.get().and_then(|r| r.outage()) {
            let body = format!("shared pin store (Redis) failing: {error}\n");
            return Reply::text(StatusCode::SERVICE_UNAVAILABLE, &body);
        }
        let generation = self.shared.generation();
        if generation.farm.backends.iter().any(|b| b.is_ready()) {
            Reply::text(StatusCode::OK, "ready\n")
        } else {
            Reply::text(StatusCode::SERVICE_UNAVAILABLE, "no ready backend\n")
        }
    }

    fn backends(&self) -> Reply {
        let generation = self.shared.generation();
        let list: Vec<_> = generation
            .farm
            .backends
            .iter()
            .map(|b| views::backend(&self.shared, b))
            .collect();
        Reply::json(StatusCode::OK, &json!({ "backends": list }))
    }

    async fn sessions(&self, query: Option<&str>) -> Reply {
        // One generation for the lookup and the index: a reload may swap it meanwhile.
        let generation = self.shared.generation();
        let filter = match SessionFilter::parse(query, &generation) {
            Ok(filter) => filter,
            Err(message) => return Reply::error(filter_error_status(&message), message),
        };
        // The store knows no client addresses: `client=` is answered from the cache.
        let store = self.shared.redis.get();
        if let Some(store) = store.filter(|_| filter.client.is_none()) {
            return store_sessions::list(&self.shared, store, &filter).await;
        }
        let now = unix_now();
        let mut total = 0u64;
        let mut list = Vec::new();
        self.shared.table.for_each(|key, pin| {
            if !filter.matches(key, pin, now, &self.shared.clients) {
                return;
            }
            total += 1;
            if list.len() < filter.limit {
                list.push(views::session(&self.shared, key, pin));
            }
        });
        let mut answer = json!({ "total": total, "sessions": list });
        if store.is_some() {
            answer["source"] = json!("replica");
        }
        Reply::json(StatusCode::OK, &answer)
    }

    /// Cancels every session the query selects: each is unpinned now and its owner
    /// gets a Cancel-Session from the background queue (the table may hold millions,
    /// so nothing waits for the owners' answers).
    async fn delete_sessions(&self, query: Option<&str>) -> Reply {
        let generation = self.shared.generation();
        let filter = match SessionFilter::parse(query, &generation) {
            Ok(filter) => filter,
            Err(message) => return Reply::error(filter_error_status(&message), message),
        };
        if !filter.narrows() && !filter.all {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "name the sessions to cancel (backend=ID, client=IP, idle_over=SECS) or say all=true",
            );
        }
        let store = self.shared.redis.get();
        if let Some(store) = store.filter(|_| filter.client.is_none()) {
            return store_sessions::cancel_many(&self.shared, store, &generation, &filter).await;
        }
        let now = unix_now();
        let mut selected = Vec::new();
        self.shared.table.for_each(|key, pin| {
            if filter.matches(key, pin, now, &self.shared.clients) {
                selected.push((key.clone(), *pin));
            }
        });
        let mut unpinned = 0u64;
        for (key, pin) in &selected {
            let job = CancelJob::for_pin(&self.shared.urls, key, pin, CancelReason::Admin);
            self.shared.cancels.submit(&generation, job);
            if self.shared.end_session(key, EndReason::Cancelled).is_some() {
                unpinned += 1;
            }
        }
        tracing::warn!(target: "bitsgate::admin", query = query.unwrap_or(""), matched = selected.len(), unpinned, "sessions cancelled in bulk");
        Reply::json(
            StatusCode::OK,
            &json!({ "matched": selected.len(), "unpinned": unpinned }),
        )
    }

    /// The session a path names, and its pin when this process holds it.
    fn lookup(&self, raw_id: &str) -> Result<(SessionKey, Option<crate::session::Pin>), Reply> {
        let id = decode(raw_id);
        let key = SessionId::validate(id.as_bytes())
            .map(SessionKey::new)
            .map_err(|e| {
                Reply::error(StatusCode::BAD_REQUEST, format!("invalid session id: {e}"))
            })?;
        let pin = self.shared.table.get(&key);
        Ok((key, pin))
    }

    async fn session(&self, raw_id: &str) -> Reply {
        match self.lookup(raw_id) {
            Ok((key, Some(pin))) => {
                Reply::json(StatusCode::OK, &views::session(&self.shared, &key, &pin))
            }
            Ok((key, None)) => match self.shared.redis.get() {
                Some(store) => store_sessions::show(&self.shared, store, &key).await,
                None => not_pinned(&key),
            },
            Err(reply) => reply,
        }
    }

    async fn drain(&self, raw_id: &str, drain: bool) -> Reply {
        let id = decode(raw_id);
        let generation = self.shared.generation();
        let Some(index) = generation.farm.index_of_id(&id) else {
            return Reply::error(StatusCode::NOT_FOUND, format!("no backend {id:?}"));
        };
        let backend = &generation.farm.backends[index];
        if !drain && (backend.status.is_config_draining() || backend.is_retired()) {
            return Reply::error(
                StatusCode::CONFLICT,
                format!("{id} drains because of the config file; change the file and reload"),
            );
        }
        // Every replica drains it at its next poll of the store; nothing changes here
        // either unless the store has it.
        if let Some(store) = self.shared.redis.get() {
            if let Err(e) = store.set_drained(&id, drain).await {
                return Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the drain could not be shared through the pin store (Redis): {e}; nothing changed, retry when Redis answers"),
                );
            }
        }
        if backend.status.set_draining(drain) {
            tracing::info!(target: "bitsgate::admin", backend = %id, draining = drain, "drain state changed");
        }
        self.shared.publish_backend_metrics();
        Reply::json(StatusCode::OK, &views::backend(&self.shared, backend))
    }

    async fn delete_session(&self, raw_id: &str) -> Reply {
        let (key, pin) = match self.lookup(raw_id) {
            Ok((key, Some(pin))) => (key, pin),
            Ok((key, None)) => {
                return match self.shared.redis.get() {
                    Some(store) => store_sessions::cancel(&self.shared, store, &key).await,
                    None => not_pinned(&key),
                }
            }
            Err(reply) => return reply,
        };
        let job = CancelJob::for_pin(&self.shared.urls, &key, &pin, CancelReason::Admin);
        let answer = self
            .shared
            .cancels
            .send_now(&self.shared.generation(), job)
            .await;
        let unpinned = self
            .shared
            .end_session(&key, EndReason::Cancelled)
            .is_some();
        Reply::json(
            StatusCode::OK,
            &json!({
                "session": key.to_string(),
                "unpinned": unpinned,
                "cancel": answer.map(|a| json!({
                    "status": a.status,
                    "error_code": a.error_code.map(|c| c.to_string()),
                })),
            }),
        )
    }

    async fn reload(&self) -> Reply {
        let shared = self.shared.clone();
        // Reading the file and resolving backend names block: keep them off the runtime.
        let outcome = tokio::task::spawn_blocking(move || reload::reload(&shared)).await;
        match outcome {
            Ok(Ok(report)) => Reply::json(
                StatusCode::OK,
                &json!({ "outcome": "reloaded", "report": report }),
            ),
            Ok(Err(ReloadError::Invalid(errors))) => Reply::json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "outcome": "refused",
                    "errors": errors.0.iter().map(|e| json!({ "key": e.key, "message": e.message, "fix": e.fix })).collect::<Vec<_>>(),
                }),
            ),
            Ok(Err(e @ ReloadError::NoConfigFile)) => {
                Reply::error(StatusCode::CONFLICT, e.to_string())
            }
            Ok(Err(e)) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Err(e) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

fn not_pinned(key: &SessionKey) -> Reply {
    Reply::error(StatusCode::NOT_FOUND, format!("no pinned session {key}"))
}

/// A filter naming an unknown backend is a 404 (as for the other backend paths);
/// anything else wrong in a query is a 400.
fn filter_error_status(message: &str) -> StatusCode {
    if message.starts_with("no backend") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    }
}

fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_owned();
        let query = req.uri.query().map(str::to_owned);
        let generation = self.shared.generation();
        let reply = if auth::authorized(&generation.config.admin, &method, &path, &req.headers) {
            self.dispatch(&method, &path, query.as_deref()).await
        } else {
            tracing::warn!(target: "bitsgate::admin", %method, path, "admin call refused: missing or wrong token");
            if method == Method::GET && path == "/" {
                // A browser cannot send the header by itself: this page asks for the
                // token and loads the status page with it.
                Reply::html(StatusCode::UNAUTHORIZED, status_page::LOGIN_PAGE.to_owned())
            } else {
                Reply::error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            }
        };
        let mut builder = Response::builder()
            .status(reply.status)
            .header(http::header::CONTENT_TYPE, reply.content_type)
            .header(http::header::CONTENT_LENGTH, reply.body.len());
        if reply.status == StatusCode::UNAUTHORIZED {
            builder = builder.header(http::header::WWW_AUTHENTICATE, "Bearer");
        }
        builder
            .body(reply.body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
