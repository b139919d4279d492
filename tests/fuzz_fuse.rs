//! Differential op-sequence fuzzing through the real FUSE mount: each random
//! sequence runs against the mount and against a plain directory, and every
//! result (bytes, sizes, errno, listings, link counts, modes) must match. A
//! failing sequence is shrunk (delta debugging) to a minimal reproducer, which
//! is printed with the seed. `FUZZ_SEED`, `FUZZ_SEQS`, `FUZZ_OPS` tune it.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use common::*;

#[derive(Clone, Debug)]
enum Op {
    Create {
        path: String,
        flags: i32,
        mode: u32,
        slot: usize,
    },
    Open {
        path: String,
        flags: i32,
        slot: usize,
    },
    Write {
        slot: usize,
        off: u64,
        len: usize,
        seed: u8,
    },
    Read {
        slot: usize,
        off: u64,
        len: usize,
    },
    Ftruncate {
        slot: usize,
        size: u64,
    },
    Truncate {
        path: String,
        size: u64,
    },
    Fallocate {
        slot: usize,
        mode: i32,
        off: u64,
        len: u64,
    },
    Rename {
        from: String,
        to: String,
        flags: u32,
    },
    Link {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    Readlink {
        path: String,
    },
    SetXattr {
        path: String,
        name: String,
        value: u8,
    },
    GetXattr {
        path: String,
        name: String,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    ListXattr {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Utimens {
        path: String,
        sec: i64,
        nsec: i64,
    },
    Fsync {
        slot: usize,
    },
    Close {
        slot: usize,
    },
    Stat {
        path: String,
    },
    Fstat {
        slot: usize,
    },
    ListDir {
        path: String,
    },
    Remount,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

const SLOTS: usize = 4;
const LONG: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

fn gen_path(r: &mut Rng) -> String {
    let dir = r.pick(&["", "", "d/", "d/e/", "f/"]);
    // The third name is long enough to become a hashed long name (side file).
    let name = r.pick(&["a", "b", LONG]);
    format!("{dir}{name}")
}

fn gen_off(r: &mut Rng) -> u64 {
    match r.below(3) {
        0 => r.below(20_000),
        1 => (r.below(5) * 4096)
            .saturating_add(r.below(7))
            .saturating_sub(3),
        _ => r.below(100),
    }
}

fn gen_op(r: &mut Rng) -> Op {
    let slot = r.below(SLOTS as u64) as usize;
    match r.below(100) {
        0..=9 => {
            let mut flags = libc::O_CREAT | libc::O_RDWR;
            for f in [libc::O_EXCL, libc::O_TRUNC, libc::O_APPEND] {
                if r.below(4) == 0 {
                    flags |= f;
                }
            }
            Op::Create {
                path: gen_path(r),
                flags,
                mode: [0o644, 0o600, 0o755, 0o4755][r.below(4) as usize],
                slot,
            }
        }
        10..=16 => {
            let mut flags = [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR][r.below(3) as usize];
            for f in [libc::O_TRUNC, libc::O_APPEND] {
                if r.below(5) == 0 {
                    flags |= f;
                }
            }
            Op::Open {
                path: gen_path(r),
                flags,
                slot,
            }
        }
        17..=33 => Op::Write {
            slot,
            off: gen_off(r),
            len: r.below(9000) as usize,
            seed: r.below(256) as u8,
        },
        34..=43 => Op::Read {
            slot,
            off: gen_off(r),
            len: r.below(12_000) as usize,
        },
        44..=47 => Op::Ftruncate {
            slot,
            size: gen_off(r),
        },
        48..=49 => Op::Truncate {
            path: gen_path(r),
            size: gen_off(r),
        },
        50..=51 => Op::Fallocate {
            slot,
            mode: if r.below(2) == 0 {
                0
            } else {
                libc::FALLOC_FL_KEEP_SIZE
            },
            off: gen_off(r),
            len: r.below(9000),
        },
        52..=55 => Op::Rename {
            from: if r.below(3) == 0 {
                r.pick(&["d", "d/e", "f"]).into()
            } else {
                gen_path(r)
            },
            to: gen_path(r),
            flags: if r.below(4) == 0 {
                libc::RENAME_NOREPLACE
            } else {
                0
            },
        },
        56..=57 => Op::Link {
            from: gen_path(r),
            to: gen_path(r),
        },
        58..=61 => Op::Unlink { path: gen_path(r) },
        62..=66 => Op::Mkdir {
            path: r.pick(&["d", "d/e", "f", "f/a", "d/a"]).into(),
            mode: [0o755, 0o700, 0o1777][r.below(3) as usize],
        },
        67..=68 => Op::Rmdir {
            path: r.pick(&["d", "d/e", "f", "f/a", "d/a"]).into(),
        },
        69..=70 => Op::Symlink {
            target: r.pick(&["a", "../b", "/nonexistent/x", "d/e/c"]).into(),
            path: gen_path(r),
        },
        71..=72 => Op::Readlink { path: gen_path(r) },
        73..=75 => Op::SetXattr {
            path: gen_path(r),
            name: r.pick(&["user.x", "user.y"]).into(),
            value: r.below(256) as u8,
        },
        76..=77 => Op::GetXattr {
            path: gen_path(r),
            name: r.pick(&["user.x", "user.y"]).into(),
        },
        78 => Op::RemoveXattr {
            path: gen_path(r),
            name: r.pick(&["user.x", "user.y"]).into(),
        },
        79 => Op::ListXattr { path: gen_path(r) },
        80..=81 => Op::Chmod {
            path: gen_path(r),
            mode: [0o644, 0o600, 0o2755, 0o777][r.below(4) as usize],
        },
        82..=83 => Op::Utimens {
            path: gen_path(r),
            sec: r.below(2_000_000_000) as i64,
            nsec: r.below(1_000_000_000) as i64,
        },
        84..=85 => Op::Fsync { slot },
        86..=88 => Op::Close { slot },
        89..=93 => Op::Stat { path: gen_path(r) },
        94..=95 => Op::Fstat { slot },
        96..=98 => Op::ListDir {
            path: r.pick(&["", "d", "d/e", "f"]).into(),
        },
        _ => Op::Remount,
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

fn errno() -> String {
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    format!("errno {e}")
}

fn hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100000001b3)
    })
}

fn stat_str(st: &libc::stat, with_size: bool) -> String {
    let kind = st.st_mode & libc::S_IFMT;
    let size = if with_size && kind != libc::S_IFDIR {
        st.st_size
    } else {
        -1
    };
    format!(
        "kind {kind:o} perm {:o} size {size} nlink {}",
        st.st_mode & 0o7777,
        st.st_nlink
    )
}

/// Run one op on one side; returns a normalized outcome.
fn exec(root: &Path, slots: &mut [Option<OwnedFd>], op: &Op) -> String {
    let p = |s: &str| c(&root.join(s));
    let fd = |slots: &[Option<OwnedFd>], i: usize| {
        slots[i].as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1)
    };
    // SAFETY: every call below gets valid C strings and buffers of the stated sizes.
    unsafe {
        match op {
            Op::Create {
                path,
                flags,
                mode,
                slot,
            } => {
                slots[*slot] = None;
                let f = libc::open(
                    p(path).as_ptr(),
                    flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    *mode,
                );
                if f < 0 {
                    return errno();
                }
                slots[*slot] = Some(OwnedFd::from_raw_fd(f));
                "ok".into()
            }
            Op::Open { path, flags, slot } => {
                slots[*slot] = None;
                let f = libc::open(p(path).as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW);
                if f < 0 {
                    return errno();
                }
                slots[*slot] = Some(OwnedFd::from_raw_fd(f));
                "ok".into()
            }
            Op::Write {
                slot,
                off,
                len,
                seed,
            } => {
                let data: Vec<u8> = (0..*len).map(|j| seed.wrapping_add(j as u8)).collect();
                let f = fd(slots, *slot);
                let fl = if f >= 0 {
                    libc::fcntl(f, libc::F_GETFL)
                } else {
                    0
                };
                let n = if fl & libc::O_APPEND != 0 {
                    libc::write(f, data.as_ptr() as *const _, data.len())
                } else {
                    libc::pwrite(f, data.as_ptr() as *const _, data.len(), *off as i64)
                };
                if n < 0 {
                    errno()
                } else {
                    format!("wrote {n}")
                }
            }
            Op::Read { slot, off, len } => {
                let mut buf = vec![0u8; *len];
                let n = libc::pread(
                    fd(slots, *slot),
                    buf.as_mut_ptr() as *mut _,
                    buf.len(),
                    *off as i64,
                );
                if n < 0 {
                    errno()
                } else {
                    format!("read {n} hash {:x}", hash(&buf[..n as usize]))
                }
            }
            Op::Ftruncate { slot, size } => {
                if libc::ftruncate(fd(slots, *slot), *size as i64) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Truncate { path, size } => {
                if libc::truncate(p(path).as_ptr(), *size as i64) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Fallocate {
                slot,
                mode,
                off,
                len,
            } => {
                if libc::fallocate(fd(slots, *slot), *mode, *off as i64, *len as i64) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Rename { from, to, flags } => {
                if libc::renameat2(
                    libc::AT_FDCWD,
                    p(from).as_ptr(),
                    libc::AT_FDCWD,
                    p(to).as_ptr(),
                    *flags,
                ) < 0
                {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Link { from, to } => {
                if libc::link(p(from).as_ptr(), p(to).as_ptr()) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Unlink { path } => {
                if libc::unlink(p(path).as_ptr()) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Mkdir { path, mode } => {
                if libc::mkdir(p(path).as_ptr(), *mode) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Rmdir { path } => {
                if libc::rmdir(p(path).as_ptr()) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Symlink { target, path } => {
                let t = CString::new(target.as_str()).unwrap();
                if libc::symlink(t.as_ptr(), p(path).as_ptr()) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Readlink { path } => {
                let mut buf = vec![0u8; 4096];
                let n = libc::readlink(p(path).as_ptr(), buf.as_mut_ptr() as *mut _, buf.len());
                if n < 0 {
                    errno()
                } else {
                    String::from_utf8_lossy(&buf[..n as usize]).into_owned()
                }
            }
            Op::SetXattr { path, name, value } => {
                let n = CString::new(name.as_str()).unwrap();
                let v = vec![*value; (*value as usize % 50) + 1];
                if libc::lsetxattr(
                    p(path).as_ptr(),
                    n.as_ptr(),
                    v.as_ptr() as *const _,
                    v.len(),
                    0,
                ) < 0
                {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::GetXattr { path, name } => {
                let n = CString::new(name.as_str()).unwrap();
                let mut buf = vec![0u8; 256];
                let r = libc::lgetxattr(
                    p(path).as_ptr(),
                    n.as_ptr(),
                    buf.as_mut_ptr() as *mut _,
                    buf.len(),
                );
                if r < 0 {
                    errno()
                } else {
                    format!("{:?}", &buf[..r as usize])
                }
            }
            Op::RemoveXattr { path, name } => {
                let n = CString::new(name.as_str()).unwrap();
                if libc::lremovexattr(p(path).as_ptr(), n.as_ptr()) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::ListXattr { path } => {
                let mut buf = vec![0u8; 1024];
                let r = libc::llistxattr(p(path).as_ptr(), buf.as_mut_ptr() as *mut _, buf.len());
                if r < 0 {
                    return errno();
                }
                let mut names: Vec<_> = buf[..r as usize]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                names.sort();
                names.join(",")
            }
            Op::Chmod { path, mode } => {
                if libc::chmod(p(path).as_ptr(), *mode) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Utimens { path, sec, nsec } => {
                let ts = [
                    libc::timespec {
                        tv_sec: *sec,
                        tv_nsec: *nsec,
                    },
                    libc::timespec {
                        tv_sec: *sec + 5,
                        tv_nsec: *nsec / 2,
                    },
                ];
                if libc::utimensat(
                    libc::AT_FDCWD,
                    p(path).as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                ) < 0
                {
                    return errno();
                }
                let mut st: libc::stat = std::mem::zeroed();
                libc::lstat(p(path).as_ptr(), &mut st);
                format!(
                    "a {}.{} m {}.{}",
                    st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec
                )
            }
            Op::Fsync { slot } => {
                if libc::fsync(fd(slots, *slot)) < 0 {
                    errno()
                } else {
                    "ok".into()
                }
            }
            Op::Close { slot } => {
                slots[*slot] = None;
                "ok".into()
            }
            Op::Stat { path } => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::lstat(p(path).as_ptr(), &mut st) < 0 {
                    errno()
                } else {
                    stat_str(&st, true)
                }
            }
            Op::Fstat { slot } => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::fstat(fd(slots, *slot), &mut st) < 0 {
                    errno()
                } else {
                    stat_str(&st, true)
                }
            }
            Op::ListDir { path } => match std::fs::read_dir(root.join(path)) {
                Ok(it) => {
                    let mut v: Vec<String> = it
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect();
                    v.sort();
                    v.join(",")
                }
                Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
            },
            Op::Remount => "ok".into(),
        }
    }
}

struct Sides<'a> {
    env: &'a Env,
    cipher: PathBuf,
    mount: Option<Mount>,
    plain: PathBuf,
    runs: usize,
    successes: usize,
    errors: usize,
}

impl Sides<'_> {
    /// Run a sequence in fresh directories; returns the first mismatch.
    fn run(&mut self, ops: &[Op]) -> Option<(usize, String, String)> {
        self.runs += 1;
        let name = format!("run{}", self.runs);
        let froot = self.mount.as_ref().unwrap().mnt.join(&name);
        let proot = self.plain.join(&name);
        std::fs::create_dir(&froot).unwrap();
        std::fs::create_dir(&proot).unwrap();
        let mut fs_slots: Vec<Option<OwnedFd>> = (0..SLOTS).map(|_| None).collect();
        let mut pl_slots: Vec<Option<OwnedFd>> = (0..SLOTS).map(|_| None).collect();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Remount = op {
                fs_slots.iter_mut().for_each(|s| *s = None);
                pl_slots.iter_mut().for_each(|s| *s = None);
                let log = self.mount.take().unwrap().unmount();
                assert!(!log.contains("panicked"), "daemon panicked: {log}");
                self.mount = Some(self.env.mount(&self.cipher, "m", &[]));
                continue;
            }
            let froot = self.mount.as_ref().unwrap().mnt.join(&name);
            let a = exec(&froot, &mut fs_slots, op);
            let b = exec(&proot, &mut pl_slots, op);
            if a != b {
                return Some((i, a, b));
            }
            if a.starts_with("errno") {
                self.errors += 1;
            } else {
                self.successes += 1;
            }
        }
        None
    }
}

/// Delta debugging: drop chunks of ops while the sequence still fails.
fn shrink(sides: &mut Sides<'_>, mut ops: Vec<Op>) -> Vec<Op> {
    let mut chunk = ops.len() / 2;
    while chunk >= 1 {
        let mut i = 0;
        while i < ops.len() {
            let mut cand = ops.clone();
            cand.drain(i..(i + chunk).min(cand.len()));
            if !cand.is_empty() && sides.run(&cand).is_some() {
                ops = cand;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    ops
}

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

#[test]
fn differential_fuzz_through_fuse() {
    fuzz_volume(&["--block-size", "4096"]);
}

#[test]
fn differential_fuzz_long_names_xattr_keys() {
    fuzz_volume(&[
        "--block-size",
        "1024",
        "--long-name-max",
        "64",
        "--key-location",
        "xattr",
    ]);
}

fn fuzz_volume(init: &'static [&'static str]) {
    bounded(600, move || {
        let env = Env::new();
        let cipher = env.init("c", init);
        let plain = env.path("plain");
        std::fs::create_dir(&plain).unwrap();
        let mount = env.mount(&cipher, "m", &[]);
        let seed = env_num(
            "FUZZ_SEED",
            u64::from_le_bytes(*b"envelope") ^ std::process::id() as u64,
        );
        let seqs = env_num("FUZZ_SEQS", 30);
        let nops = env_num("FUZZ_OPS", 150) as usize;
        eprintln!("fuse differential fuzz {init:?}: seed={seed} sequences={seqs} ops={nops} (rerun: FUZZ_SEED={seed})");
        let mut sides = Sides {
            env: &env,
            cipher,
            mount: Some(mount),
            plain,
            runs: 0,
            successes: 0,
            errors: 0,
        };
        let mut total = 0;
        for s in 0..seqs {
            let mut r = Rng(seed.wrapping_add(s).wrapping_mul(0x9E3779B97F4A7C15) | 1);
            // A populated tree to start from (part of the sequence, so it shrinks too).
            let mut ops: Vec<Op> = vec![
                Op::Mkdir {
                    path: "d".into(),
                    mode: 0o755,
                },
                Op::Mkdir {
                    path: "d/e".into(),
                    mode: 0o755,
                },
                Op::Mkdir {
                    path: "f".into(),
                    mode: 0o755,
                },
            ];
            for (slot, path) in ["a", "d/b", "f/c", "d/e/a"].iter().enumerate() {
                let flags = libc::O_CREAT | libc::O_RDWR;
                ops.push(Op::Create {
                    path: (*path).into(),
                    flags,
                    mode: 0o644,
                    slot,
                });
            }
            ops.extend((0..nops).map(|_| gen_op(&mut r)));
            total += ops.len();
            if let Some((i, a, b)) = sides.run(&ops) {
                let min = shrink(&mut sides, ops[..=i].to_vec());
                let detail = sides.run(&min);
                panic!(
                    "mismatch in sequence {s} (FUZZ_SEED={seed}) at op {i}: mount {a:?} vs plain {b:?}\nminimal reproducer ({} ops, last result {detail:?}):\n{min:#?}",
                    min.len()
                );
            }
        }
        eprintln!(
            "fuse differential fuzz: {total} ops in {seqs} sequences matched ({} succeeded, {} failed alike)",
            sides.successes, sides.errors
        );
        // A generator whose ops all fail would prove nothing.
        assert!(sides.successes > total / 3, "too few successful ops");
        let log = sides.mount.take().unwrap().unmount();
        assert!(!log.contains("panicked"), "{log}");
    });
}
