//! Connection-bound Windows authentication (NTLM, Negotiate).
//!
//! Both schemes authenticate a TCP connection, not a request: the type-3 message and
//! every request after it must travel over the upstream connection that carried the
//! challenge, and that connection must never carry another client's request. A client
//! connection becomes *bound* when it sends `Authorization: NTLM …`/`Negotiate …`, or
//! when a backend answers it 401 with such a `WWW-Authenticate` offer. From then on its
//! requests use a peer whose `group_key` is unique to this binding: Pingora's pool key
//! includes it, so the pool hands that upstream connection back only to this client
//! connection, and no other request can ever be given it.
//!
//! The binding lives with the client connection: Pingora carries it from one request
//! to the next on a kept-alive connection (`persist_connection_context` /
//! `on_connection_reuse`) and drops it with the connection. Keys come from a
//! process-wide counter and are never reused, so a key outlives nothing it could be
//! confused with.
//!
//! The check is a header lookup on requests that carry `Authorization` and on 401s;
//! plain traffic pays one failed map lookup and shares the pool as before.

use crate::backend::BackendSlot;
use http::header::{AUTHORIZATION, CONNECTION, WWW_AUTHENTICATE};
use http::HeaderMap;
use pingora::upstreams::peer::HttpPeer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Group keys of bound connections; 0 is the shared pool.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Extra idle time a bound upstream connection is kept past the client's keep-alive,
/// so it is still pooled when the client's last allowed request arrives.
const BOUND_IDLE_MARGIN: Duration = Duration::from_secs(1);

/// A client connection's private upstream connection: which backend holds it and the
/// pool key that reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `HttpPeer::group_key` of every request sent on this binding.
    pub key: u64,
    /// The backend holding the upstream connection.
    pub backend: BackendSlot,
    /// An answer came back over the bound connection: it exists, so a fresh connect
    /// under this key means the backend closed it.
    pub established: bool,
}

impl Binding {
    fn new(backend: BackendSlot) -> Self {
        Binding {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            backend,
            established: false,
        }
    }
}

/// The authentication state one request carries.
#[derive(Debug, Default)]
pub struct AuthCtx {
    /// The client connection's binding, carried over from its previous request.
    pub binding: Option<Binding>,
    /// The bound upstream connection is gone: the client connection is closed without
    /// an answer, so the client starts its handshake again on a new one.
    pub lost: bool,
}

impl AuthCtx {
    /// Fixes the binding for a request routed to `backend`. A bound connection sent
    /// to another backend (a session pinned elsewhere, a backend gone) gets a fresh
    /// binding there: that backend answers 401 and the client authenticates again on
    /// the same client connection. An unbound one binds when the request carries
    /// NTLM or Negotiate credentials.
    pub fn route_to(&mut self, backend: BackendSlot, request: &HeaderMap) {
        match &self.binding {
            Some(binding) if binding.backend == backend => {}
            Some(_) => self.binding = Some(Binding::new(backend)),
            None if carries_connection_credentials(request) => {
                self.binding = Some(Binding::new(backend))
            }
            None => {}
        }
    }

    /// Learns from a final answer of `backend`: the bound connection exists, or a 401
    /// offering NTLM/Negotiate binds the client connection to that backend (its next
    /// request, the handshake's first message, goes there on a private connection).
    pub fn answered(&mut self, backend: BackendSlot, status: u16, response: &HeaderMap) {
        match &mut self.binding {
            Some(binding) if binding.backend == backend => binding.established = true,
            _ if status == 401 && offers_connection_auth(response) => {
                self.binding = Some(Binding::new(backend));
            }
            _ => {}
        }
    }

    /// The pool key for this request's peer: 0 (shared) when unbound.
    pub fn group_key(&self) -> u64 {
        self.binding.as_ref().map_or(0, |b| b.key)
    }

    /// Whether a connect that did not reuse a pooled connection means the bound one was
    /// closed by the backend.
    pub fn bound_connection_lost(&self, reused: bool) -> bool {
        !reused && self.binding.as_ref().is_some_and(|b| b.established)
    }
}

/// How long a bound upstream connection may sit idle in the pool: no longer than the
/// client connection can stay idle (plus a margin), since nobody else can use it.
pub fn bound_idle_timeout(upstream_idle: Duration, client_keepalive: Duration) -> Duration {
    upstream_idle.min(client_keepalive + BOUND_IDLE_MARGIN)
}

/// Puts a peer on this request's pool: the binding's private one, idling no longer
/// than the client connection may, or the shared one.
pub fn apply_to_peer(
    auth: &AuthCtx,
    peer: &mut HttpPeer,
    upstream_idle: Duration,
    client_keepalive: Duration,
) {
    if let Some(binding) = &auth.binding {
        peer.group_key = binding.key;
        peer.options.idle_timeout = Some(bound_idle_timeout(upstream_idle, client_keepalive));
    }
}

