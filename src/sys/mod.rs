//! Every raw syscall wrapper in one place (as gocryptfs's `syscallcompat`).
//!
//! All backing-directory access goes through file descriptors: a node keeps an
//! `O_PATH` descriptor and children are reached with `*at` calls and
//! `O_NOFOLLOW`, so a symlink planted in the backing directory is never followed.
//!
//! The only module allowed `unsafe` (src/lib.rs) and the libc calls clippy.toml
//! forbids elsewhere.
#![allow(clippy::disallowed_methods)]

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

mod clock;
pub mod daemon;
mod dir;
mod handle;
mod owned;
mod peer;
mod positioned;
mod process;
mod sync;
mod xattr;
pub use clock::*;
pub use dir::*;
pub use handle::*;
pub use owned::*;
pub use peer::*;
pub use positioned::*;
pub use process::*;
pub use sync::*;
pub use xattr::*;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

const EMPTY: &CStr = c"";

/// A name component: one path element with no slash, not "." or "..".
pub fn check_component(name: &OsStr) -> io::Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    if b.len() > 255 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    Ok(())
}

/// `openat` with `O_NOFOLLOW | O_CLOEXEC` always added.
pub fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: c is a valid NUL-terminated string; the returned fd is owned by us.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    check(fd)?;
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open a path (the backing root) as an `O_PATH` directory descriptor.
pub fn open_dir_path(path: &std::path::Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: valid C string; fd ownership transferred to OwnedFd.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    check(fd)?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Re-open an `O_PATH` descriptor with real access flags via /proc/self/fd.
/// Only called on nodes already known to be regular files or directories.
pub fn reopen(fd: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
    let path = proc_path(fd);
    // SAFETY: valid C string; fresh fd is owned by us.
    let nfd = unsafe {
        libc::open(
            path.as_ptr(),
            (flags | libc::O_CLOEXEC) & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW),
        )
    };
    check(nfd)?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(nfd) })
}

pub fn proc_path(fd: BorrowedFd<'_>) -> CString {
    // A decimal number never holds a NUL byte.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-parameter; empty path with AT_EMPTY_PATH
    // stats the descriptor itself (works for O_PATH).
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstatat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        ))?;
        if crate::fault::planted("mount-stat-frozen-mtime") {
            (st.st_mtime, st.st_mtime_nsec) = (0, 0);
        }
        Ok(st)
    }
}

pub fn fstatat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    // SAFETY: valid pointers; never follows a symlink.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ))?;
        Ok(st)
    }
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            c.as_ptr(),
            mode as libc::mode_t,
            rdev as libc::dev_t,
        )
    })?;
    Ok(())
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })?;
    Ok(())
}

pub fn renameat2(
    odir: BorrowedFd<'_>,
    oname: &OsStr,
    ndir: BorrowedFd<'_>,
    nname: &OsStr,
    flags: u32,
) -> io::Result<()> {
    renameat2_raw(odir.as_raw_fd(), oname, ndir.as_raw_fd(), nname, flags)
}

/// Rename `from` to `to` by path, refusing to replace an existing `to`.
pub fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    renameat2_raw(
        libc::AT_FDCWD,
        from.as_os_str(),
        libc::AT_FDCWD,
        to.as_os_str(),
        libc::RENAME_NOREPLACE,
    )
}

/// `odir`/`ndir`: directory descriptors, or AT_FDCWD.
fn renameat2_raw(
    odir: RawFd,
    oname: &OsStr,
    ndir: RawFd,
    nname: &OsStr,
    flags: u32,
) -> io::Result<()> {
    let o = cstr(oname)?;
    let n = cstr(nname)?;
    // SAFETY: valid C strings; the directory arguments are descriptors the
    // caller holds or AT_FDCWD.
    check(unsafe { libc::renameat2(odir, o.as_ptr(), ndir, n.as_ptr(), flags) })?;
    Ok(())
}

pub fn symlinkat(target: &[u8], dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let t = CString::new(target).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let c = cstr(name)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })?;
    Ok(())
}

/// readlink of an `O_PATH|O_NOFOLLOW` descriptor of a symlink.
pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is valid for buf.len() bytes.
    let n = check_size(unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// Hard-link the inode behind an `O_PATH` descriptor to `dir/name`.
pub fn linkat_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C strings; AT_EMPTY_PATH links the fd itself (needs CAP_DAC_READ_SEARCH
    // for non-O_PATH use; we fall back to /proc below).
    let r = unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let p = proc_path(fd);
    // SAFETY: valid C strings; AT_SYMLINK_FOLLOW resolves the /proc magic link to the inode.
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            p.as_ptr(),
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })?;
    Ok(())
}

