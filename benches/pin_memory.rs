//! Memory per pin: how much resident memory a `SessionTable` takes per pinned session.
//!
//! Each table size is measured in a fresh child process (this same executable, re-run
//! with `--child N`), so freed memory from a smaller run never inflates a larger one.
//! The child reads `VmRSS` from `/proc/self/status`, pins N sessions with braced
//! lower-case GUID ids (the spelling IIS issues), and reads it again. Key strings are
//! parsed into compact keys, so nothing but the table itself grows.
//!
//! Run with `cargo bench --bench pin_memory` (all sizes: 10^4 to 10^7) or
//! `cargo bench --bench pin_memory -- 1000000` for chosen sizes.

use bitsgate::backend::BackendSlot;
use bitsgate::session::{Pin, SessionKey, SessionTable, UrlId};
use std::fmt::Write as _;
use std::process::Command;

const DEFAULT_SIZES: [usize; 4] = [10_000, 100_000, 1_000_000, 10_000_000];
/// The target, at 10^6 pins.
const TARGET_BYTES_PER_PIN: f64 = 128.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let n = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--child needs a pin count");
        child(n);
        return;
    }
    // `cargo bench` passes `--bench`; any number given is a size to measure.
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        DEFAULT_SIZES.to_vec()
    } else {
        sizes
    };
    parent(&sizes);
}

fn parent(sizes: &[usize]) {
    let shards = default_shards();
    println!(
        "size_of: SessionKey {} B, Pin {} B, (SessionKey, Pin) {} B; table entry {} B + 1 control byte; {} shards",
        size_of::<SessionKey>(),
        size_of::<Pin>(),
        size_of::<(SessionKey, Pin)>(),
        SessionTable::ENTRY_BYTES,
        shards,
    );
    println!(
        "| pins | RSS before (KiB) | RSS after (KiB) | growth B/pin | after malloc_trim B/pin | peak RSS (KiB) | predicted B/pin | bucket load |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let exe = std::env::current_exe().expect("own path");
    for &n in sizes {
        let out = Command::new(&exe)
            .arg("--child")
            .arg(n.to_string())
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "child for {n} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).expect("utf-8");
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(|f| f.parse().expect("child field"))
            .collect();
        let [before, after, trimmed, peak] = fields[..] else {
            panic!("unexpected child output {line:?}")
        };
        let per_pin = |kib: u64| (kib.saturating_sub(before) * 1024) as f64 / n as f64;
        let (predicted, load) = predicted(n, shards, SessionTable::ENTRY_BYTES);
        println!(
            "| {n} | {before} | {after} | {:.1} | {:.1} | {peak} | {predicted:.1} | {:.2} |",
            per_pin(after),
            per_pin(trimmed),
            load
        );
        if n == 1_000_000 {
            let verdict = if per_pin(after) <= TARGET_BYTES_PER_PIN {
                "met"
            } else {
                "missed"
            };
            println!(
                "target <= {TARGET_BYTES_PER_PIN} B/pin at 10^6 pins: {verdict} ({:.1} B/pin)",
                per_pin(after)
            );
        }
    }
}

/// Pins `n` sessions and prints RSS before, after, after returning free heap memory to
/// the kernel, and the peak, all in KiB.
fn child(n: usize) {
    let mut id = String::with_capacity(40);
    let before = status_kib("VmRSS");
    let table = SessionTable::new(u64::MAX);
    let now = 1_700_000_000;
    for i in 0..n as u64 {
        guid_id(&mut id, i);
        let key = SessionKey::new(&id);
        debug_assert!(matches!(key, SessionKey::Guid { .. }));
        table
            .pin(key, BackendSlot((i % 3) as u16), UrlId(0), now)
            .expect("unbounded table");
    }
    assert_eq!(table.len(), n as u64);
    let after = status_kib("VmRSS");
    // The table's old halves, freed as it doubled, may still sit in the allocator;
    // trimming shows what the live table alone holds.
    trim_heap();
    let trimmed = status_kib("VmRSS");
    let peak = status_kib("VmHWM");
    println!("{before} {after} {trimmed} {peak}");
    // Keep the table alive until every reading is taken.
    drop(table);
}

/// A braced lower-case version-4 GUID, distinct for every `i`.
fn guid_id(out: &mut String, i: u64) {
    let hi = splitmix(i);
    let lo = splitmix(i ^ 0xa5a5_a5a5_a5a5_a5a5);
    out.clear();
    write!(
        out,
        "{{{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}}}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xfff,
        0x8000 | (lo >> 48) & 0x3fff,
        // The low 48 bits carry `i` itself, so ids never collide.
        i & 0xffff_ffff_ffff
    )
    .expect("write to string");
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim only returns free pages to the kernel.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// DashMap's default: four shards per CPU, rounded up to a power of two.
fn default_shards() -> usize {
    (std::thread::available_parallelism().map_or(1, usize::from) * 4).next_power_of_two()
}

/// Bytes per pin if every shard holds an equal share and each hashbrown table has
/// grown to the smallest power of two of buckets that keeps it at most 7/8 full; and
/// the resulting share of buckets in use.
fn predicted(n: usize, shards: usize, entry_bytes: usize) -> (f64, f64) {
    let per_shard = n.div_ceil(shards);
    let buckets = (per_shard * 8 / 7).next_power_of_two().max(4);
    // One control byte per bucket, plus one trailing group of 16 control bytes.
    let bytes = shards * (buckets * (entry_bytes + 1) + 16);
    (bytes as f64 / n as f64, per_shard as f64 / buckets as f64)
}
