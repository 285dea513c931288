//! What one pin looks like in Redis: a string value under `PREFIX pin:SESSION`.
//!
//! `1\nCREATED\nBACKEND\nHOST\nPATH`: a version, the Create-Session time in Unix
//! seconds, the owner's backend id, the `Host` of the Create-Session (empty when not
//! kept) and its URL path (last, so it may hold any byte a path can). Header values
//! and backend ids cannot hold a line feed. Plain text keeps the value small (about
//! 60 bytes for a GUID session) and readable with `redis-cli GET`.

use crate::session::UnixSecs;

const VERSION: &str = "1";

/// A pin as another replica wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPin {
    /// The owner's backend id.
    pub backend: String,
    /// The `Host` of the Create-Session, when kept.
    pub host: Option<String>,
    /// The URL path of the Create-Session.
    pub path: String,
    /// When the Create-Session Ack was seen.
    pub created: UnixSecs,
}

/// The value stored for a pin.
pub fn encode(backend: &str, host: Option<&str>, path: &str, created: UnixSecs) -> String {
    let host = host.unwrap_or("");
    let mut value = String::with_capacity(16 + backend.len() + host.len() + path.len());
    for part in [VERSION, &created.to_string(), backend, host, path] {
        value.push_str(part);
        value.push('\n');
    }
    value.pop();
    value
}

/// Reads a stored value; `None` when it is not one this build wrote (another version,
/// or a key someone else put under the prefix).
pub fn decode(bytes: &[u8]) -> Option<SharedPin> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(5, '\n');
    if parts.next()? != VERSION {
        return None;
    }
    let created = parts.next()?.parse().ok()?;
    let backend = parts.next()?;
    let host = parts.next()?;
    let path = parts.next()?;
    if backend.is_empty() {
        return None;
    }
    Some(SharedPin {
        backend: backend.to_owned(),
        host: (!host.is_empty()).then(|| host.to_owned()),
        path: path.to_owned(),
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_reads_back_as_written() {
        let value = encode(
            "b2",
            Some("bits.example:8080"),
            "/up/a\nb.bin",
            1_700_000_000,
        );
        assert_eq!(value, "1\n1700000000\nb2\nbits.example:8080\n/up/a\nb.bin");
        assert_eq!(
            decode(value.as_bytes()),
            Some(SharedPin {
                backend: "b2".into(),
                host: Some("bits.example:8080".into()),
                path: "/up/a\nb.bin".into(),
                created: 1_700_000_000,
            })
        );
        let no_host = encode("b1", None, "/u", 5);
        assert_eq!(decode(no_host.as_bytes()).unwrap().host, None);
    }

    #[test]
    fn foreign_values_are_not_pins() {
        for value in [
            &b""[..],
            b"2\n1\nb\n\n/",
            b"1\nx\nb\n\n/",
            b"1\n1\n\n\n/",
            b"1\n1\nb",
            b"\xff",
        ] {
            assert_eq!(decode(value), None, "{value:?}");
        }
    }
}
