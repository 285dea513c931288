//! The `bitsgate` command line.

mod cli;

use std::process::ExitCode;

/// Pingora allocates and frees several buffers per request; a third of a proxied Ping's
/// instructions were in the system allocator (docs/benchmarks.md, profile section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    bitsgate::allocator::disable_huge_pages();
    cli::main()
}
