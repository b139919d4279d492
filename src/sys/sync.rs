//! Flushing a filesystem's dirty pages (before a snapshot holds a mount).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

/// Flush the filesystem holding `fd`.
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Flush the filesystem mounted at `mountpoint`, so that the kernel's dirty
/// pages reach the filesystem's daemon. (An `O_PATH` descriptor would not
/// do: syncfs needs an open file.)
pub fn sync_mount(mountpoint: &Path) -> io::Result<()> {
    let dir = std::fs::File::open(mountpoint)?;
    syncfs(dir.as_fd())
}
