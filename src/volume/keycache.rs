//! The unwrapped data-key cache of a mount: an LRU bounded by entries and by
//! age, whose entries are zeroized on eviction, expiry, flush and drop.
//!
//! An entry remembers the exact header its key was unwrapped from, and a
//! lookup hits only for that same header: a backing file rewritten with
//! another file's ID in a header that does not authenticate must not find
//! that file's key here. So the cache saves the unwrap, never the check.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

use crate::crypto::header::FileHeader;
#[cfg(test)]
use crate::crypto::header::HEADER_LEN;
use crate::crypto::keys::{DataKey, FileId};

pub const DEFAULT_CAPACITY: usize = 4096;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Heap node of the LRU: the key itself is a handle into the key arena,
/// whose slot is zeroized when the entry is dropped.
struct Entry {
    key: DataKey,
    /// The authenticated header `key` came from (public bytes: the key is wrapped).
    header: Vec<u8>,
    inserted: Instant,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Planted: the evicted key's slot is leaked as it is, never zeroized.
        if crate::fault::planted("keycache-no-zeroize") {
            std::mem::forget(std::mem::replace(&mut self.key, DataKey::zeroed()));
        }
    }
}

pub struct KeyCache {
    inner: Mutex<LruCache<FileId, Entry>>,
    max_age: Duration,
    #[cfg(test)]
    clock_offset: Mutex<Duration>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("len", &self.inner.lock().len())
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl KeyCache {
    pub fn new(capacity: usize, max_age: Duration) -> KeyCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        KeyCache {
            inner: Mutex::new(LruCache::new(cap)),
            max_age,
            #[cfg(test)]
            clock_offset: Mutex::new(Duration::ZERO),
        }
    }

    fn now(&self) -> Instant {
        #[cfg(test)]
        {
            Instant::now() + *self.clock_offset.lock()
        }
        #[cfg(not(test))]
        {
            Instant::now()
        }
    }

    /// The data key `h` wraps, if it was unwrapped from these very header
    /// bytes before. A header that differs in any byte (another nonce, a
    /// forged tag) misses and must be authenticated by `FileHeader::open`.
    pub fn get(&self, h: &FileHeader) -> Option<DataKey> {
        let id = &h.file_id;
        let now = self.now();
        let mut c = self.inner.lock();
        let expired = match c.get(id) {
            None => return None,
            Some(e) => now.duration_since(e.inserted) > self.max_age,
        };
        if expired {
            c.pop(id);
            return None;
        }
        c.get(id)
            .filter(|e| e.header == h.as_bytes())
            .map(|e| e.key.clone())
    }

    /// Cache `key`, which the caller unwrapped from (or sealed into) `h`.
    pub fn insert(&self, h: &FileHeader, key: &DataKey) {
        let e = Entry {
            key: key.clone(),
            header: h.as_bytes().to_vec(),
            inserted: self.now(),
        };
        self.inner.lock().put(h.file_id, e);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop (and zeroize) every entry: at unmount.
    pub fn flush(&self) {
        self.inner.lock().clear();
    }
}

impl Drop for KeyCache {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::KEY_LEN;
    use crate::crypto::secmem::copies_in_arena;

    fn id(n: u8) -> FileHeader {
        let mut raw = [0u8; HEADER_LEN];
        raw[..5].copy_from_slice(b"EFSH\x01");
        raw[8..24].copy_from_slice(&[n; 16]);
        FileHeader::parse(&raw).unwrap()
    }

    /// Random key bytes, kept here outside the key arena to look for, and
    /// the one key (one arena copy) made of them.
    fn key() -> ([u8; KEY_LEN], DataKey) {
        let bytes: [u8; KEY_LEN] = crate::crypto::random_array();
        (bytes, DataKey::from_bytes(bytes))
    }

    /// Every copy of a key is in the arena (`DataKey` is a handle; `clone`,
    /// `from_bytes` and the cache's entries each take a slot), so counting
    /// the key's bytes there counts every copy, freed slots included.
    #[test]
    fn every_copy_of_a_cached_key_is_counted() {
        let c = KeyCache::new(10, Duration::from_secs(60));
        let (bytes, k) = key();
        assert_eq!(copies_in_arena(&bytes), 1, "from_bytes makes one copy");
        c.insert(&id(1), &k);
        assert_eq!(copies_in_arena(&bytes), 2, "the entry's copy");
        drop(k);
        assert_eq!(copies_in_arena(&bytes), 1, "the caller's copy is gone");
        let got = c.get(&id(1)).unwrap();
        assert_eq!(got.expose(), &bytes);
        assert_eq!(copies_in_arena(&bytes), 2, "get hands out a copy");
        drop(got);
        assert_eq!(copies_in_arena(&bytes), 1, "and takes it back on drop");
    }

