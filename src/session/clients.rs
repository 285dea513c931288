//! Which client address holds which pins, for `[sessions] max_pinned_per_client` and
//! the admin API's `client=` filter. Kept only while the limit is on: at ten million
//! pins the map costs about as much again as the pin table itself.

use super::SessionKey;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pins per client address.
#[derive(Default)]
pub struct ClientPins {
    /// The limit in force; 0: off, nothing is tracked.
    limit: AtomicU64,
    owners: DashMap<SessionKey, IpAddr>,
    counts: DashMap<IpAddr, u64>,
}

impl ClientPins {
    /// Applies `[sessions] max_pinned_per_client` (at start and on reload). Turning
    /// the limit off forgets what was tracked; turning it on counts new pins only.
    pub fn set_limit(&self, limit: u64) {
        if self.limit.swap(limit, Ordering::Relaxed) != 0 && limit == 0 {
            self.owners.clear();
            self.counts.clear();
        }
    }

    /// Whether pins are tracked by client.
    pub fn is_on(&self) -> bool {
        self.limit.load(Ordering::Relaxed) > 0
    }

    /// Whether `client` holds as many pins as it may.
    pub fn at_limit(&self, client: IpAddr) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit > 0 && self.counts.get(&client).is_some_and(|n| *n >= limit)
    }

    /// Records that `client` created the session `key`.
    pub fn add(&self, key: &SessionKey, client: IpAddr) {
        if !self.is_on() {
            return;
        }
        if let Some(previous) = self.owners.insert(key.clone(), client) {
            self.release(previous);
        }
        *self.counts.entry(client).or_insert(0) += 1;
    }

    /// Forgets the session `key` (it ended, by any path).
    pub fn remove(&self, key: &SessionKey) {
        // Every unpin comes here: with the limit off, one atomic load and nothing else.
        if !self.is_on() {
            return;
        }
        if let Some((_, client)) = self.owners.remove(key) {
            self.release(client);
        }
    }

    /// The client that created `key`, when tracked.
    pub fn client_of(&self, key: &SessionKey) -> Option<IpAddr> {
        self.owners.get(key).map(|c| *c)
    }

    /// Pins `client` holds now.
    #[cfg(test)]
    pub fn count(&self, client: IpAddr) -> u64 {
        self.counts.get(&client).map_or(0, |n| *n)
    }

    fn release(&self, client: IpAddr) {
        self.counts.remove_if_mut(&client, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn counts_pins_per_client_up_to_the_limit_and_frees_them_as_sessions_end() {
        let pins = ClientPins::default();
        pins.set_limit(2);
        let (a, b, c) = (
            SessionKey::new("a"),
            SessionKey::new("b"),
            SessionKey::new("c"),
        );
        pins.add(&a, ip(1));
        assert!(!pins.at_limit(ip(1)));
        pins.add(&b, ip(1));
        pins.add(&c, ip(2));
        assert!(pins.at_limit(ip(1)) && !pins.at_limit(ip(2)));
        assert_eq!(pins.client_of(&b), Some(ip(1)));
        pins.remove(&a);
        assert!(!pins.at_limit(ip(1)));
        pins.remove(&b);
        pins.remove(&b);
        assert_eq!((pins.count(ip(1)), pins.count(ip(2))), (0, 1));
    }

    #[test]
    fn nothing_is_tracked_while_the_limit_is_off() {
        let pins = ClientPins::default();
        pins.add(&SessionKey::new("a"), ip(1));
        assert_eq!(pins.count(ip(1)), 0);
        assert!(!pins.at_limit(ip(1)));
        pins.set_limit(1);
        pins.add(&SessionKey::new("a"), ip(1));
        assert!(pins.at_limit(ip(1)));
        pins.set_limit(0);
        assert_eq!(pins.count(ip(1)), 0);
    }
}