/// Whether the backend said it closes the connection after this answer.
pub fn closes_after(response: &HeaderMap) -> bool {
    response
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// `Authorization: NTLM …` or `Negotiate …`.
fn carries_connection_credentials(request: &HeaderMap) -> bool {
    request
        .get_all(AUTHORIZATION)
        .iter()
        .any(|v| names_connection_scheme(v.as_bytes()))
}

/// Any `WWW-Authenticate` offering NTLM or Negotiate, alone or in a list of offers.
fn offers_connection_auth(response: &HeaderMap) -> bool {
    response.get_all(WWW_AUTHENTICATE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(names_connection_scheme)
    })
}

/// Whether a credentials or challenge value starts with the NTLM or Negotiate scheme
/// (a whole token: `NTLMx` is another scheme).
fn names_connection_scheme(value: &[u8]) -> bool {
    let value = value.trim_ascii_start();
    let end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let scheme = &value[..end];
    scheme.eq_ignore_ascii_case(b"NTLM") || scheme.eq_ignore_ascii_case(b"Negotiate")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: http::header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    const A: BackendSlot = BackendSlot(1);
    const B: BackendSlot = BackendSlot(2);

    #[test]
    fn ntlm_and_negotiate_credentials_bind_and_basic_or_bearer_do_not() {
        for value in [
            "NTLM TlRMTVNTUAAB",
            "Negotiate YIIx",
            "ntlm abc",
            "  Negotiate x",
        ] {
            let mut auth = AuthCtx::default();
            auth.route_to(A, &headers(AUTHORIZATION, &[value]));
            assert!(auth.binding.is_some(), "{value}");
            assert_ne!(auth.group_key(), 0);
        }
        for value in ["Basic dXNlcjpw", "Bearer abc", "NTLMx abc", "Negotiator x"] {
            let mut auth = AuthCtx::default();
            auth.route_to(A, &headers(AUTHORIZATION, &[value]));
            assert_eq!(auth.binding, None, "{value}");
            assert_eq!(auth.group_key(), 0);
        }
        let mut auth = AuthCtx::default();
        auth.route_to(A, &HeaderMap::new());
        assert_eq!(auth.binding, None);
    }

    #[test]
    fn a_401_offering_ntlm_or_negotiate_binds_among_other_offers() {
        for offers in [
            &["NTLM"][..],
            &["Negotiate", "NTLM"],
            &["Basic realm=\"x\"", "Negotiate"],
            &["Basic realm=\"x\", NTLM"],
        ] {
            let mut auth = AuthCtx::default();
            auth.answered(A, 401, &headers(WWW_AUTHENTICATE, offers));
            assert_eq!(
                auth.binding.as_ref().map(|b| b.backend),
                Some(A),
                "{offers:?}"
            );
            assert!(!auth.binding.as_ref().unwrap().established);
        }
        let mut auth = AuthCtx::default();
        auth.answered(A, 401, &headers(WWW_AUTHENTICATE, &["Basic realm=\"x\""]));
        assert_eq!(auth.binding, None);
        auth.answered(A, 200, &headers(WWW_AUTHENTICATE, &["Negotiate abc"]));
        assert_eq!(auth.binding, None, "only a 401 binds from the answer");
    }

    #[test]
    fn a_binding_keeps_its_key_on_its_backend_and_gets_a_new_one_elsewhere() {
        let mut auth = AuthCtx::default();
        auth.route_to(A, &headers(AUTHORIZATION, &["NTLM x"]));
        let key = auth.group_key();
        auth.answered(A, 200, &HeaderMap::new());
        auth.route_to(A, &HeaderMap::new());
        assert_eq!(auth.group_key(), key);
        assert!(auth.binding.as_ref().unwrap().established);
        auth.route_to(B, &HeaderMap::new());
        let moved = auth.binding.clone().unwrap();
        assert_eq!(moved.backend, B);
        assert_ne!(
            moved.key, key,
            "a fresh private connection at the new backend"
        );
        assert!(!moved.established);
    }

    #[test]
    fn only_a_fresh_connect_after_an_answer_on_the_binding_means_it_was_lost() {
        let mut auth = AuthCtx::default();
        assert!(!auth.bound_connection_lost(false), "unbound");
        auth.route_to(A, &headers(AUTHORIZATION, &["NTLM x"]));
        assert!(
            !auth.bound_connection_lost(false),
            "the first connect is fresh"
        );
        auth.answered(A, 401, &headers(WWW_AUTHENTICATE, &["NTLM challenge"]));
        assert!(!auth.bound_connection_lost(true));
        assert!(auth.bound_connection_lost(false));
    }

    #[test]
    fn keys_are_never_zero_nor_repeated() {
        let a = Binding::new(A);
        let b = Binding::new(A);
        assert!(a.key != 0 && b.key != 0 && a.key != b.key);
    }

    #[test]
    fn connection_close_is_seen_in_any_token_list() {
        assert!(closes_after(&headers(CONNECTION, &["close"])));
        assert!(closes_after(&headers(CONNECTION, &["keep-alive, Close"])));
        assert!(!closes_after(&headers(CONNECTION, &["keep-alive"])));
        assert!(!closes_after(&HeaderMap::new()));
    }

    #[test]
    fn a_bound_connection_idles_no_longer_than_its_client_can() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            bound_idle_timeout(minute, Duration::from_secs(5)),
            Duration::from_secs(6)
        );
        assert_eq!(bound_idle_timeout(minute, minute * 10), minute);
    }
}
