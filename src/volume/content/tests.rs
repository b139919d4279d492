//! Unit tests of `FileContent`: a random model check, tampering, forged
//! headers and torn writes.

use super::*;
use crate::crypto::header::HEADER_LEN;
use crate::volume::testutil::{new_file, volume};
use crate::volume::InitOptions;
use std::os::fd::AsFd;

fn check_model(opts: InitOptions) {
    let tv = volume(opts);
    let (f, c) = new_file(&tv, "a");
    let fd = f.as_fd();
    let mut model: Vec<u8> = Vec::new();
    let mut seed = 0x1234_5678_u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for i in 0..400 {
        match rnd(10) {
            0..=5 => {
                let off = rnd(20_000);
                let len = rnd(9000) as usize + 1;
                let data: Vec<u8> = (0..len).map(|j| (i + j) as u8 | 1).collect();
                c.write(&tv.vol, fd, off, &data).unwrap();
                let end = off as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            6..=7 => {
                let ns = rnd(25_000);
                c.truncate(&tv.vol, fd, ns).unwrap();
                model.resize(ns as usize, 0);
            }
            _ => {
                let off = rnd(26_000);
                let len = rnd(10_000) as u32;
                let got = c.read(&tv.vol, fd, off, len).unwrap();
                let s = (off as usize).min(model.len());
                let e = (off as usize + len as usize).min(model.len());
                assert_eq!(got, &model[s..e], "op {i}");
            }
        }
        let cs = f.metadata().unwrap().len();
        assert_eq!(
            tv.vol.layout().plain_size(cs),
            Ok(model.len() as u64),
            "op {i}"
        );
    }
    // A fresh FileContent (as after remount) reads the same.
    let c2 = FileContent::new();
    assert_eq!(
        c2.read(&tv.vol, fd, 0, model.len() as u32 + 10).unwrap(),
        model
    );
}

#[test]
fn random_ops_match_model_header() {
    check_model(InitOptions::default());
}

#[test]
fn random_ops_match_model_xattr_small_blocks() {
    check_model(InitOptions {
        block_size: 512,
        key_location: KeyLocation::Xattr,
        ..Default::default()
    });
}

#[test]
fn data_keys_differ_between_files() {
    let tv = volume(InitOptions::default());
    let mut keys = std::collections::HashSet::new();
    for i in 0..50 {
        let (f, _) = new_file(&tv, &format!("f{i}"));
        let c = FileContent::new();
        tv.vol.key_cache().flush();
        let fc = c.crypto(&tv.vol, f.as_fd()).unwrap();
        assert!(keys.insert(*fc.data_key().expose()));
    }
}

#[test]
fn tampering_is_detected() {
    let tv = volume(InitOptions::default());
    let (f, c) = new_file(&tv, "a");
    let data = vec![7u8; 3 * 4096 + 100];
    c.write(&tv.vol, f.as_fd(), 0, &data).unwrap();
    let (g, cg) = new_file(&tv, "b");
    cg.write(&tv.vol, g.as_fd(), 0, &data).unwrap();
    let path = tv.vol.root().join("a");
    let orig = std::fs::read(&path).unwrap();
    let other = std::fs::read(tv.vol.root().join("b")).unwrap();
    let cbs = 4096 + 36;
    let h = HEADER_LEN;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bit flip in block 1", {
            let mut v = orig.clone();
            v[h + cbs + 50] ^= 4;
            v
        }),
        ("block swapped from another file", {
            let mut v = orig.clone();
            v[h..h + cbs].copy_from_slice(&other[h..h + cbs]);
            v
        }),
        ("block moved within file", {
            let mut v = orig.clone();
            let b1 = v[h + cbs..h + 2 * cbs].to_vec();
            v[h..h + cbs].copy_from_slice(&b1);
            v
        }),
        ("header from another file", {
            let mut v = orig.clone();
            v[..h].copy_from_slice(&other[..h]);
            v
        }),
        ("bit flip in header", {
            let mut v = orig.clone();
            v[40] ^= 1;
            v
        }),
    ];
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        tv.vol.key_cache().flush();
        let fresh = FileContent::new();
        let r = fresh.read(&tv.vol, f.as_fd(), 0, data.len() as u32);
        match r {
            Err(ContentError::Corrupt { path, .. }) => assert!(path.ends_with("/a"), "{what}"),
            other => panic!(
                "{what}: expected corruption error, got {:?}",
                other.map(|v| v.len())
            ),
        }
    }
    // Truncated mid-block: the torn block is not shown; the rest reads fine.
    std::fs::write(&path, &orig[..h + cbs + 10]).unwrap();
    let fresh = FileContent::new();
    assert_eq!(
        fresh.read(&tv.vol, f.as_fd(), 0, 10_000).unwrap(),
        vec![7u8; 4096]
    );
}

