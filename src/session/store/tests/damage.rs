//! A journal cut short or damaged on disk: what is kept, what is cut, what is refused.

use super::super::format::{self, HEADER_LEN};
use super::super::TailDamage;
use super::{by_key, epoch, guid, journal, open, temp_dir};
use crate::session::store::{PinStore, StorageSync, StoreError, StoredPin};
use std::fs;
use std::path::Path;

/// A journal with three pins; returns its bytes and where the last record starts.
async fn three_pins(dir: &Path) -> (Vec<u8>, usize) {
    let (store, _) = open(dir);
    store
        .pin(&guid(1), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    store
        .pin(&guid(2), "b2", None, "/uploads/", 2)
        .await
        .unwrap();
    let before_last = store.stats().journal_bytes as usize;
    store
        .pin(&guid(3), "b3", None, "/uploads/", 3)
        .await
        .unwrap();
    drop(store);
    (fs::read(journal(dir)).unwrap(), before_last)
}

fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<super::Loaded, StoreError>) {
    let dir = temp_dir();
    fs::write(journal(dir.path()), bytes).unwrap();
    let opened = PinStore::open_with_clock(dir.path(), StorageSync::Write, epoch);
    (dir, opened.map(|(_, loaded)| loaded))
}

#[tokio::test]
async fn a_torn_tail_at_every_offset_keeps_every_complete_record_and_reports_the_cut() {
    let source = temp_dir();
    let (bytes, last) = three_pins(source.path()).await;
    for cut in last + 1..bytes.len() {
        let (dir, loaded) = open_bytes(&bytes[..cut]);
        let loaded = loaded.unwrap();
        let pins = by_key(&loaded);
        assert_eq!(pins.len(), 2, "cut at {cut}");
        assert!(!pins.contains_key(&guid(3).to_string()));
        assert_eq!(loaded.truncated_bytes, (cut - last) as u64, "cut at {cut}");
        assert_eq!(loaded.damage, Some(TailDamage::Incomplete), "cut at {cut}");
        let saved = fs::read(loaded.discarded_to.as_ref().unwrap()).unwrap();
        assert_eq!(saved, &bytes[last..cut]);
        assert_eq!(fs::read(journal(dir.path())).unwrap(), &bytes[..last]);
    }
}

#[tokio::test]
async fn appends_after_a_cut_tail_are_read_back() {
    let source = temp_dir();
    let (bytes, last) = three_pins(source.path()).await;
    let dir = temp_dir();
    fs::write(journal(dir.path()), &bytes[..last + 5]).unwrap();
    let (store, first) = open(dir.path());
    assert_eq!(first.truncated_bytes, 5);
    store
        .pin(&guid(4), "b4", None, "/uploads/", 4)
        .await
        .unwrap();
    drop(store);

    let (_, again) = open(dir.path());
    assert_eq!((again.pins.len(), again.truncated_bytes), (3, 0));
    assert_eq!(again.damage, None);
}

#[tokio::test]
async fn a_flipped_byte_in_the_last_record_is_caught() {
    let source = temp_dir();
    let (bytes, last) = three_pins(source.path()).await;
    for at in last..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        let (_dir, loaded) = open_bytes(&damaged);
        let loaded = loaded.unwrap();
        assert_eq!(loaded.pins.len(), 2, "flip at {at}");
        assert_eq!(loaded.truncated_bytes, (bytes.len() - last) as u64);
        // A flip in the length field shows as a bad or overlong length, anywhere else
        // as a checksum mismatch.
        let expected = if at < last + 4 {
            [
                TailDamage::BadLength,
                TailDamage::Incomplete,
                TailDamage::BadChecksum,
            ]
            .to_vec()
        } else {
            vec![TailDamage::BadChecksum]
        };
        assert!(expected.contains(&loaded.damage.unwrap()), "flip at {at}");
    }
}

#[tokio::test]
async fn a_flipped_byte_mid_file_keeps_what_precedes_it_and_saves_the_rest() {
    let source = temp_dir();
    let (bytes, _) = three_pins(source.path()).await;
    let mut damaged = bytes.clone();
    damaged[HEADER_LEN + 20] ^= 1;
    let (_dir, loaded) = open_bytes(&damaged);
    let loaded = loaded.unwrap();
    assert!(loaded.pins.is_empty());
    assert_eq!(loaded.damage, Some(TailDamage::BadChecksum));
    let saved = fs::read(loaded.discarded_to.unwrap()).unwrap();
    assert_eq!(saved, &damaged[HEADER_LEN..]);
}

#[tokio::test]
async fn zeros_after_the_last_record_are_not_taken_for_records() {
    let source = temp_dir();
    let (mut bytes, _) = three_pins(source.path()).await;
    bytes.extend_from_slice(&[0; 4096]);
    let (_dir, loaded) = open_bytes(&bytes);
    let loaded = loaded.unwrap();
    assert_eq!((loaded.pins.len(), loaded.truncated_bytes), (3, 4096));
    assert_eq!(loaded.damage, Some(TailDamage::BadLength));
}

#[test]
fn a_file_with_the_wrong_magic_is_refused_and_left_alone() {
    for bytes in [&b"not a journal at all, just text\n"[..], b"BGPIN"] {
        let (dir, loaded) = open_bytes(bytes);
        let err = loaded.unwrap_err();
        assert!(matches!(err, StoreError::BadMagic { .. }), "{err}");
        assert!(
            err.to_string().contains("not a bitsgate pin journal"),
            "{err}"
        );
        assert_eq!(fs::read(journal(dir.path())).unwrap(), bytes);
    }
}

#[test]
fn a_newer_format_version_is_refused_with_both_versions_named() {
    let mut bytes = format::header().to_vec();
    bytes[8..12].copy_from_slice(&(format::VERSION + 1).to_le_bytes());
    let (dir, loaded) = open_bytes(&bytes);
    let err = loaded.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedVersion {
                found,
                supported,
                ..
            } if found == format::VERSION + 1 && supported == format::VERSION
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("format v4, this bitsgate reads v3"),
        "{err}"
    );
    assert_eq!(fs::read(journal(dir.path())).unwrap(), bytes);
}

#[test]
fn a_checksummed_record_that_does_not_decode_is_refused_not_dropped() {
    let mut bytes = format::header().to_vec();
    format::encode_unpin(&mut bytes, &guid(1)).unwrap();
    let record_at = bytes.len();
    // A record of an unknown kind, with a valid checksum: not a torn write.
    let payload = [9u8, 2, 0, 0];
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&format::frame_crc(payload.len() as u32, &payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let (_dir, loaded) = open_bytes(&bytes);
    let err = loaded.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset, .. } if offset == record_at as u64),
        "{err}"
    );
}

#[test]
fn an_empty_journal_file_is_given_a_header() {
    let (dir, loaded) = open_bytes(b"");
    assert!(loaded.unwrap().pins.is_empty());
    assert_eq!(fs::read(journal(dir.path())).unwrap(), format::header());
}

#[test]
fn stored_pins_convert_to_table_pins_and_back() {
    let stored = StoredPin {
        created: 1,
        last_seen: 2,
        packets: 3,
        bytes: 4,
    };
    let pin = stored.into_pin(
        crate::backend::BackendSlot(7),
        crate::session::UrlId(3),
        stored.last_seen + 60,
        stored.last_seen,
    );
    assert_eq!(StoredPin::from(&pin), stored);
}
