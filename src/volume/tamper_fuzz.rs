//! Tamper fuzzing: random damage to the backing files of a volume with known
//! content. Afterwards an undamaged file reads back exactly, and a damaged
//! one reads as its original bytes or fails with the corruption error (EIO),
//! except for the damage classes FORMAT.md's threat model lists as
//! undetected, whose exact outcome this checker knows. A surprise fails the
//! test.

use std::os::fd::AsFd;
use std::path::PathBuf;

use super::content::FileContent;
use super::testutil::{volume, TestVolume};
use super::{InitOptions, KeyLocation, HEADER_XATTR};
use crate::crypto::header::HEADER_LEN;
use crate::error::ContentError;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}

/// The damage classes; `undetected()` mirrors FORMAT.md's threat model.
#[derive(Debug, Clone)]
enum Damage {
    BitFlip {
        file: usize,
        pos: u64,
    },
    HeaderXattrFlip {
        file: usize,
        pos: usize,
    },
    Truncate {
        file: usize,
        len: u64,
    },
    ExtendGarbage {
        file: usize,
        n: usize,
    },
    SwapBlocksWithin {
        file: usize,
        a: u64,
        b: u64,
    },
    CopyBlockAcross {
        from: usize,
        fb: u64,
        to: usize,
        tb: u64,
    },
    SwapHeaders {
        a: usize,
        b: usize,
    },
    // Undetected by design (threat model):
    WholeFileSwap {
        a: usize,
        b: usize,
    },
    Rollback {
        file: usize,
    },
    ZeroBlock {
        file: usize,
        block: u64,
    },
    ZeroExtend {
        file: usize,
        n: usize,
    },
}

const SIZES: [usize; 5] = [0, 100, 511, 1500, 3 * 512 + 200];

struct Fixture {
    tv: TestVolume,
    paths: Vec<PathBuf>,
    current: Vec<Vec<u8>>,
    old: Vec<Vec<u8>>,
    stale_backing: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn backing_header(tv: &TestVolume, p: &PathBuf) -> Option<Vec<u8>> {
    match tv.vol.config().key_location {
        KeyLocation::Xattr => {
            let f = std::fs::File::open(p).ok()?;
            crate::sys::fgetxattr(f.as_fd(), HEADER_XATTR).ok()
        }
        KeyLocation::Header => None,
    }
}

fn set_backing_header(p: &PathBuf, h: &[u8]) {
    let f = std::fs::File::open(p).unwrap();
    crate::sys::fsetxattr(f.as_fd(), HEADER_XATTR, h, 0).unwrap();
}

fn rw(p: &PathBuf) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap()
}

impl Fixture {
    fn new(opts: InitOptions, r: &mut Rng) -> Fixture {
        let tv = volume(opts);
        let mut paths = Vec::new();
        let mut current = Vec::new();
        let mut old = Vec::new();
        let mut stale = Vec::new();
        for (i, size) in SIZES.iter().enumerate() {
            let p = tv.vol.root().join(format!("f{i}"));
            let (f, c) = super::testutil::new_file(&tv, &format!("f{i}"));
            let v1: Vec<u8> = (0..*size).map(|j| (j as u8).wrapping_mul(7) | 1).collect();
            c.write(&tv.vol, f.as_fd(), 0, &v1).unwrap();
            stale.push((std::fs::read(&p).unwrap(), backing_header(&tv, &p)));
            // Rewrite part of it, so a stale copy exists.
            let mut v2 = v1.clone();
            if *size > 0 {
                let at = r.below(*size as u64) as usize;
                v2[at] ^= 0x55;
                c.write(&tv.vol, f.as_fd(), at as u64, &v2[at..at + 1])
                    .unwrap();
            }
            paths.push(p);
            old.push(v1);
            current.push(v2);
        }
        Fixture {
            tv,
            paths,
            current,
            old,
            stale_backing: stale,
        }
    }

    fn cbs(&self) -> u64 {
        self.tv.vol.layout().cipher_block_size()
    }

    fn hlen(&self) -> u64 {
        self.tv.vol.layout().header_len()
    }

