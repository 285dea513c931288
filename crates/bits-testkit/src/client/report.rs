//! What an upload reports: the final summary, and the live observer callbacks.

use bits_proto::PacketType;
use bytes::Bytes;
use serde::{Serialize, Serializer};
use std::time::Duration;

/// Summary of a finished upload (also of one that was cancelled on purpose).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UploadReport {
    /// The remote URL as given.
    pub url: String,
    /// Session id of the last session (the one that completed or was cancelled).
    pub session_id: Option<String>,
    /// Size of the source in bytes.
    pub bytes: u64,
    /// Fragment body bytes put on the wire, resends included.
    pub bytes_sent: u64,
    /// Fragment packets sent (every attempt).
    pub fragments: u64,
    /// Requests sent, of every packet type and every attempt.
    pub requests: u64,
    /// New sessions started after `BG_E_SESSION_NOT_FOUND`.
    pub restarts: u32,
    /// Packets resent after a transient failure.
    pub retries: u32,
    /// Times a 413 made the fragment size shrink.
    pub shrinks: u32,
    /// Fragment Acks whose `BITS-Received-Content-Range` was not the end of the
    /// fragment just sent (416 or a 200 that skipped or rewound).
    pub resyncs: u32,
    /// `BITS-Host-Id` of the last session, when the server sent one.
    pub host_id: Option<String>,
    /// Whether the client gave up on the Host-Id server and went back to the URL's host.
    pub fell_back: bool,
    /// Whether the upload ended with Cancel-Session (see `cancel_after`).
    pub cancelled: bool,
    /// Whether the server acknowledged Close-Session with 200. `false` after a
    /// `BG_E_SESSION_NOT_FOUND` answer to Close, which the client does not retry
    /// (spec §5): the data was complete, the session end was not confirmed.
    pub close_acknowledged: bool,
    /// `BITS-Reply-URL` of the final Fragment's Ack, when the server sent one.
    pub reply_url: Option<String>,
    /// The downloaded reply of an upload-reply job (`upload_reply`).
    #[serde(skip)]
    pub reply: Option<Bytes>,
    /// `HEAD` and `GET` requests sent to download the reply, handshake steps included.
    pub reply_requests: u64,
    /// Wall time of the whole upload.
    #[serde(rename = "elapsed_s", serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

/// Something notable that happened during an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Create-Session succeeded.
    SessionCreated {
        /// The id the server issued.
        session_id: String,
    },
    /// The Create-Session Ack carried `BITS-Host-Id`; later packets go there.
    HostIdSwitch {
        /// The Host-Id value.
        host_id: String,
        /// `BITS-Host-Id-Fallback-Timeout`, seconds (`None`: never fall back).
        fallback_timeout: Option<u64>,
    },
    /// The Host-Id server stayed unreachable past the fallback timeout; packets go to
    /// the URL's host again.
    FellBack,
    /// A request got no response (connection refused or reset, timeout).
    RequestFailed {
        /// The packet that failed.
        packet: PacketType,
        /// The failure, as text.
        error: String,
    },
    /// A packet will be resent after `delay`.
    Retry {
        /// The packet.
        packet: PacketType,
        /// Retry number for this packet, from 1.
        attempt: u32,
        /// Wait before resending.
        delay: Duration,
        /// Why (a status or a connection error).
        reason: String,
    },
    /// A 413 made the fragment size shrink.
    Shrink {
        /// Size of the refused fragment.
        from: u64,
        /// New ceiling.
        to: u64,
    },
    /// The server wants a different offset than the end of the fragment just sent.
    Resync {
        /// End of the fragment just sent (exclusive).
        expected: u64,
        /// `BITS-Received-Content-Range`.
        received: u64,
    },
    /// The server lost the session; the upload starts again from byte 0.
    Restart {
        /// Restart number, from 1.
        attempt: u32,
        /// The packet that got `BG_E_SESSION_NOT_FOUND`.
        packet: PacketType,
    },
    /// The reply of an upload-reply job was downloaded.
    ReplyDownloaded {
        /// `BITS-Reply-URL`.
        url: String,
        /// Its length.
        bytes: u64,
        /// `HEAD` and `GET` requests it took.
        requests: u64,
    },
    /// Cancel-Session was sent and answered.
    Cancelled,
    /// Close-Session was answered.
    Closed {
        /// 200 (`true`) or `BG_E_SESSION_NOT_FOUND` (`false`).
        acknowledged: bool,
    },
}

/// Live callbacks during an upload. Every method has an empty default, so an
/// implementation overrides only what it needs. Calls come from the uploading task and
/// must not block for long.
pub trait Observer: Send + Sync {
    /// A response arrived: packet type, HTTP status, time from sending the request
    /// (connecting included when a new connection was needed) to the end of the response.
    fn on_response(&self, _packet: PacketType, _status: u16, _latency: Duration) {}
    /// The server acknowledged bytes `0..acked` of `total`.
    fn on_progress(&self, _acked: u64, _total: u64) {}
    /// Something notable happened.
    fn on_event(&self, _event: &Event) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_serializes_elapsed_as_seconds() {
        let report = UploadReport {
            elapsed: Duration::from_millis(1500),
            ..UploadReport::default()
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["elapsed_s"], 1.5);
        assert!(json.get("elapsed").is_none());
    }
}