    #[test]
    fn eviction_leaves_no_copy() {
        let c = KeyCache::new(2, Duration::from_secs(60));
        let (b1, k1) = key();
        let (b2, k2) = key();
        let (b3, k3) = key();
        c.insert(&id(1), &k1);
        c.insert(&id(2), &k2);
        drop((k1, k2));
        assert_eq!(c.get(&id(1)).unwrap().expose(), &b1); // 1 is now most recent
        c.insert(&id(3), &k3); // evicts 2
        drop(k3);
        assert!(c.get(&id(2)).is_none());
        assert!(c.get(&id(1)).is_some());
        assert!(c.get(&id(3)).is_some());
        assert_eq!(c.len(), 2);
        assert_eq!(copies_in_arena(&b2), 0, "the evicted key is zeroized");
        assert_eq!(copies_in_arena(&b1), 1);
        assert_eq!(copies_in_arena(&b3), 1);
    }

    #[test]
    fn expiry_leaves_no_copy() {
        let c = KeyCache::new(10, Duration::from_secs(60));
        let (bytes, k) = key();
        c.insert(&id(1), &k);
        drop(k);
        assert!(c.get(&id(1)).is_some());
        *c.clock_offset.lock() = Duration::from_secs(61);
        assert!(c.get(&id(1)).is_none());
        assert_eq!(c.len(), 0);
        assert_eq!(copies_in_arena(&bytes), 0, "the expired key is zeroized");
    }

    #[test]
    fn replacing_an_entry_leaves_no_copy_of_the_old_key() {
        let c = KeyCache::new(10, Duration::from_secs(60));
        let (old, k1) = key();
        let (new, k2) = key();
        c.insert(&id(1), &k1);
        c.insert(&id(1), &k2);
        drop((k1, k2));
        assert_eq!(copies_in_arena(&old), 0);
        assert_eq!(copies_in_arena(&new), 1);
    }

    #[test]
    fn flush_and_drop_leave_no_copy() {
        let c = KeyCache::new(10, Duration::from_secs(60));
        let keys: Vec<_> = (0..3)
            .map(|i| {
                let (bytes, k) = key();
                c.insert(&id(i), &k);
                bytes
            })
            .collect();
        assert!(keys.iter().all(|b| copies_in_arena(b) == 1));
        c.flush();
        assert!(c.is_empty());
        for b in &keys {
            assert_eq!(copies_in_arena(b), 0, "flush zeroizes");
        }
        let (bytes, k) = key();
        c.insert(&id(9), &k);
        drop(k);
        assert_eq!(copies_in_arena(&bytes), 1);
        drop(c);
        assert_eq!(copies_in_arena(&bytes), 0, "dropping the cache zeroizes");
    }

    /// At unmount (the volume and its open files dropped) no copy of the
    /// volume key or of a file's data key is left in the arena.
    #[test]
    fn unmount_leaves_no_copy_of_volume_or_data_keys() {
        use std::os::fd::AsFd;
        let tv = crate::volume::testutil::volume(crate::volume::InitOptions::default());
        let (f, c) = crate::volume::testutil::new_file(&tv, "f");
        c.write(&tv.vol, f.as_fd(), 0, b"some content").unwrap();
        let (vkey, dkey) =
            crate::volume::content::FileContent::keys_for_memory_scan_test(&tv.vol, f.as_fd())
                .unwrap();
        let (vk, dk) = (*vkey.expose(), *dkey.expose());
        drop((vkey, dkey));
        // The cache's entry and the open file's state.
        assert_eq!(copies_in_arena(&dk), 2);
        assert!(copies_in_arena(&vk) >= 1);
        drop(c);
        drop(tv);
        assert_eq!(copies_in_arena(&dk), 0, "a data key outlived the unmount");
        assert_eq!(
            copies_in_arena(&vk),
            0,
            "the volume key outlived the unmount"
        );
    }

    #[test]
    fn another_header_with_the_same_file_id_misses() {
        let c = KeyCache::new(10, Duration::from_secs(60));
        let k = DataKey::random();
        c.insert(&id(1), &k);
        for i in 24..HEADER_LEN {
            let mut raw = id(1).as_bytes().to_vec();
            raw[i] ^= 1;
            let forged = FileHeader::parse(&raw).unwrap();
            assert_eq!(forged.file_id, id(1).file_id);
            assert!(c.get(&forged).is_none(), "byte {i}");
        }
        assert_eq!(c.get(&id(1)).unwrap().expose(), k.expose());
    }
}
