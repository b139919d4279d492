//! Directory listings through `DIR*` (fdopendir/readdir64), closed by a guard
//! on every path out.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};
use std::ptr::NonNull;

use super::reopen;

/// An open `DIR*`; closing it closes the descriptor it was opened on.
struct DirStream(NonNull<libc::DIR>);

impl DirStream {
    /// Opens a directory stream on a fresh readable descriptor of `fd`.
    fn open(fd: BorrowedFd<'_>) -> io::Result<DirStream> {
        let dfd = reopen(fd, libc::O_RDONLY | libc::O_DIRECTORY)?;
        // SAFETY: dfd is an open directory descriptor; on success the stream
        // owns it, on failure it stays ours (and dfd closes it).
        let dir = unsafe { libc::fdopendir(dfd.as_raw_fd()) };
        let dir = NonNull::new(dir).ok_or_else(io::Error::last_os_error)?;
        // The stream owns the descriptor now.
        let _ = dfd.into_raw_fd();
        Ok(DirStream(dir))
    }

    /// The next entry (name, d_type, ino), `.` and `..` included; None at the end.
    fn next_entry(&mut self) -> io::Result<Option<(Vec<u8>, u8, u64)>> {
        // SAFETY: errno is thread-local; reset to tell the end from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: self.0 is an open DIR* (closed only by Drop).
        let ent = unsafe { libc::readdir64(self.0.as_ptr()) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(0) | None => Ok(None),
                Some(_) => Err(e),
            };
        }
        // SAFETY: ent points to a valid dirent64 with a NUL-terminated name,
        // valid until the next readdir64 on this stream.
        let e = unsafe { &*ent };
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr(e.d_name.as_ptr()) };
        Ok(Some((name.to_bytes().to_vec(), e.d_type, e.d_ino)))
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: self.0 is an open DIR*, closed only here.
        unsafe { libc::closedir(self.0.as_ptr()) };
    }
}

/// Directory listing of an `O_PATH` directory descriptor: (name, d_type, ino).
pub fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, u8, u64)>> {
    let mut dir = DirStream::open(fd)?;
    let mut out = Vec::new();
    while let Some((name, ty, ino)) = dir.next_entry()? {
        if name != b"." && name != b".." {
            out.push((name, ty, ino));
        }
    }
    if crate::fault::planted("sys-dir-leak") {
        std::mem::forget(dir);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// Every entry but `.` and `..`, with its type and inode, and the
    /// descriptor closed after each listing (other tests of this process open
    /// a few at a time; a leak would show a thousand).
    #[test]
    fn list_dir_lists_every_entry_and_closes_its_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::File::create(dir.path().join("file")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let root = super::super::open_dir_path(dir.path()).unwrap();
        let mut got = list_dir(root.as_fd()).unwrap();
        got.sort();
        let ino = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().ino();
        assert_eq!(
            got,
            vec![
                (b"file".to_vec(), libc::DT_REG, ino("file")),
                (b"sub".to_vec(), libc::DT_DIR, ino("sub")),
            ]
        );
        let before = open_fds();
        for _ in 0..1000 {
            list_dir(root.as_fd()).unwrap();
        }
        let after = open_fds();
        assert!(
            after < before + 100,
            "{before} descriptors open before, {after} after"
        );
    }
}
