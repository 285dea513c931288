//! The journal format, version 3: a fixed header, then length-prefixed, checksummed
//! records. `docs/storage.md` describes it byte by byte; the fixture tests
//! (`tests/fixtures/pins-v1.journal`, `pins-v2.journal`, `pins-v3.journal`) fail if
//! any of it changes.
//!
//! Version 2 adds a pin record that carries the session's `Host` and full URL path,
//! and promises that pin records are re-appended as sessions stay active (so a pin's
//! `last_seen` on disk is at most one journaling interval old). Version 1 journals are
//! still read; they are rewritten in the current version at the first start that
//! holds the data directory.
//!
//! Version 3 adds the reply record: the path and query of an upload-reply job's
//! `BITS-Reply-URL`, tied to its session key (replay attaches it to the live pin of the
//! key; an unpin drops both). Version 2 journals are read and rewritten as version 3.

use super::{StoreError, StoredPin};
use crate::session::key::GuidStyle;
use crate::session::SessionKey;
use std::sync::OnceLock;

/// First 8 bytes of every journal. The CR LF catches a file mangled by a text-mode copy.
pub(crate) const MAGIC: [u8; 8] = *b"BGPINS\r\n";
/// The format this build writes and the newest it reads.
pub(crate) const VERSION: u32 = 3;
/// The first format whose pin records are re-appended as sessions stay active.
pub(crate) const ACTIVITY_SINCE: u32 = 2;
/// The oldest format this build reads.
pub(crate) const OLDEST_VERSION: u32 = 1;
/// Magic, version (u32 LE), reserved (u32, written as zero).
pub(crate) const HEADER_LEN: usize = 16;
/// Length (u32 LE) and CRC-32 (u32 LE) before each payload.
pub(crate) const FRAME_LEN: usize = 8;
/// The longest session id or backend id a record takes. Ids are far shorter in practice
/// (session ids are at most 100 bytes); the bound keeps a corrupt length from making
/// replay allocate or skip megabytes.
pub(crate) const MAX_FIELD: usize = 1024;
/// The largest payload a valid record can have (a pin with four maximal fields).
pub(crate) const MAX_PAYLOAD: usize =
    1 + 1 + 2 + MAX_FIELD + 2 + MAX_FIELD + 2 + MAX_FIELD + 2 + MAX_FIELD + 24;
/// The smallest: an unpin of an empty text key (kind, tag, length).
const MIN_PAYLOAD: usize = 4;

/// A pin with its URL directory (version 1; read, no longer written).
const KIND_PIN: u8 = 1;
const KIND_UNPIN: u8 = 2;
/// A pin with the `Host` and the full URL path of its Create-Session.
const KIND_PIN_URL: u8 = 3;
/// The path and query of a session's upload reply (version 3).
const KIND_REPLY: u8 = 4;
const TAG_GUID: u8 = 1;
const TAG_TEXT: u8 = 2;
const STYLE_BRACED: u8 = 1;
const STYLE_UPPER: u8 = 2;

/// One journal entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// `key` is owned by `backend` and was created with `host` (empty: not kept) at
    /// URL `path` (a version 1 record holds the URL's directory).
    Pin {
        key: SessionKey,
        backend: String,
        host: String,
        path: String,
        pin: StoredPin,
    },
    /// `key` is no longer pinned.
    Unpin { key: SessionKey },
    /// The reply of `key`'s upload-reply job is served at `path` (path and query) by
    /// the session's owner.
    Reply { key: SessionKey, path: String },
}

/// The 16 header bytes of a new journal.
pub(crate) fn header() -> [u8; HEADER_LEN] {
    header_of(VERSION)
}

/// The header of a journal in format `version` (older ones: for the fixture tests).
pub(crate) fn header_of(version: u32) -> [u8; HEADER_LEN] {
    let mut out = [0; HEADER_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&version.to_le_bytes());
    out
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    BadMagic,
    Version(u32),
}

/// Checks magic and version; returns the version. The reserved word is ignored so
/// that a later minor revision can use it for flags an old reader may safely skip.
pub(crate) fn check_header(bytes: &[u8; HEADER_LEN]) -> Result<u32, HeaderError> {
    if bytes[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(HeaderError::Version(version));
    }
    Ok(version)
}

/// Appends a framed pin record to `out`.
pub(crate) fn encode_pin(
    out: &mut Vec<u8>,
    key: &SessionKey,
    backend: &str,
    host: &str,
    path: &str,
    pin: &StoredPin,
) -> Result<(), StoreError> {
    check_field("backend id", backend.len())?;
    check_field("Host", host.len())?;
    check_field("URL path", path.len())?;
    frame(out, |out| {
        out.push(KIND_PIN_URL);
        encode_key(out, key)?;
        put_field(out, backend.as_bytes());
        put_field(out, host.as_bytes());
        put_field(out, path.as_bytes());
        out.extend_from_slice(&pin.created.to_le_bytes());
        out.extend_from_slice(&pin.last_seen.to_le_bytes());
        out.extend_from_slice(&pin.packets.to_le_bytes());
        out.extend_from_slice(&pin.bytes.to_le_bytes());
        Ok(())
    })
}

