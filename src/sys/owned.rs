//! Files the program itself reads and writes (config, lock, key store, logs,
//! directory IVs, side files): a planted symlink is never followed, a planted
//! device or fifo is never opened, and a new file never replaces one by
//! surprise.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::*;

/// Not a regular file where the format has one: corrupt, never opened.
pub fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a regular file")
}

/// Open `dir/name` only if it is a regular file. An `O_PATH` open comes first,
/// so a device or fifo planted there is never opened (opening a device runs
/// its driver, opening a fifo blocks); then the type check and a re-open of
/// that same inode with `flags`.
pub fn open_regular(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: i32,
) -> io::Result<(OwnedFd, libc::stat)> {
    let path = openat(dir, name, libc::O_PATH, 0)?;
    let st = fstat(path.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(not_regular());
    }
    let fd = reopen(path.as_fd(), flags | libc::O_NONBLOCK)?;
    Ok((fd, st))
}

/// The whole of the regular file `dir/name`, refused if longer than `max`
/// bytes (the size the format allows), checked before and while reading.
pub fn read_regular(dir: BorrowedFd<'_>, name: &OsStr, max: usize) -> io::Result<Vec<u8>> {
    let (fd, st) = open_regular(dir, name, libc::O_RDONLY)?;
    let too_long = || io::Error::new(io::ErrorKind::InvalidData, "longer than the format allows");
    if st.st_size < 0 || st.st_size as u64 > max as u64 {
        return Err(too_long());
    }
    let mut buf = vec![0u8; st.st_size as usize + 1];
    let n = pread_exact_or_eof(fd.as_fd(), &mut buf, 0)?;
    if n > max {
        return Err(too_long());
    }
    buf.truncate(n);
    Ok(buf)
}

/// Create the file `dir/name`, which must not exist: `O_CREAT|O_EXCL|
/// O_NOFOLLOW` relative to a directory descriptor, opened with `access`
/// (`O_RDWR`, `O_WRONLY`). The one way the program creates a file: a name
/// planted in advance (a symlink, a file of someone else's) is EEXIST.
pub fn create_new(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    access: i32,
    mode: u32,
) -> io::Result<OwnedFd> {
    openat(dir, name, libc::O_CREAT | libc::O_EXCL | access, mode)
}

/// [`create_new`] with exactly `mode` whatever the umask.
pub fn create_exclusive(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<OwnedFd> {
    let fd = create_new(dir, name, libc::O_RDWR, mode)?;
    // SAFETY: plain syscall on the descriptor we just created.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(fd)
}

/// Open the regular file `dir/name` for `flags`, creating it with `mode` if
/// it is missing. Never follows a symlink, never opens a special file.
pub fn open_or_create_regular(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: i32,
    mode: u32,
) -> io::Result<(OwnedFd, libc::stat)> {
    match create_exclusive(dir, name, mode) {
        Ok(fd) => {
            let fd = reopen(fd.as_fd(), flags)?;
            let st = fstat(fd.as_fd())?;
            Ok((fd, st))
        }
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => open_regular(dir, name, flags),
        Err(e) => Err(e),
    }
}

/// How a new file takes its final name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Replace whatever entry has the name (atomically).
    Replace,
    /// Fail with `EEXIST` if the name exists.
    Exclusive,
}

/// Write `bytes` as the file `dir/name` with exactly `mode`, durable before
/// it appears: written under an unpredictable temporary name created with
/// `O_CREAT|O_EXCL|O_NOFOLLOW`, fsync'd, then moved into place. The one way
/// the program writes a whole file.
pub fn write_new_file(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
    placement: Placement,
) -> io::Result<()> {
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp.{:016x}", random_u64()?));
    let fd = create_exclusive(dir, &tmp, mode)?;
    let r = pwrite_all(fd.as_fd(), bytes, 0)
        .and_then(|()| fsync(fd.as_fd(), false))
        .and_then(|()| place(dir, &tmp, fd.as_fd(), name, placement));
    if r.is_err() {
        let _ = unlinkat(dir, &tmp, false);
    }
    r?;
    // The new name is durable once its directory is.
    reopen(dir, libc::O_RDONLY | libc::O_DIRECTORY).and_then(|d| fsync(d.as_fd(), false))
}

