//! The upload state machine: Ping, Create-Session, Fragments, Close-Session (or
//! Cancel-Session), with the resume, shrink, restart, retry and Host-Id rules of
//! spec §5, §6, §8 and §9.

use super::exchange::Exchange;
use super::fragments::FragmentSizer;
use super::hostid::FallbackTimer;
use super::request::RequestTemplate;
use super::source::Source;
use super::target::Target;
use super::transport::Transport;
use super::verdict::Verdict;
use super::{Event, Observer, UploadError, UploadOptions, UploadReport};
use bits_proto::{is_bits_1_5, AckInfo, ContentRange, PacketType};
use http::header::HeaderValue;
use std::time::Instant;

/// How a session ended.
enum SessionEnd {
    Done,
    /// The server lost the session (`BG_E_SESSION_NOT_FOUND` on this packet).
    Restart(PacketType),
}

/// One upload in progress.
pub(crate) struct Uploader<'a> {
    pub(super) options: &'a UploadOptions,
    pub(super) observer: &'a dyn Observer,
    pub(super) source: Source,
    pub(super) content_name: Option<HeaderValue>,
    pub(super) template: RequestTemplate,
    pub(super) transport: Transport,
    /// The URL's own host; every session starts here.
    pub(super) origin: Target,
    /// Where packets go now: the origin or the session's Host-Id server.
    pub(super) target: Target,
    /// Set while packets go to a Host-Id server.
    pub(super) fallback: Option<FallbackTimer>,
    pub(super) sizer: FragmentSizer,
    pub(super) report: UploadReport,
}

impl<'a> Uploader<'a> {
    pub fn new(
        url: &str,
        origin: Target,
        source: Source,
        options: &'a UploadOptions,
        observer: &'a dyn Observer,
    ) -> Result<Self, UploadError> {
        let name = source.name().unwrap_or_else(|| origin.file_name());
        let report = UploadReport {
            url: url.to_owned(),
            bytes: source.len(),
            ..UploadReport::default()
        };
        Ok(Uploader {
            options,
            observer,
            content_name: HeaderValue::from_bytes(name.as_bytes()).ok(),
            source,
            template: RequestTemplate::new(options)?,
            transport: Transport::new(options),
            target: origin.clone(),
            origin,
            fallback: None,
            sizer: FragmentSizer::new(
                options.fragment_size,
                options.min_fragment_size,
                options.random_fragment_sizes,
            ),
            report,
        })
    }

    pub async fn run(mut self) -> Result<UploadReport, UploadError> {
        let started = Instant::now();
        if self.options.ping {
            self.ping().await?;
        }
        while let SessionEnd::Restart(packet) = self.session().await? {
            if self.report.restarts >= self.options.max_restarts {
                return Err(UploadError::TooManyRestarts {
                    restarts: self.report.restarts,
                });
            }
            self.report.restarts += 1;
            self.emit(Event::Restart {
                attempt: self.report.restarts,
                packet,
            });
            // A new session starts at the URL's host, like the Windows client's, and
            // learns its own Host-Id, if any.
            self.target = self.origin.clone();
            self.fallback = None;
            self.report.host_id = None;
        }
        self.report.elapsed = started.elapsed();
        Ok(self.report)
    }

    async fn ping(&mut self) -> Result<(), UploadError> {
        let ex = self.exchange(PacketType::Ping, None, None).await?;
        match ex.verdict {
            Verdict::Accepted => Ok(()),
            _ => Err(refused(PacketType::Ping, &ex)),
        }
    }

