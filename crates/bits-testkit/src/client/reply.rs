//! Upload-reply jobs: after the final Fragment, the reply named by `BITS-Reply-URL` is
//! downloaded with `HEAD` and ranged `GET`s, as a BITS download does it, on
//! connections of its own (each request on a new one with
//! `new_connection_per_packet`), before Close-Session (spec §5, §7).

use super::exchange::MAX_AUTH_STEPS;
use super::session::Uploader;
use super::target::Target;
use super::transport::{Response, SendError, Transport};
use super::{Event, UploadError};
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::Method;

impl Uploader<'_> {
    /// Downloads and returns the reply at `url` (absolute, or a path on the current
    /// target), checking every part against what the server announced.
    pub(super) async fn download_reply(&mut self, url: &str) -> Result<Bytes, UploadError> {
        let fail = |detail: String| UploadError::Reply {
            url: url.to_owned(),
            detail,
        };
        let target = self.target.reference(url).map_err(&fail)?;
        let mut transport = Transport::new(self.options);
        let mut requests = 0u64;
        let head = self
            .fetch(&mut transport, &target, Method::HEAD, None, &mut requests)
            .await?;
        if head.status != 200 {
            return Err(fail(format!("HEAD answered {}", head.status)));
        }
        let total = header_u64(&head, CONTENT_LENGTH)
            .ok_or_else(|| fail("HEAD answer without a Content-Length".to_owned()))?;
        let chunk = self.options.reply_chunk_size.max(1);
        let mut reply = BytesMut::new();
        while (reply.len() as u64) < total {
            let first = reply.len() as u64;
            let last = first.saturating_add(chunk - 1).min(total - 1);
            let part = self
                .fetch(
                    &mut transport,
                    &target,
                    Method::GET,
                    Some((first, last)),
                    &mut requests,
                )
                .await?;
            if !part.body_complete {
                return Err(fail(format!(
                    "the body of bytes {first}-{last} was cut off"
                )));
            }
            match part.status {
                206 => {
                    let range = part
                        .headers
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let expected = format!("bytes {first}-{last}/{total}");
                    if !range.eq_ignore_ascii_case(&expected)
                        || part.body.len() as u64 != last - first + 1
                    {
                        return Err(fail(format!(
                            "asked for {expected}, got {range:?} with {} bytes",
                            part.body.len()
                        )));
                    }
                    reply.extend_from_slice(&part.body);
                }
                // A server may ignore Range and send everything.
                200 if part.body.len() as u64 == total => {
                    reply.clear();
                    reply.extend_from_slice(&part.body);
                }
                status => {
                    return Err(fail(format!(
                        "GET of bytes {first}-{last} answered {status}"
                    )))
                }
            }
        }
        let reply = reply.freeze();
        self.report.reply_requests = requests;
        self.emit(Event::ReplyDownloaded {
            url: url.to_owned(),
            bytes: total,
            requests,
        });
        Ok(reply)
    }

    /// One `HEAD` or `GET`, resent through the NTLM handshake and after transient
    /// failures (5xx, connection errors) with the upload's backoff.
    async fn fetch(
        &mut self,
        transport: &mut Transport,
        target: &Target,
        method: Method,
        range: Option<(u64, u64)>,
        requests: &mut u64,
    ) -> Result<Response, UploadError> {
        let url = target.url();
        let mut retries = 0u32;
        let mut auth_steps = 0u32;
        loop {
            let mut builder = self.template.download(target, method.clone());
            if let Some((first, last)) = range {
                builder = builder.header(RANGE, format!("bytes={first}-{last}"));
            }
            let request = builder
                .body(super::body::PacketBody::Empty)
                .map_err(|e| super::request::build_error(target, e))?;
            *requests += 1;
            self.report.requests += 1;
            let failure = match transport.send(target, &self.options.resolve, request).await {
                Ok(r) if r.resend && auth_steps < MAX_AUTH_STEPS => {
                    auth_steps += 1;
                    continue;
                }
                Ok(r) if r.status == 401 => {
                    return Err(UploadError::Reply {
                        url,
                        detail: format!(
                            "{method} answered 401 Unauthorized{}",
                            if transport.has_credentials() {
                                " after the NTLM handshake"
                            } else {
                                " (no credentials given)"
                            }
                        ),
                    })
                }
                Ok(r) if r.status >= 500 && r.status != 501 && r.status != 505 => {
                    format!("status {}", r.status)
                }
                Ok(r) => return Ok(r),
                Err(SendError::Tls(reason)) => return Err(UploadError::Tls { url, reason }),
                Err(SendError::Local(source)) => {
                    return Err(UploadError::Io {
                        context: format!("{method} {url}"),
                        source,
                    })
                }
                Err(e) => e.to_string(),
            };
            retries += 1;
            if retries > self.options.max_retries {
                return Err(UploadError::Reply {
                    url,
                    detail: format!("{method} failed {retries} times; last failure: {failure}"),
                });
            }
            self.report.retries += 1;
            tokio::time::sleep(self.options.backoff(retries)).await;
        }
    }
}

fn header_u64(response: &Response, name: http::header::HeaderName) -> Option<u64> {
    response
        .headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
