//! The headers every packet shares (spec §2 capture of the Windows client), plus the
//! caller's extra headers, parsed once per upload.

use super::target::Target;
use super::{UploadError, UploadOptions};
use bits_proto::headers as h;
use bits_proto::PacketType;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Builder;
use http::{Method, Request};

/// `User-Agent` of every packet. Servers and filters that look for the Windows client
/// find its product token; the comment says what is really talking.
const USER_AGENT: &str = "Microsoft BITS/7.8 (bits-testkit)";

/// Builds request heads for one upload (or one pinger).
pub(crate) struct RequestTemplate {
    method: Method,
    extra: Vec<(HeaderName, HeaderValue)>,
}

impl RequestTemplate {
    /// Fails when an extra header from the options is not valid HTTP.
    pub fn new(options: &UploadOptions) -> Result<Self, UploadError> {
        let extra = options
            .headers
            .iter()
            .map(|(name, value)| {
                let parsed = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                );
                match parsed {
                    (Ok(name), Ok(value)) => Ok((name, value)),
                    _ => Err(UploadError::InvalidOption {
                        reason: format!("header {name:?}: {value:?} is not a valid HTTP header"),
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RequestTemplate {
            method: Method::from_bytes(h::METHOD_BITS_POST.as_bytes())
                .expect("BITS_POST is a valid method token"),
            extra,
        })
    }

    /// `BITS_POST` to `target` with the common headers, `BITS-Packet-Type`, an exact
    /// `Content-Length` and the extra headers; the caller adds the packet's own.
    pub fn builder(&self, target: &Target, packet: PacketType, content_length: u64) -> Builder {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(target.path.as_str())
            .header(header::HOST, target.authority())
            .header(header::ACCEPT, "*/*")
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONNECTION, "Keep-Alive")
            .header(h::PACKET_TYPE, packet.as_str())
            .header(h::CONTENT_LENGTH, content_length);
        for (name, value) in &self.extra {
            builder = builder.header(name, value);
        }
        builder
    }
}

impl RequestTemplate {
    /// A plain `HEAD` or `GET` to `target`, as the BITS download that fetches an
    /// upload-reply job's reply sends it: no BITS headers, the extra headers kept.
    pub fn download(&self, target: &Target, method: Method) -> Builder {
        let mut builder = Request::builder()
            .method(method)
            .uri(target.path.as_str())
            .header(header::HOST, target.authority())
            .header(header::ACCEPT, "*/*")
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONNECTION, "Keep-Alive");
        for (name, value) in &self.extra {
            builder = builder.header(name, value);
        }
        builder
    }
}

/// A request that `http` refused to build: only a bad path or header value can do this.
pub(crate) fn build_error(target: &Target, error: http::Error) -> UploadError {
    UploadError::InvalidUrl {
        url: target.url(),
        reason: error.to_string(),
    }
}
