//! Repeated Pings over one kept-alive (or fresh) connection: a liveness probe, and the
//! load generator's cheapest request.

use super::body::PacketBody;
use super::request::{build_error, RequestTemplate};
use super::target::Target;
use super::transport::{SendError, Transport};
use super::{UploadError, UploadOptions};
use bits_proto::{AckInfo, PacketType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Sends Ping packets to one URL, one at a time, without retries: every answer or
/// failure is reported as it is.
pub struct Pinger {
    target: Target,
    template: RequestTemplate,
    transport: Transport,
    resolve: HashMap<String, SocketAddr>,
}

/// The answer to one Ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingResponse {
    /// HTTP status.
    pub status: u16,
    /// Whether it was a BITS Ack (`BITS-Packet-Type: Ack`).
    pub is_ack: bool,
    /// Request to end of response, connecting included when a connection was opened.
    pub latency: Duration,
}

impl Pinger {
    /// Uses `options.new_connection_per_packet`, `resolve`, `headers` and the timeouts.
    pub fn new(url: &str, options: &UploadOptions) -> Result<Self, UploadError> {
        let target = Target::parse(url).map_err(|reason| UploadError::InvalidUrl {
            url: url.to_owned(),
            reason,
        })?;
        Ok(Pinger {
            target,
            template: RequestTemplate::new(options)?,
            transport: Transport::new(options),
            resolve: options.resolve.clone(),
        })
    }

    /// Sends one Ping. `Err` only when no response came back; the text says why. A
    /// failure on a kept connection (closed by the server while idle) is resent once on
    /// a new one, as the upload client does.
    pub async fn ping(&mut self) -> Result<PingResponse, String> {
        match self.ping_once().await {
            Err(stale @ SendError::Http { reused: true, .. }) => self
                .ping_once()
                .await
                .map_err(|again| format!("{stale}; then {again}")),
            other => other.map_err(|e| e.to_string()),
        }
    }

    async fn ping_once(&mut self) -> Result<PingResponse, SendError> {
        let request = self
            .template
            .builder(&self.target, PacketType::Ping, 0)
            .body(PacketBody::Empty)
            .map_err(|e| SendError::Local(std::io::Error::other(build_error(&self.target, e))))?;
        let mut response = self
            .transport
            .send(&self.target, &self.resolve, request)
            .await?;
        let mut steps = 0;
        while response.resend && steps < super::exchange::MAX_AUTH_STEPS {
            steps += 1;
            let request = self
                .template
                .builder(&self.target, PacketType::Ping, 0)
                .body(PacketBody::Empty)
                .map_err(|e| {
                    SendError::Local(std::io::Error::other(build_error(&self.target, e)))
                })?;
            response = self
                .transport
                .send(&self.target, &self.resolve, request)
                .await?;
        }
        Ok(PingResponse {
            status: response.status,
            is_ack: AckInfo::from_headers(&response.headers).is_ack,
            latency: response.latency,
        })
    }
}
