//! The Host and URL of each session, for the Cancel-Session bitsgate sends itself.
//!
//! A BITS server knows a session under the URL it was created at, and an IIS site bound
//! to a host name answers only requests with its own `Host`, so a cancel must carry
//! both. Hosts are few: each is interned once for the life of the process. URLs are
//! nearly one per session (the file name is part of them), so they cannot be shared;
//! a pin holds a 4-byte [`UrlId`] into a slab instead of an 8-byte pointer (which would
//! grow every table entry), and a sweep frees the entries no pin uses any more.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A session's URL in the [`UrlRegistry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UrlId(pub u32);

/// A session's URL, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUrl {
    /// The `Host` the client sent with its Create-Session, if one was kept.
    pub host: Option<Arc<str>>,
    /// The request path of the Create-Session.
    pub path: String,
}

/// Interned hosts and the URLs of live sessions.
#[derive(Debug)]
pub struct UrlRegistry {
    inner: RwLock<Urls>,
}

#[derive(Debug)]
struct Urls {
    hosts: Vec<Arc<str>>,
    host_ids: HashMap<Arc<str>, u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Bumped by each collection; entries remember the one they were interned in.
    epoch: u32,
}

#[derive(Debug)]
struct Entry {
    path: Box<str>,
    host: u32,
    epoch: u32,
}

const NO_HOST: u32 = u32::MAX;

impl UrlRegistry {
    /// Longest path kept (the journal's field limit); a longer one is kept as its
    /// directory, or as `/` when even that is longer.
    pub const MAX_PATH_LEN: usize = 1024;
    /// Longest `Host` kept (a DNS name and a port); a longer one is not kept and the
    /// cancel names the backend's address instead.
    pub const MAX_HOST_LEN: usize = 262;
    /// Most distinct hosts remembered. Clients choose the `Host`, so it is bounded;
    /// beyond it new hosts are not kept.
    pub const MAX_HOSTS: usize = 4096;

    /// The directory of a request path: everything up to and including the last '/'.
    pub fn dir_of(path: &str) -> &str {
        match path.rfind('/') {
            Some(i) => &path[..=i],
            None => "/",
        }
    }

    /// Records the URL of a new session. `host` is the `Host` its client used.
    pub fn intern(&self, host: Option<&str>, path: &str) -> UrlId {
        let path = Self::bounded_path(path);
        let mut urls = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let host = host.map_or(NO_HOST, |host| urls.host_id(host));
        let entry = Entry {
            path: path.into(),
            host,
            epoch: urls.epoch,
        };
        match urls.free.pop() {
            Some(id) => {
                urls.entries[id as usize] = entry;
                UrlId(id)
            }
            None => {
                let Ok(id) = u32::try_from(urls.entries.len()) else {
                    // Four billion live sessions: far past any max_pinned.
                    return UrlId(0);
                };
                urls.entries.push(entry);
                UrlId(id)
            }
        }
    }

    /// The URL of a session (`/` without a host for an unknown id).
    pub fn get(&self, id: UrlId) -> SessionUrl {
        let urls = self.read();
        match urls.entries.get(id.0 as usize) {
            Some(entry) => SessionUrl {
                host: urls.hosts.get(entry.host as usize).cloned(),
                path: entry.path.to_string(),
            },
            None => SessionUrl {
                host: None,
                path: "/".to_owned(),
            },
        }
    }

    /// Calls `f` with the Host and path of a session's URL, borrowed: for a scan of
    /// every pin (the journal compaction) that must not allocate per pin.
    pub fn with<R>(&self, id: UrlId, f: impl FnOnce(Option<&str>, &str) -> R) -> R {
        let urls = self.read();
        match urls.entries.get(id.0 as usize) {
            Some(entry) => f(
                urls.hosts.get(entry.host as usize).map(|h| &**h),
                &entry.path,
            ),
            None => f(None, "/"),
        }
    }

    /// Starts a collection: call before scanning the table for the ids in use, and pass
    /// the result to [`UrlRegistry::collect`].
    pub fn begin_collection(&self) -> u32 {
        let mut urls = self.inner.write().unwrap_or_else(|e| e.into_inner());
        urls.epoch = urls.epoch.wrapping_add(1);
        urls.epoch
    }

    /// A set of ids, sized for every id handed out so far.
    pub fn id_set(&self) -> Vec<u64> {
        vec![0; self.read().entries.len().div_ceil(64)]
    }

    /// Marks `id` in a set from [`UrlRegistry::id_set`].
    pub fn mark(set: &mut [u64], id: UrlId) {
        if let Some(word) = set.get_mut(id.0 as usize / 64) {
            *word |= 1 << (id.0 % 64);
        }
    }

