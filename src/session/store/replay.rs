//! Reading a journal back: header, records in order, and where a torn or damaged tail
//! begins. Pure with respect to the file: truncation is the caller's decision.

use super::files::io_err;
use super::format::{self, HeaderError, Record, FRAME_LEN, HEADER_LEN};
use super::{PinOwner, StoreError, StoredPin, TailDamage};
use crate::session::SessionKey;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

/// A live pin as replay leaves it, with the size of the record that made it.
pub(crate) struct LivePin {
    pub owner: PinOwner,
    pub pin: StoredPin,
    pub record_len: u64,
    /// The path and query of the session's upload reply, once one was journaled.
    pub reply: Option<Box<str>>,
}

/// The state a journal describes.
pub(crate) struct Replayed {
    pub live: HashMap<SessionKey, LivePin>,
    /// Complete records read.
    pub records: u64,
    /// Header plus every complete record: where the next append belongs.
    pub valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<TailDamage>,
    /// The format version in the header (the current one for an empty file).
    pub version: u32,
}

impl Replayed {
    /// Bytes a journal holding only the live pins would take.
    pub fn live_bytes(&self) -> u64 {
        HEADER_LEN as u64 + self.live.values().map(|p| p.record_len).sum::<u64>()
    }
}

/// Where replayed pins go without a map of its own: the session table, which plays the
/// map's part (a later pin of a key replaces the earlier one, an unpin removes it), so
/// a start never holds the pins twice.
pub trait PinSink {
    /// Called once, before any pin: whether the journal's pins carry journaled activity
    /// (format 2), which decides how far their `last_seen` is trusted.
    fn journal_format(&mut self, activity_journaled: bool);
    /// `key` is owned by `owner` (replacing any earlier pin of it); `pin.last_seen` is
    /// as journaled.
    fn pin(&mut self, key: SessionKey, owner: &PinOwner, pin: StoredPin);
    /// `key` is no longer pinned.
    fn unpin(&mut self, key: &SessionKey);
    /// The upload reply of `key`, pinned by an earlier record, is served at `path`
    /// (path and query) by the session's owner.
    fn reply(&mut self, key: &SessionKey, path: &str);
}

/// What [`replay_into`] read besides the pins.
pub(crate) struct Streamed {
    pub scan: Scan,
    /// Pin records read, live or not, and their bytes: the average pin record size.
    pub pin_records: u64,
    pub pin_record_bytes: u64,
    /// The format version in the header (the current one for an empty file).
    pub version: u32,
}

/// Replays `file` (positioned at its start). An empty file reads as an empty journal;
/// a bad header or a checksummed record that does not decode is an error.
pub(crate) fn replay(path: &Path, file: &File) -> Result<Replayed, StoreError> {
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut out = Replayed {
        live: HashMap::new(),
        records: 0,
        valid_len: 0,
        damage: None,
        version: format::VERSION,
    };
    match read_header(path, &mut reader)? {
        Some(version) => out.version = version,
        None => return Ok(out),
    }
    let mut strings = SharedStrings::default();
    let scan = scan(
        path,
        &mut reader,
        HEADER_LEN as u64,
        |record, record_len| apply(&mut out.live, &mut strings, record, record_len),
    )?;
    out.records = scan.records;
    out.valid_len = scan.valid_len;
    out.damage = scan.damage;
    Ok(out)
}

/// Replays `file` (positioned at its start) into `sink`, record by record, with each
/// pin's `last_seen` as journaled: the sink applies the load rule
/// ([`super::restored_last_seen`]) with the version it is told first
/// ([`PinSink::journal_format`]).
pub(crate) fn replay_into(
    path: &Path,
    file: &File,
    sink: &mut dyn PinSink,
) -> Result<Streamed, StoreError> {
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut out = Streamed {
        scan: Scan {
            records: 0,
            valid_len: 0,
            damage: None,
        },
        pin_records: 0,
        pin_record_bytes: 0,
        version: format::VERSION,
    };
    match read_header(path, &mut reader)? {
        Some(version) => out.version = version,
        None => {
            sink.journal_format(true);
            return Ok(out);
        }
    }
    sink.journal_format(out.version >= format::ACTIVITY_SINCE);
    let mut strings = SharedStrings::default();
    let (mut pin_records, mut pin_record_bytes) = (0, 0);
    out.scan = scan(
        path,
        &mut reader,
        HEADER_LEN as u64,
        |record, record_len| match record {
            Record::Pin {
                key,
                backend,
                host,
                path,
                pin,
            } => {
                pin_records += 1;
                pin_record_bytes += record_len;
                sink.pin(key, &strings.owner(&backend, &host, path), pin);
            }
            Record::Unpin { key } => sink.unpin(&key),
            Record::Reply { key, path } => sink.reply(&key, &path),
        },
    )?;
    out.pin_records = pin_records;
    out.pin_record_bytes = pin_record_bytes;
    Ok(out)
}