    /// One session, from Create-Session to Close-Session or Cancel-Session.
    async fn session(&mut self) -> Result<SessionEnd, UploadError> {
        let create = PacketType::CreateSession;
        let ex = self.exchange(create, None, None).await?;
        match ex.verdict {
            Verdict::Accepted => {}
            Verdict::SessionNotFound => return Ok(SessionEnd::Restart(create)),
            _ => return Err(refused(create, &ex)),
        }
        let id = match &ex.ack.session_id {
            Some(id) => id.as_str().to_owned(),
            None => return Err(protocol(create, "the Ack has no valid BITS-Session-Id")),
        };
        if let Some(chosen) = ex.ack.protocol.as_deref().filter(|p| !is_bits_1_5(p)) {
            return Err(protocol(
                create,
                format!("the server chose protocol {chosen}, not BITS 1.5"),
            ));
        }
        self.report.session_id = Some(id.clone());
        self.emit(Event::SessionCreated {
            session_id: id.clone(),
        });
        if let Some(host_id) = ex.ack.host_id.clone() {
            self.switch_to_host_id(host_id, ex.ack.host_id_fallback_timeout)
                .await?;
        }

        let total = self.source.len();
        let mut offset = 0;
        let mut acked = 0u64;
        let mut stalled = 0u32;
        let mut reply_url = None;
        while offset < total {
            if self.options.cancel_after.is_some_and(|n| acked >= n) {
                return self.end(PacketType::CancelSession, &id).await;
            }
            let len = self.sizer.next_len(total - offset);
            let range = ContentRange::new(offset, offset + len - 1, total)
                .map_err(|e| protocol(PacketType::Fragment, e.to_string()))?;
            let ex = self
                .exchange(PacketType::Fragment, Some(&id), Some(range))
                .await?;
            match ex.verdict {
                Verdict::Accepted | Verdict::OutOfSync => {
                    let next = self.resume_offset(&ex, &id, range)?;
                    // Spec §6: whatever the status, continue where the server says; but a
                    // server that never moves forward would keep us here for ever.
                    stalled = if next > offset { 0 } else { stalled + 1 };
                    if stalled > self.options.max_retries {
                        return Err(protocol(
                            PacketType::Fragment,
                            format!("no progress: the server keeps asking for byte {next}"),
                        ));
                    }
                    offset = next;
                    if ex.verdict == Verdict::Accepted {
                        acked += 1;
                    }
                    if offset == total {
                        reply_url = ex.ack.reply_url.clone();
                    }
                    self.observer.on_progress(offset, total);
                }
                Verdict::Shrink => {
                    let to = self
                        .sizer
                        .shrink(len)
                        .map_err(|_| refused(PacketType::Fragment, &ex))?;
                    self.report.shrinks += 1;
                    self.emit(Event::Shrink { from: len, to });
                }
                Verdict::SessionNotFound => return Ok(SessionEnd::Restart(PacketType::Fragment)),
                Verdict::Transient | Verdict::Fatal => {
                    return Err(refused(PacketType::Fragment, &ex))
                }
            }
        }
        if self.options.cancel_after.is_some_and(|n| acked >= n) {
            return self.end(PacketType::CancelSession, &id).await;
        }
        self.report.reply_url.clone_from(&reply_url);
        if self.options.upload_reply {
            // Spec §5: an upload-reply job without a Reply-URL has failed; the reply is
            // fetched before Close, which ends it on the server.
            let url = reply_url.ok_or_else(|| {
                protocol(PacketType::Fragment, "the final Ack has no BITS-Reply-URL")
            })?;
            self.report.reply = Some(self.download_reply(&url).await?);
        }
        self.end(PacketType::CloseSession, &id).await
    }

    /// Reads where the next fragment starts from a 200 or 416 Fragment Ack.
    fn resume_offset(
        &mut self,
        ex: &Exchange,
        id: &str,
        range: ContentRange,
    ) -> Result<u64, UploadError> {
        let fragment = PacketType::Fragment;
        check_session_echo(fragment, &ex.ack, id)?;
        let next = ex.ack.received.ok_or_else(|| {
            protocol(
                fragment,
                format!("{} Ack without BITS-Received-Content-Range", ex.status),
            )
        })?;
        if next > range.total {
            return Err(protocol(
                fragment,
                format!(
                    "the server claims byte {next} of a {}-byte file",
                    range.total
                ),
            ));
        }
        if next != range.last + 1 {
            self.report.resyncs += 1;
            self.emit(Event::Resync {
                expected: range.last + 1,
                received: next,
            });
        }
        Ok(next)
    }

    /// Close-Session or Cancel-Session. `BG_E_SESSION_NOT_FOUND` ends the session
    /// without a retry (spec §5); the report says the end was not confirmed.
    async fn end(&mut self, packet: PacketType, id: &str) -> Result<SessionEnd, UploadError> {
        let ex = self.exchange(packet, Some(id), None).await?;
        let acknowledged = match ex.verdict {
            Verdict::Accepted => {
                check_session_echo(packet, &ex.ack, id)?;
                true
            }
            Verdict::SessionNotFound => false,
            _ => return Err(refused(packet, &ex)),
        };
        if packet == PacketType::CancelSession {
            self.report.cancelled = true;
            self.emit(Event::Cancelled);
        } else {
            self.report.close_acknowledged = acknowledged;
            self.emit(Event::Closed { acknowledged });
        }
        Ok(SessionEnd::Done)
    }

    /// Spec §9: later packets go to the Host-Id node, which is Pinged first.
    async fn switch_to_host_id(
        &mut self,
        host_id: String,
        fallback_timeout: Option<u64>,
    ) -> Result<(), UploadError> {
        self.target = self.origin.with_host_id(&host_id).map_err(|reason| {
            protocol(
                PacketType::CreateSession,
                format!("unusable BITS-Host-Id {host_id:?}: {reason}"),
            )
        })?;
        self.fallback = Some(FallbackTimer::new(fallback_timeout));
        self.emit(Event::HostIdSwitch {
            host_id: host_id.clone(),
            fallback_timeout,
        });
        self.report.host_id = Some(host_id);
        self.ping().await
    }

    pub(super) fn emit(&self, event: Event) {
        self.observer.on_event(&event);
    }
}

/// `BITS-Session-Id` on an Ack, when present, must be the request's (spec §5).
fn check_session_echo(packet: PacketType, ack: &AckInfo, id: &str) -> Result<(), UploadError> {
    match &ack.session_id {
        Some(echoed) if echoed.as_str() != id => Err(protocol(
            packet,
            format!("the Ack is for session {echoed}, not {id}"),
        )),
        _ => Ok(()),
    }
}

fn refused(packet: PacketType, ex: &Exchange) -> UploadError {
    UploadError::Fatal {
        packet,
        status: ex.status,
        code: ex.ack.error_code,
        context: ex.ack.error_context,
    }
}

pub(super) fn protocol(packet: PacketType, detail: impl Into<String>) -> UploadError {
    UploadError::Protocol {
        packet,
        detail: detail.into(),
    }
}
