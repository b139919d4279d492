//! A backing file rewritten under the mount while its data key is cached:
//! the daemon must judge the header it reads now, not the file ID in it. A
//! header that names another file's ID but does not authenticate (or one
//! copied from another file) reads as EIO, never as the other file's
//! plaintext, in both key locations.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

const HEADER_LEN: usize = 84;
const HEADER_XATTR: &str = "user.envelopefs.header";

/// Make the kernel forget cached pages, dentries and inodes, so the next
/// open goes to the daemon with a fresh lookup (and the daemon's node of the
/// replaced backing file is a new one).
fn drop_caches() {
    fs::write("/proc/sys/vm/drop_caches", "3").expect("drop_caches (root)");
}

/// Drop caches until the mount shows the replaced backing inode under
/// `in_mount` (the mount's inode numbers are the backing ones).
fn fresh_lookup(in_mount: &Path, backing: &Path) {
    use std::os::unix::fs::MetadataExt;
    let want = fs::metadata(backing).unwrap().ino();
    for _ in 0..100 {
        drop_caches();
        if fs::metadata(in_mount).unwrap().ino() == want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{}: the kernel kept the old inode", in_mount.display());
}

/// A backing file's header and its blocks, in either key location.
fn split(xattr: bool, p: &Path) -> (Vec<u8>, Vec<u8>) {
    let bytes = fs::read(p).unwrap();
    if xattr {
        let h = xattr_get(p, HEADER_XATTR).expect("header xattr");
        (h[..HEADER_LEN].to_vec(), bytes)
    } else {
        (bytes[..HEADER_LEN].to_vec(), bytes[HEADER_LEN..].to_vec())
    }
}

/// Replace the backing file `p` by a new inode holding `header` and `blocks`
/// (renamed over it, as a sync service would).
fn replace(xattr: bool, p: &Path, header: &[u8], blocks: &[u8]) {
    let tmp: PathBuf = p.with_file_name("forged.tmp");
    if xattr {
        fs::write(&tmp, blocks).unwrap();
        xattr_set(&tmp, HEADER_XATTR, header);
    } else {
        fs::write(&tmp, [header, blocks].concat()).unwrap();
    }
    fs::rename(&tmp, p).unwrap();
}

fn forged_reads_give_eio(xattr: bool) {
    let env = Env::new();
    let flags: &[&str] = if xattr {
        &["--key-location", "xattr"]
    } else {
        &[]
    };
    let c = env.init("c", flags);
    let m = env.mount(&c, "m", &[]);
    let len = 3 * 4096 + 500;
    let donor = pattern(2, len);
    let names = ["b", "c", "garbage", "flipped", "third", "swapped"];
    for (i, n) in names.iter().enumerate() {
        fs::write(m.p(n), pattern(10 + i as u64, len)).unwrap();
    }
    fs::write(m.p("b"), &donor).unwrap();
    // Read every file once: their data keys are in the daemon's cache now.
    for n in names {
        assert_eq!(fs::read(m.p(n)).unwrap().len(), len, "{n}");
    }
    let bp = |n: &str| backing_path(&c, &m.p(n));
    let (b_header, b_blocks) = split(xattr, &bp("b"));
    let (c_header, _) = split(xattr, &bp("c"));
    // B's magic, version and file ID, then bytes that authenticate nothing.
    let mut garbage = b_header[..24].to_vec();
    garbage.extend((0..HEADER_LEN - 24).map(|i| (i * 37 + 11) as u8));
    // B's header with one bit of its tag flipped.
    let mut flipped = b_header.clone();
    flipped[HEADER_LEN - 1] ^= 1;
    let (_, own_blocks) = split(xattr, &bp("swapped"));
    let cases: [(&str, &[u8], &[u8]); 4] = [
        ("garbage", &garbage, &b_blocks),
        ("flipped", &flipped, &b_blocks),
        ("third", &c_header, &b_blocks),
        ("swapped", &b_header, &own_blocks),
    ];
    for (victim, header, blocks) in cases {
        let p = bp(victim);
        // Logged with the backing name: these files only.
        m.expect_log(p.file_name().unwrap().to_str().unwrap());
        replace(xattr, &p, header, blocks);
        fresh_lookup(&m.p(victim), &p);
    }
    for (victim, _, _) in cases {
        match fs::read(m.p(victim)) {
            Ok(got) => {
                assert_ne!(got, donor, "{victim}: read as the other file's plaintext");
                let i = names.iter().position(|n| *n == victim).unwrap();
                assert_ne!(
                    got,
                    pattern(10 + i as u64, len),
                    "{victim}: still its old content"
                );
                panic!("{victim}: read {} bytes, expected EIO", got.len());
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{victim}: {e}"),
        }
    }
    // The donor itself still reads: its cached key and header are intact.
    assert_eq!(fs::read(m.p("b")).unwrap(), donor);
    m.unmount();
}

#[test]
fn forged_header_with_cached_key_gives_eio_header_location() {
    if !need_root("forged_header_with_cached_key_gives_eio_header_location") {
        return;
    }
    bounded(120, || forged_reads_give_eio(false));
}

#[test]
fn forged_header_with_cached_key_gives_eio_xattr_location() {
    if !need_root("forged_header_with_cached_key_gives_eio_xattr_location") {
        return;
    }
    bounded(120, || forged_reads_give_eio(true));
}