/// The format version in the header of the journal at `path`; `None` for an empty file.
pub(crate) fn read_version(path: &Path) -> Result<Option<u32>, StoreError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    read_header(path, &mut BufReader::new(file))
}

/// Reads and checks the header; its version, or `None` for an empty file.
fn read_header(path: &Path, reader: &mut impl Read) -> Result<Option<u32>, StoreError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).map_err(io_err("read", path))?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        // Journals are created whole (temp file + rename), so a short header is not a
        // torn write of ours: it is some other file.
        return Err(StoreError::BadMagic { path: path.into() });
    }
    let version = format::check_header(&header).map_err(|e| match e {
        HeaderError::BadMagic => StoreError::BadMagic { path: path.into() },
        HeaderError::Version(found) => StoreError::UnsupportedVersion {
            path: path.into(),
            found,
            supported: format::VERSION,
        },
    })?;
    Ok(Some(version))
}

/// How far a scan of records got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Complete records read.
    pub records: u64,
    /// The offset after the last complete record.
    pub valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<TailDamage>,
}

/// Reads the records of `reader`, which is positioned at journal offset `offset` (a
/// record boundary), handing each to `on_record` with its length.
pub(crate) fn scan(
    path: &Path,
    reader: &mut impl Read,
    offset: u64,
    mut on_record: impl FnMut(Record, u64),
) -> Result<Scan, StoreError> {
    let mut out = Scan {
        records: 0,
        valid_len: offset,
        damage: None,
    };
    let mut payload = Vec::new();
    loop {
        let mut frame = [0u8; FRAME_LEN];
        match read_full(reader, &mut frame).map_err(io_err("read", path))? {
            0 => break,
            FRAME_LEN => {}
            _ => {
                out.damage = Some(TailDamage::Incomplete);
                break;
            }
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if !format::plausible_len(len) {
            out.damage = Some(TailDamage::BadLength);
            break;
        }
        payload.resize(len as usize, 0);
        if read_full(reader, &mut payload).map_err(io_err("read", path))? < payload.len() {
            out.damage = Some(TailDamage::Incomplete);
            break;
        }
        if format::frame_crc(len, &payload) != crc {
            out.damage = Some(TailDamage::BadChecksum);
            break;
        }
        let offset = out.valid_len;
        let record = format::decode(&payload).map_err(|reason| StoreError::Corrupt {
            path: path.into(),
            offset,
            reason,
        })?;
        let record_len = (FRAME_LEN + payload.len()) as u64;
        on_record(record, record_len);
        out.records += 1;
        out.valid_len += record_len;
    }
    Ok(out)
}

/// The records from offset `from` of the journal at `path` to its end, for a process
/// that shares the journal with another one. Stops before an incomplete or damaged
/// record, which may be one the other process is writing at this instant.
pub(crate) fn read_tail(path: &Path, from: u64) -> Result<(Vec<Record>, Scan), StoreError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(from)).map_err(io_err("read", path))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut records = Vec::new();
    let scan = scan(path, &mut reader, from, |record, _| records.push(record))?;
    Ok((records, scan))
}

fn apply(
    live: &mut HashMap<SessionKey, LivePin>,
    strings: &mut SharedStrings,
    record: Record,
    record_len: u64,
) {
    match record {
        Record::Pin {
            key,
            backend,
            host,
            path,
            pin,
        } => {
            let owner = strings.owner(&backend, &host, path);
            // An activity record of the same session keeps the reply journaled for it.
            let reply = live
                .remove(&key)
                .filter(|old| old.owner.backend == owner.backend)
                .and_then(|old| old.reply);
            live.insert(
                key,
                LivePin {
                    owner,
                    pin,
                    record_len,
                    reply,
                },
            );
        }
        Record::Unpin { key } => {
            live.remove(&key);
        }
        Record::Reply { key, path } => {
            if let Some(live) = live.get_mut(&key) {
                live.reply = Some(path.into());
            }
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The backend ids and hosts of decoded pin records, one shared string each: a handful
/// exist, where there are millions of records. Paths are nearly one per session.
#[derive(Default)]
struct SharedStrings(HashSet<Arc<str>>);

impl SharedStrings {
    fn share(&mut self, text: &str) -> Arc<str> {
        match self.0.get(text) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = text.into();
                self.0.insert(shared.clone());
                shared
            }
        }
    }

    /// The owner of a decoded pin record; an empty host is none kept.
    fn owner(&mut self, backend: &str, host: &str, path: String) -> PinOwner {
        PinOwner {
            backend: self.share(backend),
            host: (!host.is_empty()).then(|| self.share(host)),
            path: path.into(),
        }
    }
}
