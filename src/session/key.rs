//! Compact, exact keys for session ids.
//!
//! Almost every backend issues GUIDs; storing one as 16 bytes plus a spelling tag
//! instead of a 38-byte heap string is what keeps a pin small. Anything that is not a
//! GUID in one of the four common spellings is kept verbatim, so the key always maps
//! back to exactly the id the backend sent (ids are opaque: no case folding).

use std::fmt;

/// How a GUID was spelled, so it can be written back byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuidStyle {
    braced: bool,
    upper: bool,
}

/// A session id as a table key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SessionKey {
    /// A GUID, `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` or without braces, all lower or
    /// all upper case hex.
    Guid {
        /// The 128 bits.
        value: u128,
        /// Its spelling.
        style: GuidStyle,
    },
    /// Any other valid session id, verbatim.
    Text(Box<str>),
}

impl SessionKey {
    /// Builds the key of an already validated session id.
    pub fn new(id: &str) -> Self {
        parse_guid(id)
            .map(|(value, style)| SessionKey::Guid { value, style })
            .unwrap_or_else(|| SessionKey::Text(id.into()))
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionKey::Text(text) => f.write_str(text),
            SessionKey::Guid { value, style } => {
                let hex = if style.upper {
                    format!("{value:032X}")
                } else {
                    format!("{value:032x}")
                };
                let body = format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                );
                if style.braced {
                    write!(f, "{{{body}}}")
                } else {
                    f.write_str(&body)
                }
            }
        }
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({self})")
    }
}

fn parse_guid(id: &str) -> Option<(u128, GuidStyle)> {
    let bytes = id.as_bytes();
    let (braced, body) = match bytes {
        [b'{', body @ .., b'}'] => (true, body),
        body => (false, body),
    };
    if body.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    let (mut lower, mut upper) = (false, false);
    for (i, &b) in body.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        let nibble = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => {
                lower = true;
                b - b'a' + 10
            }
            b'A'..=b'F' => {
                upper = true;
                b - b'A' + 10
            }
            _ => return None,
        };
        value = (value << 4) | u128::from(nibble);
    }
    if lower && upper {
        return None;
    }
    Some((value, GuidStyle { braced, upper }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_spellings_round_trip_exactly() {
        for id in [
            "{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d}",
            "{5E53C221-F2D6-4BF2-B994-1DC43CEACA8D}",
            "5e53c221-f2d6-4bf2-b994-1dc43ceaca8d",
            "00000000-0000-0000-0000-000000000000",
        ] {
            let key = SessionKey::new(id);
            assert!(matches!(key, SessionKey::Guid { .. }), "{id}");
            assert_eq!(key.to_string(), id);
        }
    }

    #[test]
    fn differently_spelled_guids_are_different_sessions() {
        let lower = SessionKey::new("{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d}");
        let upper = SessionKey::new("{5E53C221-F2D6-4BF2-B994-1DC43CEACA8D}");
        assert_ne!(lower, upper);
    }

    #[test]
    fn anything_else_is_kept_verbatim() {
        for id in [
            "{5e53c221-F2D6-4bf2-b994-1dc43ceaca8d}",
            "{5e53c221-f2d6-4bf2-b994-1dc43ceaca8}",
            "5e53c221xf2d6-4bf2-b994-1dc43ceaca8d",
            "session-42",
            "{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d",
        ] {
            let key = SessionKey::new(id);
            assert!(matches!(key, SessionKey::Text(_)), "{id}");
            assert_eq!(key.to_string(), id);
        }
    }

    #[test]
    fn a_guid_key_is_small() {
        assert!(std::mem::size_of::<SessionKey>() <= 32);
    }
}
