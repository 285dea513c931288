//! Cancel-Session sent by bitsgate itself (expired pins, admin deletes, sessions a
//! backend created that bitsgate cannot pin), so the backend frees the session's temp
//! files instead of keeping them until its own cleanup. It goes through Pingora's
//! connector with the peer settings of proxied requests ([`super::peer`]).

use bits_proto::headers as h;
use bits_proto::{AckInfo, ErrorCode, PacketType};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::time::Duration;

/// Interim answers (`100 Continue`) skipped before giving up on a final one.
const MAX_INTERIM_ANSWERS: usize = 4;

/// What the backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOutcome {
    /// HTTP status of the Ack.
    pub status: u16,
    /// Its BITS error code, if any.
    pub error_code: Option<ErrorCode>,
}

impl CancelOutcome {
    /// The session is gone from the backend: cancelled now, or unknown already.
    pub fn session_is_gone(&self) -> bool {
        self.status == 200 || self.error_code == Some(ErrorCode::SESSION_NOT_FOUND)
    }
}

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// Connecting, writing or reading failed, or the request could not be built.
    #[error("{0}")]
    Exchange(Box<pingora::Error>),
    /// No complete answer within the time allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Only interim answers came back.
    #[error("no final answer")]
    NoFinalAnswer,
}

impl From<Box<pingora::Error>> for CancelError {
    fn from(e: Box<pingora::Error>) -> Self {
        CancelError::Exchange(e)
    }
}

/// One Cancel-Session: where it goes and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The `Host` header: the one the client used to create the session.
    pub host: String,
    /// The URL path the session was created at.
    pub path: String,
    /// The session id.
    pub session: String,
}

/// Sends Cancel-Session packets through Pingora's HTTP connector.
pub struct CancelClient {
    connector: Connector,
}

impl Default for CancelClient {
    fn default() -> Self {
        CancelClient {
            connector: Connector::new(None),
        }
    }
}

impl CancelClient {
    /// Sends `request` to `peer` and returns its Ack, all within `limit`.
    pub async fn send(
        &self,
        peer: &HttpPeer,
        request: &CancelRequest,
        limit: Duration,
    ) -> Result<CancelOutcome, CancelError> {
        tokio::time::timeout(limit, self.exchange(peer, request))
            .await
            .map_err(|_| CancelError::Timeout(limit))?
    }

    async fn exchange(
        &self,
        peer: &HttpPeer,
        request: &CancelRequest,
    ) -> Result<CancelOutcome, CancelError> {
        let header = cancel_header(request)?;
        // A fresh connection each time: cancels are rare, and a pooled one could have
        // been closed by the backend meanwhile.
        let (mut session, _reused) = self.connector.get_http_session(peer).await?;
        session.set_write_timeout(peer.options.write_timeout);
        session.set_read_timeout(peer.options.read_timeout);
        session.write_request_header(Box::new(header)).await?;
        session.finish_request_body().await?;
        for _ in 0..MAX_INTERIM_ANSWERS {
            session.read_response_header().await?;
            let Some(response) = session.response_header() else {
                continue;
            };
            if response.status.is_informational() {
                continue;
            }
            let outcome = CancelOutcome {
                status: response.status.as_u16(),
                error_code: AckInfo::from_headers(&response.headers).error_code,
            };
            // An error page may follow; reading it lets the backend finish cleanly.
            while session.read_response_body().await?.is_some() {}
            return Ok(outcome);
        }
        Err(CancelError::NoFinalAnswer)
    }
}

fn cancel_header(request: &CancelRequest) -> pingora::Result<RequestHeader> {
    let mut header = RequestHeader::build(h::METHOD_BITS_POST, request.path.as_bytes(), None)?;
    header.append_header(http::header::HOST, request.host.as_str())?;
    header.append_header(h::PACKET_TYPE, PacketType::CancelSession.as_str())?;
    header.append_header(h::SESSION_ID, request.session.as_str())?;
    header.append_header(h::CONTENT_LENGTH, "0")?;
    header.append_header(http::header::USER_AGENT, "bitsgate")?;
    Ok(header)
}
