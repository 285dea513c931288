//! One process per data directory.

use super::{open, temp_dir};
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
