//! The kernel's caches the daemon turns on (issue 17): missing names are
//! cached as negative entries, READDIRPLUS entries count as lookups, and
//! file pages stay cached across opens. Each is checked for what it must
//! not change (a name made through the mount shows at once, the node table
//! empties when the kernel drops its caches) and for what it does change.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// Held by the tests here that drop the kernel's caches or need them kept
/// (other processes on the machine may still drop them: the checks allow it).
static KERNEL_CACHES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Makes a name through the mount.
type MakeName<'a> = dyn Fn(&Path) + 'a;

fn missing(p: &Path) -> bool {
    errno(fs::symlink_metadata(p)) == Some(libc::ENOENT)
}

#[test]
fn a_name_made_through_the_mount_after_a_failed_lookup_shows_at_once() {
    if !need_root("a_name_made_through_the_mount_after_a_failed_lookup_shows_at_once") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("target"), b"t").unwrap();
        fs::create_dir(m.p("elsewhere")).unwrap();
        fs::write(m.p("elsewhere/moved"), b"moved").unwrap();
        {
            let makers: [(&str, &MakeName<'_>); 6] = [
                ("create", &|p| fs::write(p, b"new").unwrap()),
                ("mkdir", &|p| fs::create_dir(p).unwrap()),
                ("symlink", &|p| symlink("target", p).unwrap()),
                ("link", &|p| fs::hard_link(m.p("target"), p).unwrap()),
                ("rename", &|p| {
                    fs::rename(m.p("elsewhere/moved"), p).unwrap()
                }),
                ("mkfifo", &|p| {
                    let status = Command::new("mkfifo").arg(p).status().unwrap();
                    assert!(status.success());
                }),
            ];
            for (how, make) in makers {
                let p = m.p(&format!("made-by-{how}"));
                // Twice: the second lookup is answered from the kernel's cache.
                assert!(missing(&p), "{how}: exists before");
                assert!(missing(&p), "{how}: exists before");
                make(&p);
                let md = fs::symlink_metadata(&p)
                    .unwrap_or_else(|e| panic!("{how}: not visible right after: {e}"));
                assert_ne!(md.ino(), 0, "{how}");
                let listed = fs::read_dir(m.p(""))
                    .unwrap()
                    .any(|e| e.unwrap().file_name() == p.file_name().unwrap());
                assert!(listed, "{how}: not listed");
            }
        }
        // Gone again after unlink, and made again at once.
        fs::remove_file(m.p("made-by-create")).unwrap();
        assert!(missing(&m.p("made-by-create")));
        fs::write(m.p("made-by-create"), b"again").unwrap();
        assert_eq!(fs::read(m.p("made-by-create")).unwrap(), b"again");
        m.unmount();
    });
}

/// The semantics the lever changes: a name planted in the backing
/// directory behind the daemon's back, after a lookup of it failed, shows
/// only once the kernel's negative entry expires (the entry timeout).
#[test]
fn a_name_planted_in_the_backing_directory_shows_after_the_entry_timeout() {
    if !need_root("a_name_planted_in_the_backing_directory_shows_after_the_entry_timeout") {
        return;
    }
    bounded(90, || {
        let _caches = KERNEL_CACHES.lock().unwrap_or_else(|e| e.into_inner());
        let env = Env::new();
        let c = env.init("c", &["--plaintext-names"]);
        let m = env.mount(&c, "m", &[]);
        let p = m.p("planted");
        assert!(missing(&p));
        fs::write(c.join("planted"), b"").unwrap();
        let planted_at = Instant::now();
        assert!(missing(&p), "the failed lookup was not cached");
        // The entry timeout is 10 s; bounded at three times that.
        while missing(&p) {
            assert!(
                planted_at.elapsed() < Duration::from_secs(30),
                "never shows"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        m.unmount();
    });
}

/// How many nodes the daemon serving `cipher` holds (control socket `NODES`).
fn known_nodes(cipher: &Path) -> usize {
    let sock = envelopefs::snapshot::control::socket_path(&cipher.canonicalize().unwrap());
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"NODES\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    let n = line.trim().strip_prefix("NODES ");
    n.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("control socket answered {line:?}"))
}

fn drop_caches() {
    fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
}

#[test]
fn the_node_table_empties_after_ls_l_of_100k_entries_and_a_cache_drop() {
    if !need_root("the_node_table_empties_after_ls_l_of_100k_entries_and_a_cache_drop") {
        return;
    }
    bounded(300, || {
        let _caches = KERNEL_CACHES.lock().unwrap_or_else(|e| e.into_inner());
        const ENTRIES: usize = 100_000;
        let env = Env::new();
        let c = env.init("c", &["--plaintext-names"]);
        // Made in the backing directory: 100k creates through the mount
        // would be most of the test's time.
        fs::create_dir(c.join("big")).unwrap();
        for i in 0..ENTRIES {
            fs::File::create(c.join(format!("big/file{i:06}"))).unwrap();
        }
        let m = env.mount(&c, "m", &[]);
        let before = known_nodes(&c);
        // Again if a cache drop elsewhere on the machine took nodes back
        // before they were counted.
        let mut looked_up = 0;
        for _ in 0..3 {
            let out = Command::new("ls")
                .arg("-l")
                .arg(m.p("big"))
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout.split(|b| *b == b'\n').count(), ENTRIES + 2);
            looked_up = known_nodes(&c);
            if looked_up >= ENTRIES {
                break;
            }
        }
        assert!(looked_up >= ENTRIES, "{looked_up} nodes after ls -l");
        let out = Command::new("find").arg(m.p("big")).output().unwrap();
        assert!(out.status.success());
        // Dropped twice: the kernel's FORGETs arrive after the drop returns.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut left = looked_up;
        while left > before + 2 && Instant::now() < deadline {
            drop_caches();
            std::thread::sleep(Duration::from_millis(500));
            left = known_nodes(&c);
        }
        assert!(
            left <= before + 2,
            "{left} nodes left after the caches dropped (before: {before})"
        );
        m.unmount();
    });
}

/// Whether every page of `p` is in the page cache (mincore of a mapping).
fn all_pages_cached(p: &Path) -> bool {
    let f = fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: a shared read-only mapping of an open file, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `addr` maps `len` bytes; `vec` has a byte per page.
    let r = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(addr, len) };
    assert_eq!(r, 0);
    vec.iter().all(|v| v & 1 == 1)
}

#[test]
fn file_pages_stay_cached_across_opens_and_changes_show() {
    if !need_root("file_pages_stay_cached_across_opens_and_changes_show") {
        return;
    }
    bounded(60, || {
        let _caches = KERNEL_CACHES.lock().unwrap_or_else(|e| e.into_inner());
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let p = m.p("f");
        let data = pattern(1, 1 << 20);
        fs::write(&p, &data).unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        // The open mincore makes would drop the pages without KEEP_CACHE.
        assert!(all_pages_cached(&p), "pages dropped by an open");
        // Changes through the mount show to the next open.
        let mut f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all(b"changed").unwrap();
        drop(f);
        assert_eq!(&fs::read(&p).unwrap()[..7], b"changed");
        fs::write(&p, b"short").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
        m.unmount();
    });
}