/// A header naming another file's ID whose key is cached, but which
/// does not authenticate, is refused: the cache never skips the check.
#[test]
fn forged_header_with_a_cached_key_is_refused() {
    let tv = volume(InitOptions::default());
    let (f, c) = new_file(&tv, "a");
    let (g, cg) = new_file(&tv, "b");
    let data = vec![9u8; 5000];
    c.write(&tv.vol, f.as_fd(), 0, &data).unwrap();
    cg.write(&tv.vol, g.as_fd(), 0, &vec![3u8; 5000]).unwrap();
    let b = std::fs::read(tv.vol.root().join("b")).unwrap();
    let mut forged = b.clone();
    forged[40] ^= 1; // the wrapped key: B's file ID stays
    std::fs::write(tv.vol.root().join("a"), &forged).unwrap();
    assert_eq!(tv.vol.key_cache().len(), 2, "both keys are cached");
    let fresh = FileContent::new();
    match fresh.read(&tv.vol, f.as_fd(), 0, 5000) {
        Err(ContentError::Corrupt { path, .. }) => assert!(path.ends_with("/a")),
        other => panic!("expected corruption, got {:?}", other.map(|v| v.len())),
    }
    // B's own header still hits the cache and reads.
    std::fs::write(tv.vol.root().join("a"), &b).unwrap();
    let fresh = FileContent::new();
    assert_eq!(
        fresh.read(&tv.vol, f.as_fd(), 0, 5000).unwrap(),
        vec![3u8; 5000]
    );
}

