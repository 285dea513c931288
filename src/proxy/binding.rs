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
//! Once a backend has offered NTLM or Negotiate, every client connection sent to it is
//! bound from its first request on, so the connection that carries the anonymous
//! request and its 401 is the one the handshake continues on, as behind IIS directly.
//! The one 401 that taught bitsgate the backend's scheme came over a shared connection:
//! that connection is closed once its answer is read, never pooled for anyone else.
//!
//! The binding lives with the client connection: Pingora carries it from one request
//! to the next on a kept-alive connection (`persist_connection_context` /
//! `on_connection_reuse`) and drops it with the connection. Dropping the last copy
//! shuts the bound upstream socket down, so the pool lets go of it at once instead of
//! keeping it idle for nobody. Keys come from a process-wide counter and are never
//! reused, so a key outlives nothing it could be confused with.
//!
//! The check is a header lookup on requests that carry `Authorization` and on 401s;
//! plain traffic pays one failed map lookup and shares the pool as before.

use super::upstream_socket::SocketMark;
use crate::backend::BackendSlot;
use bits_proto::HeaderSource;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, WWW_AUTHENTICATE};
use pingora::upstreams::peer::HttpPeer;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Group keys of bound connections; 0 is the shared pool.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Extra idle time a bound upstream connection is kept past the client's keep-alive,
/// so it is still pooled when the client's last allowed request arrives.
const BOUND_IDLE_MARGIN: Duration = Duration::from_secs(1);

/// A client connection's private upstream connection: which backend holds it and the
/// pool key that reaches it.
#[derive(Debug, Clone)]
pub struct Binding {
    /// `HttpPeer::group_key` of every request sent on this binding.
    pub key: u64,
    /// The backend holding the upstream connection.
    pub backend: BackendSlot,
    /// An answer came back over the bound connection: it exists, so a fresh connect
    /// under this key means the backend closed it.
    pub established: bool,
    /// NTLM or Negotiate took place on it (credentials sent, or a 401 offering them):
    /// if the backend closes it, the client must authenticate again.
    pub authenticating: bool,
    /// The upstream socket, shut down when the last copy of the binding is dropped.
    socket: Arc<BoundSocket>,
}

impl Binding {
    fn new(backend: BackendSlot, authenticating: bool) -> Self {
        Binding {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            backend,
            established: false,
            authenticating,
            socket: Arc::default(),
        }
    }
}

/// The socket a binding's requests travel on, while it has one.
#[derive(Debug, Default)]
struct BoundSocket(Mutex<Option<SocketMark>>);

impl BoundSocket {
    /// Remembers the socket a request of the binding was sent on. A pooled one under
    /// the binding's key is the one already remembered: no other request can have put
    /// it there. A new socket means the previous one is gone or unusable: it is shut
    /// down, if it is still there.
    fn sent_on(&self, fd: RawFd, reused: bool) {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mark) = *current {
            if reused && mark.fd() == fd {
                return;
            }
            mark.shut_down();
        }
        *current = SocketMark::of(fd);
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let mark = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mark) = mark.take() {
            mark.shut_down();
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
    /// The descriptor of this request's upstream connection.
    upstream_fd: Option<RawFd>,
    /// A shared upstream connection that carried a 401 offering NTLM or Negotiate: it
    /// is closed once the answer is read, not pooled for another client.
    close_shared: Option<SocketMark>,
}

impl AuthCtx {
    /// Fixes the binding for a request routed to `backend`. A bound connection sent
    /// to another backend (a session pinned elsewhere, a backend gone) gets a fresh
    /// binding there: that backend answers 401 and the client authenticates again on
    /// the same client connection. An unbound one binds when the request carries
    /// NTLM or Negotiate credentials, or when `backend` is known to ask for them.
    pub fn route_to<H: HeaderSource + ?Sized>(
        &mut self,
        backend: BackendSlot,
        request: &H,
        asks_windows_auth: bool,
    ) {
        let credentials = carries_connection_credentials(request);
        match &mut self.binding {
            Some(binding) if binding.backend == backend => binding.authenticating |= credentials,
            Some(_) => self.binding = Some(Binding::new(backend, credentials)),
            None if credentials || asks_windows_auth => {
                self.binding = Some(Binding::new(backend, credentials))
            }
            None => {}
        }
    }

