//! HRESULT error codes and error contexts (spec §8).

use std::fmt;

/// An HRESULT carried in `BITS-Error-Code`. Emitted as `0x` plus 8 upper-case digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// The server does not know the session: the client restarts from byte 0.
    pub const SESSION_NOT_FOUND: ErrorCode = ErrorCode(0x8020_001F);
    /// Not authorised, destination exists without overwrite, or uploads disabled.
    pub const ACCESS_DENIED: ErrorCode = ErrorCode(0x8007_0005);
    /// Malformed packet: bad range or length, over-long header, unknown packet type.
    pub const INVALID_ARG: ErrorCode = ErrorCode(0x8007_0057);
    /// The file exceeds the server's maximum upload size: fatal for the job.
    pub const TOO_LARGE: ErrorCode = ErrorCode(0x8020_0020);
    /// Disk full, as printed in the open specification.
    pub const DISK_FULL_MCBUP: ErrorCode = ErrorCode(0x8007_0112);
    /// Disk full, as `HRESULT_FROM_WIN32(ERROR_DISK_FULL)`.
    pub const DISK_FULL: ErrorCode = ErrorCode(0x8007_0070);
    /// The virtual directory allows script execution; uploads are refused.
    pub const SERVER_EXECUTE_ENABLE: ErrorCode = ErrorCode(0x8020_0023);
    /// Unspecified failure.
    pub const FAIL: ErrorCode = ErrorCode(0x8000_4005);
    /// Out of memory.
    pub const OUT_OF_MEMORY: ErrorCode = ErrorCode(0x8007_000E);
    /// Client side: no protocol in common with the server.
    pub const PROTOCOL_MISMATCH: ErrorCode = ErrorCode(0x8020_0022);
    /// Client side: the server's answer broke the protocol.
    pub const INVALID_SERVER_RESPONSE: ErrorCode = ErrorCode(0x8020_001B);
    /// Client side: the error came from the server application.
    pub const REMOTE_APPLICATION_ERROR: ErrorCode = ErrorCode(0x8020_001E);
    /// Client side: no progress within the job's timeout.
    pub const NO_PROGRESS: ErrorCode = ErrorCode(0x8020_0024);
    /// Client side: the local file changed during the upload.
    pub const LOCAL_FILE_CHANGED: ErrorCode = ErrorCode(0x8020_001D);
    /// Client side: an upload job holds more than one file.
    pub const TOO_MANY_FILES: ErrorCode = ErrorCode(0x8020_001C);
    /// Client download-range API: a byte range outside the file. Not for uploads: a
    /// server answers a bad fragment range with 416 or 400 + [`ErrorCode::INVALID_ARG`].
    pub const INVALID_RANGE: ErrorCode = ErrorCode(0x8020_002B);
    /// Client download-range API: overlapping or duplicate ranges. Not for uploads.
    pub const OVERLAPPING_RANGES: ErrorCode = ErrorCode(0x8020_002C);
    /// The HRESULT the open specification gives for a 416 "out of sync" Ack, when one
    /// is sent at all.
    pub const NONE: ErrorCode = ErrorCode(0);

    const NAMES: [(ErrorCode, &'static str); 18] = [
        (Self::SESSION_NOT_FOUND, "BG_E_SESSION_NOT_FOUND"),
        (Self::ACCESS_DENIED, "E_ACCESSDENIED"),
        (Self::INVALID_ARG, "E_INVALIDARG"),
        (Self::TOO_LARGE, "BG_E_TOO_LARGE"),
        (Self::DISK_FULL_MCBUP, "ERROR_DISK_FULL"),
        (Self::DISK_FULL, "ERROR_DISK_FULL"),
        (Self::SERVER_EXECUTE_ENABLE, "BG_E_SERVER_EXECUTE_ENABLE"),
        (Self::FAIL, "E_FAIL"),
        (Self::OUT_OF_MEMORY, "E_OUTOFMEMORY"),
        (
            Self::PROTOCOL_MISMATCH,
            "BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH",
        ),
        (
            Self::INVALID_SERVER_RESPONSE,
            "BG_E_INVALID_SERVER_RESPONSE",
        ),
        (
            Self::REMOTE_APPLICATION_ERROR,
            "BG_E_ERROR_CONTEXT_REMOTE_APPLICATION",
        ),
        (Self::NO_PROGRESS, "BG_E_NO_PROGRESS"),
        (Self::LOCAL_FILE_CHANGED, "BG_E_LOCAL_FILE_CHANGED"),
        (Self::TOO_MANY_FILES, "BG_E_TOO_MANY_FILES"),
        (Self::INVALID_RANGE, "BG_E_INVALID_RANGE"),
        (Self::OVERLAPPING_RANGES, "BG_E_OVERLAPPING_RANGES"),
        (Self::NONE, "S_OK"),
    ];

    /// `BG_E_HTTP_ERROR_nnn`: what the client reports for a bare HTTP error status.
    pub const fn http_error(status: u16) -> ErrorCode {
        ErrorCode(0x8019_0000 + status as u32)
    }

    /// The symbolic name, when the code is one the spec lists.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(code, _)| *code == self)
            .map(|(_, name)| *name)
    }

    /// Parses leniently: optional `0x`/`x` prefix, any case, surrounding white space.
    pub fn parse(value: &[u8]) -> Option<ErrorCode> {
        parse_hex(value).map(ErrorCode)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08X}", self.0)
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{self} ({name})"),
            None => write!(f, "{self}"),
        }
    }
}

