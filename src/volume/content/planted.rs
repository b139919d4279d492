//! Planted faults of the content layer: bugs the fuzzers and unit tests must
//! catch (`scripts/faults/unit.tsv`). Outside `fault-check` builds and unit
//! tests, `planted` is always false and all of this is dead code.

use std::cell::RefCell;

use crate::crypto::keys::FileId;
use crate::crypto::offsets::BlockIndex;

/// True when the fault `name` is planted: by `scripts/fault-check.sh`
/// (`crate::fault`), or by a unit test on its own thread.
pub(super) fn planted(name: &str) -> bool {
    #[cfg(test)]
    if ON_THREAD.with(|p| p.borrow().contains(&name)) {
        return true;
    }
    crate::fault::planted(name)
}

thread_local! {
    #[cfg(test)]
    static ON_THREAD: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    /// `content-stale-block`: the old plaintext of blocks cut by a truncate,
    /// a block cache that truncate forgets to invalidate.
    static STALE: RefCell<Vec<(FileId, BlockIndex, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// The fault `name` is planted on this thread until the guard is dropped
/// (so a failing self-test does not leave it planted for the next test).
#[cfg(test)]
pub(crate) fn plant_on_thread(name: &'static str) -> PlantedOnThread {
    ON_THREAD.with(|p| p.borrow_mut().push(name));
    PlantedOnThread(name)
}

#[cfg(test)]
pub(crate) struct PlantedOnThread(&'static str);

#[cfg(test)]
impl Drop for PlantedOnThread {
    fn drop(&mut self) {
        ON_THREAD.with(|p| p.borrow_mut().retain(|n| *n != self.0));
    }
}

/// `content-stale-block`: remember block `b`'s plaintext as it was before a
/// truncate cut it.
pub(super) fn keep_stale(file: FileId, b: BlockIndex, plain: &[u8]) {
    STALE.with(|s| {
        let mut s = s.borrow_mut();
        s.retain(|(f, i, _)| !(*f == file && *i == b));
        s.push((file, b, plain.to_vec()));
    });
}

/// `content-stale-block`: fill the grown part of block `b` (from `from` on)
/// with the bytes it held before it was cut, instead of zeros.
pub(super) fn restore_stale(file: FileId, b: BlockIndex, from: usize, plain: &mut [u8]) {
    STALE.with(|s| {
        if let Some((_, _, old)) = s.borrow().iter().find(|(f, i, _)| *f == file && *i == b) {
            let end = plain.len().min(old.len());
            if from < end {
                plain[from..end].copy_from_slice(&old[from..end]);
            }
        }
    });
}