    /// A request of this client connection was sent on upstream socket `fd`, taken
    /// from the pool or newly connected.
    pub fn sent_on(&mut self, fd: RawFd, reused: bool) {
        self.upstream_fd = Some(fd);
        if let Some(binding) = &self.binding {
            binding.socket.sent_on(fd, reused);
        }
    }

    /// Learns from a final answer of `backend`: the bound connection exists, or a 401
    /// offering NTLM/Negotiate binds the client connection to that backend (its next
    /// request, the handshake's first message, goes there on a private connection).
    /// Returns whether the answer offered NTLM or Negotiate.
    pub fn answered<H: HeaderSource + ?Sized>(
        &mut self,
        backend: BackendSlot,
        status: u16,
        response: &H,
    ) -> bool {
        let offers = status == 401 && offers_connection_auth(response);
        match &mut self.binding {
            Some(binding) if binding.backend == backend => {
                binding.established = true;
                binding.authenticating |= offers;
            }
            _ if offers => {
                self.binding = Some(Binding::new(backend, true));
                // It came over a shared connection: keep it from the pool.
                self.close_shared = self.upstream_fd.and_then(SocketMark::of);
                if response.first(&CONTENT_LENGTH).is_some_and(|v| v == b"0") {
                    self.answer_read();
                }
            }
            _ => {}
        }
        offers
    }

    /// The upstream answer has been read whole: a shared connection that carried a
    /// Windows-authentication offer is closed now, before it can return to the pool.
    pub fn answer_read(&mut self) {
        if let Some(mark) = self.close_shared.take() {
            mark.shut_down();
        }
    }

    /// The pool key for this request's peer: 0 (shared) when unbound.
    pub fn group_key(&self) -> u64 {
        self.binding.as_ref().map_or(0, |b| b.key)
    }

    /// Whether a connect that did not reuse a pooled connection means the bound,
    /// authenticated one was closed by the backend.
    pub fn bound_connection_lost(&self, reused: bool) -> bool {
        !reused
            && self
                .binding
                .as_ref()
                .is_some_and(|b| b.established && b.authenticating)
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
pub fn closes_after<H: HeaderSource + ?Sized>(response: &H) -> bool {
    response
        .values(&CONNECTION)
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// `Authorization: NTLM …` or `Negotiate …`.
fn carries_connection_credentials<H: HeaderSource + ?Sized>(request: &H) -> bool {
    request.values(&AUTHORIZATION).any(names_connection_scheme)
}

/// Any `WWW-Authenticate` offering NTLM or Negotiate, alone or in a list of offers.
fn offers_connection_auth<H: HeaderSource + ?Sized>(response: &H) -> bool {
    response
        .values(&WWW_AUTHENTICATE)
        .any(|v| v.split(|&b| b == b',').any(names_connection_scheme))
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
    use http::{HeaderMap, HeaderValue};

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
            auth.route_to(A, &headers(AUTHORIZATION, &[value]), false);
            assert!(auth.binding.is_some(), "{value}");
            assert_ne!(auth.group_key(), 0);
        }
        for value in ["Basic dXNlcjpw", "Bearer abc", "NTLMx abc", "Negotiator x"] {
            let mut auth = AuthCtx::default();
            auth.route_to(A, &headers(AUTHORIZATION, &[value]), false);
            assert!(auth.binding.is_none(), "{value}");
            assert_eq!(auth.group_key(), 0);
        }
        let mut auth = AuthCtx::default();
        auth.route_to(A, &HeaderMap::new(), false);
        assert!(auth.binding.is_none());
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
        assert!(auth.binding.is_none());
        auth.answered(A, 200, &headers(WWW_AUTHENTICATE, &["Negotiate abc"]));
        assert!(auth.binding.is_none(), "only a 401 binds from the answer");
    }

    #[test]
    fn a_binding_keeps_its_key_on_its_backend_and_gets_a_new_one_elsewhere() {
        let mut auth = AuthCtx::default();
        auth.route_to(A, &headers(AUTHORIZATION, &["NTLM x"]), false);
        let key = auth.group_key();
        auth.answered(A, 200, &HeaderMap::new());
        auth.route_to(A, &HeaderMap::new(), false);
        assert_eq!(auth.group_key(), key);
        assert!(auth.binding.as_ref().unwrap().established);
        auth.route_to(B, &HeaderMap::new(), false);
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
        auth.route_to(A, &headers(AUTHORIZATION, &["NTLM x"]), false);
        assert!(
            !auth.bound_connection_lost(false),
            "the first connect is fresh"
        );
        auth.answered(A, 401, &headers(WWW_AUTHENTICATE, &["NTLM challenge"]));
        assert!(!auth.bound_connection_lost(true));
        assert!(auth.bound_connection_lost(false));
    }

    #[test]
    fn a_backend_known_to_ask_binds_from_the_first_anonymous_request() {
        let mut auth = AuthCtx::default();
        auth.route_to(A, &HeaderMap::new(), true);
        let key = auth.group_key();
        assert_ne!(
            key, 0,
            "the anonymous request travels on a private connection"
        );
        auth.answered(A, 401, &headers(WWW_AUTHENTICATE, &["NTLM"]));
        assert_eq!(
            auth.group_key(),
            key,
            "its 401's connection is the bound one"
        );
        assert!(auth.bound_connection_lost(false));
    }

    #[test]
    fn a_binding_never_used_for_windows_auth_is_not_lost_with_its_connection() {
        let mut auth = AuthCtx::default();
        auth.route_to(A, &HeaderMap::new(), true);
        auth.answered(A, 200, &HeaderMap::new());
        assert!(
            !auth.bound_connection_lost(false),
            "anonymous traffic reconnects quietly"
        );
        auth.route_to(A, &headers(AUTHORIZATION, &["Negotiate x"]), true);
        assert!(auth.bound_connection_lost(false));
    }

    fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (backend, _) = listener.accept().unwrap();
        (upstream, backend)
    }