pub fn fchown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let u = uid.unwrap_or(u32::MAX);
    let g = gid.unwrap_or(u32::MAX);
    // SAFETY: empty path with AT_EMPTY_PATH acts on the descriptor; never follows symlinks.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            u,
            g,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// chmod of a non-symlink behind an `O_PATH` descriptor.
pub fn fchmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let p = proc_path(fd);
    // SAFETY: valid C string; the magic link resolves to the inode itself.
    check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// Set times on the inode behind an `O_PATH` descriptor, symlinks included.
pub fn utimens_fd(fd: BorrowedFd<'_>, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: times points to two timespecs.
    check(unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// Asks the kernel to start reading `len` bytes at `offset` into the page
/// cache; a hint, so errors are ignored.
pub fn prefetch(fd: BorrowedFd<'_>, offset: u64, len: u64) {
    // SAFETY: plain syscall on a descriptor we hold; no memory is passed.
    unsafe {
        libc::posix_fadvise(
            fd.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_WILLNEED,
        );
    }
}

pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
    Ok(())
}

pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })?;
    Ok(())
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            mode,
            offset as libc::off_t,
            len as libc::off_t,
        )
    })?;
    Ok(())
}

pub fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    // SAFETY: zeroed statvfs is a valid out-parameter.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        check(libc::fstatvfs(fd.as_raw_fd(), &mut st))?;
        Ok(st)
    }
}

/// flock; `exclusive` or shared, never blocking.
pub fn flock_nb(fd: BorrowedFd<'_>, exclusive: bool) -> io::Result<()> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::flock(fd.as_raw_fd(), op) })?;
    Ok(())
}

/// An exclusive flock, waiting for it (for short critical sections).
pub fn flock_wait(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) })?;
    Ok(())
}

/// copy_file_range of `len` bytes (falls back to read/write where unsupported).
pub fn copy_range(
    src: BorrowedFd<'_>,
    soff: u64,
    dst: BorrowedFd<'_>,
    doff: u64,
    len: u64,
) -> io::Result<()> {
    let (mut so, mut dof, mut left) = (soff as libc::loff_t, doff as libc::loff_t, len);
    while left > 0 {
        // SAFETY: valid fds and offset pointers.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut so,
                dst.as_raw_fd(),
                &mut dof,
                left as usize,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EXDEV)
                | Some(libc::EINVAL)
                | Some(libc::ENOSYS)
                | Some(libc::EOPNOTSUPP) => {
                    let mut buf = vec![0u8; (left as usize).min(1 << 20)];
                    let got = pread_exact_or_eof(src, &mut buf, so as u64)?;
                    if got == 0 {
                        return Err(io::Error::from_raw_os_error(libc::EIO));
                    }
                    pwrite_all(dst, &buf[..got], dof as u64)?;
                    so += got as libc::loff_t;
                    dof += got as libc::loff_t;
                    left -= got as u64;
                    continue;
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        left -= n as u64;
    }
    Ok(())
}

/// The data segments of a file from `from` on: (start, end) pairs (SEEK_DATA/SEEK_HOLE).
pub fn data_segments(fd: BorrowedFd<'_>, from: u64, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < size {
        // SAFETY: lseek on a valid fd.
        let d = unsafe { libc::lseek(fd.as_raw_fd(), pos as libc::off_t, libc::SEEK_DATA) };
        if d < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            // No SEEK_DATA support: all data.
            return Ok(vec![(from, size)]);
        }
        // SAFETY: lseek on a valid fd.
        let h = unsafe { libc::lseek(fd.as_raw_fd(), d, libc::SEEK_HOLE) };
        let h = if h < 0 { size } else { (h as u64).min(size) };
        if h > d as u64 {
            out.push((d as u64, h));
        }
        pos = h.max(d as u64 + 1);
    }
    Ok(out)
}

/// Reflink `src` into `dst` (FICLONE); fails where the filesystem cannot.
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its argument.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) })?;
    Ok(())
}

/// readlinkat of `dir/name`.
pub fn readlinkat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Vec<u8>> {
    let fd = openat(dir, name, libc::O_PATH, 0)?;
    readlink_fd(std::os::fd::AsFd::as_fd(&fd))
}