/// `BITS-Error-Context`: which party raised the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorContext(pub u32);

impl ErrorContext {
    /// No context.
    pub const NONE: ErrorContext = ErrorContext(0);
    /// Unknown.
    pub const UNKNOWN: ErrorContext = ErrorContext(1);
    /// General queue manager.
    pub const GENERAL_QUEUE_MANAGER: ErrorContext = ErrorContext(2);
    /// Queue-manager notification.
    pub const QUEUE_MANAGER_NOTIFICATION: ErrorContext = ErrorContext(3);
    /// Local file.
    pub const LOCAL_FILE: ErrorContext = ErrorContext(4);
    /// Raised by the BITS server itself (and by bitsgate on its behalf).
    pub const REMOTE_FILE: ErrorContext = ErrorContext(5);
    /// General transport.
    pub const GENERAL_TRANSPORT: ErrorContext = ErrorContext(6);
    /// Raised by the server application behind the BITS server.
    pub const REMOTE_APPLICATION: ErrorContext = ErrorContext(7);

    /// Parses leniently, like [`ErrorCode::parse`].
    pub fn parse(value: &[u8]) -> Option<ErrorContext> {
        parse_hex(value).map(ErrorContext)
    }
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:X}", self.0)
    }
}

fn parse_hex(value: &[u8]) -> Option<u32> {
    let value = crate::headers::trim_ows(value);
    let digits = match value {
        [b'0', b'x' | b'X', rest @ ..] => rest,
        [b'x' | b'X', rest @ ..] => rest,
        rest => rest,
    };
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &digit| {
        let nibble = (digit as char).to_digit(16)?;
        Some((acc << 4) | nibble)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_prefix_and_case() {
        for spelling in [
            "0x8020001F",
            "0x8020001f",
            "0X8020001F",
            "x8020001F",
            "X8020001f",
            "8020001F",
            " 8020001f ",
        ] {
            assert_eq!(
                ErrorCode::parse(spelling.as_bytes()),
                Some(ErrorCode::SESSION_NOT_FOUND),
                "{spelling}"
            );
        }
    }

    #[test]
    fn rejects_non_hex_empty_and_too_long_values() {
        for bad in ["", "0x", "x", "0x8020001G", "0x180200001F", "-1", "0x 1"] {
            assert_eq!(ErrorCode::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn emits_0x_and_eight_upper_case_digits() {
        assert_eq!(ErrorCode::SESSION_NOT_FOUND.to_string(), "0x8020001F");
        assert_eq!(ErrorCode(0x5).to_string(), "0x00000005");
        assert_eq!(ErrorCode::http_error(503).to_string(), "0x801901F7");
    }

    #[test]
    fn names_the_codes_from_the_spec() {
        assert_eq!(ErrorCode::INVALID_ARG.name(), Some("E_INVALIDARG"));
        assert_eq!(ErrorCode(0x1234).name(), None);
        assert_eq!(
            format!("{:?}", ErrorCode::TOO_LARGE),
            "0x80200020 (BG_E_TOO_LARGE)"
        );
    }

    #[test]
    fn line_breaks_are_not_trimmed_as_white_space() {
        assert_eq!(ErrorCode::parse(b"0x8020001F\r\n"), None);
        assert_eq!(
            ErrorCode::parse(b"\t0x8020001F "),
            Some(ErrorCode::SESSION_NOT_FOUND)
        );
    }

    #[test]
    fn contexts_parse_and_display() {
        assert_eq!(ErrorContext::parse(b"0x5"), Some(ErrorContext::REMOTE_FILE));
        assert_eq!(
            ErrorContext::parse(b"7"),
            Some(ErrorContext::REMOTE_APPLICATION)
        );
        assert_eq!(ErrorContext::REMOTE_FILE.to_string(), "0x5");
    }
}
