//! A log line that repeats at most once per interval, for conditions that hold for
//! many requests in a row (a full table, a refused client): the first one is logged
//! at once, the rest are counted by metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lets one caller through per `every_secs` seconds.
pub struct LogGate {
    every_secs: u64,
    /// Unix second of the last line, plus one so that 0 means "never".
    last: AtomicU64,
}

impl LogGate {
    /// A gate that opens at most once every `every_secs` seconds.
    pub const fn new(every_secs: u64) -> Self {
        LogGate {
            every_secs,
            last: AtomicU64::new(0),
        }
    }

    /// Whether to log now, at `now` (Unix seconds). Exactly one of several threads
    /// asking in the same interval gets `true`.
    pub fn allow(&self, now: u64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_add(1) < last.saturating_add(self.every_secs) {
            return false;
        }
        self.last
            .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::LogGate;

    #[test]
    fn opens_once_per_interval() {
        let gate = LogGate::new(60);
        assert!(gate.allow(1000));
        assert!(!gate.allow(1000));
        assert!(!gate.allow(1059));
        assert!(gate.allow(1060));
        assert!(!gate.allow(1061));
    }

    #[test]
    fn one_thread_of_many_gets_through() {
        let gate = LogGate::new(60);
        let passed = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| gate.allow(5))).collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok())
                .filter(|passed| *passed)
                .count()
        });
        assert_eq!(passed, 1);
    }
}
