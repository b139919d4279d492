//! The process itself: limits, identity, mounts, secret memory, dumpability.

use std::io;

use super::*;

pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

pub fn getuid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::getuid() }
}

pub fn geteuid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::geteuid() }
}

/// The home directory the password database gives `uid` (not `$HOME`,
/// which a mount helper may have set to root's).
pub fn home_of(uid: u32) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be filled in.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: pw, buf and out are valid for the call; buf's length is passed.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 || out.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points at a NUL-terminated string inside buf.
    let dir = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) };
    let p = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
    p.is_absolute().then_some(p)
}

/// The major number of a device number (`st_rdev`).
pub fn device_major(rdev: libc::dev_t) -> u32 {
    libc::major(rdev)
}

/// The minor number of a device number (`st_rdev`).
pub fn device_minor(rdev: libc::dev_t) -> u32 {
    libc::minor(rdev)
}

pub fn umount(path: &std::path::Path, lazy: bool) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(c.as_ptr(), flags) })?;
    Ok(())
}

/// Raise the open-file limit as far as allowed: the daemon holds one
/// `O_PATH` descriptor per live node. Root may raise the hard limit too, up
/// to the kernel's `fs.nr_open`.
pub fn raise_nofile_limit() -> u64 {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        let want = libc::rlimit {
            rlim_cur: nr_open as libc::rlim_t,
            rlim_max: nr_open as libc::rlim_t,
        };
        if want.rlim_max > rl.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return nr_open;
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
        rl.rlim_cur as u64
    }
}

/// The soft open-file limit.
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit with a valid struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        rl.rlim_cur as u64
    }
}

/// Map `len` bytes of zeroed anonymous memory for secrets, excluded from
/// core dumps (`MADV_DONTDUMP`). It is never unmapped, hence `'static`.
pub fn map_secret_region(len: usize) -> io::Result<&'static mut [u8]> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: p is the start of the len-byte mapping just made.
    if unsafe { libc::madvise(p, len, libc::MADV_DONTDUMP) } != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: unmap the mapping made above; nothing refers to it yet.
        unsafe { libc::munmap(p, len) };
        return Err(e);
    }
    // SAFETY: the mapping is len bytes, readable, writable, zero-filled,
    // never unmapped, and this is the only reference made to it.
    Ok(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) })
}

/// Lock `len` bytes at `addr` in RAM (`mlock`). Memory safe for any
/// arguments: a range that is not mapped fails with ENOMEM.
pub fn mlock_range(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: mlock reads or writes no memory of this process.
    check(unsafe { libc::mlock(addr as *const libc::c_void, len) }).map(|_| ())
}

/// The soft limit on locked memory, in bytes.
pub fn memlock_limit() -> u64 {
    // SAFETY: getrlimit with a valid struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) != 0 {
            return 0;
        }
        rl.rlim_cur as u64
    }
}

/// Set whether this process may dump core or be traced by its owner
/// (`PR_SET_DUMPABLE`); a non-dumpable process's /proc files are root's.
pub fn set_dumpable(dumpable: bool) -> io::Result<()> {
    let v = libc::c_ulong::from(dumpable);
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, v, 0, 0, 0) }).map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn home_comes_from_the_password_database() {
        assert_eq!(
            super::home_of(0).as_deref(),
            Some(std::path::Path::new("/root"))
        );
        assert_eq!(super::home_of(4_000_000_000), None);
    }
}
