//! The default of `[listener] max_connections`, from the process's file descriptor
//! limit: running out of descriptors fails accepts, upstream connects and journal
//! writes alike, so client connections get a share that leaves room for the rest.

/// Descriptors kept for everything but client connections (listeners, the journal,
/// the access log, probes, the admin API).
const RESERVED: u64 = 256;

/// Client connections never default below this.
const FLOOR: u64 = 64;

/// `max_connections` for a soft descriptor limit `nofile`: each client connection
/// may hold two descriptors (its own and one to a backend).
pub fn for_fd_limit(nofile: u64) -> usize {
    let share = nofile.saturating_sub(RESERVED) / 2;
    usize::try_from(share.max(FLOOR)).unwrap_or(usize::MAX)
}

/// `max_connections` for this process's soft `RLIMIT_NOFILE`.
pub fn default_max_connections() -> usize {
    for_fd_limit(soft_fd_limit())
}

/// The soft descriptor limit; 1024 (the usual default) when it cannot be read, and
/// at most a million ("unlimited" is not a number of connections to accept).
#[allow(unsafe_code)]
fn soft_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok {
        return 1024;
    }
    #[allow(clippy::useless_conversion)] // rlim_t is not u64 everywhere
    let current = u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX);
    current.min(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_of_what_is_left_after_the_reserve() {
        assert_eq!(for_fd_limit(1024), 384);
        assert_eq!(for_fd_limit(65_536), 32_640);
        assert_eq!(for_fd_limit(100), 64);
    }

    #[test]
    fn the_default_follows_the_process_soft_limit() {
        // The soft limit as the kernel reports it, read another way.
        let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
        let soft: u64 = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .map(|v| v.parse().unwrap_or(u64::MAX))
            .expect("a Max open files line");
        assert_eq!(default_max_connections(), for_fd_limit(soft.min(1_000_000)));
    }
}
