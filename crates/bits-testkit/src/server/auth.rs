//! Windows authentication the way IIS does it on the wire: NTLM (also inside
//! `Negotiate`) authenticates a TCP connection, not a request.
//!
//! Anonymous request → 401 with an HTML page, no BITS headers, one `WWW-Authenticate`
//! per offered scheme. `Authorization: NTLM <type 1>` → 401 with `WWW-Authenticate:
//! NTLM <type 2>`. `Authorization: NTLM <type 3>` on the same connection → served, and
//! so is every later request on that connection, with or without credentials. Any other
//! order starts over. Passwords are not checked: any user name is accepted.

use super::config::AuthMode;
use super::conn::Conn;
use crate::ntlm::{self, Message, Scheme};
use http::header::AUTHORIZATION;
use http::HeaderMap;
use tracing::debug;

const LOG: &str = "bits_server";

/// NetBIOS computer name sent in challenges.
const COMPUTER_NAME: &str = "BITS-SERVER";

/// Where a connection is in its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthState {
    /// No handshake, or one that failed.
    Anonymous,
    /// A challenge was sent in this scheme; the type 3 must come next.
    Challenged(Scheme),
    /// The handshake completed for this user.
    Authenticated(String),
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Serve it. `Some(user)` when this very request completed the handshake.
    Pass(Option<String>),
    /// 401 with this `WWW-Authenticate` value (a type 2 challenge).
    Challenge(String),
    /// 401 with the offers: no, wrong or out-of-order credentials.
    Deny,
}

/// Moves the connection's state along for one request and says what to do with it.
pub(crate) fn gate(mode: AuthMode, domain: &str, conn: &Conn, headers: &HeaderMap) -> Gate {
    let credentials = headers.get(AUTHORIZATION).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(ntlm::split_header)
            .filter(|(scheme, _)| mode.offers().contains(scheme))
    });
    conn.with_auth(|state| {
        let next = step(state, credentials, domain);
        if let Gate::Deny = next {
            debug!(target: LOG, conn = conn.id, "refused unauthenticated request");
            *state = AuthState::Anonymous;
        }
        next
    })
}

/// `credentials`: `None` without an `Authorization` header, `Some(None)` with one this
/// mode does not take.
fn step(
    state: &mut AuthState,
    credentials: Option<Option<(Scheme, Option<&str>)>>,
    domain: &str,
) -> Gate {
    let (scheme, token) = match credentials {
        None => {
            return match state {
                AuthState::Authenticated(_) => Gate::Pass(None),
                _ => Gate::Deny,
            }
        }
        Some(Some((scheme, Some(token)))) => (scheme, token),
        Some(_) => return Gate::Deny,
    };
    match (ntlm::decode_token(token), &*state) {
        // A new handshake may start at any time, as on IIS.
        (Ok(Message::Negotiate(negotiate)), _) => {
            let challenge = ntlm::challenge_for(&negotiate, domain, COMPUTER_NAME);
            *state = AuthState::Challenged(scheme);
            Gate::Challenge(scheme.header_value(&Message::Challenge(challenge)))
        }
        (Ok(Message::Authenticate(auth)), AuthState::Challenged(challenged))
            if *challenged == scheme && !auth.user.is_empty() =>
        {
            let user = if auth.domain.is_empty() {
                auth.user
            } else {
                format!("{}\\{}", auth.domain, auth.user)
            };
            *state = AuthState::Authenticated(user.clone());
            Gate::Pass(Some(user))
        }
        _ => Gate::Deny,
    }
}

/// The body IIS sends with its 401s (abridged): an HTML page, not a BITS Ack.
pub(crate) const UNAUTHORIZED_PAGE: &str = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r
<html xmlns=\"http://www.w3.org/1999/xhtml\">\r
<head>\r
<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\"/>\r
<title>401 - Unauthorized: Access is denied due to invalid credentials.</title>\r
</head>\r
<body>\r
<div id=\"header\"><h1>Server Error</h1></div>\r
<div id=\"content\">\r
 <div class=\"content-container\"><fieldset>\r
  <h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>\r
  <h3>You do not have permission to view this directory or page using the credentials that you supplied.</h3>\r
 </fieldset></div>\r
</div>\r
</body>\r
</html>\r
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntlm::{authenticate_for, Negotiate, CLIENT_FLAGS};

    fn token(message: &Message) -> String {
        Scheme::Ntlm
            .header_value(message)
            .split_once(' ')
            .unwrap()
            .1
            .to_owned()
    }

    fn type1() -> String {
        token(&Message::Negotiate(Negotiate {
            flags: CLIENT_FLAGS,
        }))
    }

    fn type3_for(challenge_header: &str, user: &str) -> String {
        let (_, t) = ntlm::split_header(challenge_header).unwrap();
        let Message::Challenge(c) = ntlm::decode_token(t.unwrap()).unwrap() else {
            panic!("not a challenge")
        };
        token(&Message::Authenticate(authenticate_for(
            &c, "CORP", user, "WS",
        )))
    }

    #[test]
    fn type_1_then_type_3_authenticates_and_later_requests_pass() {
        let mut state = AuthState::Anonymous;
        let t1 = type1();
        let Gate::Challenge(header) = step(&mut state, Some(Some((Scheme::Ntlm, Some(&t1)))), "D")
        else {
            panic!("no challenge")
        };
        assert!(header.starts_with("NTLM "));
        let t3 = type3_for(&header, "alice");
        assert_eq!(
            step(&mut state, Some(Some((Scheme::Ntlm, Some(&t3)))), "D"),
            Gate::Pass(Some("CORP\\alice".into()))
        );
        assert_eq!(step(&mut state, None, "D"), Gate::Pass(None));
    }

    #[test]
    fn type_3_without_a_challenge_or_in_another_scheme_is_refused() {
        let mut state = AuthState::Anonymous;
        let t1 = type1();
        let Gate::Challenge(header) = step(&mut state, Some(Some((Scheme::Ntlm, Some(&t1)))), "D")
        else {
            panic!("no challenge")
        };
        let t3 = type3_for(&header, "alice");
        let mut fresh = AuthState::Anonymous;
        assert_eq!(
            step(&mut fresh, Some(Some((Scheme::Ntlm, Some(&t3)))), "D"),
            Gate::Deny
        );
        assert_eq!(
            step(&mut state, Some(Some((Scheme::Negotiate, Some(&t3)))), "D"),
            Gate::Deny
        );
        assert_eq!(step(&mut AuthState::Anonymous, None, "D"), Gate::Deny);
        assert_eq!(step(&mut AuthState::Anonymous, Some(None), "D"), Gate::Deny);
    }
}
