//! What durability costs a Create-Session: the latency of one `PinStore::pin` in `write`
//! and `fsync` mode, and the throughput of 64 concurrent pinners (group commit).
//!
//! The journal lives in a temp directory under `target/`, on the work tree's file
//! system (not tmpfs, where fsync would be free). Run with
//! `cargo bench --bench pin_store`; `docs/storage.md` records results.

use bitsgate::session::store::{PinStore, StorageSync};
use bitsgate::session::SessionKey;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PINNERS: u64 = 64;

/// A fresh, unique GUID key per pin, as Create-Sessions bring them.
fn next_key() -> SessionKey {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    SessionKey::new(&format!(
        "{{{:08x}-0000-4000-8000-{:012x}}}",
        n >> 48,
        n & 0xffff_ffff_ffff
    ))
}

fn data_dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pin-store-bench");
    std::fs::create_dir_all(&base).expect("bench base dir");
    tempfile::tempdir_in(base).expect("bench data dir")
}

fn modes() -> [(&'static str, StorageSync); 2] {
    [("write", StorageSync::Write), ("fsync", StorageSync::Fsync)]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One pin at a time: the added latency of a Create-Session with nobody else writing.
fn pin_latency(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("pin_latency");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for (name, sync) in modes() {
        let dir = data_dir();
        let (store, _) = PinStore::open(dir.path(), sync).expect("open store");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        store
                            .pin(&next_key(), "backend-1", None, "/uploads/", 1)
                            .await
                            .expect("pin");
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// 64 tasks pinning back to back: how many Create-Sessions per second the journal takes
/// when many arrive at once, and (time per iteration) the latency each then sees.
fn concurrent_pinners(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("pin_64_concurrent");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(PINNERS));
    for (name, sync) in modes() {
        let dir = data_dir();
        let (store, _) = PinStore::open(dir.path(), sync).expect("open store");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..PINNERS)
                        .map(|_| {
                            let store = store.clone();
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    store
                                        .pin(&next_key(), "backend-1", None, "/uploads/", 1)
                                        .await
                                        .expect("pin");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("pinner");
                    }
                    start.elapsed()
                })
            })
        });
        let stats = store.stats();
        eprintln!(
            "pin_64_concurrent/{name}: {} records in {} writes and {} syncs ({:.1} records per write)",
            stats.records_written,
            stats.writes,
            stats.syncs,
            stats.records_written as f64 / stats.writes.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, pin_latency, concurrent_pinners);
criterion_main!(benches);
