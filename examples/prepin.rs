//! Fills a bitsgate data directory with pins, to measure bitsgate with a large session
//! table (the `bitsgate-1m` target of `benches/e2e/run.sh`).
//!
//! ```text
//! cargo run --release --example prepin -- --data-dir DIR --backend b1 --backend b2 \
//!     [--count 1000000] [--dir /upload/] [--append]
//! ```
//!
//! The pins are written through [`PinStore`], the store bitsgate itself uses, so the
//! journal is always in the current format and bitsgate restores all of them into its
//! table at start, before its listeners open. Session ids are random version-4 GUIDs
//! spelled `{xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx}` (braced, lower case, as IIS and the
//! reference server issue them); owners go round robin over the `--backend` ids, which
//! must be the `[[backends]] id`s of the configuration that will load the directory:
//! the journal stores backend ids, not addresses, and a pin whose id is not configured
//! is restored to a backend that is not in the farm.
//!
//! Every pin gets `created = last_seen = now` (what a Create-Session does), so none
//! expires before `[sessions] idle_timeout` (14 days by default) after bitsgate starts.
//!
//! Prints the number of pins written, the time it took and the journal's size.

use bitsgate::session::store::{PinStore, StorageSync};
use bitsgate::session::{unix_now, SessionKey};
use clap::Parser;
use rand::RngCore;
use std::path::PathBuf;
use std::time::Instant;

/// Records queued before waiting for the writer: bounds the memory of queued records
/// while keeping the writer's batches large.
const BATCH: u64 = 16_384;

#[derive(Parser, Debug)]
#[command(about = "Fill a bitsgate data directory with pins (a pin journal)")]
struct Args {
    /// The `[storage] data_dir` to fill.
    #[arg(long)]
    data_dir: PathBuf,
    /// How many pins to write.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// A backend id owning pins (repeat it; pins go round robin over them).
    #[arg(long = "backend", required = true)]
    backends: Vec<String>,
    /// The URL directory of the sessions (where bitsgate would send Cancel-Session).
    #[arg(long, default_value = "/upload/")]
    dir: String,
    /// Add to a journal that already holds pins (otherwise that is refused).
    #[arg(long)]
    append: bool,
    /// `fsync`: also flush every batch to the device (slower; `write` is bitsgate's
    /// default and the journal is flushed once at the end either way).
    #[arg(long, default_value = "write", value_parser = ["write", "fsync"])]
    sync: String,
}

/// A random version-4 GUID as a session id.
fn random_session_id(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let v = u128::from_be_bytes(bytes);
    format!(
        "{{{:08x}-{:04x}-{:04x}-{:04x}-{:012x}}}",
        v >> 96,
        (v >> 80) & 0xffff,
        (v >> 64) & 0xffff,
        (v >> 48) & 0xffff,
        v & 0xffff_ffff_ffff
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sync = match args.sync.as_str() {
        "fsync" => StorageSync::Fsync,
        _ => StorageSync::Write,
    };

    let opened = Instant::now();
    let (store, loaded) = PinStore::open(&args.data_dir, sync)?;
    if !loaded.pins.is_empty() && !args.append {
        anyhow::bail!(
            "{} already holds {} pins; pass --append to add to them",
            args.data_dir.display(),
            loaded.pins.len()
        );
    }
    let before = loaded.pins.len() as u64;
    drop(loaded);
    let open_s = opened.elapsed().as_secs_f64();

    let started = Instant::now();
    let now = unix_now();
    let mut rng = rand::thread_rng();
    let mut written = 0u64;
    while written < args.count {
        let n = BATCH.min(args.count - written);
        let mut batch = Vec::with_capacity(n as usize);
        for i in written..written + n {
            let backend = &args.backends[(i % args.backends.len() as u64) as usize];
            let key = SessionKey::new(&random_session_id(&mut rng));
            batch.push(store.pin(&key, backend, None, &args.dir, now));
        }
        for write in batch {
            write.await?;
        }
        written += n;
    }
    store.flush().await?;
    let write_s = started.elapsed().as_secs_f64();

    let stats = store.stats();
    println!(
        "prepin: {written} pins written to {} in {write_s:.2} s ({:.0} pins/s; open {open_s:.2} s), \
         journal {:.1} MiB, {} write(2) calls; backends {}; directory {}; {} pins before",
        args.data_dir.display(),
        written as f64 / write_s.max(1e-9),
        stats.journal_bytes as f64 / (1024.0 * 1024.0),
        stats.writes,
        args.backends.join(","),
        args.dir,
        before
    );
    Ok(())
}
