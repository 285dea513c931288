//! Format compatibility: a v1 journal checked in at `tests/fixtures/pins-v1.journal`
//! must keep loading to the same pins, and this build must keep writing it byte for
//! byte. If either assertion fails, the v1 format changed: bump the version instead.

use super::super::format::{self, Record};
use super::{by_key, epoch, temp_dir};
use crate::session::store::{PinStore, StorageSync, StoredPin};
use crate::session::SessionKey;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pins-v1.journal")
}

fn key(id: &str) -> SessionKey {
    SessionKey::new(id)
}

/// The records of the fixture, in order: every key shape, an unpin, a re-pin, and a
/// pin with counters as a compaction writes it.
fn records() -> Vec<Record> {
    let pin = |id: &str, backend: &str, pin: StoredPin| Record::Pin {
        key: key(id),
        backend: backend.into(),
        dir: "/uploads/".into(),
        pin,
    };
    vec![
        pin(
            "{5E53C221-F2D6-4BF2-B994-1DC43CEACA8D}",
            "b1",
            StoredPin::new(1_700_000_000),
        ),
        pin(
            "5e53c221-f2d6-4bf2-b994-1dc43ceaca8e",
            "b2",
            StoredPin::new(1_700_000_001),
        ),
        pin("session-42", "b1", StoredPin::new(1_700_000_002)),
        pin(
            "{00000000-0000-0000-0000-000000000001}",
            "b3",
            StoredPin::new(1_700_000_003),
        ),
        Record::Unpin {
            key: key("5e53c221-f2d6-4bf2-b994-1dc43ceaca8e"),
        },
        pin(
            "legacy/ñ-ü",
            "backend-with-a-longer-id",
            StoredPin {
                created: 1_700_000_100,
                last_seen: 1_700_000_500,
                packets: 42,
                bytes: 123_456_789_012,
            },
        ),
        pin(
            "5E53C221-F2D6-4BF2-B994-1DC43CEACA8F",
            "b2",
            StoredPin::new(1_700_000_200),
        ),
        pin(
            "5E53C221-F2D6-4BF2-B994-1DC43CEACA8F",
            "b1",
            StoredPin::new(1_700_000_201),
        ),
    ]
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = format::header().to_vec();
    for record in records {
        match record {
            Record::Pin {
                key,
                backend,
                dir,
                pin,
            } => format::encode_pin(&mut out, key, backend, dir, pin),
            Record::Unpin { key } => format::encode_unpin(&mut out, key),
        }
        .unwrap();
    }
    out
}

#[test]
fn the_v1_fixture_loads_to_its_known_pins() {
    let dir = temp_dir();
    let copy = dir.path().join(super::super::files::JOURNAL);
    std::fs::copy(fixture(), &copy).expect("tests/fixtures/pins-v1.journal is checked in");
    let (_, loaded) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert_eq!((loaded.records, loaded.truncated_bytes), (8, 0));

    let pins = by_key(&loaded);
    let expected = [
        (
            "{5E53C221-F2D6-4BF2-B994-1DC43CEACA8D}",
            "b1",
            StoredPin::new(1_700_000_000),
        ),
        ("session-42", "b1", StoredPin::new(1_700_000_002)),
        (
            "{00000000-0000-0000-0000-000000000001}",
            "b3",
            StoredPin::new(1_700_000_003),
        ),
        (
            "legacy/ñ-ü",
            "backend-with-a-longer-id",
            StoredPin {
                created: 1_700_000_100,
                last_seen: 1_700_000_500,
                packets: 42,
                bytes: 123_456_789_012,
            },
        ),
        (
            "5E53C221-F2D6-4BF2-B994-1DC43CEACA8F",
            "b1",
            StoredPin::new(1_700_000_201),
        ),
    ];
    assert_eq!(pins.len(), expected.len());
    for (id, backend, pin) in expected {
        assert_eq!(pins[id], (backend.to_owned(), pin), "{id}");
    }
    // Exact keys, not just equal spellings: a GUID stays a GUID, text stays text.
    for (key, ..) in &loaded.pins {
        assert_eq!(*key, SessionKey::new(&key.to_string()));
    }
}

#[test]
fn this_build_writes_the_v1_fixture_byte_for_byte() {
    let checked_in = std::fs::read(fixture()).expect("tests/fixtures/pins-v1.journal");
    assert_eq!(encode(&records()), checked_in);
}

#[test]
fn every_fixture_record_decodes_to_what_was_encoded() {
    for record in records() {
        let bytes = encode(std::slice::from_ref(&record));
        let payload = &bytes[format::HEADER_LEN + format::FRAME_LEN..];
        assert_eq!(format::decode(payload), Ok(record));
    }
}

/// Writes the fixture. Run once when a format version is introduced:
/// `cargo test --lib session::store -- --ignored write_the_v1_fixture`.
#[test]
#[ignore = "writes tests/fixtures/pins-v1.journal"]
fn write_the_v1_fixture() {
    std::fs::write(fixture(), encode(&records())).unwrap();
}
