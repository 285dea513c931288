//! Sending one packet: building the request, and resending it after transient
//! failures with bounded exponential backoff (spec §8), or, for a Host-Id server that
//! cannot be reached, until its fallback timeout (spec §9).

use super::body::PacketBody;
use super::hostid::OnConnectFailure;
use super::request::build_error;
use super::session::{protocol, Uploader};
use super::transport::SendError;
use super::verdict::{verdict, Verdict};
use super::{Event, UploadError};
use bits_proto::headers as h;
use bits_proto::{AckInfo, ContentRange, PacketType, BITS_1_5_PROTOCOL};
use http::Request;
use std::time::{Duration, Instant};

/// Requests resent for the NTLM handshake before its 401 counts as the answer; the
/// transport bounds the handshakes per connection, this bounds the whole.
pub(super) const MAX_AUTH_STEPS: u32 = 6;

/// The answer to one packet, after transient failures were retried away.
pub(super) struct Exchange {
    pub verdict: Verdict,
    pub status: u16,
    pub ack: AckInfo,
}

impl Uploader<'_> {
    /// Sends one packet until it gets a non-transient answer: transient failures are
    /// resent with bounded exponential backoff; connection failures to a Host-Id server
    /// are resent until its fallback timeout, then the packet goes to the origin.
    pub(super) async fn exchange(
        &mut self,
        packet: PacketType,
        session: Option<&str>,
        range: Option<ContentRange>,
    ) -> Result<Exchange, UploadError> {
        let mut retries = 0u32;
        let mut host_id_retries = 0u32;
        let mut resent_on_stale = false;
        let mut auth_steps = 0u32;
        loop {
            let request = self.request(packet, session, range).await?;
            self.report.requests += 1;
            if let Some(range) = range {
                self.report.fragments += 1;
                self.report.bytes_sent += range.len();
            }
            let outcome = self
                .transport
                .send(&self.target, &self.options.resolve, request)
                .await;
            let failure = match outcome {
                Ok(response) if response.resend && auth_steps < MAX_AUTH_STEPS => {
                    auth_steps += 1;
                    continue;
                }
                Ok(response) if response.status == 401 => {
                    return Err(UploadError::Unauthorized {
                        packet,
                        handshake: self.transport.has_credentials(),
                    })
                }
                Ok(response) => {
                    self.observer
                        .on_response(packet, response.status, response.latency);
                    if let Some(timer) = &mut self.fallback {
                        timer.on_success();
                    }
                    let ack = AckInfo::from_headers(&response.headers);
                    let verdict = verdict(packet, response.status, ack.error_code);
                    if verdict == Verdict::Accepted && !ack.is_ack {
                        return Err(protocol(
                            packet,
                            format!("{} response is not a BITS Ack", response.status),
                        ));
                    }
                    if verdict != Verdict::Transient {
                        return Ok(Exchange {
                            verdict,
                            status: response.status,
                            ack,
                        });
                    }
                    status_text(response.status, &ack)
                }
                Err(SendError::Tls(reason)) => {
                    return Err(UploadError::Tls {
                        url: self.target.url(),
                        reason,
                    })
                }
                Err(SendError::Local(source)) => {
                    return Err(UploadError::Io {
                        context: format!("sending {packet}"),
                        source,
                    })
                }
                Err(err) => {
                    self.emit(Event::RequestFailed {
                        packet,
                        error: err.to_string(),
                    });
                    if matches!(err, SendError::Http { reused: true, .. }) && !resent_on_stale {
                        // The kept connection had probably been closed while idle.
                        resent_on_stale = true;
                        continue;
                    }
                    let now = Instant::now();
                    let timer = self.fallback.as_mut().filter(|_| err.is_connect());
                    match timer.map(|t| t.on_connect_failure(now)) {
                        Some(OnConnectFailure::RetryUntil(deadline)) => {
                            host_id_retries += 1;
                            let delay = self
                                .options
                                .backoff(host_id_retries)
                                .min(deadline.saturating_duration_since(now));
                            self.wait_to_retry(packet, host_id_retries, delay, err.to_string())
                                .await;
                            continue;
                        }
                        Some(OnConnectFailure::FallBack) => {
                            self.target = self.origin.clone();
                            self.fallback = None;
                            self.report.fell_back = true;
                            self.emit(Event::FellBack);
                            continue;
                        }
                        Some(OnConnectFailure::NoFallback) | None => err.to_string(),
                    }
                }
            };
            retries += 1;
            if retries > self.options.max_retries {
                return Err(UploadError::RetriesExhausted {
                    packet,
                    attempts: retries,
                    last: failure,
                });
            }
            let delay = self.options.backoff(retries);
            self.wait_to_retry(packet, retries, delay, failure).await;
        }
    }

    async fn wait_to_retry(
        &mut self,
        packet: PacketType,
        attempt: u32,
        delay: Duration,
        reason: String,
    ) {
        self.report.retries += 1;
        self.emit(Event::Retry {
            packet,
            attempt,
            delay,
            reason,
        });
        tokio::time::sleep(delay).await;
    }

    /// Builds one packet for the current target.
    async fn request(
        &self,
        packet: PacketType,
        session: Option<&str>,
        range: Option<ContentRange>,
    ) -> Result<Request<PacketBody>, UploadError> {
        let (body, len) = match range {
            Some(range) => (self.source.body(range).await?, range.len()),
            None => (PacketBody::Empty, 0),
        };
        let mut builder = self.template.builder(&self.target, packet, len);
        if let Some(id) = session {
            builder = builder.header(h::SESSION_ID, id);
        }
        if packet == PacketType::CreateSession {
            builder = builder.header(h::SUPPORTED_PROTOCOLS, BITS_1_5_PROTOCOL);
        }
        if let Some(range) = range {
            builder = builder.header(h::CONTENT_RANGE, range.to_string());
        }
        // Spec §4: Content-Name on Create-Session and on the first fragment.
        let named = packet == PacketType::CreateSession || range.is_some_and(|r| r.first == 0);
        if let Some(name) = self.content_name.as_ref().filter(|_| named) {
            builder = builder.header(h::CONTENT_NAME, name);
        }
        builder.body(body).map_err(|e| build_error(&self.target, e))
    }
}

fn status_text(status: u16, ack: &AckInfo) -> String {
    match ack.error_code {
        Some(code) => format!("status {status} with {code:?}"),
        None => format!("status {status}"),
    }
}