/// Simulate a crash part way through a backing write: for each byte
/// offset the write could have been cut at, each block of the file reads as
/// exactly its old content, exactly its new content, or EIO; never other
/// bytes. Untouched blocks always read, and so does everything when the cut
/// left the old or the whole new ciphertext.
#[test]
fn torn_writes_never_show_other_bytes() {
    for loc in [KeyLocation::Header, KeyLocation::Xattr] {
        let tv = volume(InitOptions {
            block_size: 512,
            key_location: loc,
            ..Default::default()
        });
        let (f, c) = new_file(&tv, "t");
        let old: Vec<u8> = (0..1300u32).map(|i| (i % 251) as u8 | 1).collect();
        c.write(&tv.vol, f.as_fd(), 0, &old).unwrap();
        let before = std::fs::read(tv.vol.root().join("t")).unwrap();
        // An unaligned write that rewrites two partial blocks and extends the file.
        let data = vec![0xEEu8; 700];
        c.write(&tv.vol, f.as_fd(), 1000, &data).unwrap();
        let after = std::fs::read(tv.vol.root().join("t")).unwrap();
        let mut new = old.clone();
        new.resize(1700, 0);
        new[1000..1700].copy_from_slice(&data);
        let first_diff = before
            .iter()
            .zip(&after)
            .position(|(a, b)| a != b)
            .unwrap_or(before.len());
        let bs = 512usize;
        let block =
            |v: &[u8], b: usize| v[(b * bs).min(v.len())..((b + 1) * bs).min(v.len())].to_vec();
        let (mut read_old, mut read_new, mut eio) = (0, 0, 0);
        for cut in first_diff..=after.len() {
            let mut torn = before.clone();
            if torn.len() < cut {
                torn.resize(cut, 0);
            }
            torn[first_diff..cut].copy_from_slice(&after[first_diff..cut]);
            let p = tv.vol.root().join("torn");
            std::fs::write(&p, &torn).unwrap();
            if loc == KeyLocation::Xattr {
                let h = sys::fgetxattr(f.as_fd(), HEADER_XATTR).unwrap();
                let g = std::fs::File::open(&p).unwrap();
                sys::fsetxattr(g.as_fd(), HEADER_XATTR, &h, 0).unwrap();
            }
            let g = std::fs::File::open(&p).unwrap();
            let fresh = FileContent::new();
            for b in 0..4 {
                let (o, n) = (block(&old, b), block(&new, b));
                match fresh.read(&tv.vol, g.as_fd(), (b * bs) as u64, bs as u32) {
                    Ok(got) if got == o => read_old += 1,
                    Ok(got) if got == n => read_new += 1,
                    Ok(got) => panic!(
                        "{loc:?} cut {cut} block {b}: other bytes ({} read)",
                        got.len()
                    ),
                    Err(e) => {
                        assert!(
                            matches!(e, ContentError::Corrupt { .. }) && e.errno() == libc::EIO,
                            "{loc:?} cut {cut} block {b}: {e}"
                        );
                        // Block 0 is not written; the first and last cuts leave whole blocks.
                        assert!(
                            b > 0 && cut > first_diff && cut < after.len(),
                            "{loc:?} cut {cut} block {b}: unreadable ({e})"
                        );
                        eio += 1;
                    }
                }
            }
            if cut == first_diff || cut == after.len() {
                let whole = fresh.read(&tv.vol, g.as_fd(), 0, 4 * bs as u32).unwrap();
                assert_eq!(
                    &whole,
                    if cut == first_diff { &old } else { &new },
                    "{loc:?} cut {cut}"
                );
            }
        }
        let cuts = after.len() + 1 - first_diff;
        eprintln!("{loc:?}: {cuts} cuts, blocks read old {read_old}, new {read_new}, EIO {eio}");
        assert_eq!(read_old + read_new + eio, 4 * cuts);
        // Block 0 (and block 3 while it does not exist) read at every cut;
        // blocks 1 and 2 at least at the first and the last.
        assert!(
            read_old + read_new >= cuts + 4,
            "{loc:?}: too few reads succeeded"
        );
        assert!(eio > 0, "{loc:?}: no cut tore a block");
    }
}

/// The backing xattrs of `f` (names and values).
fn backing_xattrs(f: &std::fs::File) -> Vec<(Vec<u8>, Vec<u8>)> {
    sys::listxattr_fd(f.as_fd())
        .unwrap()
        .into_iter()
        .map(|n| {
            let v = sys::getxattr_fd(f.as_fd(), &n).unwrap();
            (n, v)
        })
        .collect()
}

