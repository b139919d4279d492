//! POSIX semantics a wider suite found wrong, each checked on a real mount
//! against a directory of the kernel's own filesystem next to the volume
//! (the same backing filesystem): what that directory answers, the mount
//! answers too.

use std::ffi::{CString, OsString};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::*;

/// The names a directory stream returns from where it stands to its end.
fn read_stream(dir: *mut libc::DIR) -> Vec<OsString> {
    let mut names = Vec::new();
    loop {
        // SAFETY: `dir` is an open stream; the entry is read before the next call.
        let entry = unsafe { libc::readdir(dir) };
        if entry.is_null() {
            return names;
        }
        // SAFETY: readdir returned a valid entry with a NUL-terminated name.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        names.push(OsString::from(std::ffi::OsStr::from_bytes(name.to_bytes())));
    }
}

/// List `dir`, create `new_name` in it with the stream still open, rewind,
/// list again: the two listings.
fn listing_around_create(dir: &Path, new_name: &str) -> (Vec<OsString>, Vec<OsString>) {
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    let stream = unsafe { libc::opendir(c.as_ptr()) };
    assert!(!stream.is_null(), "opendir {}", dir.display());
    let before = read_stream(stream);
    fs::write(dir.join(new_name), b"new").unwrap();
    // SAFETY: `stream` is open; rewound, then read, then closed once.
    let after = unsafe {
        libc::rewinddir(stream);
        let after = read_stream(stream);
        libc::closedir(stream);
        after
    };
    (before, after)
}

#[test]
fn rewinddir_shows_names_created_since_opendir() {
    if !need_root("rewinddir_shows_names_created_since_opendir") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let reference = env.path("reference");
        fs::create_dir(&reference).unwrap();
        fs::write(reference.join("old"), b"x").unwrap();
        let (_, after) = listing_around_create(&reference, "new");
        assert!(after.contains(&"new".into()), "reference: {after:?}");

        for flags in [&[][..], &["--plaintext-names"][..]] {
            let c = env.init(&format!("c{}", flags.len()), flags);
            let m = env.mount(&c, &format!("m{}", flags.len()), &[]);
            fs::create_dir(m.p("d")).unwrap();
            fs::write(m.p("d/old"), b"x").unwrap();
            let (before, after) = listing_around_create(&m.p("d"), "new");
            assert!(!before.contains(&"new".into()), "{flags:?}: {before:?}");
            assert!(
                after.contains(&"new".into()) && after.contains(&"old".into()),
                "{flags:?}: after rewinddir: {after:?}"
            );
            assert_eq!(after.len(), 4, "{flags:?}: . .. old new: {after:?}");
            m.unmount();
        }
    });
}

/// copy_file_range of `len` bytes from a file of 4 KiB at offset 0 to a new
/// file at `off_out`; the errno, or the bytes copied.
fn copy_to_offset(dir: &Path, off_out: i64, len: usize) -> Result<isize, i32> {
    let src_path = dir.join(format!("src{off_out}"));
    fs::write(&src_path, pattern(1, 4096)).unwrap();
    let src = fs::File::open(&src_path).unwrap();
    let dst = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(format!("dst{off_out}")))
        .unwrap();
    let mut off_in: i64 = 0;
    let mut off = off_out;
    // SAFETY: both descriptors are open; the offsets are valid pointers.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut off_in,
            dst.as_raw_fd(),
            &mut off,
            len,
            0,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok(n)
    }
}

/// What pwrite, ftruncate and fallocate say at `offset` in a new file of `dir`.
fn grow_to_offset(dir: &Path, offset: i64) -> [Result<i64, i32>; 3] {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(format!("grow{offset}")))
        .unwrap();
    let fd = file.as_raw_fd();
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap();
    let check = |r: i64| if r < 0 { Err(errno()) } else { Ok(r) };
    // SAFETY: `fd` is open; the buffer is valid for its length.
    let written = check(unsafe { libc::pwrite(fd, b"abcd".as_ptr().cast(), 4, offset) } as i64);
    // SAFETY: `fd` is open.
    let truncated = check(unsafe { libc::ftruncate(fd, offset) } as i64);
    // SAFETY: `fd` is open; fallocate returns the error itself.
    let allocated = match unsafe { libc::posix_fallocate(fd, offset, 4096) } {
        0 => Ok(0),
        err => Err(err),
    };
    [written, truncated, allocated]
}

