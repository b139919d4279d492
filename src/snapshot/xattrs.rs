//! A backing entry's xattrs as a copy or a check reads them: an error is the
//! caller's to report, never an empty list (a copy that drops a header xattr
//! loses the file; a check that cannot list reports nothing wrong).

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys;

/// The xattr names of `fd` (none where the filesystem has no xattrs).
pub(super) fn list(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    if crate::fault::planted("snapshot-listxattr-fails") {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    match sys::listxattr_fd(fd) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(Vec::new()),
        r => r,
    }
}

/// The value of the xattr `name` of `fd`; `None` when it is gone (removed
/// since it was listed).
pub(super) fn get(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    if crate::fault::planted("snapshot-getxattr-fails") {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    match sys::getxattr_fd(fd, name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}
