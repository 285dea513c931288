//! Tests of the pin store, as sentences. Files are real (a temp directory on the same
//! file system as the work tree), clocks are fixed, nothing sleeps.

mod compaction;
mod compat;
mod crash;
mod damage;
mod lock;

use super::{Loaded, PinStore, StorageSync, StoreError, StoredPin};
use crate::session::SessionKey;
use std::collections::BTreeMap;
use std::path::Path;

/// A clock at zero, so `last_seen` comes back exactly as stored.
fn epoch() -> u32 {
    0
}

fn open(dir: &Path) -> (PinStore, Loaded) {
    match PinStore::open_with_clock(dir, StorageSync::Write, epoch) {
        Ok(opened) => opened,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn guid(n: u32) -> SessionKey {
    SessionKey::new(&format!("{{00000000-0000-0000-0000-{n:012x}}}"))
}

/// The loaded pins by spelled-out key, for comparisons.
fn by_key(loaded: &Loaded) -> BTreeMap<String, (String, StoredPin)> {
    loaded
        .pins
        .iter()
        .map(|(key, owner, pin)| (key.to_string(), (owner.backend.to_string(), *pin)))
        .collect()
}

fn journal(dir: &Path) -> std::path::PathBuf {
    dir.join(super::files::JOURNAL)
}

#[tokio::test]
async fn pins_and_unpins_survive_a_reopen() {
    let dir = temp_dir();
    let (store, loaded) = open(dir.path());
    assert!(loaded.pins.is_empty());
    store
        .pin(&guid(1), "b1", None, "/uploads/", 100)
        .await
        .unwrap();
    store
        .pin(&guid(2), "b2", None, "/uploads/", 101)
        .await
        .unwrap();
    store
        .pin(&guid(3), "b1", None, "/uploads/", 102)
        .await
        .unwrap();
    store.unpin(&guid(2)).await.unwrap();
    store
        .pin(&guid(3), "b2", None, "/uploads/", 103)
        .await
        .unwrap();
    drop(store);

    let (_, loaded) = open(dir.path());
    let pins = by_key(&loaded);
    assert_eq!(pins.len(), 2);
    assert_eq!(
        pins[&guid(1).to_string()],
        ("b1".into(), StoredPin::new(100))
    );
    assert_eq!(
        pins[&guid(3).to_string()],
        ("b2".into(), StoredPin::new(103))
    );
    assert_eq!((loaded.records, loaded.truncated_bytes), (5, 0));
}

#[tokio::test]
async fn guid_and_text_keys_keep_their_exact_spelling() {
    let ids = [
        "{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d}",
        "{5E53C221-F2D6-4BF2-B994-1DC43CEACA8D}",
        "5e53c221-f2d6-4bf2-b994-1dc43ceaca8d",
        "5E53C221-F2D6-4BF2-B994-1DC43CEACA8D",
        "00000000-0000-0000-0000-000000000000",
        "{5e53c221-F2D6-4bf2-b994-1dc43ceaca8d}",
        "session-42",
        "ünïcödé/ßession",
        "",
    ];
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    for id in ids {
        store
            .pin(&SessionKey::new(id), "b1", None, "/uploads/", 1)
            .await
            .unwrap();
    }
    drop(store);

    let (_, loaded) = open(dir.path());
    assert_eq!(loaded.pins.len(), ids.len());
    for id in ids {
        let original = SessionKey::new(id);
        let found = loaded.pins.iter().find(|(key, ..)| *key == original);
        assert_eq!(found.map(|(key, ..)| key.to_string()), Some(id.to_owned()));
    }
}

#[tokio::test]
async fn a_restart_hands_back_the_journaled_clock_host_and_url() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store
        .pin(
            &guid(1),
            "b1",
            Some("bits.example:8080"),
            "/uploads/a.bin",
            100,
        )
        .await
        .unwrap();
    drop(store);

    let (_, loaded) = PinStore::open_with_clock(dir.path(), StorageSync::Write, || 5000).unwrap();
    let (_, owner, pin) = &loaded.pins[0];
    assert_eq!(&*owner.backend, "b1");
    assert_eq!(owner.host.as_deref(), Some("bits.example:8080"));
    assert_eq!(&*owner.path, "/uploads/a.bin");
    assert!(loaded.activity_journaled);
    assert_eq!(
        (pin.created, pin.last_seen, loaded.loaded_at),
        (100, 100, 5000)
    );
}

#[tokio::test]
async fn a_touch_record_replaces_the_journaled_activity() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store.pin(&guid(1), "b1", None, "/u/a", 100).await.unwrap();
    let active = StoredPin {
        created: 100,
        last_seen: 900,
        packets: 7,
        bytes: 4096,
    };
    store
        .touch(&guid(1), "b1", None, "/u/a", &active)
        .await
        .unwrap();
    drop(store);

    let (_, loaded) = PinStore::open_with_clock(dir.path(), StorageSync::Write, || 5000).unwrap();
    assert_eq!(loaded.pins.len(), 1);
    assert_eq!(loaded.pins[0].2, active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pins_from_many_tasks_all_land_in_fewer_writes_than_records() {
    let dir = temp_dir();
    let (store, _) = PinStore::open_with_clock(dir.path(), StorageSync::Fsync, epoch).unwrap();
    let tasks: Vec<_> = (0..64u32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    store
                        .pin(&guid(task * 1000 + i), "b1", None, "/uploads/", i)
                        .await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = store.stats();
    assert_eq!((stats.records_written, stats.pending), (3200, 0));
    // 64 writers waiting on fdatasync queue up behind each flush: group commit.
    assert!(stats.writes < 3200, "{stats:?}");
    assert!(stats.syncs <= stats.writes);
    drop(store);

    let (_, loaded) = open(dir.path());
    assert_eq!(loaded.pins.len(), 3200);
}

#[tokio::test]
async fn calls_are_journaled_in_call_order_even_when_awaited_later() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    let pin = store.pin(&guid(1), "b1", None, "/uploads/", 1);
    let unpin = store.unpin(&guid(1));
    let repin = store.pin(&guid(2), "b2", None, "/uploads/", 2);
    // Awaited in reverse: the journal order is still the call order.
    repin.await.unwrap();
    unpin.await.unwrap();
    pin.await.unwrap();
    drop(store);

    let (_, loaded) = open(dir.path());
    assert_eq!(
        by_key(&loaded).keys().collect::<Vec<_>>(),
        [&guid(2).to_string()]
    );
}

/// Polls `future` once, with a waker that does nothing.
fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut cx)
}

