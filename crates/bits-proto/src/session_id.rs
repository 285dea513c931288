//! `BITS-Session-Id` values: opaque, 1 to 100 visible ASCII characters.

use std::fmt;

/// Longest session id the protocol allows.
pub const MAX_SESSION_ID_LEN: usize = 100;

/// Why a value is not a valid session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    /// The header is present but empty (after trimming spaces and tabs).
    #[error("session id is empty")]
    Empty,
    /// More than [`MAX_SESSION_ID_LEN`] characters.
    #[error("session id is {0} bytes long; at most 100 are allowed")]
    TooLong(usize),
    /// A control character, a space, or a byte outside ASCII.
    #[error("session id contains byte 0x{0:02X}; only visible ASCII is allowed")]
    InvalidByte(u8),
}

/// A validated session id. Compared byte for byte: the protocol treats ids as opaque.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Box<str>);

impl SessionId {
    /// Validates a header value (surrounding spaces and tabs are ignored) and borrows it.
    pub fn validate(value: &[u8]) -> Result<&str, SessionIdError> {
        let value = crate::headers::trim_ows(value);
        if value.is_empty() {
            return Err(SessionIdError::Empty);
        }
        if value.len() > MAX_SESSION_ID_LEN {
            return Err(SessionIdError::TooLong(value.len()));
        }
        if let Some(&bad) = value.iter().find(|b| !b.is_ascii_graphic()) {
            return Err(SessionIdError::InvalidByte(bad));
        }
        // Every byte is visible ASCII, so this cannot fail; no unwrap on input anyway.
        std::str::from_utf8(value).map_err(|_| SessionIdError::InvalidByte(value[0]))
    }

    /// Validates and copies a value.
    pub fn parse(value: &str) -> Result<Self, SessionIdError> {
        Self::validate(value.as_bytes()).map(|id| SessionId(id.into()))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:?})", &*self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SessionId {
    type Err = SessionIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_braced_guid_and_any_visible_ascii() {
        let guid = "{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d}";
        assert_eq!(SessionId::parse(guid).unwrap().as_str(), guid);
        assert!(SessionId::parse("session~42!").is_ok());
    }

    #[test]
    fn accepts_exactly_one_hundred_characters() {
        assert!(SessionId::parse(&"a".repeat(100)).is_ok());
        assert_eq!(
            SessionId::parse(&"a".repeat(101)),
            Err(SessionIdError::TooLong(101))
        );
    }

    #[test]
    fn rejects_empty_values() {
        assert_eq!(SessionId::parse(""), Err(SessionIdError::Empty));
        assert_eq!(SessionId::parse("   "), Err(SessionIdError::Empty));
    }

    #[test]
    fn rejects_control_characters_spaces_and_non_ascii() {
        assert_eq!(
            SessionId::parse("a\tb"),
            Err(SessionIdError::InvalidByte(b'\t'))
        );
        assert_eq!(
            SessionId::parse("a b"),
            Err(SessionIdError::InvalidByte(b' '))
        );
        assert_eq!(
            SessionId::parse("a\x7fb"),
            Err(SessionIdError::InvalidByte(0x7f))
        );
        assert_eq!(
            SessionId::validate(b"a\xc3\xa9"),
            Err(SessionIdError::InvalidByte(0xc3))
        );
    }

    #[test]
    fn trims_surrounding_white_space() {
        assert_eq!(SessionId::validate(b" {abc} "), Ok("{abc}"));
        assert_eq!(SessionId::validate(b"\t{abc}\t"), Ok("{abc}"));
    }

    #[test]
    fn line_breaks_and_form_feeds_are_not_white_space_to_trim() {
        // HTTP optional white space is only SP and HTAB; a CR or LF at either end is a
        // control character in the id, not padding.
        assert_eq!(
            SessionId::parse("{abc}\r\n"),
            Err(SessionIdError::InvalidByte(b'\r'))
        );
        assert_eq!(
            SessionId::parse("\n{abc}"),
            Err(SessionIdError::InvalidByte(b'\n'))
        );
        assert_eq!(
            SessionId::parse("{abc}\x0c"),
            Err(SessionIdError::InvalidByte(0x0c))
        );
    }
}
