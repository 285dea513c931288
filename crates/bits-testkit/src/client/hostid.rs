//! The `BITS-Host-Id` fallback timer (spec §9): it starts at the first failed
//! connection to the Host-Id server, any successful exchange resets it, and when it
//! expires the client returns to the URL's own host. Time is passed in, never read.

use std::time::{Duration, Instant};

/// What to do after a failed connection to the Host-Id server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnConnectFailure {
    /// Keep trying the Host-Id server until this instant.
    RetryUntil(Instant),
    /// The timeout has passed: go back to the original URL.
    FallBack,
    /// No `BITS-Host-Id-Fallback-Timeout`: never fall back; ordinary retry rules apply.
    NoFallback,
}

/// Fallback state of a session that switched to its Host-Id server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FallbackTimer {
    timeout: Option<Duration>,
    first_failure: Option<Instant>,
}

impl FallbackTimer {
    /// `timeout_s`: the Ack's `BITS-Host-Id-Fallback-Timeout`, if any.
    pub fn new(timeout_s: Option<u64>) -> Self {
        FallbackTimer {
            timeout: timeout_s.map(Duration::from_secs),
            first_failure: None,
        }
    }

    /// A response came back from the Host-Id server.
    pub fn on_success(&mut self) {
        self.first_failure = None;
    }

    /// A connection to the Host-Id server failed at `now`.
    pub fn on_connect_failure(&mut self, now: Instant) -> OnConnectFailure {
        let Some(timeout) = self.timeout else {
            return OnConnectFailure::NoFallback;
        };
        let since = *self.first_failure.get_or_insert(now);
        let deadline = since + timeout;
        if now >= deadline {
            OnConnectFailure::FallBack
        } else {
            OnConnectFailure::RetryUntil(deadline)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_once_the_timeout_has_passed_since_the_first_failure() {
        let t0 = Instant::now();
        let mut timer = FallbackTimer::new(Some(10));
        let deadline = t0 + Duration::from_secs(10);
        assert_eq!(
            timer.on_connect_failure(t0),
            OnConnectFailure::RetryUntil(deadline)
        );
        let t9 = t0 + Duration::from_secs(9);
        assert_eq!(
            timer.on_connect_failure(t9),
            OnConnectFailure::RetryUntil(deadline)
        );
        assert_eq!(
            timer.on_connect_failure(deadline),
            OnConnectFailure::FallBack
        );
    }

    #[test]
    fn a_success_restarts_the_timer() {
        let t0 = Instant::now();
        let mut timer = FallbackTimer::new(Some(10));
        timer.on_connect_failure(t0);
        timer.on_success();
        let t15 = t0 + Duration::from_secs(15);
        assert_eq!(
            timer.on_connect_failure(t15),
            OnConnectFailure::RetryUntil(t15 + Duration::from_secs(10))
        );
    }

    #[test]
    fn no_timeout_header_means_never_fall_back() {
        let mut timer = FallbackTimer::new(None);
        let later = Instant::now() + Duration::from_secs(1_000_000);
        assert_eq!(
            timer.on_connect_failure(later),
            OnConnectFailure::NoFallback
        );
    }

    #[test]
    fn a_zero_timeout_falls_back_at_the_first_failure() {
        let mut timer = FallbackTimer::new(Some(0));
        assert_eq!(
            timer.on_connect_failure(Instant::now()),
            OnConnectFailure::FallBack
        );
    }
}
