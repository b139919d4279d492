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

use crate::crypto::header::{FileHeader, HEADER_LEN};
use crate::crypto::keys::{DataKey, FileId};

pub const DEFAULT_CAPACITY: usize = 4096;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Heap node of the LRU: the key itself is a handle into the key arena,
/// whose slot is zeroized when the entry is dropped.
struct Entry {
    key: DataKey,
    /// The authenticated header `key` came from (public bytes: the key is wrapped).
    header: [u8; HEADER_LEN],
    inserted: Instant,
}

#[cfg(test)]
impl Drop for Entry {
    fn drop(&mut self) {
        tests::observe_dropped();
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
            .filter(|e| e.header == *h.as_bytes())
            .map(|e| e.key.clone())
    }

    /// Cache `key`, which the caller unwrapped from (or sealed into) `h`.
    pub fn insert(&self, h: &FileHeader, key: &DataKey) {
        let e = Entry {
            key: key.clone(),
            header: *h.as_bytes(),
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
    use std::cell::RefCell;

    thread_local! {
        static DROPPED: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
    }

    /// Test hook: records that an entry was dropped (its key's arena slot
    /// is zeroized then: secmem's tests check that).
    pub(super) fn observe_dropped() {
        DROPPED.with(|d| d.borrow_mut().push(true));
    }

    fn dropped() -> Vec<bool> {
        DROPPED.with(|d| std::mem::take(&mut *d.borrow_mut()))
    }

    fn id(n: u8) -> FileHeader {
        let mut raw = [0u8; HEADER_LEN];
        raw[..5].copy_from_slice(b"EFSH\x01");
        raw[8..24].copy_from_slice(&[n; 16]);
        FileHeader::parse(&raw).unwrap()
    }

    #[test]
    fn capacity_and_lru_order() {
        dropped();
        let c = KeyCache::new(2, Duration::from_secs(60));
        let (k1, k2, k3) = (DataKey::random(), DataKey::random(), DataKey::random());
        c.insert(&id(1), &k1);
        c.insert(&id(2), &k2);
        assert_eq!(c.get(&id(1)).unwrap().expose(), k1.expose()); // 1 is now most recent
        c.insert(&id(3), &k3); // evicts 2
        assert!(c.get(&id(2)).is_none());
        assert!(c.get(&id(1)).is_some());
        assert!(c.get(&id(3)).is_some());
        assert_eq!(c.len(), 2);
        assert_eq!(dropped(), vec![true], "the evicted entry was dropped");
    }

    #[test]
    fn max_age_expires() {
        dropped();
        let c = KeyCache::new(10, Duration::from_secs(60));
        c.insert(&id(1), &DataKey::random());
        assert!(c.get(&id(1)).is_some());
        *c.clock_offset.lock() = Duration::from_secs(61);
        assert!(c.get(&id(1)).is_none());
        assert_eq!(c.len(), 0);
        assert_eq!(dropped(), vec![true]);
    }

    #[test]
    fn flush_and_drop_zeroize() {
        dropped();
        let c = KeyCache::new(10, Duration::from_secs(60));
        for i in 0..3 {
            c.insert(&id(i), &DataKey::random());
        }
        c.flush();
        assert!(c.is_empty());
        assert_eq!(dropped(), vec![true; 3]);
        c.insert(&id(9), &DataKey::random());
        drop(c);
        assert_eq!(dropped(), vec![true]);
    }

    #[test]
    fn replacing_an_entry_zeroizes_the_old_one() {
        dropped();
        let c = KeyCache::new(10, Duration::from_secs(60));
        c.insert(&id(1), &DataKey::random());
        c.insert(&id(1), &DataKey::random());
        assert_eq!(dropped(), vec![true]);
    }

    #[test]
    fn another_header_with_the_same_file_id_misses() {
        let c = KeyCache::new(10, Duration::from_secs(60));
        let k = DataKey::random();
        c.insert(&id(1), &k);
        for i in 24..HEADER_LEN {
            let mut raw = *id(1).as_bytes();
            raw[i] ^= 1;
            let forged = FileHeader::parse(&raw).unwrap();
            assert_eq!(forged.file_id, id(1).file_id);
            assert!(c.get(&forged).is_none(), "byte {i}");
        }
        assert_eq!(c.get(&id(1)).unwrap().expose(), k.expose());
    }
}
