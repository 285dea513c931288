//! Hands memory that is no longer used back to the operating system after a burst.
//!
//! Why: mimalloc, the binary's allocator, returns a freed page to its arena and
//! decommits it only after a delay, and only when some thread next allocates or
//! collects. A worker thread that goes quiet after thousands of client connections
//! closed never does, and their memory stayed resident (docs/benchmarks.md, "Memory
//! per waiting client"). A background thread collecting once a second purges what has
//! expired, program-wide; with nothing to purge it is a few atomic loads.
//!
//! And no transparent huge pages for the process: mimalloc asks for them on its
//! arenas, and the kernel's khugepaged then refills a purged 2 MiB range as soon as
//! one page of it is in use, so the memory purged after a burst came back 2 MiB at
//! a time every scan (10 s), and the baseline was 10 MiB higher. A proxy's working
//! set gains nothing measurable from huge pages.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::time::Duration;

/// How often expired frees are purged.
const PERIOD: Duration = Duration::from_secs(1);

/// The background service.
pub struct AllocatorTidy;

#[async_trait]
impl BackgroundService for AllocatorTidy {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(PERIOD) => collect(),
            }
        }
    }
}

/// Purges the allocator's expired frees (a no-op where mimalloc is not the global
/// allocator, as in tests, whose allocations it does not hold).
#[allow(unsafe_code)]
pub fn collect() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Turns transparent huge pages off for this process (Linux), before the allocator
/// has grown. Failure (an old kernel) only costs memory, so it is ignored.
#[allow(unsafe_code)]
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes no memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
