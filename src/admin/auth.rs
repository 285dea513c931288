//! Bearer-token checks for the admin API.

use crate::config::AdminConfig;
use http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

/// Whether a call may proceed. Mutating calls (anything but GET and HEAD) need the
/// token when one is set; reads need it with `protect_reads`, except the probes, which
/// orchestrators call without credentials.
pub fn authorized(config: &AdminConfig, method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let Some(token) = config.token.as_deref() else {
        return true;
    };
    let read = method == Method::GET || method == Method::HEAD;
    if read && (!config.protect_reads || matches!(path, "/livez" | "/readyz")) {
        return true;
    }
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>, protect_reads: bool) -> AdminConfig {
        AdminConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            token: token.map(Into::into),
            protect_reads,
        }
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn without_a_token_everything_is_allowed() {
        assert!(authorized(
            &config(None, true),
            &Method::POST,
            "/config/reload",
            &HeaderMap::new()
        ));
    }

    #[test]
    fn mutating_calls_need_the_exact_token() {
        let c = config(Some(TOKEN), false);
        assert!(!authorized(
            &c,
            &Method::POST,
            "/config/reload",
            &HeaderMap::new()
        ));
        assert!(!authorized(
            &c,
            &Method::DELETE,
            "/sessions/x",
            &bearer("Bearer wrong")
        ));
        assert!(!authorized(
            &c,
            &Method::POST,
            "/x",
            &bearer(&format!("Bearer {TOKEN}x"))
        ));
        assert!(!authorized(
            &c,
            &Method::POST,
            "/x",
            &bearer(&format!("Basic {TOKEN}"))
        ));
        assert!(authorized(
            &c,
            &Method::POST,
            "/x",
            &bearer(&format!("Bearer {TOKEN}"))
        ));
    }

    #[test]
    fn reads_are_open_unless_protected_and_probes_always_are() {
        let open = config(Some(TOKEN), false);
        assert!(authorized(
            &open,
            &Method::GET,
            "/sessions",
            &HeaderMap::new()
        ));
        let protected = config(Some(TOKEN), true);
        assert!(!authorized(
            &protected,
            &Method::GET,
            "/sessions",
            &HeaderMap::new()
        ));
        assert!(!authorized(
            &protected,
            &Method::GET,
            "/metrics",
            &HeaderMap::new()
        ));
        assert!(authorized(
            &protected,
            &Method::GET,
            "/livez",
            &HeaderMap::new()
        ));
        assert!(authorized(
            &protected,
            &Method::GET,
            "/readyz",
            &HeaderMap::new()
        ));
        assert!(authorized(
            &protected,
            &Method::GET,
            "/metrics",
            &bearer(&format!("Bearer {TOKEN}"))
        ));
    }
}
