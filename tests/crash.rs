//! Crash tests: kill -9 of the daemon under writers, a last block torn after
//! its fsync, and a full backing filesystem. What was fsync'd survives; torn
//! data reads as EIO, never as other bytes; a damaged file can still be
//! listed, stat'ed, truncated, deleted.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const REC: usize = 1000;

fn record(file: usize, n: u64) -> Vec<u8> {
    let mut r = format!("file {file} record {n:08} ").into_bytes();
    r.resize(REC - 1, b'.');
    r.push(b'\n');
    r
}

/// The volumes' block size.
const BLOCK: usize = 4096;

/// `p` read block by block (`block` bytes each, from offset 0): Some(len) for
/// a block that read, whose bytes must equal `want(position)` exactly; None
/// for one that failed, which must be EIO and among the `torn_max` last.
fn read_blocks(
    p: &std::path::Path,
    block: usize,
    torn_max: usize,
    want: impl Fn(usize) -> u8,
) -> Vec<Option<usize>> {
    let f = fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let count = len.div_ceil(block);
    let mut out = Vec::with_capacity(count);
    for b in 0..count {
        let off = b * block;
        let mut buf = vec![0u8; block.min(len - off)];
        match f.read_exact_at(&mut buf, off as u64) {
            Ok(()) => {
                for (k, byte) in buf.iter().enumerate() {
                    assert_eq!(*byte, want(off + k), "{}: byte {}", p.display(), off + k);
                }
                out.push(Some(buf.len()));
            }
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EIO),
                    "{}: block {b}",
                    p.display()
                );
                assert!(
                    b + torn_max >= count,
                    "{}: block {b} of {count} unreadable",
                    p.display()
                );
                out.push(None);
            }
        }
    }
    out
}

