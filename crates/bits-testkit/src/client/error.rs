//! Why an upload failed.

use bits_proto::{ErrorCode, ErrorContext, PacketType};
use std::fmt;
use std::io;

/// The reason an upload stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The server refused a packet for good (a 4xx other than 413/416, or a 5xx with a
    /// BITS error code other than `BG_E_SESSION_NOT_FOUND`). Displays as, for example,
    /// `Fragment refused: 500 BG_E_TOO_LARGE (0x80200020)`.
    #[error("{packet} refused: {status} {}", CodeText(*code, *status))]
    Fatal {
        /// The packet that was refused.
        packet: PacketType,
        /// HTTP status of the Ack.
        status: u16,
        /// `BITS-Error-Code`, when the Ack had one.
        code: Option<ErrorCode>,
        /// `BITS-Error-Context`, when the Ack had one.
        context: Option<ErrorContext>,
    },
    /// The server lost the session more often than `max_restarts` allows.
    #[error("gave up after {restarts} restarts: the server kept answering BG_E_SESSION_NOT_FOUND (0x8020001F)")]
    TooManyRestarts {
        /// New sessions created before giving up.
        restarts: u32,
    },
    /// A packet kept failing transiently more often than `max_retries` allows.
    #[error("{packet} failed {attempts} times, giving up; last failure: {last}")]
    RetriesExhausted {
        /// The packet that kept failing.
        packet: PacketType,
        /// Attempts made (the first send plus the retries).
        attempts: u32,
        /// The last failure, as text.
        last: String,
    },
    /// A local I/O failure (reading the source file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The upload URL cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option cannot be used (for example an extra header that is not valid HTTP).
    #[error("invalid option: {reason}")]
    InvalidOption {
        /// What is wrong.
        reason: String,
    },
    /// The TLS handshake failed: the server's certificate could not be verified, or the
    /// TLS settings could not be loaded. Never retried.
    #[error("TLS with {url} failed: {reason}")]
    Tls {
        /// The URL whose server was being reached.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server kept answering 401 although the NTLM handshake was run (or no
    /// credentials were given, see `ntlm_user`).
    #[error("{packet} refused: 401 Unauthorized{}", if *handshake { " after the NTLM handshake" } else { " (no credentials given)" })]
    Unauthorized {
        /// The packet (or reply request) that was refused.
        packet: PacketType,
        /// Whether an NTLM handshake was attempted.
        handshake: bool,
    },
    /// The reply of an upload-reply job could not be downloaded or is not what was
    /// announced.
    #[error("reply {url}: {detail}")]
    Reply {
        /// The reply URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The server's answer broke the protocol (a missing or impossible header, or no
    /// progress at all); `BG_E_INVALID_SERVER_RESPONSE` in Windows terms.
    #[error("invalid server response to {packet}: {detail}")]
    Protocol {
        /// The packet whose answer was wrong.
        packet: PacketType,
        /// What was wrong.
        detail: String,
    },
}

impl UploadError {
    /// The BITS error code a Windows job would report for this failure, when there is
    /// one: the server's code, or `BG_E_HTTP_ERROR_nnn` for a bare HTTP error.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            UploadError::Fatal { code, status, .. } => {
                Some(code.unwrap_or(ErrorCode::http_error(*status)))
            }
            UploadError::TooManyRestarts { .. } => Some(ErrorCode::SESSION_NOT_FOUND),
            UploadError::Protocol { .. } => Some(ErrorCode::INVALID_SERVER_RESPONSE),
            _ => None,
        }
    }
}

/// `BG_E_TOO_LARGE (0x80200020)`, `0x80041234`, or the HTTP error code for a bare status.
struct CodeText(Option<ErrorCode>, u16);

impl fmt::Display for CodeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(code) => match code.name() {
                Some(name) => write!(f, "{name} ({code})"),
                None => write!(f, "{code}"),
            },
            None => write!(
                f,
                "without a BITS error code (BG_E_HTTP_ERROR {})",
                ErrorCode::http_error(self.1)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_error_names_its_code() {
        let err = UploadError::Fatal {
            packet: PacketType::Fragment,
            status: 500,
            code: Some(ErrorCode::TOO_LARGE),
            context: None,
        };
        assert_eq!(
            err.to_string(),
            "Fragment refused: 500 BG_E_TOO_LARGE (0x80200020)"
        );
    }

    #[test]
    fn a_bare_http_error_names_the_http_error_code() {
        let err = UploadError::Fatal {
            packet: PacketType::CreateSession,
            status: 404,
            code: None,
            context: None,
        };
        assert_eq!(
            err.to_string(),
            "Create-Session refused: 404 without a BITS error code (BG_E_HTTP_ERROR 0x80190194)"
        );
        assert_eq!(err.error_code(), Some(ErrorCode(0x8019_0194)));
    }

    #[test]
    fn an_unnamed_code_is_shown_in_hex() {
        let err = UploadError::Fatal {
            packet: PacketType::CloseSession,
            status: 500,
            code: Some(ErrorCode(0x8004_1234)),
            context: None,
        };
        assert_eq!(err.to_string(), "Close-Session refused: 500 0x80041234");
    }
}
