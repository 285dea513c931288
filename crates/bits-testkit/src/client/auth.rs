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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn challenge_headers() -> HeaderMap {
        let challenge = ntlm::challenge_for(
            &Negotiate {
                flags: CLIENT_FLAGS,
            },
            "D",
            "S",
        );
        let mut headers = HeaderMap::new();
        let value = Scheme::Negotiate.header_value(&Message::Challenge(challenge));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn message(value: &str) -> Message {
        let (_, token) = ntlm::split_header(value).unwrap();
        ntlm::decode_token(token.unwrap()).unwrap()
    }

    #[test]
    fn type_1_then_type_3_then_nothing() {
        let credentials = Credentials::parse("CORP\\alice");
        let mut auth = ConnAuth::default();
        let first = auth.authorization(&credentials).unwrap();
        assert_eq!(message(&first).message_type(), 1);
        assert!(auth.on_response(401, &challenge_headers()));
        let Message::Authenticate(third) = message(&auth.authorization(&credentials).unwrap())
        else {
            panic!("not a type 3")
        };
        assert_eq!(
            (third.domain.as_str(), third.user.as_str()),
            ("CORP", "alice")
        );
        assert!(!auth.on_response(200, &HeaderMap::new()));
        assert_eq!(auth.authorization(&credentials), None);
    }

    #[test]
    fn a_refusal_starts_over_once_then_gives_up() {
        let credentials = Credentials::parse("bob");
        let mut auth = ConnAuth::default();
        auth.authorization(&credentials);
        assert!(auth.on_response(401, &challenge_headers()));
        auth.authorization(&credentials);
        // The type 3 was refused: one more handshake.
        assert!(auth.on_response(401, &HeaderMap::new()));
        assert_eq!(
            message(&auth.authorization(&credentials).unwrap()).message_type(),
            1
        );
        assert!(!auth.on_response(401, &HeaderMap::new()));
    }
}