    fn nblocks(&self, f: usize) -> u64 {
        self.tv
            .vol
            .layout()
            .block_count(self.current[f].len() as u64)
    }

    fn gen(&self, r: &mut Rng) -> Damage {
        let n = SIZES.len() as u64;
        let f = r.below(n) as usize;
        let g = ((f as u64 + 1 + r.below(n - 1)) % n) as usize;
        let blen = std::fs::metadata(&self.paths[f]).unwrap().len();
        match r.below(11) {
            0 => Damage::BitFlip {
                file: f,
                pos: r.below(blen.max(1)),
            },
            1 => Damage::HeaderXattrFlip {
                file: f,
                pos: r.below(HEADER_LEN as u64) as usize,
            },
            2 => Damage::Truncate {
                file: f,
                len: r.below(blen.max(1)),
            },
            3 => Damage::ExtendGarbage {
                file: f,
                n: 1 + r.below(700) as usize,
            },
            4 => Damage::SwapBlocksWithin {
                file: f,
                a: r.below(4),
                b: r.below(4),
            },
            5 => Damage::CopyBlockAcross {
                from: f,
                fb: r.below(4),
                to: g,
                tb: r.below(4),
            },
            6 => Damage::SwapHeaders { a: f, b: g },
            7 => Damage::WholeFileSwap { a: f, b: g },
            8 => Damage::Rollback { file: f },
            9 => Damage::ZeroBlock {
                file: f,
                block: r.below(self.nblocks(f).max(1)),
            },
            _ => Damage::ZeroExtend {
                file: f,
                n: 1 + r.below(700) as usize,
            },
        }
    }

    fn block_range(&self, f: usize, b: u64) -> Option<std::ops::Range<usize>> {
        let len = std::fs::metadata(&self.paths[f]).unwrap().len();
        let s = self.hlen() + b * self.cbs();
        if s >= len {
            return None;
        }
        Some(s as usize..(s + self.cbs()).min(len) as usize)
    }