fn place(
    dir: BorrowedFd<'_>,
    tmp: &OsStr,
    written: BorrowedFd<'_>,
    name: &OsStr,
    placement: Placement,
) -> io::Result<()> {
    if placement == Placement::Replace {
        return renameat2(dir, tmp, dir, name, 0);
    }
    match renameat2(dir, tmp, dir, name, libc::RENAME_NOREPLACE) {
        // Filesystems without RENAME_NOREPLACE (some FUSE, NFS, CIFS):
        // link() refuses an existing name too. The descriptor we wrote is
        // linked, not whatever the temporary name holds by now.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            linkat_fd(written, dir, name)?;
            unlinkat(dir, tmp, false)
        }
        r => r,
    }
}

/// The directory holding `path` (opened `O_PATH`, following the path the
/// user gave) and the final component, for the `*at` helpers above.
pub fn open_parent(path: &std::path::Path) -> io::Result<(OwnedFd, std::ffi::OsString)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    Ok((open_user_dir(parent)?, name.to_owned()))
}

/// A directory the user named (symlinks on the way are the user's choice),
/// opened `O_PATH`: what lies inside it is reached only through `*at` calls.
pub fn open_user_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: valid C string; the fresh fd is owned by us.
    let fd = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`read_regular`] by path: the final component is never a symlink, a
/// device or a fifo, and the read stops at `max` bytes.
pub fn read_regular_path(path: &std::path::Path, max: usize) -> io::Result<Vec<u8>> {
    let (dir, name) = open_parent(path)?;
    read_regular(dir.as_fd(), &name, max)
}

/// Open a log file for appending, created 0600: never through a planted
/// symlink or special file, and never one another user owns (they could read
/// what we append).
pub fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    open_log_flags(path, libc::O_WRONLY | libc::O_APPEND)
}

/// A private log opened to append and to read its tail (a hash chain).
pub fn open_log_rw(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    open_log_flags(path, libc::O_RDWR | libc::O_APPEND)
}

fn open_log_flags(path: &std::path::Path, flags: libc::c_int) -> std::io::Result<std::fs::File> {
    let (dir, name) = open_parent(path)?;
    let (fd, st) = open_or_create_regular(dir.as_fd(), &name, flags, 0o600)?;
    check_private(&st)?;
    // A log an older version made 0644 stops being readable by others.
    if st.st_mode & 0o077 != 0 {
        // SAFETY: plain syscall on the descriptor we hold.
        check(unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) })?;
    }
    Ok(std::fs::File::from(fd))
}

/// A file we keep private must be ours and have no other name (a hard link
/// someone else made would be a way in to or out of it).
pub fn check_private(st: &libc::stat) -> io::Result<()> {
    if st.st_uid != geteuid() || st.st_nlink != 1 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the file belongs to another user or has other links",
        ));
    }
    Ok(())
}

fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dir_fd(p: &Path) -> OwnedFd {
        open_user_dir(p).unwrap()
    }

    #[test]
    fn create_exclusive_never_follows_or_reuses_a_planted_name() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("link")).unwrap();
        std::fs::write(t.path().join("file"), b"theirs").unwrap();
        let d = dir_fd(t.path());
        for name in ["link", "file"] {
            let e = create_exclusive(d.as_fd(), name.as_ref(), 0o600).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{name}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        let fd = create_exclusive(d.as_fd(), "new".as_ref(), 0o640).unwrap();
        assert_eq!(fstat(fd.as_fd()).unwrap().st_mode & 0o7777, 0o640);
    }

    #[test]
    fn write_new_file_exclusive_refuses_an_existing_name_and_replace_replaces_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("conf")).unwrap();
        let d = dir_fd(t.path());
        let e = write_new_file(
            d.as_fd(),
            "conf".as_ref(),
            b"new",
            0o644,
            Placement::Exclusive,
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        write_new_file(
            d.as_fd(),
            "conf".as_ref(),
            b"new",
            0o600,
            Placement::Replace,
        )
        .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        let md = std::fs::symlink_metadata(t.path().join("conf")).unwrap();
        assert!(md.file_type().is_file());
        assert_eq!(std::fs::read(t.path().join("conf")).unwrap(), b"new");
        // Nothing is left under a temporary name.
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn read_regular_refuses_special_files_and_long_ones() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", t.path().join("zero")).unwrap();
        std::fs::write(t.path().join("long"), [0u8; 17]).unwrap();
        std::fs::write(t.path().join("ok"), [1u8; 16]).unwrap();
        let d = dir_fd(t.path());
        for name in ["zero", "long"] {
            let e = read_regular(d.as_fd(), name.as_ref(), 16).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{name}");
        }
        let e = read_regular(d.as_fd(), ".".as_ref(), 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "a directory");
        assert_eq!(
            read_regular(d.as_fd(), "ok".as_ref(), 16).unwrap(),
            [1u8; 16]
        );
    }
}
