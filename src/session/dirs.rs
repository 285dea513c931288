//! The URL directory of each session, interned.
//!
//! bitsgate sends Cancel-Session itself (on expiry, on an admin delete), and a BITS
//! server only knows a session under the virtual directory it was created in. Uploads
//! go to few directories, so a pin stores a 4-byte index instead of the URL.

use std::collections::HashMap;
use std::sync::RwLock;

/// An interned URL directory (`/uploads/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DirId(pub u32);

/// Directory strings, interned for the life of the process.
#[derive(Debug)]
pub struct DirRegistry {
    inner: RwLock<Dirs>,
}

#[derive(Debug)]
struct Dirs {
    by_name: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl DirRegistry {
    /// Most distinct directories remembered; beyond it, new ones share the root.
    pub const MAX_DIRS: usize = 65_536;
    /// Longest directory remembered; a longer one is recorded as the root.
    pub const MAX_DIR_LEN: usize = 1024;

    /// The directory of a request path: everything up to and including the last '/'.
    pub fn dir_of(path: &str) -> &str {
        match path.rfind('/') {
            Some(i) => &path[..=i],
            None => "/",
        }
    }

    /// The id of the directory of `path`, interning it on first sight.
    pub fn intern_path(&self, path: &str) -> DirId {
        let dir = Self::dir_of(path);
        if dir.len() > Self::MAX_DIR_LEN {
            return DirId(0);
        }
        if let Some(&id) = self.read().by_name.get(dir) {
            return DirId(id);
        }
        let mut dirs = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = dirs.by_name.get(dir) {
            return DirId(id);
        }
        if dirs.names.len() >= Self::MAX_DIRS {
            return DirId(0);
        }
        let id = dirs.names.len() as u32;
        dirs.names.push(dir.into());
        dirs.by_name.insert(dir.into(), id);
        DirId(id)
    }

    /// The directory of an id (`/` for an unknown one).
    pub fn name(&self, id: DirId) -> String {
        self.read()
            .names
            .get(id.0 as usize)
            .map_or_else(|| "/".to_owned(), |name| name.to_string())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Dirs> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for DirRegistry {
    fn default() -> Self {
        // Id 0 is the root, the fallback when the registry is full.
        DirRegistry {
            inner: RwLock::new(Dirs {
                by_name: HashMap::from([("/".into(), 0)]),
                names: vec!["/".into()],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_of_a_path_keeps_its_trailing_slash() {
        assert_eq!(DirRegistry::dir_of("/uploads/a.bin"), "/uploads/");
        assert_eq!(DirRegistry::dir_of("/a.bin"), "/");
        assert_eq!(DirRegistry::dir_of("a.bin"), "/");
        assert_eq!(DirRegistry::dir_of("/x/y/"), "/x/y/");
    }

    #[test]
    fn files_of_one_directory_share_an_id() {
        let dirs = DirRegistry::default();
        let a = dirs.intern_path("/uploads/a.bin");
        let b = dirs.intern_path("/uploads/b.bin");
        let c = dirs.intern_path("/other/c.bin");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(dirs.name(a), "/uploads/");
        assert_eq!(dirs.name(DirId(0)), "/");
        assert_eq!(dirs.name(DirId(999)), "/");
    }
}