    fn closed_by_us(backend: &mut std::net::TcpStream) -> bool {
        use std::io::Read;
        backend
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        matches!(backend.read(&mut [0u8; 4]), Ok(0))
    }

    #[test]
    fn the_bound_socket_is_shut_down_when_the_last_copy_of_the_binding_goes() {
        use std::os::fd::AsRawFd;
        let (upstream, mut backend) = socket_pair();
        let mut auth = AuthCtx::default();
        auth.route_to(A, &headers(AUTHORIZATION, &["NTLM x"]), false);
        auth.sent_on(upstream.as_raw_fd(), false);
        let carried = auth.binding.clone();
        drop(auth);
        assert!(
            !closed_by_us(&mut backend),
            "the next request may still come"
        );
        drop(carried);
        assert!(closed_by_us(&mut backend), "the client connection is gone");
    }

    #[test]
    fn a_new_bound_socket_or_another_backend_lets_the_old_socket_go() {
        use std::os::fd::AsRawFd;
        let (first, mut first_backend) = socket_pair();
        let (second, mut second_backend) = socket_pair();
        let mut auth = AuthCtx::default();
        auth.route_to(A, &headers(AUTHORIZATION, &["NTLM x"]), false);
        auth.sent_on(first.as_raw_fd(), false);
        auth.sent_on(first.as_raw_fd(), true);
        assert!(!closed_by_us(&mut first_backend), "reused: the same socket");
        auth.sent_on(second.as_raw_fd(), false);
        assert!(closed_by_us(&mut first_backend), "replaced");
        auth.route_to(B, &HeaderMap::new(), false);
        assert!(
            closed_by_us(&mut second_backend),
            "moved to another backend"
        );
    }

    #[test]
    fn a_shared_connection_that_carried_the_first_offer_is_closed_once_read() {
        use std::os::fd::AsRawFd;
        let (shared, mut backend) = socket_pair();
        let mut auth = AuthCtx::default();
        auth.route_to(A, &HeaderMap::new(), false);
        auth.sent_on(shared.as_raw_fd(), true);
        assert!(auth.answered(A, 401, &headers(WWW_AUTHENTICATE, &["NTLM"])));
        assert!(!closed_by_us(&mut backend), "its body is still to be read");
        auth.answer_read();
        assert!(closed_by_us(&mut backend));

        let (shared, mut backend) = socket_pair();
        let mut auth = AuthCtx::default();
        auth.route_to(A, &HeaderMap::new(), false);
        auth.sent_on(shared.as_raw_fd(), true);
        auth.answered(A, 200, &HeaderMap::new());
        auth.answer_read();
        assert!(
            !closed_by_us(&mut backend),
            "an ordinary answer keeps it pooled"
        );
    }

    #[test]
    fn keys_are_never_zero_nor_repeated() {
        let a = Binding::new(A, false);
        let b = Binding::new(A, true);
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
