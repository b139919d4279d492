//! Kernel file handles (name_to_handle_at / open_by_handle_at): a node whose
//! descriptor was closed keeps one to reopen its inode (fs/nodes.rs).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::EMPTY;

/// Room for the handle bytes; the kernel's own limit (MAX_HANDLE_SZ).
const MAX_HANDLE_BYTES: usize = 128;
/// `struct file_handle`'s header: handle_bytes (u32) and handle_type (i32).
const HEADER_LEN: usize = 8;

/// A `struct file_handle` (handle_bytes, handle_type, f_handle) as
/// name_to_handle_at filled it. Only [`file_handle`] makes one, so the length
/// in its header always matches the bytes [`open_handle`] hands the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeHandle(Vec<u8>);

/// The file handle of the inode behind `fd`. None where the filesystem or the
/// caller's privileges do not allow handles.
pub fn file_handle(fd: BorrowedFd<'_>) -> Option<InodeHandle> {
    let mut buf = vec![0u8; HEADER_LEN + MAX_HANDLE_BYTES];
    buf[..4].copy_from_slice(&(MAX_HANDLE_BYTES as u32).to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    // SAFETY: buf holds a struct file_handle with room for MAX_HANDLE_BYTES
    // bytes; empty path with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    };
    if r != 0 {
        return None;
    }
    let n = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    buf.truncate(HEADER_LEN + n.min(MAX_HANDLE_BYTES));
    Some(InodeHandle(buf))
}

/// Open the inode of a file handle as `O_PATH` (needs CAP_DAC_READ_SEARCH);
/// ESTALE when the inode is gone.
pub fn open_handle(mount_fd: BorrowedFd<'_>, handle: &InodeHandle) -> io::Result<OwnedFd> {
    // SAFETY: handle.0 is a struct file_handle as name_to_handle_at wrote it,
    // its handle_bytes no more than the bytes that follow the header; the
    // kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            handle.0.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn same_inode(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
        let (a, b) = (
            super::super::fstat(a).unwrap(),
            super::super::fstat(b).unwrap(),
        );
        (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    }

    /// A handle reopens its own inode, and ESTALE once the inode is gone
    /// (where the filesystem gives handles and we may open them).
    #[test]
    fn a_handle_reopens_its_inode_and_is_stale_once_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mount = std::fs::File::open(dir.path()).unwrap();
        let Some(h) = file_handle(file.as_fd()) else {
            eprintln!("SKIPPED: no file handles on {}", dir.path().display());
            return;
        };
        let reopened = match open_handle(mount.as_fd(), &h) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("SKIPPED: open_by_handle_at needs CAP_DAC_READ_SEARCH");
                return;
            }
            r => r.unwrap(),
        };
        assert!(same_inode(reopened.as_fd(), file.as_fd()));
        drop((file, reopened));
        std::fs::remove_file(&path).unwrap();
        let e = open_handle(mount.as_fd(), &h).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
    }
}