    /// Apply the damage; returns the file contents it may legitimately produce
    /// (besides the originals and errors) for undetected classes.
    fn apply(&mut self, d: &Damage) -> Vec<(usize, Vec<u8>)> {
        let mut allowed = Vec::new();
        let is_xattr = self.tv.vol.config().key_location == KeyLocation::Xattr;
        match d.clone() {
            Damage::BitFlip { file, pos } => {
                let mut v = std::fs::read(&self.paths[file]).unwrap();
                if let Some(b) = v.get_mut(pos as usize) {
                    *b ^= 1 << (pos % 8);
                    std::fs::write(&self.paths[file], v).unwrap();
                }
            }
            Damage::HeaderXattrFlip { file, pos } => {
                if let Some(mut h) = backing_header(&self.tv, &self.paths[file]) {
                    let i = pos % h.len();
                    h[i] ^= 0x80;
                    set_backing_header(&self.paths[file], &h);
                }
            }
            Damage::Truncate { file, len } => {
                rw(&self.paths[file]).set_len(len).unwrap();
                // Undetected: a cut at a block boundary, or a torn tail (hidden).
                let l = self.tv.vol.layout();
                let keep = l
                    .plain_size_lenient(len)
                    .min(self.current[file].len() as u64) as usize;
                if keep as u64 % l.block_size() == 0 || l.plain_size(len).is_err() {
                    allowed.push((file, self.current[file][..keep].to_vec()));
                }
            }
            Damage::ExtendGarbage { file, n } => {
                let mut v = std::fs::read(&self.paths[file]).unwrap();
                v.extend((0..n).map(|i| (i as u8) | 0x80));
                std::fs::write(&self.paths[file], v).unwrap();
            }
            Damage::SwapBlocksWithin { file, a, b } => {
                if let (Some(ra), Some(rb)) = (self.block_range(file, a), self.block_range(file, b))
                {
                    if a != b && ra.len() == rb.len() {
                        let mut v = std::fs::read(&self.paths[file]).unwrap();
                        let ba = v[ra.clone()].to_vec();
                        let bb = v[rb.clone()].to_vec();
                        v[ra].copy_from_slice(&bb);
                        v[rb].copy_from_slice(&ba);
                        std::fs::write(&self.paths[file], v).unwrap();
                    }
                }
            }
            Damage::CopyBlockAcross { from, fb, to, tb } => {
                if let (Some(rf), Some(rt)) = (self.block_range(from, fb), self.block_range(to, tb))
                {
                    if rf.len() == rt.len() {
                        let src = std::fs::read(&self.paths[from]).unwrap()[rf].to_vec();
                        let mut v = std::fs::read(&self.paths[to]).unwrap();
                        v[rt].copy_from_slice(&src);
                        std::fs::write(&self.paths[to], v).unwrap();
                    }
                }
            }
            Damage::SwapHeaders { a, b } => {
                if is_xattr {
                    let (ha, hb) = (
                        backing_header(&self.tv, &self.paths[a]),
                        backing_header(&self.tv, &self.paths[b]),
                    );
                    if let (Some(ha), Some(hb)) = (ha, hb) {
                        set_backing_header(&self.paths[a], &hb);
                        set_backing_header(&self.paths[b], &ha);
                    }
                } else {
                    let mut va = std::fs::read(&self.paths[a]).unwrap();
                    let mut vb = std::fs::read(&self.paths[b]).unwrap();
                    if va.len() >= HEADER_LEN && vb.len() >= HEADER_LEN {
                        let ha = va[..HEADER_LEN].to_vec();
                        va[..HEADER_LEN].copy_from_slice(&vb[..HEADER_LEN]);
                        vb[..HEADER_LEN].copy_from_slice(&ha);
                        std::fs::write(&self.paths[a], va).unwrap();
                        std::fs::write(&self.paths[b], vb).unwrap();
                    }
                }
                // Two empty files swap headers undetected: both still read empty.
            }
            Damage::WholeFileSwap { a, b } => {
                let tmp = self.tv.vol.root().join("swap.tmp");
                std::fs::rename(&self.paths[a], &tmp).unwrap();
                std::fs::rename(&self.paths[b], &self.paths[a]).unwrap();
                std::fs::rename(&tmp, &self.paths[b]).unwrap();
                allowed.push((a, self.current[b].clone()));
                allowed.push((b, self.current[a].clone()));
                self.current.swap(a, b);
                self.old.swap(a, b);
                self.stale_backing.swap(a, b);
            }
            Damage::Rollback { file } => {
                let (data, hdr) = self.stale_backing[file].clone();
                std::fs::write(&self.paths[file], data).unwrap();
                if let Some(h) = hdr {
                    set_backing_header(&self.paths[file], &h);
                }
                allowed.push((file, self.old[file].clone()));
            }
            Damage::ZeroBlock { file, block } => {
                if let Some(rb) = self.block_range(file, block) {
                    let mut v = std::fs::read(&self.paths[file]).unwrap();
                    v[rb].iter_mut().for_each(|b| *b = 0);
                    std::fs::write(&self.paths[file], v).unwrap();
                    let l = self.tv.vol.layout();
                    let mut want = self.current[file].clone();
                    let s = (block * l.block_size()) as usize;
                    let e = (s + l.block_size() as usize).min(want.len());
                    want[s..e].iter_mut().for_each(|b| *b = 0);
                    allowed.push((file, want));
                }
            }
            Damage::ZeroExtend { file, n } => {
                let mut v = std::fs::read(&self.paths[file]).unwrap();
                let old_len = v.len() as u64;
                v.extend(std::iter::repeat_n(0u8, n));
                std::fs::write(&self.paths[file], &v).unwrap();
                let l = self.tv.vol.layout();
                let grown = l.plain_size_lenient(v.len() as u64);
                if l.plain_size(old_len).is_ok() && grown as usize >= self.current[file].len() {
                    let mut want = self.current[file].clone();
                    want.resize(grown as usize, 0);
                    allowed.push((file, want));
                }
            }
        }
        allowed
    }

    /// Every file's backing bytes and header xattr, to tell afterwards
    /// which files a damage changed.
    fn backing_state(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.paths
            .iter()
            .map(|p| (std::fs::read(p).unwrap(), backing_header(&self.tv, p)))
            .collect()
    }

