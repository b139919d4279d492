//! Memory for key bytes. Every key type (`crypto::keys`) keeps its 32 bytes
//! in a slot of one arena that is mapped apart from the heap, excluded from
//! core dumps (`MADV_DONTDUMP`) and locked in RAM (`mlock`, so never
//! swapped); a slot is zeroized when it is freed. Heap structures (the LRU
//! of the key cache, maps of subkeys) hold only slot handles.
//!
//! Functions that must put key bytes on the stack (HKDF's hash state, a
//! header being sealed or opened, AES key schedules) run below a caller that
//! then overwrites that stretch of stack with `scrub_stack`, so no copy
//! outlives the call there.
//!
//! Locking needs `RLIMIT_MEMLOCK` room (or CAP_IPC_LOCK): where it fails,
//! one warning is logged and keys stay unlocked but still out of dumps.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use zeroize::Zeroize;

use super::keys::KEY_LEN;
use crate::sys;

pub const SLOT_LEN: usize = KEY_LEN;
/// Bytes mapped at a time: 8192 slots, twice the default key cache.
const CHUNK_LEN: usize = 256 * 1024;
/// Stack overwritten after a function that had key bytes on it.
const SCRUB_LEN: usize = 16 * 1024;
/// Stack overwritten once when the daemon starts (after unwrapping the
/// volume key, which went through the key service and Argon2); small
/// enough for any usable RLIMIT_STACK.
const SCRUB_AT_START_LEN: usize = 64 * 1024;

struct Arena {
    free: Vec<&'static mut [u8; SLOT_LEN]>,
    /// Start and length of every mapped chunk (to lock again after fork).
    chunks: Vec<(usize, usize)>,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena {
    free: Vec::new(),
    chunks: Vec::new(),
});
static LOCK_WARNED: AtomicBool = AtomicBool::new(false);

fn lock_chunk(addr: usize, len: usize) {
    if let Err(e) = sys::mlock_range(addr, len) {
        if !LOCK_WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "cannot lock key memory in RAM (mlock: {e}; RLIMIT_MEMLOCK is {} bytes): keys stay out of core dumps but may be swapped out; allow at least {} KiB (ulimit -l)",
                sys::memlock_limit(),
                CHUNK_LEN / 1024
            );
        }
    }
}

impl Arena {
    fn grow(&mut self) {
        // Out of address space is out of memory, as for the heap.
        let region = sys::map_secret_region(CHUNK_LEN)
            .unwrap_or_else(|e| panic!("cannot map memory for keys: {e}"));
        let addr = region.as_ptr() as usize;
        lock_chunk(addr, CHUNK_LEN);
        self.chunks.push((addr, CHUNK_LEN));
        self.free.extend(
            region
                .chunks_exact_mut(SLOT_LEN)
                .rev()
                .filter_map(|s| <&mut [u8; SLOT_LEN]>::try_from(s).ok()),
        );
    }
}

/// One zeroed slot of the arena; zeroized and returned when dropped.
pub struct Slot(Option<&'static mut [u8; SLOT_LEN]>);

impl Slot {
    pub fn new() -> Slot {
        let mut a = ARENA.lock();
        if a.free.is_empty() {
            a.grow();
        }
        Slot(a.free.pop())
    }

    pub fn bytes(&self) -> &[u8; SLOT_LEN] {
        self.0.as_deref().expect("a live slot")
    }

    pub fn bytes_mut(&mut self) -> &mut [u8; SLOT_LEN] {
        self.0.as_deref_mut().expect("a live slot")
    }
}

impl Default for Slot {
    fn default() -> Self {
        Slot::new()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.zeroize();
            ARENA.lock().free.push(s);
        }
    }
}

/// Test support: how many times `key` occurs in the arena, in live and in
/// freed slots. The bytes are read through `/proc/self/mem`, so no reference
/// is made to slots that other threads own and write.
#[cfg(test)]
pub(crate) fn copies_in_arena(key: &[u8; SLOT_LEN]) -> usize {
    use std::os::unix::fs::FileExt;
    let chunks = ARENA.lock().chunks.clone();
    let mem = std::fs::File::open("/proc/self/mem").expect("open /proc/self/mem");
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut copies = 0;
    for (addr, len) in chunks {
        buf.resize(len, 0);
        mem.read_exact_at(&mut buf, addr as u64)
            .expect("read the key arena");
        copies += buf.windows(SLOT_LEN).filter(|w| *w == key).count();
    }
    copies
}

/// Overwrite the `SCRUB_LEN` bytes of stack below the caller's frame, where
/// the functions it just called kept their locals.
#[inline(never)]
pub fn scrub_stack() {
    scrub::<SCRUB_LEN>();
}

#[inline(never)]
fn scrub<const N: usize>() {
    let mut area = [0u8; N];
    // Opaque to the optimizer: the zeroing cannot be left out.
    std::hint::black_box(&mut area);
}

/// Run once in the mount daemon as it starts serving: it can no longer dump
/// core or be traced by its (non-root) owner unless `allow_core_dumps`, it
/// works in `/` (no directory stays busy, no core lands in the caller's),
/// the arena is locked again (locks are not inherited across the
/// daemonizing fork), and the stack left by unwrapping the volume key is
/// overwritten.
pub fn harden_daemon(allow_core_dumps: bool) {
    if allow_core_dumps {
        log::warn!("--allow-core-dumps: the daemon stays dumpable and traceable by its owner; a core holds no volume or data key, but may hold per-request key schedules, the names key, plaintext and names");
    } else if let Err(e) = sys::set_dumpable(false) {
        log::warn!("cannot make the daemon non-dumpable: {e}");
    }
    if let Err(e) = std::env::set_current_dir("/") {
        log::warn!("cannot change to /: {e}");
    }
    let chunks = ARENA.lock().chunks.clone();
    for (addr, len) in chunks {
        lock_chunk(addr, len);
    }
    scrub::<SCRUB_AT_START_LEN>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_zeroized_on_free_and_reused() {
        let mut s = Slot::new();
        s.bytes_mut().fill(0xA5);
        let addr = s.bytes().as_ptr() as usize;
        drop(s);
        let a = ARENA.lock();
        let freed = a
            .free
            .iter()
            .find(|f| f.as_ptr() as usize == addr)
            .expect("the slot is back on the free list");
        assert!(freed.iter().all(|b| *b == 0));
    }

    #[test]
    fn slots_are_distinct_and_live_in_arena_chunks() {
        let slots: Vec<Slot> = (0..CHUNK_LEN / SLOT_LEN + 10)
            .map(|_| Slot::new())
            .collect();
        let mut addrs: Vec<usize> = slots.iter().map(|s| s.bytes().as_ptr() as usize).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), slots.len());
        let chunks = ARENA.lock().chunks.clone();
        assert!(chunks.len() >= 2);
        for a in addrs {
            assert!(chunks.iter().any(|(c, l)| (*c..c + l).contains(&a)));
        }
    }
}
