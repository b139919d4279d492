//! FUSE writeback caching (on by default): the kernel keeps written pages
//! in its cache and sends them later in large pieces, reads partial pages
//! through whatever handle is open (even a write-only one), appends from
//! its own idea of the size, and sends the file's times when it flushes.
//! Each test checks what a program sees, and what is on disk after a
//! remount or a crash.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use crate::common::*;

/// A write-only handle that writes part of a page: the kernel must first
/// read that page, through the same write-only handle.
#[test]
fn write_only_handle_partial_page_write() {
    if !need_fuse("writeback::write_only_handle_partial_page_write") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let m = env.mount(&cipher, "m", &[]);
        let mut want = pattern(1, 20_000);
        fs::write(m.p("f"), &want).unwrap();
        // A fresh mount: nothing of f is in the page cache.
        m.unmount();
        let m = env.mount(&cipher, "m", &[]);
        let f = fs::OpenOptions::new().write(true).open(m.p("f")).unwrap();
        f.write_all_at(b"0123456789", 5_000).unwrap();
        f.write_all_at(b"tail", 19_998).unwrap();
        drop(f);
        want[5_000..5_010].copy_from_slice(b"0123456789");
        want.truncate(19_998);
        want.extend_from_slice(b"tail");
        same_bytes(&fs::read(m.p("f")).unwrap(), &want, "through the mount");
        m.unmount();
        let m = env.mount(&cipher, "m", &[]);
        same_bytes(&fs::read(m.p("f")).unwrap(), &want, "after a remount");
        m.unmount();
    });
}

/// Two O_APPEND handles of one file take turns: every write lands at the
/// end, none overwrites another.
#[test]
fn append_from_two_handles() {
    if !need_fuse("writeback::append_from_two_handles") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let m = env.mount(&cipher, "m", &[]);
        fs::write(m.p("log"), b"head\n").unwrap();
        let open = || {
            fs::OpenOptions::new()
                .append(true)
                .open(m.p("log"))
                .unwrap()
        };
        let (mut a, mut b) = (open(), open());
        let mut want = b"head\n".to_vec();
        for i in 0..50 {
            let (line_a, line_b) = (format!("a{i}\n"), format!("b{i} {}\n", "x".repeat(i * 97)));
            a.write_all(line_a.as_bytes()).unwrap();
            b.write_all(line_b.as_bytes()).unwrap();
            want.extend_from_slice(line_a.as_bytes());
            want.extend_from_slice(line_b.as_bytes());
        }
        a.sync_all().unwrap();
        drop((a, b));
        same_bytes(&fs::read(m.p("log")).unwrap(), &want, "through the mount");
        m.unmount();
        let m = env.mount(&cipher, "m", &[]);
        same_bytes(&fs::read(m.p("log")).unwrap(), &want, "after a remount");
        m.unmount();
    });
}

/// The modification time a file shows after a write is the write's, and it
/// stays so across close (when the kernel sends the cached pages later) and
/// a remount.
#[test]
fn mtime_is_the_writes_after_close_and_remount() {
    if !need_fuse("writeback::mtime_is_the_writes_after_close_and_remount") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let m = env.mount(&cipher, "m", &[]);
        fs::write(m.p("f"), b"old").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut f = fs::OpenOptions::new().write(true).open(m.p("f")).unwrap();
        f.write_all(b"new content").unwrap();
        let at_write = fs::metadata(m.p("f")).unwrap();
        // Close well after the write: the pages reach the daemon now.
        std::thread::sleep(std::time::Duration::from_millis(1_200));
        drop(f);
        let mtime = |md: &fs::Metadata| (md.mtime(), md.mtime_nsec());
        let after_close = fs::metadata(m.p("f")).unwrap();
        assert_eq!(mtime(&after_close), mtime(&at_write), "after close");
        assert_eq!(after_close.len(), 11);
        m.unmount();
        let m = env.mount(&cipher, "m", &[]);
        let remounted = fs::metadata(m.p("f")).unwrap();
        assert_eq!(mtime(&remounted), mtime(&at_write), "after a remount");
        assert_eq!(fs::read(m.p("f")).unwrap(), b"new content");
        m.unmount();
    });
}