    /// Read every file through a fresh content state and judge the outcome:
    /// an undamaged file reads back exactly; a damaged one reads as its
    /// content, as an outcome `allowed` for it, or fails with EIO, as a
    /// whole and block by block, consistently.
    fn check(
        &self,
        allowed: &[(usize, Vec<u8>)],
        damaged_files: &[bool],
        history: &[Damage],
        tally: &mut Tally,
    ) {
        self.tv.vol.key_cache().flush();
        let l = self.tv.vol.layout();
        let bs = l.block_size();
        for (f, &damaged) in damaged_files.iter().enumerate() {
            let fd = std::fs::File::open(&self.paths[f]).unwrap();
            let c = FileContent::new();
            let eio = |e: &ContentError, what: &str| {
                let named = match e {
                    ContentError::Corrupt { path, .. } => {
                        *path == self.paths[f].display().to_string()
                    }
                    ContentError::Io(_) | ContentError::WriteOnly { .. } => false,
                };
                assert!(
                    named && e.errno() == libc::EIO,
                    "file {f} {what}: {e} is not the corruption error (EIO) of this file, after {history:?}"
                );
                assert!(damaged, "undamaged file {f} {what}: {e}, after {history:?}");
            };
            let whole = c.read(&self.tv.vol, fd.as_fd(), 0, u32::MAX);
            let outcomes: Vec<&[u8]> = match &whole {
                Ok(got) => vec![got],
                Err(e) => {
                    eio(e, "whole read");
                    std::iter::once(&self.current[f])
                        .chain(allowed.iter().filter(|(af, _)| *af == f).map(|(_, w)| w))
                        .map(|w| w.as_slice())
                        .collect()
                }
            };
            match &whole {
                Ok(_) if !damaged => {
                    assert!(
                        outcomes[0] == self.current[f],
                        "undamaged file {f} reads other bytes after {history:?}"
                    );
                    tally.undamaged_exact += 1;
                }
                Ok(got) if *got == self.current[f] => tally.damaged_intact += 1,
                Ok(got) => {
                    assert!(
                        allowed.iter().any(|(af, want)| *af == f && want == got),
                        "file {f} read {} bytes that are neither the original nor an allowed outcome after {history:?}",
                        got.len()
                    );
                    tally.damaged_allowed += 1;
                }
                Err(_) => tally.damaged_eio += 1,
            }
            // Block by block: exactly the block of a possible content (empty
            // past the visible end), or EIO where the whole read failed.
            let psize = l.plain_size_lenient(fd.metadata().unwrap().len());
            let block = |w: &[u8], b: u64| {
                let s = ((b * bs) as usize).min(w.len());
                w[s..(s + bs as usize).min(w.len())].to_vec()
            };
            let mut failed_blocks = 0;
            for b in 0..psize.div_ceil(bs).max(self.nblocks(f)) + 1 {
                match c.read(&self.tv.vol, fd.as_fd(), b * bs, bs as u32) {
                    Ok(got) => {
                        let fine = outcomes.iter().any(|w| got == block(w, b))
                            || (got.is_empty() && b * bs >= psize);
                        assert!(
                            fine,
                            "file {f} block {b} shows other bytes ({} read) after {history:?}",
                            got.len()
                        );
                    }
                    Err(e) => {
                        eio(&e, &format!("block {b}"));
                        assert!(
                            whole.is_err(),
                            "file {f} block {b} fails, the whole file reads, after {history:?}"
                        );
                        failed_blocks += 1;
                    }
                }
            }
            if whole.is_err() {
                assert!(
                    failed_blocks > 0,
                    "file {f} fails as a whole, but every block reads, after {history:?}"
                );
            }
        }
    }
}

/// How the files of a run read back.
#[derive(Debug, Default)]
struct Tally {
    undamaged_exact: u64,
    damaged_intact: u64,
    damaged_allowed: u64,
    damaged_eio: u64,
}