#[test]
fn copy_file_range_past_the_largest_file_size_is_efbig() {
    if !need_root("copy_file_range_past_the_largest_file_size_is_efbig") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let reference = env.path("reference");
        fs::create_dir(&reference).unwrap();
        // Past any ext4/xfs/btrfs maximum, and at the very end of the offset range.
        let offsets = [1i64 << 44, 1i64 << 62, i64::MAX - 4096];
        for off in offsets {
            assert_eq!(
                copy_to_offset(&reference, off, 4096),
                Err(libc::EFBIG),
                "the backing filesystem itself, at {off}"
            );
            assert_eq!(
                grow_to_offset(&reference, off),
                [Err(libc::EFBIG); 3],
                "the backing filesystem itself, at {off}"
            );
        }
        for flags in [&[][..], &["--plaintext-names"][..]] {
            let c = env.init(&format!("c{}", flags.len()), flags);
            let m = env.mount(&c, &format!("m{}", flags.len()), NO_WRITEBACK);
            for off in offsets {
                assert_eq!(
                    copy_to_offset(&m.mnt, off, 4096),
                    Err(libc::EFBIG),
                    "{flags:?}: copy_file_range to {off}"
                );
            }
            for off in offsets {
                assert_eq!(
                    grow_to_offset(&m.mnt, off),
                    grow_to_offset(&reference, off),
                    "{flags:?}: pwrite, ftruncate, fallocate at {off}: as the backing filesystem"
                );
            }
            // Below the limit the copy still works.
            assert_eq!(copy_to_offset(&m.mnt, 1 << 20, 4096), Ok(4096));
            assert_eq!(
                fs::read(m.p(&format!("dst{}", 1 << 20))).unwrap()[1 << 20..],
                pattern(1, 4096)[..]
            );
            m.unmount();
        }
    });
}

/// The errno of `op`, or 0.
fn errno_of(op: std::io::Result<()>) -> i32 {
    op.err().map_or(0, |e| e.raw_os_error().unwrap_or(-1))
}

#[test]
fn reserved_names_are_einval_to_make_and_enoent_to_find() {
    if !need_root("reserved_names_are_einval_to_make_and_enoent_to_find") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &["--plaintext-names"]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("file"), b"x").unwrap();
        for reserved in ["envelopefs.conf", "envelopefs.lock", "envelopefs.diriv"] {
            let p = m.p(reserved);
            // A name the volume cannot store: EINVAL, as vfat answers.
            assert_eq!(errno_of(fs::write(&p, b"x")), libc::EINVAL, "{reserved}");
            assert_eq!(errno_of(fs::create_dir(&p)), libc::EINVAL, "{reserved}");
            let symlink = std::os::unix::fs::symlink("file", &p);
            assert_eq!(errno_of(symlink), libc::EINVAL, "{reserved}");
            assert_eq!(
                errno_of(fs::hard_link(m.p("file"), &p)),
                libc::EINVAL,
                "{reserved}"
            );
            let fifo = CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: valid C string.
            let made = unsafe { libc::mknod(fifo.as_ptr(), libc::S_IFIFO | 0o600, 0) };
            assert_eq!(made, -1, "{reserved}");
            let mknod_errno = std::io::Error::last_os_error().raw_os_error();
            assert_eq!(mknod_errno, Some(libc::EINVAL), "{reserved}");
            assert_eq!(
                errno_of(fs::rename(m.p("file"), &p)),
                libc::EINVAL,
                "{reserved}"
            );
            // Hidden: it does not exist.
            assert_eq!(
                errno_of(fs::metadata(&p).map(drop)),
                libc::ENOENT,
                "{reserved}"
            );
            assert_eq!(errno_of(fs::remove_file(&p)), libc::ENOENT, "{reserved}");
            assert_eq!(errno_of(fs::remove_dir(&p)), libc::ENOENT, "{reserved}");
        }
        assert_eq!(fs::read(m.p("file")).unwrap(), b"x");
        m.unmount();
    });
}

