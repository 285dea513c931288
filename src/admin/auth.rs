//! Bearer-token checks for the admin API.

use crate::config::AdminConfig;
use http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

/// Whether a call may proceed. Mutating calls (anything but GET and HEAD) need the
/// token when one is set; reads need it with `protect_reads`, and the session reads
/// always do (a session id is all it takes to cancel an upload), except the probes,
/// which orchestrators call without credentials.
pub fn authorized(config: &AdminConfig, method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let Some(token) = config.token.as_deref() else {
        return true;
    };
    let read = method == Method::GET || method == Method::HEAD;
    let first = path.trim_matches('/').split('/').next().unwrap_or("");
    let open_read = match first {
        "livez" | "readyz" => true,
        "sessions" => false,
        _ => !config.protect_reads,
    };
    if read && open_read {
        return true;
    }
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials)
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

/// The credentials of a `Bearer` authorization; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>, protect_reads: bool) -> AdminConfig {
        AdminConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            token: token.map(Into::into),
            protect_reads,
            allow_unauthenticated: false,
            tls: None,
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
            "/backends",
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

    #[test]
    fn session_reads_need_the_token_even_when_other_reads_are_open() {
        let open = config(Some(TOKEN), false);
        for path in ["/sessions", "/sessions/", "/sessions/{abc}"] {
            assert!(
                !authorized(&open, &Method::GET, path, &HeaderMap::new()),
                "{path}"
            );
            assert!(authorized(
                &open,
                &Method::GET,
                path,
                &bearer(&format!("Bearer {TOKEN}"))
            ));
        }
    }

    #[test]
    fn probes_stay_open_with_a_trailing_slash() {
        let protected = config(Some(TOKEN), true);
        for path in ["/livez/", "/readyz/"] {
            assert!(
                authorized(&protected, &Method::GET, path, &HeaderMap::new()),
                "{path}"
            );
        }
        assert!(!authorized(
            &protected,
            &Method::GET,
            "/metrics/",
            &HeaderMap::new()
        ));
    }

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        let c = config(Some(TOKEN), true);
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            assert!(authorized(
                &c,
                &Method::POST,
                "/config/reload",
                &bearer(&format!("{scheme} {TOKEN}"))
            ));
        }
        assert!(!authorized(&c, &Method::POST, "/x", &bearer("Bearer")));
    }
}
