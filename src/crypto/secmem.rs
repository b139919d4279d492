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
//! Secrets of other lengths (a key store's key material and private keys,
//! as base64 text, and the store's plaintext while it is sealed) live in
//! `SecretBox`es: power-of-two size classes of the same kind of memory.
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

/// The smallest `SecretBox` class; classes double from here.
const MIN_BOX: usize = 64;
/// Bytes mapped at a time for one box class (or one box, when larger).
const BOX_CHUNK_LEN: usize = 64 * 1024;

struct Arena {
    free: Vec<&'static mut [u8; SLOT_LEN]>,
    /// Free boxes by class: `boxes[i]` holds boxes of `MIN_BOX << i` bytes.
    boxes: Vec<Vec<&'static mut [u8]>>,
    /// Start and length of every mapped chunk (to lock again after fork).
    chunks: Vec<(usize, usize)>,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena {
    free: Vec::new(),
    boxes: Vec::new(),
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

    /// A zeroed box of class `class` (its index in `boxes`).
    fn take_box(&mut self, class: usize) -> &'static mut [u8] {
        if self.boxes.len() <= class {
            self.boxes.resize_with(class + 1, Vec::new);
        }
        if let Some(b) = self.boxes[class].pop() {
            return b;
        }
        let size = MIN_BOX << class;
        let len = size.max(BOX_CHUNK_LEN);
        let region = sys::map_secret_region(len)
            .unwrap_or_else(|e| panic!("cannot map memory for keys: {e}"));
        let addr = region.as_ptr() as usize;
        lock_chunk(addr, len);
        self.chunks.push((addr, len));
        let mut pieces: Vec<&'static mut [u8]> = region.chunks_exact_mut(size).collect();
        let first = pieces.pop().expect("a chunk holds at least one box");
        self.boxes[class].extend(pieces);
        first
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

/// A secret of any length in locked, undumped memory: `len` bytes at the
/// start of a box of the next power-of-two class; the whole box is
/// zeroized and returned when dropped.
pub struct SecretBox {
    buf: Option<&'static mut [u8]>,
    len: usize,
}

impl SecretBox {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> SecretBox {
        let class = (len.max(MIN_BOX).next_power_of_two() / MIN_BOX).trailing_zeros() as usize;
        let buf = ARENA.lock().take_box(class);
        SecretBox {
            buf: Some(buf),
            len,
        }
    }

    /// A copy of `b` (which the caller zeroizes, if it must).
    pub fn copy_of(b: &[u8]) -> SecretBox {
        let mut s = SecretBox::zeroed(b.len());
        s.as_mut_slice().copy_from_slice(b);
        s
    }

    pub fn as_slice(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[], |b| &b[..self.len])
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        self.buf.as_deref_mut().map_or(&mut [], |b| &mut b[..len])
    }

    fn capacity(&self) -> usize {
        self.buf.as_deref().map_or(0, <[u8]>::len)
    }
}

impl Clone for SecretBox {
    fn clone(&self) -> Self {
        SecretBox::copy_of(self.as_slice())
    }
}

impl Drop for SecretBox {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            b.zeroize();
            let class = (b.len() / MIN_BOX).trailing_zeros() as usize;
            ARENA.lock().boxes[class].push(b);
        }
    }
}

/// A growing secret buffer (a `Write` target for serializers): each time it
/// grows, the content moves to a box twice as large and the old box is
/// zeroized, so no copy is left behind as a growing `Vec` leaves its old
/// buffers on the heap.
pub struct SecretVec(SecretBox);

impl SecretVec {
    pub fn with_capacity(n: usize) -> SecretVec {
        let mut b = SecretBox::zeroed(n);
        b.len = 0;
        SecretVec(b)
    }

    pub fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl std::io::Write for SecretVec {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let (len, end) = (self.0.len, self.0.len + data.len());
        if end > self.0.capacity() {
            let mut bigger = SecretBox::zeroed(end.max(2 * self.0.capacity()));
            bigger.as_mut_slice()[..len].copy_from_slice(self.0.as_slice());
            bigger.len = len;
            self.0 = bigger;
        }
        self.0.len = end;
        self.0.as_mut_slice()[len..].copy_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Secret text (base64 key material, a PEM or PKCS#8 private key in base64)
/// in a `SecretBox`: read as a `str`, (de)serialized as a JSON string
/// without a heap copy that outlives the call.
#[derive(Clone)]
pub struct SecretText(SecretBox);

impl SecretText {
    pub fn new(s: &str) -> SecretText {
        SecretText(SecretBox::copy_of(s.as_bytes()))
    }
}

impl std::ops::Deref for SecretText {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ever made from a str.
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }
}

impl From<zeroize::Zeroizing<String>> for SecretText {
    fn from(s: zeroize::Zeroizing<String>) -> Self {
        SecretText::new(&s)
    }
}

impl serde::Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SecretText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            // A borrowed or scratch str is copied straight into the box.
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretText, E> {
                Ok(SecretText::new(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretText, E> {
                Ok(SecretText::from(zeroize::Zeroizing::new(v)))
            }
        }
        d.deserialize_str(V)
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
    fn boxes_hold_any_length_and_are_zeroized_on_free() {
        use std::io::Write;
        for len in [0, 1, 44, 64, 65, 3000, 200_000] {
            let b = SecretBox::copy_of(&vec![0x5Au8; len]);
            assert_eq!(b.as_slice().len(), len);
            assert!(b.capacity() >= len.max(MIN_BOX));
            let chunks = ARENA.lock().chunks.clone();
            let a = b.as_slice().as_ptr() as usize;
            assert!(chunks.iter().any(|(c, l)| (*c..c + l).contains(&a)));
            drop(b);
        }
        let mut v = SecretVec::with_capacity(8);
        for i in 0..1000u32 {
            write!(v, "{i},").unwrap();
        }
        let want: String = (0..1000u32).map(|i| format!("{i},")).collect();
        assert_eq!(v.as_slice(), want.as_bytes());
        let t: SecretText = serde_json::from_str("\"c2VjcmV0\"").unwrap();
        assert_eq!(&*t, "c2VjcmV0");
        assert_eq!(serde_json::to_string(&t.clone()).unwrap(), "\"c2VjcmV0\"");
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
