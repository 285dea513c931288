//! A small HTTP client for the admin API of a running bitsgate.

use super::args::AdminTarget;
use bitsgate::config::{self, ConfigErrors};
use bitsgate::reach::connectable;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::net::SocketAddr;
use std::time::Duration;

/// Characters left as they are in a path segment; everything else is percent-encoded,
/// so that braces in session ids and any byte of a backend id get through.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// Why a command could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The configuration file could not be used.
    #[error("{path}: {errors}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong with it.
        errors: ConfigErrors,
    },
    /// No HTTP answer: refused, timed out, not HTTP.
    #[error("no answer from the admin API at {address}: {source} (is bitsgate running, and is this its configuration file?)")]
    Unreachable {
        /// The address called.
        address: SocketAddr,
        /// The transport error.
        source: ureq::Error,
    },
    /// The admin listener speaks HTTPS (`[admin.tls]`), which these commands do not.
    #[error("the admin API at {address} speaks HTTPS ([admin.tls] in {path}); these commands speak plain HTTP only: call it with curl --cacert instead (docs/admin-api.md)")]
    Https {
        /// The address.
        address: SocketAddr,
        /// The file that sets it.
        path: String,
    },
}

/// An HTTP answer: status and body text.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body (JSON for every endpoint but the probes).
    pub body: String,
}

impl Answer {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `error` field of a JSON error answer, or the body itself.
    pub fn error_message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.body.trim().to_owned())
    }
}

/// The admin API of one running bitsgate.
pub struct AdminClient {
    agent: ureq::Agent,
    address: SocketAddr,
    token: Option<String>,
}

/// Which calls a command makes: what decides whether it needs the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Probes: never authenticated.
    Probe,
    /// Reads: authenticated when the file sets `protect_reads`.
    Read,
    /// Session reads: authenticated whenever a token is set (a session id is all it
    /// takes to cancel an upload, so the admin API never lists them openly).
    SessionRead,
    /// POST and DELETE: authenticated whenever a token is set.
    Write,
}

impl AdminClient {
    /// Finds the address (and, when the calls need it, the token) in the configuration
    /// file, unless `--admin` makes the file unnecessary for a probe.
    pub fn connect(
        target: &AdminTarget,
        access: Access,
        timeout: Duration,
    ) -> Result<Self, CallError> {
        let (address, token) = match (access, target.admin) {
            (Access::Probe, Some(address)) => (address, None),
            // `--admin` toward an instance without a file of its own (`bitsgate
            // demo`): calls go without a token.
            (_, Some(address)) if !target.config.exists() => (address, None),
            _ => {
                let load = |read_token| {
                    config::load_admin_file(&target.config, read_token).map_err(|errors| {
                        CallError::Config {
                            path: target.config.display().to_string(),
                            errors,
                        }
                    })
                };
                let admin = load(false)?;
                if admin.tls.is_some() {
                    return Err(CallError::Https {
                        address: target.admin.unwrap_or(admin.address),
                        path: target.config.display().to_string(),
                    });
                }
                let needs_token = match access {
                    Access::Probe => false,
                    Access::Read => admin.protect_reads,
                    Access::SessionRead | Access::Write => true,
                };
                // The token file is read only when the calls need it: an operator
                // allowed to list backends may not be allowed to read the secret.
                let token = if needs_token { load(true)?.token } else { None };
                (target.admin.unwrap_or(admin.address), token)
            }
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // The admin listener is local: an HTTP proxy from the environment must not
            // carry the calls (or the token) elsewhere.
            .proxy(None)
            .build();
        Ok(AdminClient {
            agent: config.into(),
            address: connectable(address),
            token,
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Answer, CallError> {
        let request = self.agent.get(self.url(path));
        let request = match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        };
        self.finish(request.call())
    }

    /// `POST path` without a body.
    pub fn post(&self, path: &str) -> Result<Answer, CallError> {
        let request = self.agent.post(self.url(path));
        let request = match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        };
        self.finish(request.send_empty())
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Answer, CallError> {
        let request = self.agent.delete(self.url(path));
        let request = match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        };
        self.finish(request.call())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, CallError> {
        let unreachable = |source| CallError::Unreachable {
            address: self.address,
            source,
        };
        let mut response = result.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(unreachable)?;
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_and_backend_ids_are_encoded_as_one_segment() {
        assert_eq!(segment("{4cd1df3c-b9a5}"), "%7B4cd1df3c-b9a5%7D".to_owned());
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