/// Unmounts the tmpfs it names when dropped (after the volume's mount).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf) -> Tmpfs {
        fs::create_dir_all(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs at {}", path.display());
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The plaintext size of a backing file of i64::MAX bytes: the largest file.
/// The size limit is checked by the daemon, so a write past it fails at
/// write(2) only when writes reach the daemon as they are made; with
/// writeback caching it fails at fsync or close (tests/system/writeback.rs).
const NO_WRITEBACK: &[&str] = &["--no-writeback-cache"];

fn largest_plain_size(block_size: u64, header_len: u64) -> u64 {
    let overhead = 8 + 12 + 16;
    let cipher = i64::MAX as u64 - header_len;
    let (full, rem) = (
        cipher / (block_size + overhead),
        cipher % (block_size + overhead),
    );
    full * block_size + rem.saturating_sub(overhead)
}

/// What pwrite of `data` at `offset`, ftruncate to `offset` and fallocate
/// of one byte at `offset` say in the file `fd`.
fn at_offset(fd: i32, offset: u64, data: &[u8]) -> [Result<i64, i32>; 3] {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap();
    let check = |r: i64| if r < 0 { Err(errno()) } else { Ok(r) };
    let offset = offset as i64;
    // SAFETY: `fd` is open; the buffer is valid for its length.
    let written =
        check(unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), offset) } as i64);
    // SAFETY: `fd` is open.
    let truncated = check(unsafe { libc::ftruncate(fd, offset) } as i64);
    // SAFETY: `fd` is open; fallocate returns the error itself.
    let allocated = match unsafe { libc::posix_fallocate(fd, offset, 1) } {
        0 => Ok(0),
        err => Err(err),
    };
    [written, truncated, allocated]
}

#[test]
fn the_largest_file_size_is_exact_on_a_backing_that_holds_it() {
    if !need_root("the_largest_file_size_is_exact_on_a_backing_that_holds_it") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        // tmpfs holds files up to i64::MAX bytes, as the daemon's limit assumes.
        let _tmpfs = Tmpfs::mount(env.path("t"));
        let reference = fs::File::create(env.path("t/reference")).unwrap();
        let max = i64::MAX as u64;
        assert_eq!(
            at_offset(reference.as_raw_fd(), max - 1, b"z"),
            [Ok(1), Ok(0), Ok(0)],
            "tmpfs itself below its limit"
        );
        // At i64::MAX the write's end overflows the offset type (EINVAL).
        assert_eq!(
            at_offset(reference.as_raw_fd(), max, b"z"),
            [Err(libc::EINVAL), Ok(0), Err(libc::EFBIG)],
            "tmpfs itself at its limit"
        );
        drop(reference);
        for (block_size, location) in [
            (4096u64, "header"),
            (4096, "xattr"),
            (512, "header"),
            (1 << 20, "xattr"),
        ] {
            let header_len = if location == "header" { 84 } else { 0 };
            let limit = largest_plain_size(block_size, header_len);
            let what = format!("block size {block_size}, key in {location}, limit {limit}");
            let name = format!("{block_size}{location}");
            let bs = block_size.to_string();
            let c = env.init(
                &format!("t/c{name}"),
                &["--block-size", &bs, "--key-location", location],
            );
            let m = env.mount(&c, &format!("m{name}"), NO_WRITEBACK);
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(m.p("f"))
                .unwrap();
            let fd = file.as_raw_fd();
            assert_eq!(
                at_offset(fd, limit - 1, b"z"),
                [Ok(1), Ok(0), Ok(0)],
                "{what}: just below"
            );
            assert_eq!(
                at_offset(fd, limit, b"z"),
                [Err(libc::EFBIG), Ok(0), Err(libc::EFBIG)],
                "{what}: at the limit"
            );
            assert_eq!(
                at_offset(fd, limit + 1, b"z"),
                [Err(libc::EFBIG), Err(libc::EFBIG), Err(libc::EFBIG)],
                "{what}: past the limit"
            );
            // A write crossing the limit is cut short at it, and reads back.
            // SAFETY: `fd` is open; the buffer is valid for its length.
            let n = unsafe { libc::pwrite(fd, b"abcd".as_ptr().cast(), 4, (limit - 2) as i64) };
            assert_eq!(n, 2, "{what}: a write crossing the limit");
            let mut tail = [0u8; 4];
            // SAFETY: `fd` is open; the buffer is valid for its length.
            let n = unsafe { libc::pread(fd, tail.as_mut_ptr().cast(), 4, (limit - 2) as i64) };
            assert_eq!((n, &tail[..2]), (2, &b"ab"[..]), "{what}: the tail");
            assert_eq!(file.metadata().unwrap().len(), limit, "{what}: size");
            drop(file);
            m.unmount();
        }
    });
}
