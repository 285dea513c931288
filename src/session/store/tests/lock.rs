//! One process per data directory.

use super::{guid, journal, open, temp_dir};
use crate::session::store::{PinStore, StorageSync, StoreError};
use std::time::{Duration, Instant};

#[test]
fn a_second_store_on_the_same_dir_is_refused_while_the_first_is_open() {
    let dir = temp_dir();
    let (first, _) = open(dir.path());
    assert!(first.holds_dir_lock());
    match PinStore::open(dir.path(), StorageSync::Write) {
        Err(StoreError::DirInUse { holder, .. }) => {
            assert_eq!(holder, format!("pid {}", std::process::id()));
        }
        Err(other) => panic!("expected DirInUse, got {other}"),
        Ok(_) => panic!("two stores opened one data dir"),
    }
    drop(first);
    let (again, _) = open(dir.path());
    assert!(again.holds_dir_lock());
}

#[test]
fn a_store_opened_for_an_upgrade_takes_the_dir_once_the_old_one_is_gone() {
    let dir = temp_dir();
    let (old, _) = open(dir.path());
    let (new, _) = PinStore::open_shared(dir.path(), StorageSync::Write).expect("open shared");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!new.holds_dir_lock(), "the old store still holds it");
    drop(old);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !new.holds_dir_lock() {
        assert!(
            Instant::now() < deadline,
            "the new store never took the dir"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(
        PinStore::open(dir.path(), StorageSync::Write),
        Err(StoreError::DirInUse { .. })
    ));
}

#[tokio::test]
async fn while_an_upgrade_shares_the_journal_each_side_reads_the_others_pins_and_nobody_compacts() {
    let dir = temp_dir();
    let (old, _) = open(dir.path());
    old.pin(&guid(1), "b1", None, "/u/", 1).await.unwrap();
    let (new, loaded) = PinStore::open_shared(dir.path(), StorageSync::Write).expect("open shared");
    assert_eq!(loaded.pins.len(), 1);
    assert!(
        !old.holds_dir_lock(),
        "the old side knows an upgrade started"
    );
    assert!(!new.holds_dir_lock());

    new.pin(&guid(2), "b2", None, "/u/", 2).await.unwrap();
    old.pin(&guid(3), "b1", None, "/u/", 3).await.unwrap();
    let from_new: Vec<String> = old
        .read_tail()
        .unwrap()
        .pins
        .iter()
        .map(|p| p.0.to_string())
        .collect();
    assert!(from_new.contains(&guid(2).to_string()), "{from_new:?}");
    let tail = new.read_tail().unwrap();
    assert!(tail.complete);
    assert!(tail.pins.iter().any(|p| p.0 == guid(3)));
    // Read once: the next read starts where this one ended.
    assert!(new.read_tail().unwrap().pins.is_empty());

    // Lengths come from the file, whoever wrote last.
    let on_disk = std::fs::metadata(journal(dir.path())).unwrap().len();
    assert_eq!(old.stats().journal_bytes, on_disk);

    match old.compact(Vec::new).await {
        Err(StoreError::Shared) => {}
        other => panic!("the old side compacted a shared journal: {other:?}"),
    }
    drop(new);
    // Its writer thread lets go of the upgrade lock as it stops.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !old.holds_dir_lock() {
        assert!(Instant::now() < deadline, "the upgrade never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(old);
    let (_, loaded) = open(dir.path());
    assert_eq!(loaded.pins.len(), 3, "no pin of either side lost");
}
