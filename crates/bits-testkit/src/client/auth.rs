//! The client's side of connection-bound Windows authentication: every new connection
//! runs type 1 → challenge → type 3, like WinHTTP does for BITS, and then carries no
//! more credentials. Requests of the handshake are full requests; the caller resends
//! the request whenever [`ConnAuth::on_response`] asks for it.

use crate::ntlm::{self, Challenge, Message, Negotiate, Scheme, CLIENT_FLAGS};
use http::header::WWW_AUTHENTICATE;
use http::HeaderMap;

/// Workstation name sent in type 3 messages.
const WORKSTATION: &str = "BITS-CLIENT";
/// Handshakes started on one connection before a 401 is given to the caller.
const MAX_HANDSHAKES: u32 = 2;

/// Who to authenticate as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    domain: String,
    user: String,
}

impl Credentials {
    /// `DOMAIN\user` or `user`.
    pub fn parse(value: &str) -> Self {
        match value.split_once('\\') {
            Some((domain, user)) => Credentials {
                domain: domain.to_owned(),
                user: user.to_owned(),
            },
            None => Credentials {
                domain: String::new(),
                user: value.to_owned(),
            },
        }
    }
}

/// The handshake state of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnAuth {
    state: State,
    handshakes: u32,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Fresh,
    SentNegotiate,
    Challenged(Challenge),
    SentAuthenticate,
    Authenticated,
}

impl ConnAuth {
    /// The `Authorization` value for the next request on this connection, if any.
    pub fn authorization(&mut self, credentials: &Credentials) -> Option<String> {
        match std::mem::take(&mut self.state) {
            State::Authenticated => {
                self.state = State::Authenticated;
                None
            }
            State::Challenged(challenge) => {
                self.state = State::SentAuthenticate;
                let auth = ntlm::authenticate_for(
                    &challenge,
                    &credentials.domain,
                    &credentials.user,
                    WORKSTATION,
                );
                Some(Scheme::Ntlm.header_value(&Message::Authenticate(auth)))
            }
            State::Fresh | State::SentNegotiate | State::SentAuthenticate => {
                self.handshakes += 1;
                self.state = State::SentNegotiate;
                let negotiate = Negotiate {
                    flags: CLIENT_FLAGS,
                };
                Some(Scheme::Ntlm.header_value(&Message::Negotiate(negotiate)))
            }
        }
    }

    /// Takes a response in; `true` when the request must be sent again on this
    /// connection to go on with the handshake.
    pub fn on_response(&mut self, status: u16, headers: &HeaderMap) -> bool {
        if status != 401 {
            if !matches!(self.state, State::Fresh) {
                self.state = State::Authenticated;
            }
            return false;
        }
        if matches!(self.state, State::SentNegotiate) {
            if let Some(challenge) = challenge_in(headers) {
                self.state = State::Challenged(challenge);
                return true;
            }
        }
        // Refused, or the connection lost its authentication: start over, a bounded
        // number of times.
        self.state = State::Fresh;
        self.handshakes < MAX_HANDSHAKES
    }
}

/// The first NTLM challenge among the `WWW-Authenticate` headers.
fn challenge_in(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(ntlm::split_header)
        .filter_map(|(_, token)| token)
        .find_map(|token| match ntlm::decode_token(token) {
            Ok(Message::Challenge(c)) => Some(c),
            _ => None,
        })
}