/// After `synced` bytes are written and fsync'd, `op` changes the file; a
/// crash (the daemon killed) may cut its backing writes at any byte. Each
/// cut is made, everything in memory dropped, and the file reopened through
/// a fresh Volume: the fsync'd bytes read back exactly (or, where `op`
/// overwrote some, as `op` left them) at every cut, never EIO.
fn fsynced_bytes_survive_torn_op(
    loc: KeyLocation,
    bs: u32,
    synced: usize,
    what: &str,
    op: &dyn Fn(&FileContent, &Volume, BorrowedFd<'_>),
) -> usize {
    let tv = volume(InitOptions {
        block_size: bs,
        key_location: loc,
        ..Default::default()
    });
    let (f, c) = new_file(&tv, "s");
    let data: Vec<u8> = (0..synced).map(|i| (i % 251) as u8 | 1).collect();
    c.write(&tv.vol, f.as_fd(), 0, &data).unwrap();
    sync_for_test(&c, &tv.vol, f.as_fd());
    let path = tv.vol.root().join("s");
    let before = std::fs::read(&path).unwrap();
    op(&c, &tv.vol, f.as_fd());
    let after = std::fs::read(&path).unwrap();
    // What the same bytes read once `op` is done (an overwrite changes them).
    let done = c.read(&tv.vol, f.as_fd(), 0, synced as u32).unwrap();
    let xattrs = backing_xattrs(&f);
    // Where the backing filesystem took only the start of the block, a cut
    // after the copied bytes may lose the block (EIO): the copy's reach.
    let partial_reach = xattrs
        .iter()
        .find(|(n, _)| n == TAIL_XATTR)
        .and_then(|(_, v)| {
            let b = BlockIndex(u64::from_be_bytes(v[..8].try_into().unwrap()));
            let off = tv.vol.layout().cipher_offset(b) as usize;
            let reach = off + v.len() - 8;
            (reach < before.len().min(after.len())).then_some(reach)
        });
    let first_diff = before
        .iter()
        .zip(&after)
        .position(|(a, b)| a != b)
        .unwrap_or(before.len().min(after.len()));
    // The crash: nothing of the writer's memory is used again.
    let dir = tv._dir.path();
    let ks = crate::kms::local::LocalKeyService::open(&dir.join("ks"), "test passphrase").unwrap();
    let vol = Volume::open(
        &dir.join("vol"),
        &ks,
        crate::volume::CacheOptions::default(),
    )
    .unwrap();
    let p = vol.root().join("torn");
    let (mut restored, mut lost) = (0, 0);
    for cut in first_diff..=after.len().max(first_diff) {
        let mut torn = before.clone();
        // A shrinking truncate cuts the backing file before it writes.
        torn.truncate(after.len().max(cut));
        if torn.len() < cut {
            torn.resize(cut, 0);
        }
        torn[first_diff..cut].copy_from_slice(&after[first_diff..cut]);
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, &torn).unwrap();
        let g = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        for (n, v) in &xattrs {
            sys::fsetxattr(g.as_fd(), n, v, 0).unwrap();
        }
        let fresh = FileContent::new();
        if recover_for_test(&fresh, &vol, g.as_fd()) {
            restored += 1;
            let len = g.metadata().unwrap().len() as usize;
            assert!(
                len == before.len() || (len == after.len() && after.len() < before.len()),
                "{what} {loc:?} bs {bs} cut {cut}: restored to {len} bytes"
            );
        }
        match fresh.read(&vol, g.as_fd(), 0, synced as u32) {
            Ok(got) => assert!(
                got == data || got == done,
                "{what} {loc:?} bs {bs} cut {cut} of {}..{}: other bytes",
                first_diff,
                after.len()
            ),
            Err(e) if partial_reach.is_some_and(|reach| cut > reach) => {
                assert_eq!(e.errno(), libc::EIO, "{what}: {e}");
                lost += 1;
            }
            Err(e) => panic!(
                "{what} {loc:?} bs {bs} cut {cut} of {}..{}: fsync'd bytes lost: {e}",
                first_diff,
                after.len()
            ),
        }
    }
    eprintln!(
        "{what} {loc:?} bs {bs}: {} cuts, {restored} restored, {lost} lost past a partial copy \
         reaching {partial_reach:?}",
        after.len() + 1 - first_diff
    );
    restored
}

fn sync_for_test(c: &FileContent, vol: &Volume, fd: BorrowedFd<'_>) {
    c.sync(vol, fd, false).unwrap();
}

fn recover_for_test(c: &FileContent, vol: &Volume, fd: BorrowedFd<'_>) -> bool {
    c.restore_torn_tail(vol, fd).unwrap()
}

