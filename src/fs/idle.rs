//! Use of the mount, for `--idle`: a count of requests and of open handles,
//! process-wide (a daemon serves one filesystem). The filesystem bumps them
//! with one call each; the watcher (src/cli/idle.rs) samples them.

use std::sync::atomic::{AtomicU64, Ordering};

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static OPEN_HANDLES: AtomicU64 = AtomicU64::new(0);

/// A request reached the filesystem.
#[inline]
pub fn used() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// A file or directory handle was opened.
#[inline]
pub fn opened() {
    OPEN_HANDLES.fetch_add(1, Ordering::Relaxed);
}

/// A handle was released: a use too, so that the idle time counts from the
/// close, not from the last sample that saw the handle open.
#[inline]
pub fn closed() {
    used();
    let _ = OPEN_HANDLES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// (requests so far, handles open now).
pub fn sample() -> (u64, u64) {
    (
        REQUESTS.load(Ordering::Relaxed),
        OPEN_HANDLES.load(Ordering::Relaxed),
    )
}