    /// Frees the entries not in `in_use` that were interned before the previous
    /// collection began. An entry interned since then may belong to a pin that was
    /// being added while the table was scanned; it waits for the next collection.
    /// Returns how many were freed.
    pub fn collect(&self, started: u32, in_use: &[u64]) -> usize {
        let mut urls = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let urls = &mut *urls;
        let mut freed = 0;
        // Entry 0 is the fallback and never freed.
        for (index, entry) in urls.entries.iter_mut().enumerate().skip(1) {
            let marked = in_use
                .get(index / 64)
                .is_some_and(|word| word & (1 << (index % 64)) != 0);
            let old = started.wrapping_sub(entry.epoch) >= 2;
            if marked || !old || entry.host == FREED {
                continue;
            }
            entry.path = Box::default();
            entry.host = FREED;
            urls.free.push(index as u32);
            freed += 1;
        }
        freed
    }

    /// URLs held (live or waiting for a collection), the fallback included.
    pub fn len(&self) -> usize {
        let urls = self.read();
        urls.entries.len() - urls.free.len()
    }

    /// Whether only the fallback is held.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    fn bounded_path(path: &str) -> &str {
        if path.len() <= Self::MAX_PATH_LEN {
            path
        } else {
            let dir = Self::dir_of(path);
            if dir.len() <= Self::MAX_PATH_LEN {
                dir
            } else {
                "/"
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Urls> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks a freed entry (its host slot is otherwise an index or [`NO_HOST`]).
const FREED: u32 = u32::MAX - 1;

impl Urls {
    fn host_id(&mut self, host: &str) -> u32 {
        if host.len() > UrlRegistry::MAX_HOST_LEN {
            return NO_HOST;
        }
        if let Some(&id) = self.host_ids.get(host) {
            return id;
        }
        if self.hosts.len() >= UrlRegistry::MAX_HOSTS {
            return NO_HOST;
        }
        let id = self.hosts.len() as u32;
        let host: Arc<str> = host.into();
        self.hosts.push(host.clone());
        self.host_ids.insert(host, id);
        id
    }
}

impl Default for UrlRegistry {
    fn default() -> Self {
        // Id 0 is the root without a host, the fallback for an unknown id.
        UrlRegistry {
            inner: RwLock::new(Urls {
                hosts: Vec::new(),
                host_ids: HashMap::new(),
                entries: vec![Entry {
                    path: "/".into(),
                    host: NO_HOST,
                    epoch: 0,
                }],
                free: Vec::new(),
                epoch: 0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_of_a_path_keeps_its_trailing_slash() {
        assert_eq!(UrlRegistry::dir_of("/uploads/a.bin"), "/uploads/");
        assert_eq!(UrlRegistry::dir_of("/a.bin"), "/");
        assert_eq!(UrlRegistry::dir_of("a.bin"), "/");
        assert_eq!(UrlRegistry::dir_of("/x/y/"), "/x/y/");
    }

    #[test]
    fn a_session_url_keeps_its_host_and_full_path() {
        let urls = UrlRegistry::default();
        let a = urls.intern(Some("bits.example:8080"), "/uploads/a.bin");
        let b = urls.intern(Some("bits.example:8080"), "/uploads/b.bin");
        let c = urls.intern(None, "/c.bin");
        assert_ne!(a, b);
        let got = urls.get(a);
        assert_eq!(got.host.as_deref(), Some("bits.example:8080"));
        assert_eq!(got.path, "/uploads/a.bin");
        assert!(Arc::ptr_eq(&got.host.unwrap(), &urls.get(b).host.unwrap()));
        assert_eq!(urls.get(c).host, None);
        assert_eq!(urls.get(UrlId(999)).path, "/");
    }

    #[test]
    fn overlong_paths_and_hosts_are_bounded() {
        let urls = UrlRegistry::default();
        let long_name = format!("/up/{}", "x".repeat(2000));
        let id = urls.intern(Some(&"h".repeat(300)), &long_name);
        assert_eq!(
            urls.get(id),
            SessionUrl {
                host: None,
                path: "/up/".into()
            }
        );
    }

    #[test]
    fn a_collection_frees_only_unused_urls_older_than_the_previous_collection() {
        let urls = UrlRegistry::default();
        let kept = urls.intern(Some("h"), "/kept.bin");
        let dropped = urls.intern(Some("h"), "/dropped.bin");
        let mut in_use = urls.id_set();
        UrlRegistry::mark(&mut in_use, kept);
        // Interned in the epoch just before this collection: maybe a pin on its way.
        let started = urls.begin_collection();
        assert_eq!(urls.collect(started, &in_use), 0);
        let started = urls.begin_collection();
        assert_eq!(urls.collect(started, &in_use), 1);
        assert_eq!(urls.get(kept).path, "/kept.bin");
        assert_eq!(urls.len(), 2);
        // The freed slot is reused.
        let reused = urls.intern(None, "/new.bin");
        assert_eq!(reused, dropped);
        assert_eq!(urls.get(reused).path, "/new.bin");
    }
}
