//! Format compatibility: the v1 and v2 journals checked in at
//! `tests/fixtures/pins-v1.journal` and `pins-v2.journal` must keep loading to the same
//! pins (and be rewritten in the current format), and this build must keep writing the
//! records of `pins-v2.journal` (under a v2 header) and `pins-v3.journal` byte for byte.
//! If that fails, a format changed: bump the version instead.

use super::super::format::{self, Record};
use super::{by_key, epoch, temp_dir};
use crate::session::store::{PinStore, StorageSync, StoredPin};
use crate::session::SessionKey;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pins-v1.journal")
}

fn fixture_v2() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pins-v2.journal")
}

fn fixture_v3() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pins-v3.journal")
}

fn key(id: &str) -> SessionKey {
    SessionKey::new(id)
}

/// The records of the v2 fixture, in order: every key shape, an unpin, a re-pin, a
/// pin with counters as a compaction or an activity record writes it, and a pin
/// without a host.
fn records() -> Vec<Record> {
    let pin = |id: &str, backend: &str, pin: StoredPin| Record::Pin {
        key: key(id),
        backend: backend.into(),
        host: if backend == "b3" {
            String::new()
        } else {
            "bits.example:8080".into()
        },
        path: format!("/uploads/{backend}.bin"),
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

/// The records of the v3 fixture: those of v2, then upload-reply records: one kept, one
/// kept across an activity record of its pin, one dropped by its session's unpin, one
/// of a session no longer pinned.
fn records_v3() -> Vec<Record> {
    let reply = |id: &str, path: &str| Record::Reply {
        key: key(id),
        path: path.into(),
    };
    let mut records = records();
    records.extend([
        reply(
            "{5E53C221-F2D6-4BF2-B994-1DC43CEACA8D}",
            "/_bits/replies/5e53c221-f2d6-4bf2-b994-1dc43ceaca8d?v=1",
        ),
        reply("session-42", "/r/42"),
        Record::Pin {
            key: key("session-42"),
            backend: "b1".into(),
            host: "bits.example:8080".into(),
            path: "/uploads/b1.bin".into(),
            pin: StoredPin {
                created: 1_700_000_002,
                last_seen: 1_700_000_900,
                packets: 7,
                bytes: 4096,
            },
        },
        reply("{00000000-0000-0000-0000-000000000001}", "/r/1"),
        Record::Unpin {
            key: key("{00000000-0000-0000-0000-000000000001}"),
        },
        reply("5e53c221-f2d6-4bf2-b994-1dc43ceaca8e", "/r/unpinned"),
    ]);
    records
}

fn encode(records: &[Record]) -> Vec<u8> {
    encode_as(format::VERSION, records)
}

fn encode_as(version: u32, records: &[Record]) -> Vec<u8> {
    let mut out = format::header_of(version).to_vec();
    for record in records {
        match record {
            Record::Pin {
                key,
                backend,
                host,
                path,
                pin,
            } => format::encode_pin(&mut out, key, backend, host, path, pin),
            Record::Unpin { key } => format::encode_unpin(&mut out, key),
            Record::Reply { key, path } => format::encode_reply(&mut out, key, path),
        }
        .unwrap();
    }
    out
}

/// The live pins of both fixtures: the v2 one holds the same keys and counters.
fn expected() -> [(&'static str, &'static str, StoredPin); 5] {
    [
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
    ]
}

fn assert_known_pins(loaded: &crate::session::store::Loaded) {
    let pins = by_key(loaded);
    let expected = expected();
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
fn the_v1_fixture_loads_to_its_known_pins_and_is_rewritten_as_v2() {
    let dir = temp_dir();
    let copy = dir.path().join(super::super::files::JOURNAL);
    std::fs::copy(fixture(), &copy).expect("tests/fixtures/pins-v1.journal is checked in");
    let (store, loaded) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert_eq!((loaded.records, loaded.truncated_bytes), (8, 0));
    assert!(!loaded.activity_journaled, "v1 pins carry no activity");
    assert!(loaded.compacted, "rewritten in the current format");
    assert_known_pins(&loaded);
    for (_, owner, _) in &loaded.pins {
        assert_eq!((owner.host.as_deref(), &*owner.path), (None, "/uploads/"));
    }
    drop(store);

    let header = std::fs::read(&copy).unwrap();
    assert_eq!(header[8..12], format::VERSION.to_le_bytes());
    let (_, again) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert!(again.activity_journaled);
    assert_known_pins(&again);
}

/// Collects what a streamed start hands over.
#[derive(Default)]
struct Sink {
    activity_journaled: Option<bool>,
    pins: Vec<(SessionKey, crate::session::store::PinOwner, StoredPin)>,
}

impl crate::session::store::PinSink for Sink {
    fn journal_format(&mut self, activity_journaled: bool) {
        self.activity_journaled = Some(activity_journaled);
    }
    fn pin(&mut self, key: SessionKey, owner: &crate::session::store::PinOwner, pin: StoredPin) {
        self.pins.retain(|(k, ..)| *k != key);
        self.pins.push((key, owner.clone(), pin));
    }
    fn unpin(&mut self, key: &SessionKey) {
        self.pins.retain(|(k, ..)| k != key);
    }
    fn reply(&mut self, _key: &SessionKey, _path: &str) {}
}

#[tokio::test]
async fn a_streamed_start_rewrites_a_v1_journal_as_v2_before_appending() {
    let dir = temp_dir();
    let copy = dir.path().join(super::super::files::JOURNAL);
    std::fs::copy(fixture(), &copy).expect("tests/fixtures/pins-v1.journal is checked in");
    let mut sink = Sink::default();
    let (store, loaded) =
        PinStore::open_into(dir.path(), StorageSync::Write, false, &mut sink).unwrap();
    assert!(!loaded.activity_journaled, "v1 pins carry no activity");
    assert_eq!(sink.activity_journaled, Some(false));
    assert!(loaded.compacted, "rewritten in the current format");
    assert!(loaded.pins.is_empty(), "the pins went to the sink");
    assert_eq!(sink.pins.len(), expected().len());
    let header = std::fs::read(&copy).unwrap();
    assert_eq!(
        header[8..12],
        format::VERSION.to_le_bytes(),
        "rewritten before anything is appended"
    );
    store
        .pin(
            &key("session-new"),
            "b1",
            Some("bits.example"),
            "/u/n.bin",
            5,
        )
        .await
        .unwrap();
    drop(store);
    let (_, again) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert!(again.activity_journaled);
    assert_eq!(again.pins.len(), expected().len() + 1);
}

#[test]
fn the_v2_fixture_loads_to_its_known_pins_with_hosts_and_urls() {
    let dir = temp_dir();
    let copy = dir.path().join(super::super::files::JOURNAL);
    std::fs::copy(fixture_v2(), &copy).expect("tests/fixtures/pins-v2.journal is checked in");
    let (store, loaded) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert_eq!((loaded.records, loaded.truncated_bytes), (8, 0));
    assert!(loaded.activity_journaled, "v2 pins carry activity");
    assert!(loaded.compacted, "rewritten in the current format");
    assert!(loaded.replies.is_empty());
    assert_known_pins(&loaded);
    for (_, owner, _) in &loaded.pins {
        let expected_host = (&*owner.backend != "b3").then_some("bits.example:8080");
        assert_eq!(owner.host.as_deref(), expected_host);
        assert_eq!(&*owner.path, format!("/uploads/{}.bin", owner.backend));
    }
    drop(store);
    let header = std::fs::read(&copy).unwrap();
    assert_eq!(header[8..12], format::VERSION.to_le_bytes());
    let (_, again) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert!(
        again.activity_journaled,
        "the rewrite keeps trusting the clocks"
    );
    assert_known_pins(&again);
}

#[test]
fn this_build_writes_the_v2_fixture_byte_for_byte() {
    let checked_in = std::fs::read(fixture_v2()).expect("tests/fixtures/pins-v2.journal");
    assert_eq!(encode_as(2, &records()), checked_in);
}

#[test]
fn this_build_writes_the_v3_fixture_byte_for_byte() {
    let checked_in = std::fs::read(fixture_v3()).expect("tests/fixtures/pins-v3.journal");
    assert_eq!(encode(&records_v3()), checked_in);
}

fn sorted_replies(replies: &[(SessionKey, Box<str>)]) -> Vec<(String, String)> {
    let mut replies: Vec<(String, String)> = replies
        .iter()
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect();
    replies.sort();
    replies
}

#[test]
fn the_v3_fixture_loads_its_replies_with_their_live_pins_and_compacts_them() {
    let dir = temp_dir();
    let copy = dir.path().join(super::super::files::JOURNAL);
    std::fs::copy(fixture_v3(), &copy).expect("tests/fixtures/pins-v3.journal is checked in");
    let expected = vec![
        ("session-42".to_owned(), "/r/42".to_owned()),
        (
            "{5E53C221-F2D6-4BF2-B994-1DC43CEACA8D}".to_owned(),
            "/_bits/replies/5e53c221-f2d6-4bf2-b994-1dc43ceaca8d?v=1".to_owned(),
        ),
    ];
    let (store, loaded) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert_eq!((loaded.records, loaded.truncated_bytes), (14, 0));
    assert!(!loaded.compacted);
    assert_eq!(loaded.pins.len(), expected_len());
    assert_eq!(sorted_replies(&loaded.replies), expected);
    // A compaction keeps each reply after its pin.
    let pins = loaded.pins.clone();
    let replies = loaded.replies.clone();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(store.compact_streaming(|out| {
            for (key, owner, pin) in &pins {
                let host = owner.host.as_deref().unwrap_or("");
                out.pin(key, &owner.backend, host, &owner.path, pin);
            }
            for (key, path) in &replies {
                out.reply(key, path);
            }
        }))
        .unwrap();
    drop(store);
    let (_, again) = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch).unwrap();
    assert_eq!(again.records, (expected_len() + expected.len()) as u64);
    assert_eq!(sorted_replies(&again.replies), expected);
}

/// The pins of the v3 fixture: those of v2 but the one its reply records unpin.
fn expected_len() -> usize {
    expected().len() - 1
}

#[tokio::test]
async fn a_reply_record_is_journaled_after_its_pin_and_gone_with_its_unpin() {
    let dir = temp_dir();
    let (store, _) = PinStore::open(dir.path(), StorageSync::Write).unwrap();
    let (a, b) = (key("session-a"), key("session-b"));
    for k in [&a, &b] {
        store.pin(k, "b1", None, "/u/x.bin", 5).await.unwrap();
        store
            .reply(k, &format!("/r/{k}"))
            .expect("journaled")
            .await
            .unwrap();
    }
    drop(store.unpin(&b));
    assert!(
        store.reply(&a, &"x".repeat(1025)).is_none(),
        "longer than a field: in memory only"
    );
    store.flush().await.unwrap();
    drop(store);
    let (_, loaded) = PinStore::open(dir.path(), StorageSync::Write).unwrap();
    assert_eq!(
        sorted_replies(&loaded.replies),
        [("session-a".to_owned(), "/r/session-a".to_owned())]
    );
}
