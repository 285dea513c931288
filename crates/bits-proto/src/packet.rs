//! The `BITS-Packet-Type` values.

use std::fmt;
use std::str::FromStr;

/// One BITS packet type. Parsed case-insensitively, emitted in the Windows spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Opens the connection and lets authentication complete.
    Ping,
    /// Asks for a new upload session.
    CreateSession,
    /// Carries a byte range of the file.
    Fragment,
    /// Ends the session after the upload.
    CloseSession,
    /// Abandons the session; the server frees its temp data.
    CancelSession,
    /// Every response.
    Ack,
}

/// The value of `BITS-Packet-Type` is not one the protocol defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown BITS packet type")]
pub struct UnknownPacketType;

impl PacketType {
    /// Every request packet type, in the order a session uses them.
    pub const REQUESTS: [PacketType; 5] = [
        PacketType::Ping,
        PacketType::CreateSession,
        PacketType::Fragment,
        PacketType::CloseSession,
        PacketType::CancelSession,
    ];

    /// The canonical (Windows client) spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            PacketType::Ping => "Ping",
            PacketType::CreateSession => "Create-Session",
            PacketType::Fragment => "Fragment",
            PacketType::CloseSession => "Close-Session",
            PacketType::CancelSession => "Cancel-Session",
            PacketType::Ack => "Ack",
        }
    }

    /// A lower-case, underscore form for metric labels and logs.
    pub const fn label(self) -> &'static str {
        match self {
            PacketType::Ping => "ping",
            PacketType::CreateSession => "create_session",
            PacketType::Fragment => "fragment",
            PacketType::CloseSession => "close_session",
            PacketType::CancelSession => "cancel_session",
            PacketType::Ack => "ack",
        }
    }

    /// Whether packets of this type must carry `BITS-Session-Id`.
    pub const fn needs_session(self) -> bool {
        matches!(
            self,
            PacketType::Fragment | PacketType::CloseSession | PacketType::CancelSession
        )
    }

    /// Parses a header value, ignoring ASCII case and surrounding white space.
    pub fn parse(value: &[u8]) -> Result<Self, UnknownPacketType> {
        let value = crate::headers::trim_ows(value);
        [
            PacketType::Ping,
            PacketType::CreateSession,
            PacketType::Fragment,
            PacketType::CloseSession,
            PacketType::CancelSession,
            PacketType::Ack,
        ]
        .into_iter()
        .find(|kind| kind.as_str().as_bytes().eq_ignore_ascii_case(value))
        .ok_or(UnknownPacketType)
    }
}

impl FromStr for PacketType {
    type Err = UnknownPacketType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_case_insensitively() {
        for kind in PacketType::REQUESTS {
            assert_eq!(PacketType::parse(kind.as_str().as_bytes()), Ok(kind));
            let upper = kind.as_str().to_ascii_uppercase();
            assert_eq!(PacketType::parse(upper.as_bytes()), Ok(kind));
            let lower = kind.as_str().to_ascii_lowercase();
            assert_eq!(PacketType::parse(lower.as_bytes()), Ok(kind));
        }
        assert_eq!(PacketType::parse(b"ACK"), Ok(PacketType::Ack));
    }

    #[test]
    fn tolerates_surrounding_white_space() {
        assert_eq!(PacketType::parse(b" Fragment\t"), Ok(PacketType::Fragment));
    }

    #[test]
    fn rejects_unknown_and_near_miss_values() {
        for bad in [
            &b""[..],
            b"Frag",
            b"CreateSession",
            b"Create_Session",
            b"Fragments",
        ] {
            assert_eq!(PacketType::parse(bad), Err(UnknownPacketType), "{bad:?}");
        }
    }

    #[test]
    fn only_session_packets_need_a_session_id() {
        assert!(!PacketType::Ping.needs_session());
        assert!(!PacketType::CreateSession.needs_session());
        assert!(PacketType::Fragment.needs_session());
        assert!(PacketType::CloseSession.needs_session());
        assert!(PacketType::CancelSession.needs_session());
    }
}
