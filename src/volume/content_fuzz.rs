//! In-process differential fuzzing of the content layer (no kernel): random
//! sequences of writes, reads, truncates, fallocates, several handles and
//! "remounts" against a plain in-memory model. Failing sequences shrink to a
//! minimal reproducer (proptest) and print the seed.
//!
//! `FUZZ_CASES` (default 48) and `FUZZ_SEED` tune the run; `scripts/fuzz.sh
//! --long` runs many more cases.

use std::os::fd::AsFd;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

use super::content::FileContent;
use super::testutil::{volume, TestVolume};
use super::{InitOptions, KeyLocation};

#[derive(Clone, Debug)]
enum Op {
    Write {
        file: usize,
        handle: usize,
        off: u64,
        len: usize,
        seed: u8,
    },
    Read {
        file: usize,
        handle: usize,
        off: u64,
        len: u32,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    Fallocate {
        file: usize,
        keep_size: bool,
        off: u64,
        len: u64,
    },
    Remount,
}

const FILES: usize = 3;
const HANDLES: usize = 2;
const SPAN: u64 = 3 * 4096 + 700;

fn op() -> impl Strategy<Value = Op> {
    // Offsets cluster around block boundaries, where the bugs live.
    let off = prop_oneof![
        0..SPAN,
        (0u64..4, -3i64..4).prop_map(|(b, d)| (b as i64 * 512 + d).max(0) as u64),
        (0u64..4, -3i64..4).prop_map(|(b, d)| (b as i64 * 4096 + d).max(0) as u64),
    ];
    let len = prop_oneof![1usize..9000, Just(512), Just(4096), 1usize..40];
    prop_oneof![
        5 => (0..FILES, 0..HANDLES, off.clone(), len, any::<u8>())
            .prop_map(|(file, handle, off, len, seed)| Op::Write { file, handle, off, len, seed }),
        3 => (0..FILES, 0..HANDLES, off.clone(), 0u32..12000)
            .prop_map(|(file, handle, off, len)| Op::Read { file, handle, off, len }),
        2 => (0..FILES, off.clone()).prop_map(|(file, size)| Op::Truncate { file, size }),
        1 => (0..FILES, any::<bool>(), off, 0u64..6000)
            .prop_map(|(file, keep_size, off, len)| Op::Fallocate { file, keep_size, off, len }),
        1 => Just(Op::Remount),
    ]
}

struct World {
    tv: TestVolume,
    fds: Vec<Vec<std::fs::File>>,
    contents: Vec<FileContent>,
    model: Vec<Vec<u8>>,
}

impl World {
    fn new(opts: InitOptions) -> World {
        let tv = volume(opts);
        let mut fds = Vec::new();
        let mut contents = Vec::new();
        for i in 0..FILES {
            let name = format!("f{i}");
            let first = crate::volume::testutil::create_in_root(&tv.vol, &name);
            let hs: Vec<_> = std::iter::once(first)
                .chain(
                    (1..HANDLES).map(|_| crate::volume::testutil::reopen_in_root(&tv.vol, &name)),
                )
                .collect();
            let c = FileContent::new();
            c.create(&tv.vol, hs[0].as_fd()).unwrap();
            fds.push(hs);
            contents.push(c);
        }
        World {
            tv,
            fds,
            contents,
            model: vec![Vec::new(); FILES],
        }
    }

    fn apply(&mut self, i: usize, op: &Op) -> Result<(), TestCaseError> {
        let vol = &self.tv.vol;
        match *op {
            Op::Write {
                file,
                handle,
                off,
                len,
                seed,
            } => {
                let data: Vec<u8> = (0..len).map(|j| seed.wrapping_add(j as u8) | 1).collect();
                let n = self.contents[file]
                    .write(vol, self.fds[file][handle].as_fd(), off, &data)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: write failed: {e}")))?;
                prop_assert_eq!(n, len);
                let m = &mut self.model[file];
                let end = off as usize + len;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[off as usize..end].copy_from_slice(&data);
            }
            Op::Read {
                file,
                handle,
                off,
                len,
            } => {
                let got = self.contents[file]
                    .read(vol, self.fds[file][handle].as_fd(), off, len)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: read failed: {e}")))?;
                let m = &self.model[file];
                let s = (off as usize).min(m.len());
                let e = (off as usize + len as usize).min(m.len());
                prop_assert!(
                    got == m[s..e],
                    "op {}: read of file {} at {} differs",
                    i,
                    file,
                    off
                );
            }
            Op::Truncate { file, size } => {
                self.contents[file]
                    .truncate(vol, self.fds[file][0].as_fd(), size)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: truncate failed: {e}")))?;
                self.model[file].resize(size as usize, 0);
            }
            Op::Fallocate {
                file,
                keep_size,
                off,
                len,
            } => {
                let mode = if keep_size {
                    libc::FALLOC_FL_KEEP_SIZE
                } else {
                    0
                };
                self.contents[file]
                    .fallocate(vol, self.fds[file][1].as_fd(), mode, off, len)
                    .map_err(|e| TestCaseError::fail(format!("op {i}: fallocate failed: {e}")))?;
                let end = (off + len) as usize;
                if !keep_size && self.model[file].len() < end {
                    self.model[file].resize(end, 0);
                }
            }
            Op::Remount => {
                vol.key_cache().flush();
                self.contents = (0..FILES).map(|_| FileContent::new()).collect();
            }
        }
        // Sizes come from the backing size alone and always match.
        for f in 0..FILES {
            let cs = self.fds[f][0].metadata().unwrap().len();
            prop_assert_eq!(
                vol.layout().plain_size(cs),
                Ok(self.model[f].len() as u64),
                "op {}: size of file {}",
                i,
                f
            );
        }
        Ok(())
    }