/// The writes that rewrite a partial last block holding fsync'd bytes: an
/// append within it, one that fills it and goes on, one past the next block
/// (the last block is padded first), a truncate that grows the file, one
/// that cuts into the block, and an overwrite of fsync'd bytes in it. Every
/// byte is a cut (page boundaries among them).
#[test]
fn fsynced_tail_survives_a_torn_rewrite_at_every_byte() {
    type Op = Box<dyn Fn(&FileContent, &Volume, BorrowedFd<'_>)>;
    let ops: Vec<(&str, Op)> = vec![
        (
            "append within",
            Box::new(|c, v, fd| {
                c.write(v, fd, 1300, &[0xAA; 100]).unwrap();
            }),
        ),
        (
            "append across",
            Box::new(|c, v, fd| {
                c.write(v, fd, 1300, &[0xAA; 700]).unwrap();
            }),
        ),
        (
            "sparse write",
            Box::new(|c, v, fd| {
                c.write(v, fd, 2100, &[0xAA; 10]).unwrap();
            }),
        ),
        (
            "grow by truncate",
            Box::new(|c, v, fd| c.truncate(v, fd, 3000).unwrap()),
        ),
        (
            "shrink into the block",
            Box::new(|c, v, fd| c.truncate(v, fd, 1100).unwrap()),
        ),
        (
            "overwrite",
            Box::new(|c, v, fd| {
                c.write(v, fd, 1290, &[0xAA; 5]).unwrap();
            }),
        ),
    ];
    for loc in [KeyLocation::Header, KeyLocation::Xattr] {
        for (what, op) in &ops {
            let restored = fsynced_bytes_survive_torn_op(loc, 512, 1300, what, op.as_ref());
            assert!(restored > 0, "{what} {loc:?}: no cut needed the copy");
        }
    }
    // A 4 KiB block is 4132 bytes on disk: it always spans two pages, and
    // the kernel stops a killed writer between pages.
    let append = |c: &FileContent, v: &Volume, fd: BorrowedFd<'_>| {
        c.write(v, fd, 3000, &[0xAA; 1000]).unwrap();
    };
    assert!(fsynced_bytes_survive_torn_op(KeyLocation::Header, 4096, 3000, "append", &append) > 0);
    // A nearly full 4 KiB block: more than ext4 (without `ea_inode`) holds
    // in an xattr, so there the copy is of the block's start.
    let append = |c: &FileContent, v: &Volume, fd: BorrowedFd<'_>| {
        c.write(v, fd, 4090, &[0xAA; 1000]).unwrap();
    };
    assert!(fsynced_bytes_survive_torn_op(KeyLocation::Header, 4096, 4090, "append", &append) > 0);
}

