//! The admin listener: Prometheus metrics and probes. Read-only for now.

use crate::state::Shared;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// `GET /metrics`, `/livez`, `/readyz`.
pub struct AdminApp {
    shared: Arc<Shared>,
}

impl AdminApp {
    /// An admin app over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminApp { shared }
    }

    fn route(&self, method: &http::Method, path: &str) -> (StatusCode, &'static str, Vec<u8>) {
        if method != http::Method::GET && method != http::Method::HEAD {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                b"method not allowed\n".to_vec(),
            );
        }
        match path {
            "/metrics" => {
                self.shared.publish_backend_metrics();
                (StatusCode::OK, PROMETHEUS, self.shared.metrics.render())
            }
            "/livez" => (StatusCode::OK, TEXT, b"ok\n".to_vec()),
            "/readyz" => {
                let generation = self.shared.generation();
                if generation.farm.backends.iter().any(|b| b.is_ready()) {
                    (StatusCode::OK, TEXT, b"ready\n".to_vec())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        b"no ready backend\n".to_vec(),
                    )
                }
            }
            _ => (StatusCode::NOT_FOUND, TEXT, b"not found\n".to_vec()),
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (status, content_type, body) = self.route(&req.method, req.uri.path());
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
