//! Extended attributes of descriptors (`O_PATH` ones through /proc).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::*;

fn xattr_err_path(fd: BorrowedFd<'_>) -> CString {
    proc_path(fd)
}

pub fn getxattr_fd(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    let p = xattr_err_path(fd);
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: size query with a null buffer.
        let size =
            check_size(unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) })?;
        let mut buf = vec![0u8; size];
        // SAFETY: buf valid for size bytes.
        let r = unsafe {
            libc::getxattr(
                p.as_ptr(),
                n.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew in between
            }
            return Err(e);
        }
        buf.truncate(r as usize);
        return Ok(buf);
    }
}

pub fn setxattr_fd(fd: BorrowedFd<'_>, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let p = xattr_err_path(fd);
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: pointers valid for the given lengths.
    check(unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            flags,
        )
    })?;
    Ok(())
}

pub fn removexattr_fd(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let p = xattr_err_path(fd);
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) })?;
    Ok(())
}

pub fn listxattr_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let p = xattr_err_path(fd);
    loop {
        // SAFETY: size query.
        let size = check_size(unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) })?;
        let mut buf = vec![0u8; size];
        // SAFETY: buf valid for size bytes.
        let r = unsafe {
            libc::listxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len())
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(r as usize);
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_vec())
            .collect());
    }
}

/// fsetxattr on a real (non-O_PATH) descriptor, used when a file is created.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: pointers valid for the given lengths.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            flags,
        )
    })?;
    Ok(())
}

/// A small xattr value (at most 4 KiB: the header xattr) of a real
/// descriptor; ERANGE for a larger one.
pub fn fgetxattr(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    read_value(fd, &n, 4096)
}

/// The xattr `name` of a real descriptor, at most `max` bytes: ERANGE for a
/// larger one (the value's size is asked first, so an absent name costs no
/// buffer).
pub fn fgetxattr_capped(fd: BorrowedFd<'_>, name: &[u8], max: usize) -> io::Result<Vec<u8>> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: size query with a null buffer.
    let size = check_size(unsafe {
        libc::fgetxattr(fd.as_raw_fd(), n.as_ptr(), std::ptr::null_mut(), 0)
    })?;
    if size > max {
        return Err(io::Error::from_raw_os_error(libc::ERANGE));
    }
    // A value that grew in between is ERANGE.
    read_value(fd, &n, size.max(1))
}

/// The value of xattr `n`, read into a buffer of `len` bytes (ERANGE if larger).
fn read_value(fd: BorrowedFd<'_>, n: &std::ffi::CStr, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    // SAFETY: buf valid for its length.
    let r = check_size(unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    })?;
    buf.truncate(r);
    Ok(buf)
}

/// fremovexattr on a real descriptor.
pub fn fremovexattr(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid descriptor number and C string.
    check(unsafe { libc::fremovexattr(fd.as_raw_fd(), n.as_ptr()) })?;
    Ok(())
}

/// The size of the xattr `name` of any descriptor (`O_PATH` ones too), its
/// value unread.
pub fn xattr_len_fd(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<usize> {
    let p = xattr_err_path(fd);
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: size query with a null buffer.
    check_size(unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) })
}
