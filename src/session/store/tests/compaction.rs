//! Compaction: exactly the live set, nothing lost to a race or a crash.

use super::super::files::{self, COMPACT_TEMP};
use super::{backend, by_key, guid, journal, open, temp_dir};
use crate::session::store::{StoredPin, COMPACT_MIN_BYTES};
use std::fs;

#[tokio::test]
async fn compaction_keeps_exactly_the_live_set_with_its_counters() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    for n in 0..100 {
        store
            .pin(&guid(n), "b1", None, "/uploads/", n)
            .await
            .unwrap();
    }
    for n in (0..100).step_by(2) {
        store.unpin(&guid(n)).await.unwrap();
    }
    let before = store.stats().journal_bytes;
    let live: Vec<_> = (1..100)
        .step_by(2)
        .map(|n| {
            let pin = StoredPin {
                created: n,
                last_seen: n + 10,
                packets: 7,
                bytes: 1 << 33,
            };
            (guid(n), backend("b2"), pin)
        })
        .collect();
    let expected = live.clone();
    store.compact(move || live).await.unwrap();
    let stats = store.stats();
    assert_eq!(stats.compactions, 1);
    assert!(stats.journal_bytes < before / 2, "{stats:?}");
    assert!(!dir.path().join(COMPACT_TEMP).exists());
    // Appends after a compaction go to the new file.
    store
        .pin(&guid(500), "b3", None, "/uploads/", 500)
        .await
        .unwrap();
    drop(store);

    let (_, loaded) = open(dir.path());
    let pins = by_key(&loaded);
    assert_eq!(pins.len(), 51);
    for (key, _, pin) in expected {
        assert_eq!(pins[&key.to_string()], ("b2".into(), pin));
    }
    assert_eq!(pins[&guid(500).to_string()].0, "b3");
}

#[tokio::test]
async fn pins_and_unpins_that_race_the_snapshot_are_kept() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store
        .pin(&guid(1), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    store
        .pin(&guid(2), "b1", None, "/uploads/", 2)
        .await
        .unwrap();
    let during = store.clone();
    let mut racing = Vec::new();
    store
        .compact(|| {
            // The table is read, then (before the compacted file exists) a session is
            // created and another ends: both records must reach the new journal.
            let snapshot = vec![
                (guid(1), backend("b1"), StoredPin::new(1)),
                (guid(2), backend("b1"), StoredPin::new(2)),
            ];
            racing.push(during.pin(&guid(3), "b3", None, "/uploads/", 3));
            racing.push(during.unpin(&guid(1)));
            snapshot
        })
        .await
        .unwrap();
    for write in racing {
        write.await.unwrap();
    }
    drop((store, during));

    let (_, loaded) = open(dir.path());
    let keys: Vec<_> = by_key(&loaded).into_keys().collect();
    assert_eq!(keys, [guid(2).to_string(), guid(3).to_string()]);
}

#[tokio::test]
async fn a_crash_between_the_temp_file_and_the_rename_leaves_the_old_journal() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store
        .pin(&guid(1), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    store
        .pin(&guid(2), "b1", None, "/uploads/", 2)
        .await
        .unwrap();
    drop(store);
    let old = fs::read(journal(dir.path())).unwrap();
    // What a compaction leaves when the process dies after writing the temp file: a
    // complete (or partial) journal under the temp name, the old one untouched.
    let temp = dir.path().join(COMPACT_TEMP);
    let only_one = [(guid(1), backend("b1"), StoredPin::new(1))];
    files::write_snapshot(&temp, only_one.iter().map(|(k, b, p)| (k, b, p))).unwrap();
    let full = fs::read(&temp).unwrap();
    fs::write(&temp, &full[..full.len() - 3]).unwrap();

    let (_, loaded) = open(dir.path());
    assert!(loaded.removed_stale_temp);
    assert!(!temp.exists());
    assert_eq!(loaded.pins.len(), 2);
    assert_eq!(fs::read(journal(dir.path())).unwrap(), old);
}

#[tokio::test]
async fn open_compacts_a_journal_that_is_mostly_dead_records() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    // Enqueue everything first and await afterwards: one batch after another.
    let mut writes = Vec::new();
    for n in 0..20_000 {
        writes.push(store.pin(&guid(n), "backend-1", None, "/uploads/", n));
        if n % 100 != 0 {
            writes.push(store.unpin(&guid(n)));
        }
    }
    for write in writes {
        write.await.unwrap();
    }
    let grown = store.stats().journal_bytes;
    assert!(grown > COMPACT_MIN_BYTES, "{grown}");
    assert!(store.should_compact(200));
    assert!(!store.should_compact(20_000));
    drop(store);

    let (store, loaded) = open(dir.path());
    assert!(loaded.compacted);
    assert_eq!(loaded.pins.len(), 200);
    let compacted = store.stats().journal_bytes;
    assert!(compacted < grown / 10, "{compacted} vs {grown}");
    assert!(!store.should_compact(200));
    drop(store);

    let (_, again) = open(dir.path());
    assert!(!again.compacted);
    assert_eq!(again.pins.len(), 200);
}

#[tokio::test]
async fn a_small_journal_is_not_worth_compacting() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store
        .pin(&guid(1), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    store.unpin(&guid(1)).await.unwrap();
    assert!(!store.should_compact(0));
}