/// The tail copy is made at fsync only for a partial last block, and is
/// never used before it authenticates as the very block it stands in for.
#[test]
fn tail_copy_is_used_only_when_authentic_and_in_place() {
    let tv = volume(InitOptions {
        block_size: 512,
        ..Default::default()
    });
    let root = tv.vol.root().to_path_buf();
    let (f, c) = new_file(&tv, "a");
    let fd = f.as_fd();
    let copy = || sys::fgetxattr_capped(fd, TAIL_XATTR, 1 << 20);
    c.write(&tv.vol, fd, 0, &[5u8; 1024]).unwrap();
    c.sync(&tv.vol, fd, false).unwrap();
    assert_eq!(copy().unwrap_err().raw_os_error(), Some(libc::ENODATA));
    c.write(&tv.vol, fd, 1024, &[6u8; 100]).unwrap();
    c.sync(&tv.vol, fd, true).unwrap();
    let good = copy().unwrap();
    let disk = std::fs::read(root.join("a")).unwrap();
    let off = HEADER_LEN + 2 * (512 + 36);
    assert_eq!(good[..8], 2u64.to_be_bytes());
    assert_eq!(good[8..], disk[off..]);
    // Another file's copy of its block 2, same length.
    let (g, cg) = new_file(&tv, "b");
    cg.write(&tv.vol, g.as_fd(), 0, &[5u8; 1124]).unwrap();
    cg.sync(&tv.vol, g.as_fd(), false).unwrap();
    let other = sys::fgetxattr_capped(g.as_fd(), TAIL_XATTR, 1 << 20).unwrap();
    let flipped = {
        let mut v = good.clone();
        v[40] ^= 1;
        v
    };
    let wrong_index = [&3u64.to_be_bytes()[..], &good[8..]].concat();
    let oversized = vec![1u8; 512 + 36 + 8 + 1];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bit flip", flipped, "fails authentication"),
        ("another file's", other, "fails authentication"),
        ("another index", wrong_index, "of block 3"),
        ("larger than a block", oversized, "larger than a block"),
        ("too short", vec![0u8; 4], "too short"),
        (
            "the block's start, not the torn byte",
            good[..8 + 10].to_vec(),
            "fails authentication",
        ),
    ];
    // The last block torn: 50 bytes of garbage after the copy's end.
    let mut torn = disk.clone();
    torn[off + 20] ^= 0xFF;
    torn.extend_from_slice(&[9u8; 50]);
    for (what, value, why) in cases {
        std::fs::write(root.join("a"), &torn).unwrap();
        sys::fsetxattr(fd, TAIL_XATTR, &value, 0).unwrap();
        let fresh = FileContent::new();
        match fresh.tail_copy(&tv.vol, fd).unwrap() {
            TailCopy::Unusable(w) => assert!(w.contains(why), "{what}: {w}"),
            other => panic!("{what}: {other:?}"),
        }
        assert!(!fresh.restore_torn_tail(&tv.vol, fd).unwrap(), "{what}");
        assert_eq!(std::fs::read(root.join("a")).unwrap(), torn, "{what}");
        let r = fresh.read(&tv.vol, fd, 1024, 100);
        assert!(
            matches!(r, Err(ContentError::Corrupt { .. })),
            "{what}: {:?}",
            r.map(|v| v.len())
        );
    }
    // The good copy, but the file cut short of its end: not used either.
    std::fs::write(root.join("a"), &disk[..disk.len() - 10]).unwrap();
    sys::fsetxattr(fd, TAIL_XATTR, &good, 0).unwrap();
    let fresh = FileContent::new();
    match fresh.tail_copy(&tv.vol, fd).unwrap() {
        TailCopy::Unusable(w) => assert!(w.contains("past the file"), "{w}"),
        other => panic!("{other:?}"),
    }
    // The start of the block up to past the torn byte restores it: the
    // rest is as it was.
    std::fs::write(root.join("a"), &torn).unwrap();
    sys::fsetxattr(fd, TAIL_XATTR, &good[..8 + 30], 0).unwrap();
    assert!(FileContent::new().restore_torn_tail(&tv.vol, fd).unwrap());
    assert_eq!(std::fs::read(root.join("a")).unwrap(), disk);
    // The good copy restores the torn file to its fsync'd state exactly.
    std::fs::write(root.join("a"), &torn).unwrap();
    sys::fsetxattr(fd, TAIL_XATTR, &good, 0).unwrap();
    let fresh = FileContent::new();
    assert_eq!(
        fresh.tail_copy(&tv.vol, fd).unwrap(),
        TailCopy::Restores { block: 2 }
    );
    assert!(fresh.restore_torn_tail(&tv.vol, fd).unwrap());
    assert_eq!(std::fs::read(root.join("a")).unwrap(), disk);
    assert_eq!(fresh.tail_copy(&tv.vol, fd).unwrap(), TailCopy::Intact);
    // A truncate to a block boundary leaves no copy behind.
    fresh.truncate(&tv.vol, fd, 512).unwrap();
    assert_eq!(copy().unwrap_err().raw_os_error(), Some(libc::ENODATA));
}
