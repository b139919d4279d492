//! Adversarial checks of the cache levers (writeback, KEEP_CACHE, negative
//! entries, READDIRPLUS) on real mounts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::common::*;

/// A `--read-only` mount may share a volume with the read-write mount
/// (README). What the read-write mount changed must show there once its
/// attributes time out (10 s) and the file is opened again: a bigger size
/// after an append, new bytes after an overwrite of the same size. Neither
/// the writeback cache (the kernel then keeps its own size and mtime of a
/// cached file) nor KEEP_CACHE (pages kept across opens) may hide them.
#[test]
fn read_only_mount_sees_changes_of_the_read_write_mount_on_reopen() {
    if !need_fuse("review17::read_only_mount_sees_changes_of_the_read_write_mount_on_reopen") {
        return;
    }
    bounded(90, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let rw = env.mount(&cipher, "rw", &[]);
        let ro = env.mount(&cipher, "ro", &["--read-only"]);
        let write_synced = |name: &str, data: &[u8], append: bool| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .append(append)
                .open(rw.p(name))
                .unwrap();
            f.write_all(data).unwrap();
            f.sync_all().unwrap();
        };
        write_synced("grown", &[b'a'; 100], false);
        write_synced("overwritten", &[b'o'; 5000], false);
        // Both files' pages and attributes are now cached by the ro mount.
        assert_eq!(fs::read(ro.p("grown")).unwrap(), vec![b'a'; 100]);
        assert_eq!(fs::read(ro.p("overwritten")).unwrap(), vec![b'o'; 5000]);

        write_synced("grown", &[b'b'; 100], true);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(rw.p("overwritten"))
            .unwrap();
        f.write_all_at(&[b'n'; 5000], 0).unwrap();
        f.sync_all().unwrap();
        drop(f);

        std::thread::sleep(Duration::from_millis(11_500));
        let mut want = vec![b'a'; 100];
        want.extend_from_slice(&[b'b'; 100]);
        let size = fs::metadata(ro.p("grown")).unwrap().len();
        let grown = fs::read(ro.p("grown")).unwrap();
        let over = fs::read(ro.p("overwritten")).unwrap();
        assert_eq!(size, 200, "size of the appended file through the ro mount");
        assert!(
            grown == want,
            "appended file through the ro mount: {} bytes",
            grown.len()
        );
        assert!(
            over == vec![b'n'; 5000],
            "overwritten file shows old bytes: {:?}",
            &over[..8]
        );
        ro.unmount();
        rw.unmount();
    });
}

/// A file made by open(O_CREAT), written at once and closed later: the
/// mtime a program saw while mounted is the one a remount shows. Under
/// writeback caching the kernel keeps mtime itself and sends it when it
/// changes it; here it kept the creation time, while the page it sent later
/// stamped the backing file with the time of that WRITE.
#[test]
fn new_files_mtime_is_the_same_after_close_and_remount() {
    if !need_fuse("review17::new_files_mtime_is_the_same_after_close_and_remount") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let cipher = env.init("c", &[]);
        let m = env.mount(&cipher, "m", &[]);
        let mut f = fs::File::create(m.p("f")).unwrap();
        f.write_all(b"new content").unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
        drop(f);
        let mtime = |p: &std::path::Path| {
            use std::os::unix::fs::MetadataExt;
            let md = fs::metadata(p).unwrap();
            (md.mtime(), md.mtime_nsec())
        };
        let after_close = mtime(&m.p("f"));
        m.unmount();
        let m = env.mount(&cipher, "m", &[]);
        let remounted = mtime(&m.p("f"));
        m.unmount();
        let moved_ms =
            (remounted.0 - after_close.0) * 1000 + (remounted.1 - after_close.1) / 1_000_000;
        assert_eq!(
            remounted, after_close,
            "mtime moved by {moved_ms} ms at the remount"
        );
    });
}