    fn check_all(&self) -> Result<(), TestCaseError> {
        let fresh = FileContent::new();
        for f in 0..FILES {
            self.tv.vol.key_cache().flush();
            let got = fresh
                .read(&self.tv.vol, self.fds[f][0].as_fd(), 0, u32::MAX)
                .map_err(|e| TestCaseError::fail(format!("final read of file {f}: {e}")))?;
            prop_assert!(got == self.model[f], "final content of file {} differs", f);
            fresh.reset();
        }
        Ok(())
    }
}

fn run_sequence(ops: &[Op], opts: &InitOptions) -> Result<(), TestCaseError> {
    let mut w = World::new(opts.clone());
    for (i, op) in ops.iter().enumerate() {
        w.apply(i, op)?;
    }
    w.check_all()
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from_le_bytes(crate::crypto::random_array()))
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

/// Run the fuzzer; returns the shrunk failure, if any.
fn fuzz(opts: InitOptions, cases: u32, seed: u64, max_ops: usize) -> Result<(), String> {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 2000,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(op(), 1..max_ops);
    runner
        .run(&strategy, |ops| run_sequence(&ops, &opts))
        .map_err(|e| format!("{e}"))
}

fn report(name: &str, opts: InitOptions) {
    let s = seed();
    let n = cases();
    eprintln!("differential fuzz {name}: seed={s} cases={n} (rerun: FUZZ_SEED={s})");
    if let Err(e) = fuzz(opts, n, s, 80) {
        panic!("differential fuzz {name} failed (FUZZ_SEED={s}):\n{e}");
    }
}

#[test]
fn differential_header_4k() {
    report("header/4096", InitOptions::default());
}

#[test]
fn differential_xattr_512() {
    report(
        "xattr/512",
        InitOptions {
            block_size: 512,
            key_location: KeyLocation::Xattr,
            ..Default::default()
        },
    );
}

/// Plant `fault` (in `volume::content`) on this thread and run the fuzzer,
/// which must find it; returns the shrunk failure, printed with its seed.
fn must_catch(fault: &'static str, opts: InitOptions) -> String {
    let _planted = super::content::plant_on_thread(fault);
    let s = seed();
    let e = fuzz(opts, 200, s, 40)
        .err()
        .unwrap_or_else(|| panic!("the planted fault {fault} went unnoticed (FUZZ_SEED={s})"));
    eprintln!("planted fault {fault} found (FUZZ_SEED={s}); minimal reproducer:\n{e}");
    e
}

/// A write that ends in a new partial block drops it: the backing file is
/// one block short, which the size check sees at once.
#[test]
fn differential_fuzzer_catches_dropped_tail_block() {
    let e = must_catch("content-drop-tail-block", InitOptions::default());
    assert!(e.contains("size of file"), "{e}");
}

/// A partial write merged into the previous block's old plaintext: sizes
/// stay right, only the bytes are wrong.
#[test]
fn differential_fuzzer_catches_merge_into_neighbour_block() {
    let e = must_catch("content-merge-neighbour", InitOptions::default());
    assert!(e.contains("differs"), "{e}");
    assert!(!e.contains("size of file"), "{e}");
}

/// Truncate into a block and grow again: the grown part shows the bytes the
/// truncate cut instead of zeros. Sizes stay right.
#[test]
fn differential_fuzzer_catches_stale_block_after_truncate() {
    let e = must_catch(
        "content-stale-block",
        InitOptions {
            block_size: 512,
            key_location: KeyLocation::Xattr,
            ..Default::default()
        },
    );
    assert!(e.contains("differs") && e.contains("Truncate"), "{e}");
    assert!(!e.contains("size of file"), "{e}");
}