/// Stores through a shared mapping, then msync(MS_SYNC): they are on disk,
/// even if the daemon is killed right after.
#[test]
fn mmap_write_msync_survives_a_crash() {
    if !need_fuse("writeback::mmap_write_msync_survives_a_crash") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let mut m = env.mount(&cipher, "m", &[]);
        let len = 3 * 4096 + 100;
        let mut want = pattern(2, len);
        fs::write(m.p("f"), &want).unwrap();
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.p("f"))
            .unwrap();
        let stores = [(10, b"first page".as_slice()), (2 * 4096 + 7, b"third")];
        map_store_sync(&f, len, &stores);
        for (at, bytes) in stores {
            want[at..at + bytes.len()].copy_from_slice(bytes);
        }
        let mut seen = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut seen).unwrap();
        same_bytes(&seen, &want, "read back through the mount");
        drop(f);
        m.kill9();
        let m = env.mount(&cipher, "m2", &[]);
        same_bytes(&fs::read(m.p("f")).unwrap(), &want, "after kill -9");
        m.unmount();
    });
}

/// `got` is `want`; else where they part (not both dumped whole).
fn same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(g, w)| g != w);
        panic!(
            "{what}: {} bytes, {} expected; first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
}

/// Map `len` bytes of `f` shared, store `stores` into the mapping, msync
/// it (MS_SYNC) and unmap it.
fn map_store_sync(f: &fs::File, len: usize, stores: &[(usize, &[u8])]) {
    // SAFETY: a fresh shared mapping of `len` bytes of an open file that is
    // at least that long; every store is checked to lie inside it, and the
    // mapping is unmapped before returning.
    unsafe {
        let at = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(at, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        for (offset, bytes) in stores {
            assert!(offset + bytes.len() <= len);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (at as *mut u8).add(*offset),
                bytes.len(),
            );
        }
        let synced = libc::msync(at, len, libc::MS_SYNC);
        assert_eq!(synced, 0, "msync: {}", std::io::Error::last_os_error());
        assert_eq!(libc::munmap(at, len), 0);
    }
}

/// With writeback caching a write past the largest file size lands in the
/// page cache; the daemon refuses it when the kernel sends it, and fsync
/// reports EFBIG. The file keeps what was written before.
#[test]
fn write_past_the_largest_size_fails_at_fsync() {
    if !need_fuse("writeback::write_past_the_largest_size_fails_at_fsync") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let m = env.mount(&cipher, "m", &[]);
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(m.p("f"))
            .unwrap();
        f.write_all_at(b"y", 0).unwrap();
        f.sync_all().unwrap();
        // Past the daemon's limit (the backing file's is larger: overhead),
        // below the kernel's.
        f.write_all_at(b"z", i64::MAX as u64 - 4096).unwrap();
        let err = f.sync_all().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "fsync: {err}");
        drop(f);
        m.unmount();
        let m = env.mount(&cipher, "m", &[]);
        same_bytes(&fs::read(m.p("f")).unwrap(), b"y", "after a remount");
        m.unmount();
    });
}

/// `--no-writeback-cache` sends each write to the daemon at once.
#[test]
fn no_writeback_cache_writes_through() {
    if !need_fuse("writeback::no_writeback_cache_writes_through") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let m = env.mount(&cipher, "m", &["--no-writeback-cache"]);
        let mut f = fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o644)
            .open(m.p("f"))
            .unwrap();
        let backing = backing_path(&cipher, &m.p("f"));
        let empty = fs::metadata(&backing).unwrap().len();
        f.write_all(b"written through").unwrap();
        // Before any fsync or close: the backing file already holds it.
        assert!(
            fs::metadata(&backing).unwrap().len() > empty,
            "the write reached the backing file before close"
        );
        drop(f);
        m.unmount();
    });
}