#[tokio::test]
async fn in_write_mode_a_pin_is_written_before_the_call_returns() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    let empty = std::fs::metadata(journal(dir.path())).unwrap().len();
    let mut written = store.pin(&guid(1), "b1", None, "/uploads/", 1);
    // Written by the calling task itself: nothing is left to wait for.
    assert!(matches!(
        poll_once(&mut written),
        std::task::Poll::Ready(Ok(()))
    ));
    assert!(std::fs::metadata(journal(dir.path())).unwrap().len() > empty);
    assert_eq!(store.stats().writes, 1);
}

#[tokio::test]
async fn a_pin_that_finds_the_writer_busy_is_written_by_the_writer_thread() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    let busy = store.shared.queue.hold_writer();
    let mut written = store.pin(&guid(1), "b1", None, "/uploads/", 1);
    assert!(poll_once(&mut written).is_pending());
    drop(busy);
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), written).await;
    assert!(matches!(waited, Ok(Ok(()))), "{waited:?}");
    drop(store);

    let (_, loaded) = open(dir.path());
    assert_eq!(loaded.pins.len(), 1);
}

#[tokio::test]
async fn an_unpin_rides_in_the_next_pins_write() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store
        .pin(&guid(1), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    let before = store.stats();
    let unpinned = store.unpin(&guid(1));
    // Time enough for a writer thread that wrote it at once (not LAZY_DELAY).
    std::thread::sleep(std::time::Duration::from_millis(20));
    store
        .pin(&guid(2), "b1", None, "/uploads/", 2)
        .await
        .unwrap();
    unpinned.await.unwrap();
    let after = store.stats();
    assert_eq!(after.records_written - before.records_written, 2);
    assert_eq!(after.writes - before.writes, 1, "{after:?}");
    drop(store);

    let (_, loaded) = open(dir.path());
    assert_eq!(
        by_key(&loaded).keys().collect::<Vec<_>>(),
        [&guid(2).to_string()]
    );
}

#[tokio::test]
async fn an_unpin_no_pin_follows_is_written_by_the_writer_thread_soon() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store
        .pin(&guid(1), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    let unpinned = store.unpin(&guid(1));
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), unpinned).await;
    assert!(matches!(waited, Ok(Ok(()))), "{waited:?}");
    assert_eq!(store.stats().records_written, 2);
    // And what it wrote unpins.
    let live = store.read_live().await.unwrap();
    assert!(live.0.is_empty(), "{:?}", live.0);
}