/// Appends a framed unpin record to `out`.
pub(crate) fn encode_unpin(out: &mut Vec<u8>, key: &SessionKey) -> Result<(), StoreError> {
    frame(out, |out| {
        out.push(KIND_UNPIN);
        encode_key(out, key)
    })
}

/// Appends a framed reply record to `out`.
pub(crate) fn encode_reply(
    out: &mut Vec<u8>,
    key: &SessionKey,
    path: &str,
) -> Result<(), StoreError> {
    check_field("reply path", path.len())?;
    frame(out, |out| {
        out.push(KIND_REPLY);
        encode_key(out, key)?;
        put_field(out, path.as_bytes());
        Ok(())
    })
}

/// Writes length and CRC around the payload `body` appends; leaves `out` as it was on
/// error.
fn frame(
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    if let Err(e) = body(out) {
        out.truncate(start);
        return Err(e);
    }
    // Bounded by MAX_PAYLOAD through check_field, so the cast cannot truncate.
    let len = (out.len() - start - FRAME_LEN) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = frame_crc(len, &out[start + FRAME_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// CRC-32 of the length bytes and the payload. Covering the length means a run of zero
/// bytes (what some file systems leave after a power cut) never checks out as an empty
/// record.
pub(crate) fn frame_crc(len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Whether a frame's declared length can belong to a valid record.
pub(crate) fn plausible_len(len: u32) -> bool {
    (MIN_PAYLOAD..=MAX_PAYLOAD).contains(&(len as usize))
}

fn check_field(what: &'static str, len: usize) -> Result<(), StoreError> {
    if len > MAX_FIELD {
        return Err(StoreError::TooLong {
            what,
            len,
            max: MAX_FIELD,
        });
    }
    Ok(())
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The four spellings a GUID key can have, indexed by the style bits. `GuidStyle` keeps
/// its fields private, so the values are obtained by parsing one sample of each.
fn styles() -> &'static [GuidStyle; 4] {
    static STYLES: OnceLock<[GuidStyle; 4]> = OnceLock::new();
    STYLES.get_or_init(|| {
        let style = |id: &str| match SessionKey::new(id) {
            SessionKey::Guid { style, .. } => style,
            // The four samples are GUIDs by construction.
            SessionKey::Text(_) => unreachable!("sample GUID {id} did not parse"),
        };
        [
            style("00000000-0000-0000-0000-00000000000a"),
            style("{00000000-0000-0000-0000-00000000000a}"),
            style("00000000-0000-0000-0000-00000000000A"),
            style("{00000000-0000-0000-0000-00000000000A}"),
        ]
    })
}

fn encode_key(out: &mut Vec<u8>, key: &SessionKey) -> Result<(), StoreError> {
    match key {
        SessionKey::Guid { value, style } => {
            let bits = styles().iter().position(|s| s == style).unwrap_or_default() as u8;
            debug_assert_eq!(styles()[usize::from(bits)], *style);
            out.push(TAG_GUID);
            out.push(bits);
            out.extend_from_slice(&value.to_be_bytes());
        }
        SessionKey::Text(text) => {
            check_field("session id", text.len())?;
            out.push(TAG_TEXT);
            put_field(out, text.as_bytes());
        }
    }
    Ok(())
}

/// Decodes a payload whose CRC checked out. An error here is not a torn write but a
/// record this build does not understand, so the caller refuses the file.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, &'static str> {
    let mut r = Reader(payload);
    let kind = r.u8()?;
    let key = decode_key(&mut r)?;
    let record = match kind {
        KIND_PIN | KIND_PIN_URL => {
            let backend = r.text()?.to_owned();
            let host = if kind == KIND_PIN_URL {
                r.text()?.to_owned()
            } else {
                String::new()
            };
            let path = r.text()?.to_owned();
            let pin = StoredPin {
                created: r.u32()?,
                last_seen: r.u32()?,
                packets: r.u32()?,
                bytes: u64::from_le_bytes(r.array()?),
            };
            Record::Pin {
                key,
                backend,
                host,
                path,
                pin,
            }
        }
        KIND_UNPIN => Record::Unpin { key },
        KIND_REPLY => Record::Reply {
            key,
            path: r.text()?.to_owned(),
        },
        _ => return Err("unknown record kind"),
    };
    if !r.0.is_empty() {
        return Err("trailing bytes after the record");
    }
    Ok(record)
}

fn decode_key(r: &mut Reader<'_>) -> Result<SessionKey, &'static str> {
    match r.u8()? {
        TAG_GUID => {
            let bits = r.u8()?;
            if bits & !(STYLE_BRACED | STYLE_UPPER) != 0 {
                return Err("unknown GUID style bits");
            }
            let style = styles()[usize::from(bits)];
            let value = u128::from_be_bytes(r.array()?);
            Ok(SessionKey::Guid { value, style })
        }
        TAG_TEXT => Ok(SessionKey::Text(r.text()?.into())),
        _ => Err("unknown key tag"),
    }
}

/// A cursor over a payload; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("record ends early");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn text(&mut self) -> Result<&'a str, &'static str> {
        let len = usize::from(u16::from_le_bytes(self.array()?));
        if len > MAX_FIELD {
            return Err("field longer than the format allows");
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| "field is not UTF-8")
    }
}