#[test]
fn kill9_keeps_every_fsynced_record() {
    bounded(180, || {
        let env = Env::new();
        let c = env.init("c", &["--block-size", &BLOCK.to_string()]);
        let mut m = env.mount(&c, "m", &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let synced: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let acked: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let writers: Vec<_> = (0..3)
            .map(|i| {
                let p = m.p(&format!("log{i}"));
                let stop = stop.clone();
                let synced = synced[i].clone();
                let acked = acked[i].clone();
                std::thread::spawn(move || {
                    let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&p) else {
                        return;
                    };
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if f.write_all(&record(i, n)).is_err() {
                            return;
                        }
                        n += 1;
                        acked.store(n, Ordering::SeqCst);
                        if n % 3 == 0 {
                            if f.sync_all().is_err() {
                                return;
                            }
                            synced.store(n, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        m.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        let m2 = env.mount(&c, "m", &[]);
        // A torn block is logged with its file's backing name: these files only.
        for i in 0..3 {
            let torn = backing_path(&c, &m2.p(&format!("log{i}")));
            m2.expect_log(torn.file_name().unwrap().to_str().unwrap());
        }
        // fsck names whatever the kill tore (or finds nothing), and never fails otherwise.
        let out = env.run(&["fsck", c.to_str().unwrap(), "--json"]);
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(30),
            "fsck: {code:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for p in report["Problems"].as_array().unwrap() {
            let what = p["Problem"].as_str().unwrap();
            assert!(
                what.contains("torn") || what.contains("block"),
                "unexpected problem {p}"
            );
            assert!(p["Path"].as_str().unwrap().starts_with("/log"), "{p}");
        }
        for (i, s) in synced.iter().enumerate() {
            let s = s.load(Ordering::SeqCst);
            let acked = acked[i].load(Ordering::SeqCst);
            assert!(s > 0, "writer {i} synced nothing");
            let p = m2.p(&format!("log{i}"));
            let f = fs::File::open(&p).unwrap();
            let mut buf = vec![0u8; s as usize * REC];
            f.read_exact_at(&mut buf, 0).unwrap();
            for n in 0..s {
                let at = n as usize * REC;
                assert_eq!(
                    &buf[at..at + REC],
                    record(i, n).as_slice(),
                    "file {i} record {n}"
                );
            }
            // Every block reads as the records, except that the one write in
            // flight at the kill may have torn the (at most two) last blocks:
            // those give EIO, never other bytes, and hold no fsync'd byte (a
            // torn block that held some is restored from its tail copy).
            let len = fs::metadata(&p).unwrap().len();
            let blocks = read_blocks(&p, BLOCK, 2, |pos| record(i, (pos / REC) as u64)[pos % REC]);
            let torn = blocks.iter().filter(|r| r.is_none()).count();
            assert_eq!(blocks.len() as u64, len.div_ceil(BLOCK as u64), "file {i}");
            assert!(torn <= 2, "file {i}: {torn} blocks torn");
            if let Some(first_torn) = blocks.iter().position(|r| r.is_none()) {
                assert!(
                    first_torn * BLOCK >= s as usize * REC,
                    "file {i}: block {first_torn} torn, {s} records synced"
                );
            }
            // With writeback caching (the default) an acknowledged write may
            // still have been in the kernel's page cache at the kill: what
            // is lost is at most the records since the last fsync (two, or
            // three when the fsync after them failed at the kill).
            assert!(
                len >= s * REC as u64 && s + 3 >= acked,
                "file {i}: {len} bytes, {s} records synced, {acked} acknowledged"
            );
            eprintln!(
                "file {i}: {s} records synced, {acked} acknowledged, {len} bytes, {} blocks read, {torn} torn",
                blocks.len() - torn
            );
            // A damaged or not, the file can be listed, stat'ed, truncated and deleted.
            assert!(fs::read_dir(&m2.mnt)
                .unwrap()
                .any(|e| e.unwrap().file_name() == *format!("log{i}")));
            OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(s * REC as u64)
                .unwrap();
            assert_eq!(fs::metadata(&p).unwrap().len(), s * REC as u64);
            fs::remove_file(&p).unwrap();
        }
        m2.unmount();
    });
}

/// The records `0..n` of file 0, as one buffer.
fn records(n: u64) -> Vec<u8> {
    (0..n).flat_map(|k| record(0, k)).collect()
}

/// A crash during an append tore the file's partial last block (the new
/// block's first page written, the rest not): the fsync'd records in it are
/// restored from the copy fsync kept, before the kernel first sees the file's
/// size, so the file is exactly as fsync'd. A read-only mount does not
/// repair (EIO); fsck says the block is restorable.
#[test]
fn torn_last_block_is_restored_as_fsynced() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &["--block-size", &BLOCK.to_string()]);
        let m = env.mount(&c, "m", &[]);
        let mut f = fs::File::create(m.p("log")).unwrap();
        f.write_all(&records(3)).unwrap();
        f.sync_all().unwrap();
        drop(f);
        let backing = backing_path(&c, &m.p("log"));
        m.unmount();
        let before = fs::read(&backing).unwrap();
        // The next append, not fsync'd, reaches the backing file at close.
        let m = env.mount(&c, "m", &[]);
        let mut f = OpenOptions::new().append(true).open(m.p("log")).unwrap();
        f.write_all(&record(0, 3)).unwrap();
        drop(f);
        m.unmount();
        let after = fs::read(&backing).unwrap();
        let first_diff = before.iter().zip(&after).position(|(a, b)| a != b).unwrap();
        // Killed between the pages of that write: the first page new.
        let cut = (first_diff / 4096 + 1) * 4096;
        assert!(cut < after.len(), "{first_diff} {cut}");
        let mut torn = before.clone();
        torn.resize(torn.len().max(cut), 0);
        torn[first_diff..cut].copy_from_slice(&after[first_diff..cut]);
        // Rewritten in place: the backing file keeps its xattrs.
        let b = OpenOptions::new().write(true).open(&backing).unwrap();
        b.set_len(torn.len() as u64).unwrap();
        b.write_all_at(&torn, 0).unwrap();
        drop(b);
        let name = backing.file_name().unwrap().to_str().unwrap().to_owned();
        let out = env.run(&["fsck", c.to_str().unwrap(), "--json"]);
        assert_eq!(
            out.status.code(),
            Some(30),
            "fsck of a torn file: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let problems = report["Problems"].as_array().unwrap();
        assert!(
            problems.iter().any(|p| p["Problem"]
                .as_str()
                .unwrap()
                .contains("torn by a crash: a read-write mount restores it")),
            "{problems:?}"
        );
        let ro = env.mount(&c, "m", &["--read-only"]);
        ro.expect_log(&name);
        let err = fs::File::open(ro.p("log"))
            .unwrap()
            .read_exact_at(&mut vec![0u8; 3 * REC], 0)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        ro.unmount();
        assert_eq!(
            fs::read(&backing).unwrap(),
            torn,
            "a read-only mount repairs"
        );
        let m = env.mount(&c, "m", &[]);
        m.expect_log(&name);
        assert_eq!(fs::metadata(m.p("log")).unwrap().len(), 3 * REC as u64);
        assert_eq!(fs::read(m.p("log")).unwrap(), records(3));
        assert_eq!(fs::read(&backing).unwrap(), before);
        let restored = m
            .log_text()
            .lines()
            .filter(|l| l.contains(&name) && l.contains("restored as it was at the last fsync"))
            .count();
        assert_eq!(restored, 1, "{}", m.log_text());
        m.unmount();
        let out = env.run(&["fsck", c.to_str().unwrap(), "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    });
}

/// The tail copy lives in the backing file's xattrs, which a backing
/// filesystem like ext4 holds in about 4 KiB per inode: after an fsync of a
/// nearly full last block the copy fills that space. A user xattr set then
/// must still succeed (it displaces the copy, a crash aid only), and the
/// next fsync keeps what copy still fits.
#[test]
fn user_xattrs_displace_the_tail_copy() {
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &["--block-size", "4096"]);
        let m = env.mount(&c, "m", &[]);
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(m.p("f"))
            .unwrap();
        f.set_len(8191).unwrap();
        f.sync_all().unwrap();
        for (i, len) in [141usize, 1000, 2000].into_iter().enumerate() {
            let name = format!("user.x{i}");
            let value = vec![b'a' + i as u8; len];
            xattr_set(&m.p("f"), &name, &value);
            assert_eq!(xattr_get(&m.p("f"), &name).as_deref(), Some(&value[..]));
            f.sync_all().unwrap();
        }
        drop(f);
        assert_eq!(fs::read(m.p("f")).unwrap(), vec![0u8; 8191]);
        m.unmount();
    });
}

/// A 2 MiB tmpfs to hold a volume; unmounted (lazily) on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn new(env: &Env) -> SmallFs {
        let small = env.path("small");
        fs::create_dir(&small).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&small)
            .status()
            .unwrap();
        assert!(st.success());
        SmallFs(small)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// close(2) of `f`, with its error (std's drop ignores it).
fn close(f: fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken from a File, so it is open and owned here.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// With writeback caching (the default) the kernel takes writes into its
/// page cache and sends them later: a full backing filesystem is reported
/// by fsync, or by close when no fsync came first, never dropped silently.
/// What was written before stays intact, and the file that hit the limit
/// holds nothing but what was written, holes and torn (EIO) blocks (after a
/// remount: the disk's truth).
#[test]
fn full_backing_filesystem_reports_enospc_at_fsync_and_close() {
    if !need_fuse("full_backing_filesystem_reports_enospc_at_fsync_and_close") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let (_small, c, m) = volume_on_small_fs(&env, &[]);
        let keep = pattern(1, 300_000);
        fs::write(m.p("keep"), &keep).unwrap();
        let chunk = pattern(2, 64 * 1024);
        // Both made while there is room for their headers.
        let f = fs::File::create(m.p("filler")).unwrap();
        let g = fs::File::create(m.p("unsynced")).unwrap();
        // Twice the filesystem: every write(2) lands in the page cache.
        for _ in 0..64 {
            (&f).write_all(&chunk).unwrap();
        }
        // Torn last blocks are logged (EIO) with their backing names.
        let backing_name = |name: &str| {
            let backing = backing_path(&c, &m.p(name));
            let name = backing.file_name().unwrap().to_str().unwrap().to_owned();
            m.expect_log(&name);
            name
        };
        // The kernel reports the last failed WRITE: ENOSPC, or EIO when it
        // extended the file past a block an earlier ENOSPC tore (logged).
        let reported = |what: &str, err: std::io::Error, backing: &str| {
            let tore = m
                .log_text()
                .lines()
                .any(|l| l.contains("failed authentication") && l.contains(backing));
            match err.raw_os_error() {
                Some(libc::ENOSPC) => {}
                Some(libc::EIO) if tore => {}
                _ => panic!("{what}: {err} (a block of {backing} torn: {tore})"),
            }
        };
        let err = f.sync_all().unwrap_err();
        let mut torn = vec![backing_name("filler")];
        reported("fsync", err, &torn[0]);
        close(f).unwrap();
        // No fsync: close reports it.
        for _ in 0..4 {
            (&g).write_all(&chunk).unwrap();
        }
        torn.push(backing_name("unsynced"));
        let err = close(g).unwrap_err();
        reported("close", err, &torn[1]);
        m.unmount();
        let m = env.mount(&c, "m2", &[]);
        for name in &torn {
            m.expect_log(name);
        }
        assert_eq!(
            fs::read(m.p("keep")).unwrap(),
            keep,
            "data written before stays intact"
        );
        // The kernel sends cached pages in several WRITEs at once, so the
        // one that failed may lie before one that succeeded: the filler is
        // not a prefix, but each of its blocks reads as what was written,
        // as a hole (zeros), or fails with EIO (torn): never other bytes.
        let filler = fs::File::open(m.p("filler")).unwrap();
        let len = filler.metadata().unwrap().len() as usize;
        assert!(len < 64 * chunk.len(), "filler: {len} bytes");
        let (mut written, mut holes, mut torn_blocks) = (0, 0, 0);
        for start in (0..len).step_by(BLOCK) {
            let mut buf = vec![0u8; BLOCK.min(len - start)];
            match filler.read_exact_at(&mut buf, start as u64) {
                Ok(())
                    if buf
                        .iter()
                        .enumerate()
                        .all(|(k, b)| *b == chunk[(start + k) % chunk.len()]) =>
                {
                    written += 1
                }
                Ok(()) if buf.iter().all(|b| *b == 0) => holes += 1,
                Ok(()) => panic!("filler: block at {start} holds other bytes"),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => torn_blocks += 1,
                Err(e) => panic!("filler: block at {start}: {e}"),
            }
        }
        eprintln!("filler: {written} blocks written, {holes} holes, {torn_blocks} torn");
        drop(filler);
        fs::remove_file(m.p("filler")).unwrap();
        fs::remove_file(m.p("unsynced")).unwrap();
        write_once_space_is_back(&m);
        m.unmount();
    });
}

/// With `--no-writeback-cache` each write(2) reaches the daemon: the one
/// that finds the backing filesystem full fails with ENOSPC itself.
#[test]
fn full_backing_filesystem_reports_enospc_at_the_write_without_writeback() {
    if !need_fuse("full_backing_filesystem_reports_enospc_at_the_write_without_writeback") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let (_small, c, m) = volume_on_small_fs(&env, &["--no-writeback-cache"]);
        let keep = pattern(1, 300_000);
        fs::write(m.p("keep"), &keep).unwrap();
        let mut f = fs::File::create(m.p("filler")).unwrap();
        let chunk = pattern(2, 64 * 1024);
        let mut written = 0;
        let err = loop {
            match f.write_all(&chunk) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 64, "64 chunks into a 2 MiB filesystem");
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        drop(f);
        assert_eq!(
            fs::read(m.p("keep")).unwrap(),
            keep,
            "data written before stays intact"
        );
        // The filler holds a prefix of what was written; only its last block
        // may be torn (EIO, logged with its backing name).
        let backing = backing_path(&c, &m.p("filler"));
        m.expect_log(backing.file_name().unwrap().to_str().unwrap());
        let len = fs::metadata(m.p("filler")).unwrap().len();
        let blocks = read_blocks(&m.p("filler"), BLOCK, 1, |pos| chunk[pos % chunk.len()]);
        let read = blocks.iter().flatten().count();
        assert!(
            len >= chunk.len() as u64 && read + 1 >= blocks.len(),
            "filler: {len} bytes, {read} of {} blocks read",
            blocks.len()
        );
        fs::remove_file(m.p("filler")).unwrap();
        write_once_space_is_back(&m);
        m.unmount();
    });
}

/// A small write succeeds once the space of removed files is back.
fn write_once_space_is_back(m: &Mount) {
    // The backing file's space comes back when the daemon closes it: on
    // the kernel's FORGET, which is asynchronous (and with FUSE over
    // io_uring travels apart from the other requests). Bounded wait.
    let t0 = std::time::Instant::now();
    loop {
        let written = fs::File::create(m.p("after"))
            .and_then(|mut f| f.write_all(b"space again").and_then(|()| f.sync_all()));
        match written {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && t0.elapsed().as_secs() < 5 => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("write after freeing space: {e}"),
        }
    }
    eprintln!("space freed after {:?}", t0.elapsed());
    assert_eq!(fs::read(m.p("after")).unwrap(), b"space again");
}

/// A volume on a small filesystem of its own, mounted with `args`: the
/// filesystem (unmounted when dropped), the cipher directory, the mount.
fn volume_on_small_fs(env: &Env, args: &[&str]) -> (SmallFs, std::path::PathBuf, Mount) {
    let small = SmallFs::new(env);
    let c = small.0.join("c");
    env.run_ok(&["init", c.to_str().unwrap()]);
    let m = env.mount(&c, "m", args);
    (small, c, m)
}