fn run(opts: InitOptions, iterations: u64, seed: u64) {
    let mut r = Rng(seed | 1);
    let mut counts = std::collections::BTreeMap::new();
    let mut tally = Tally::default();
    for _ in 0..iterations {
        let mut fx = Fixture::new(opts.clone(), &mut r);
        let d = fx.gen(&mut r);
        *counts
            .entry(format!("{d:?}").split(' ').next().unwrap_or("").to_owned())
            .or_insert(0) += 1;
        let before = fx.backing_state();
        let allowed = fx.apply(&d);
        let damaged: Vec<bool> = before
            .iter()
            .zip(fx.backing_state())
            .map(|(b, a)| *b != a)
            .collect();
        fx.check(&allowed, &damaged, &[d], &mut tally);
    }
    eprintln!("tamper fuzz seed={seed}: {iterations} damages {counts:?}; {tally:?}");
    // Each run damages some files past reading and leaves others whole.
    assert!(
        tally.undamaged_exact > 0 && tally.damaged_eio > 0,
        "{tally:?}"
    );
}

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

fn opts(key_location: KeyLocation) -> InitOptions {
    InitOptions {
        block_size: 512,
        key_location,
        ..Default::default()
    }
}

fn seed() -> u64 {
    env_or(
        "FUZZ_SEED",
        u64::from_le_bytes(crate::crypto::random_array()),
    )
}

#[test]
fn tamper_header_volume() {
    let seed = seed();
    eprintln!("tamper fuzz (header): FUZZ_SEED={seed}");
    run(opts(KeyLocation::Header), env_or("FUZZ_CASES", 150), seed);
}

#[test]
fn tamper_xattr_volume() {
    let seed = seed();
    eprintln!("tamper fuzz (xattr): FUZZ_SEED={seed}");
    run(opts(KeyLocation::Xattr), env_or("FUZZ_CASES", 150), seed);
}

/// The checker fails on a content layer that makes undamaged files
/// unreadable (an oracle accepting any error would pass it) and on ones
/// that return garbage or nothing instead of the corruption error.
#[test]
fn tamper_fuzzer_catches_planted_faults() {
    for fault in [
        "content-eio-partial-tail",
        "content-ignore-auth-failure",
        "content-empty-on-auth-failure",
    ] {
        let _planted = super::content::plant_on_thread(fault);
        let seed = seed();
        let caught = std::panic::catch_unwind(|| run(opts(KeyLocation::Header), 60, seed));
        let Err(panic) = caught else {
            panic!("the planted fault {fault} went unnoticed (FUZZ_SEED={seed})");
        };
        // Caught by the oracle of `check` (its messages end with the damage
        // history), not by a panic in the fixture or in the faulty code.
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("");
        assert!(
            message.contains(" after ["),
            "the planted fault {fault} failed the run, not the oracle: {message} (FUZZ_SEED={seed})"
        );
        eprintln!("planted fault {fault} caught (FUZZ_SEED={seed})");
    }
}

#[test]
fn bit_flips_in_symlinks_and_xattrs_are_caught() {
    let tv = volume(InitOptions::default());
    let enc = tv.vol.encrypt_symlink(b"some/target").unwrap();
    for i in 0..enc.len() * 8 {
        let mut t = enc.clone();
        t[i / 8] ^= 1 << (i % 8);
        if let Some(p) = tv.vol.decrypt_symlink(&t) {
            assert_eq!(p, b"some/target", "bit {i}");
        }
    }
    let blob = tv.vol.encrypt_xattr(None, b"user.a", b"value").unwrap();
    assert_eq!(
        tv.vol.decrypt_xattr(None, &blob).unwrap(),
        (b"user.a".to_vec(), b"value".to_vec())
    );
    for i in 0..blob.len() * 8 {
        let mut t = blob.clone();
        t[i / 8] ^= 1 << (i % 8);
        assert!(tv.vol.decrypt_xattr(None, &t).is_none());
    }
    assert_ne!(
        tv.vol.xattr_backing_name(b"user.a"),
        tv.vol.xattr_backing_name(b"user.b")
    );
    let long = vec![b'n'; 250];
    assert!(tv.vol.xattr_backing_name(&long).len() < 60);
}
