//! `SessionTable` on one thread: lookups (`touch`, what every session packet does),
//! pins and unpins in tables of 10^4 to 10^7 sessions, and the expiry sweep
//! (`take_idle`) over 10^6 pins.
//!
//! Each table is built once per size and reused by every benchmark of that size; it
//! stays at that size throughout (pins are undone, unpins redone, outside the timed
//! part). The 10^7 table takes about a gigabyte and a few seconds to build; set
//! `SESSION_TABLE_MAX_PINS` (e.g. `1000000`) to skip the larger sizes.
//!
//! Run with `cargo bench --bench session_table -- --warm-up-time 1 --measurement-time 3`.

use bitsgate::backend::BackendSlot;
use bitsgate::session::{SessionKey, SessionTable, UnixSecs, UrlId};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [u64; 4] = [10_000, 100_000, 1_000_000, 10_000_000];
const NOW: UnixSecs = 1_700_000_000;
const IDLE_SECS: u32 = 600;
/// Pins (or unpins) timed per round before the table is put back to its size.
const CHUNK: u64 = 1_000;

/// Session `i`'s key: a braced lower-case GUID, as IIS issues them. Built from the
/// 128 bits directly so that the timed loops do not format and parse strings.
struct Keys {
    template: SessionKey,
}

impl Keys {
    fn new() -> Self {
        Keys {
            template: SessionKey::new("{00000000-0000-4000-8000-000000000000}"),
        }
    }

    fn key(&self, i: u64) -> SessionKey {
        let SessionKey::Guid { style, .. } = self.template else {
            unreachable!("the template is a GUID")
        };
        // Scrambled high bits, `i` in the low bits: distinct, and spread like real ids.
        let value = (u128::from(splitmix(i)) << 64) | u128::from(i);
        SessionKey::Guid { value, style }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn slot(i: u64) -> BackendSlot {
    BackendSlot((i % 3) as u16)
}

fn build(keys: &Keys, n: u64, idle_every: Option<u64>) -> SessionTable {
    let table = SessionTable::new(u64::MAX);
    let started = Instant::now();
    for i in 0..n {
        let seen = match idle_every {
            Some(every) if i % every == 0 => NOW - IDLE_SECS - 1,
            _ => NOW,
        };
        table
            .pin(keys.key(i), slot(i), UrlId(0), seen)
            .expect("unbounded table");
    }
    eprintln!(
        "built a table of {n} pins in {:.2?} ({:.0} ns per pin while growing)",
        started.elapsed(),
        started.elapsed().as_nanos() as f64 / n as f64
    );
    table
}

fn max_pins() -> u64 {
    std::env::var("SESSION_TABLE_MAX_PINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

fn by_size(c: &mut Criterion) {
    let keys = Keys::new();
    let mut group = c.benchmark_group("session_table");
    group.throughput(Throughput::Elements(1));
    for n in SIZES.into_iter().filter(|&n| n <= max_pins()) {
        let table = build(&keys, n, None);

        // A packet of a pinned session: one lookup that also updates its counters.
        // Walks the ids with a large odd stride, so consecutive lookups hit unrelated
        // buckets as packets of many concurrent sessions do.
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("touch", n), |b| {
            b.iter(|| {
                i = (i + 0x9e37_79b9) % n;
                black_box(table.touch(&keys.key(i), slot(i), NOW, 3600))
            })
        });

        // A Create-Session's pin of a new id; the new pins are unpinned untimed.
        let mut fresh = n;
        group.bench_function(BenchmarkId::new("pin", n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let round = left.min(CHUNK);
                    let first = fresh;
                    let started = Instant::now();
                    for j in first..first + round {
                        black_box(table.pin(keys.key(j), slot(j), UrlId(0), NOW).is_ok());
                    }
                    timed += started.elapsed();
                    for j in first..first + round {
                        table.unpin(&keys.key(j));
                    }
                    fresh += round;
                    left -= round;
                }
                timed
            })
        });

        // A Close-Session's unpin of a pinned id; the ids are pinned back untimed.
        let mut next = 0u64;
        group.bench_function(BenchmarkId::new("unpin", n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let round = left.min(CHUNK).min(n);
                    let ids: Vec<u64> = (0..round).map(|k| (next + k) % n).collect();
                    let started = Instant::now();
                    for &j in &ids {
                        black_box(table.unpin(&keys.key(j)));
                    }
                    timed += started.elapsed();
                    for &j in &ids {
                        table
                            .pin(keys.key(j), slot(j), UrlId(0), NOW)
                            .expect("unbounded table");
                    }
                    next = (next + round) % n;
                    left -= round;
                }
                timed
            })
        });
        assert_eq!(table.len(), n, "the table kept its size");
    }
    group.finish();
}

fn sweep(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let keys = Keys::new();
    let mut group = c.benchmark_group("take_idle_1e6");
    group.sample_size(10).throughput(Throughput::Elements(N));

    let table = build(&keys, N, None);
    group.bench_function("none_idle", |b| {
        b.iter(|| {
            let idle = table.take_idle(NOW, IDLE_SECS);
            assert!(idle.is_empty());
            idle
        })
    });
    drop(table);

    // Every 100th pin is idle; the sweep removes those 10^4, which are pinned back
    // (idle again) before the next timed sweep.
    let table = build(&keys, N, Some(100));
    group.bench_function("one_percent_idle", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let idle = table.take_idle(NOW, IDLE_SECS);
                timed += started.elapsed();
                assert_eq!(idle.len() as u64, N / 100);
                for (key, pin) in idle {
                    table.restore(key, pin);
                }
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, by_size, sweep);
criterion_main!(benches);
