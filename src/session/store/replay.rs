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
    /// `key` is owned by `owner` (replacing any earlier pin of it).
    fn pin(&mut self, key: SessionKey, owner: &PinOwner, pin: StoredPin);
    /// `key` is no longer pinned.
    fn unpin(&mut self, key: &SessionKey);
}

/// What [`replay_into`] read besides the pins.
pub(crate) struct Streamed {
    pub scan: Scan,
    /// Pin records read, live or not, and their bytes: the average pin record size.
    pub pin_records: u64,
    pub pin_record_bytes: u64,
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
    };
    if !read_header(path, &mut reader)? {
        return Ok(out);
    }
    let mut backends: HashSet<Arc<str>> = HashSet::new();
    let scan = scan(
        path,
        &mut reader,
        HEADER_LEN as u64,
        |record, record_len| apply(&mut out.live, &mut backends, record, record_len),
    )?;
    out.records = scan.records;
    out.valid_len = scan.valid_len;
    out.damage = scan.damage;
    Ok(out)
}

/// Replays `file` (positioned at its start) into `sink`, record by record, raising each
/// pin's `last_seen` to `now` (see [`super::Loaded::pins`]).
pub(crate) fn replay_into(
    path: &Path,
    file: &File,
    sink: &mut dyn PinSink,
    now: u32,
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
    };
    if !read_header(path, &mut reader)? {
        return Ok(out);
    }
    // A handful of owners exist: a list searched by the decoded strings allocates
    // nothing per pin.
    let mut owners: Vec<PinOwner> = Vec::new();
    let (mut pin_records, mut pin_record_bytes) = (0, 0);
    out.scan = scan(
        path,
        &mut reader,
        HEADER_LEN as u64,
        |record, record_len| match record {
            Record::Pin {
                key,
                backend,
                dir,
                pin,
            } => {
                pin_records += 1;
                pin_record_bytes += record_len;
                let known = owners
                    .iter()
                    .position(|o| *o.backend == *backend && *o.dir == *dir);
                let index = known.unwrap_or_else(|| {
                    owners.push(PinOwner {
                        backend: backend.into(),
                        dir: dir.into(),
                    });
                    owners.len() - 1
                });
                let last_seen = pin.last_seen.max(now);
                sink.pin(key, &owners[index], StoredPin { last_seen, ..pin });
            }
            Record::Unpin { key } => sink.unpin(&key),
        },
    )?;
    out.pin_records = pin_records;
    out.pin_record_bytes = pin_record_bytes;
    Ok(out)
}

/// Reads and checks the header; false for an empty file.
fn read_header(path: &Path, reader: &mut impl Read) -> Result<bool, StoreError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).map_err(io_err("read", path))?;
    if got == 0 {
        return Ok(false);
    }
    if got < HEADER_LEN {
        // Journals are created whole (temp file + rename), so a short header is not a
        // torn write of ours: it is some other file.
        return Err(StoreError::BadMagic { path: path.into() });
    }
    format::check_header(&header).map_err(|e| match e {
        HeaderError::BadMagic => StoreError::BadMagic { path: path.into() },
        HeaderError::Version(found) => StoreError::UnsupportedVersion {
            path: path.into(),
            found,
            supported: format::VERSION,
        },
    })?;
    Ok(true)
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
    backends: &mut HashSet<Arc<str>>,
    record: Record,
    record_len: u64,
) {
    match record {
        Record::Pin {
            key,
            backend,
            dir,
            pin,
        } => {
            // One shared string per backend id and directory rather than one per pin.
            let mut share = |text: String| match backends.get(text.as_str()) {
                Some(shared) => shared.clone(),
                None => {
                    let shared: Arc<str> = text.into();
                    backends.insert(shared.clone());
                    shared
                }
            };
            let owner = PinOwner {
                backend: share(backend),
                dir: share(dir),
            };
            live.insert(
                key,
                LivePin {
                    owner,
                    pin,
                    record_len,
                },
            );
        }
        Record::Unpin { key } => {
            live.remove(&key);
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