#[test]
fn a_flush_at_exit_gives_up_after_its_limit_when_the_writer_is_stuck() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    let stuck = store.shared.queue.hold_writer();
    let limit = std::time::Duration::from_millis(50);
    assert!(store.flush_blocking(limit).is_none());
    drop(stuck);
    assert!(matches!(
        store.flush_blocking(std::time::Duration::from_secs(10)),
        Some(Ok(()))
    ));
    assert!(store.stats().syncs >= 1);
}

#[tokio::test]
async fn flush_reaches_the_device_even_in_write_mode() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    store
        .pin(&guid(1), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    assert_eq!(store.stats().syncs, 0);
    store.flush().await.unwrap();
    assert_eq!(store.stats().syncs, 1);
}

#[tokio::test]
async fn an_id_longer_than_the_format_allows_is_refused_and_the_store_goes_on() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    let long = SessionKey::new(&"x".repeat(2000));
    let refused = store.pin(&long, "b1", None, "/uploads/", 1).await;
    assert!(matches!(
        refused,
        Err(StoreError::TooLong { len: 2000, .. })
    ));
    let refused = store
        .pin(&guid(1), &"b".repeat(1025), None, "/uploads/", 1)
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::TooLong { len: 1025, .. })
    ));
    store
        .pin(&guid(2), "b1", None, "/uploads/", 1)
        .await
        .unwrap();
    assert_eq!(store.stats().records_written, 1);
}

#[test]
fn the_data_directory_is_created_with_an_empty_journal() {
    let dir = temp_dir();
    let nested = dir.path().join("a/b");
    let (_, loaded) = open(&nested);
    assert!(loaded.pins.is_empty());
    let bytes = std::fs::read(journal(&nested)).unwrap();
    assert_eq!(bytes, super::format::header());
}

#[test]
fn the_store_and_its_futures_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    fn sendable<T: Send + 'static>() {}
    shareable::<PinStore>();
    sendable::<super::PendingWrite>();
}

/// Shared with the other test modules: a backend's owner record, under /uploads/.
fn backend(id: &str) -> super::PinOwner {
    super::PinOwner {
        backend: id.into(),
        host: None,
        path: "/uploads/".into(),
    }
}

/// Collects what a replay hands over, as the session table would hold it.
#[derive(Default)]
struct MapSink(BTreeMap<String, (String, StoredPin)>, Option<bool>);

impl super::PinSink for MapSink {
    fn journal_format(&mut self, activity_journaled: bool) {
        self.1 = Some(activity_journaled);
    }
    fn pin(&mut self, key: SessionKey, owner: &super::PinOwner, pin: StoredPin) {
        self.0
            .insert(key.to_string(), (owner.backend.to_string(), pin));
    }
    fn unpin(&mut self, key: &SessionKey) {
        self.0.remove(&key.to_string());
    }
    fn reply(&mut self, _key: &SessionKey, _path: &str) {}
}

#[tokio::test]
async fn replaying_into_a_sink_leaves_the_same_pins_as_loading_them() {
    let dir = temp_dir();
    let (store, _) = open(dir.path());
    for n in 0..50 {
        store
            .pin(&guid(n), "b1", None, "/u/", 100 + n)
            .await
            .unwrap();
    }
    for n in (0..50).step_by(3) {
        store.unpin(&guid(n)).await.unwrap();
    }
    for n in (0..50).step_by(5) {
        store
            .pin(&guid(n), "b2", Some("bits.example"), "/v/", 200 + n)
            .await
            .unwrap();
    }
    store
        .pin(&SessionKey::new("text-id"), "b2", None, "/v/", 300)
        .await
        .unwrap();
    drop(store);

    let (_, loaded) = open(dir.path());
    let expected = by_key(&loaded);
    drop(loaded);
    let mut sink = MapSink::default();
    let (_, streamed) =
        PinStore::open_into(dir.path(), StorageSync::Write, false, &mut sink).unwrap();
    assert!(streamed.pins.is_empty(), "nothing kept beside the sink");
    assert_eq!(streamed.records, 50 + 17 + 10 + 1);
    assert_eq!(sink.1, Some(true), "a version 2 journal carries activity");
    assert!(streamed.activity_journaled);
    let strip = |map: BTreeMap<String, (String, StoredPin)>| -> BTreeMap<_, _> {
        map.into_iter()
            .map(|(k, (b, p))| (k, (b, p.created, p.packets, p.bytes)))
            .collect()
    };
    assert_eq!(strip(sink.0), strip(expected));
}
