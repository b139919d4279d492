//! Integration tests: the real binary mounts real volumes.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

const LOCATIONS: [&[&str]; 2] = [&[], &["--key-location", "xattr"]];

fn read_all(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap()
}

#[test]
fn round_trip_sizes_and_remount() {
    bounded(300, || {
        for flags in LOCATIONS {
            let env = Env::new();
            let c = env.init("c", flags);
            let m = env.mount(&c, "m", &[]);
            let sizes = [0usize, 1, 4095, 4096, 4097, 10 << 20];
            for (i, s) in sizes.iter().enumerate() {
                fs::write(m.p(&format!("f{s}")), pattern(i as u64, *s)).unwrap();
            }
            for (i, s) in sizes.iter().enumerate() {
                assert_eq!(
                    read_all(&m.p(&format!("f{s}"))),
                    pattern(i as u64, *s),
                    "size {s}"
                );
                assert_eq!(
                    fs::metadata(m.p(&format!("f{s}"))).unwrap().len(),
                    *s as u64
                );
            }
            // Sparse 1 GiB file: one byte at the end, zeros before it.
            {
                let f = File::create(m.p("sparse")).unwrap();
                f.write_all_at(b"Z", (1 << 30) - 1).unwrap();
                f.write_all_at(b"head", 4096 * 100 + 7).unwrap();
            }
            let check_sparse = |p: &Path| {
                let mut f = File::open(p).unwrap();
                assert_eq!(f.metadata().unwrap().len(), 1 << 30);
                let mut buf = vec![0u8; 1 << 20];
                let mut off = 0u64;
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    for (j, b) in buf[..n].iter().enumerate() {
                        let pos = off + j as u64;
                        let want = if pos == (1 << 30) - 1 {
                            b'Z'
                        } else if (4096 * 100 + 7..4096 * 100 + 11).contains(&pos) {
                            b"head"[(pos - (4096 * 100 + 7)) as usize]
                        } else {
                            0
                        };
                        assert_eq!(*b, want, "sparse byte {pos}");
                    }
                    off += n as u64;
                }
                assert_eq!(off, 1 << 30);
            };
            check_sparse(&m.p("sparse"));
            let backing_sparse = fs::metadata(backing_path(&c, &m.p("sparse"))).unwrap();
            assert!(
                backing_sparse.blocks() * 512 < 16 << 20,
                "backing file stays sparse"
            );
            // No plaintext in the backing directory.
            fs::write(m.p("marker.txt"), b"The MAGIC-MARKER-7734 lives here").unwrap();
            m.unmount();
            assert!(backing_contains(&c, b"MAGIC-MARKER-7734").is_empty());
            // A fresh mount process reads everything back.
            let m2 = env.mount(&c, "m", &[]);
            for (i, s) in sizes.iter().enumerate() {
                assert_eq!(
                    read_all(&m2.p(&format!("f{s}"))),
                    pattern(i as u64, *s),
                    "size {s} after remount"
                );
            }
            check_sparse(&m2.p("sparse"));
            assert_eq!(
                read_all(&m2.p("marker.txt")),
                b"The MAGIC-MARKER-7734 lives here"
            );
            if flags.is_empty() {
                assert_eq!(
                    fs::metadata(backing_path(&c, &m2.p("f0"))).unwrap().len(),
                    84,
                    "empty file has its header"
                );
            } else {
                assert_eq!(
                    fs::metadata(backing_path(&c, &m2.p("f0"))).unwrap().len(),
                    0,
                    "xattr volume: blocks only"
                );
            }
            m2.unmount();
        }
    });
}

#[test]
fn random_writes_match_model() {
    bounded(300, || {
        for flags in LOCATIONS {
            let env = Env::new();
            let c = env.init("c", &[&["--block-size", "1024"], flags].concat());
            let m = env.mount(&c, "m", &[]);
            let mut f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(true)
                .open(m.p("r"))
                .unwrap();
            let mut model: Vec<u8> = Vec::new();
            let rnd = pattern(99, 4000);
            for i in 0..600usize {
                let r = |k: usize| {
                    let v = &rnd[(i * 6 + k) % 4000..];
                    u32::from_le_bytes([v[0], v[1], v.get(2).copied().unwrap_or(0), 0]) as u64
                };
                match r(0) % 8 {
                    0..=4 => {
                        let off = r(1) % 70_000;
                        let len = (r(2) % 5000 + 1) as usize;
                        let data = pattern(i as u64, len);
                        f.write_all_at(&data, off).unwrap();
                        let end = off as usize + len;
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[off as usize..end].copy_from_slice(&data);
                    }
                    5 => {
                        let ns = r(3) % 80_000;
                        f.set_len(ns).unwrap();
                        model.resize(ns as usize, 0);
                    }
                    6 => {
                        // O_APPEND through a second handle.
                        let mut a = OpenOptions::new().append(true).open(m.p("r")).unwrap();
                        let data = pattern(i as u64 + 7, (r(4) % 3000) as usize);
                        a.write_all(&data).unwrap();
                        model.extend_from_slice(&data);
                    }
                    _ => {
                        let mut got = Vec::new();
                        f.seek(SeekFrom::Start(0)).unwrap();
                        f.read_to_end(&mut got).unwrap();
                        assert_eq!(got.len(), model.len(), "op {i}");
                        assert!(got == model, "content differs after op {i}");
                    }
                }
            }
            drop(f);
            m.unmount();
            let m2 = env.mount(&c, "m", &[]);
            assert!(read_all(&m2.p("r")) == model);
            m2.unmount();
        }
    });
}

#[test]
fn posix_semantics() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        // An open unlinked file stays readable and writable.
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(m.p("u"))
            .unwrap();
        f.write_all(b"still here").unwrap();
        fs::remove_file(m.p("u")).unwrap();
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "still here");
        f.set_len(5).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 5);
        drop(f);
        // Hard links share one inode and its link count.
        fs::write(m.p("h1"), b"linked").unwrap();
        fs::create_dir(m.p("sub")).unwrap();
        fs::hard_link(m.p("h1"), m.p("sub/h2")).unwrap();
        let (a, b) = (
            fs::metadata(m.p("h1")).unwrap(),
            fs::metadata(m.p("sub/h2")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.nlink(), 2);
        fs::write(m.p("sub/h2"), b"changed").unwrap();
        assert_eq!(read_all(&m.p("h1")), b"changed");
        // Inode numbers are stable.
        let ino = fs::metadata(m.p("h1")).unwrap().ino();
        assert_eq!(fs::metadata(m.p("h1")).unwrap().ino(), ino);
        // rename over an existing target, and RENAME_NOREPLACE.
        fs::write(m.p("x"), b"x").unwrap();
        fs::write(m.p("y"), b"y").unwrap();
        fs::rename(m.p("x"), m.p("y")).unwrap();
        assert_eq!(read_all(&m.p("y")), b"x");
        fs::write(m.p("z"), b"z").unwrap();
        let cz = std::ffi::CString::new(m.p("z").to_str().unwrap()).unwrap();
        let cy = std::ffi::CString::new(m.p("y").to_str().unwrap()).unwrap();
        // SAFETY: valid C strings.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                cz.as_ptr(),
                libc::AT_FDCWD,
                cy.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EEXIST)
        );
        // Symlinks round-trip; the backing target is ciphertext.
        std::os::unix::fs::symlink("target/with/SECRET-PATH", m.p("l")).unwrap();
        assert_eq!(
            fs::read_link(m.p("l")).unwrap().to_str().unwrap(),
            "target/with/SECRET-PATH"
        );
        assert_eq!(fs::symlink_metadata(m.p("l")).unwrap().len(), 23);
        assert!(!fs::read_link(backing_path(&c, &m.p("l")))
            .unwrap()
            .to_str()
            .unwrap()
            .contains("SECRET"));
        // xattrs: values encrypted, the header xattr hidden.
        xattr_set(&m.p("y"), "user.color", b"BLUE-SECRET");
        assert_eq!(xattr_get(&m.p("y"), "user.color").unwrap(), b"BLUE-SECRET");
        assert_eq!(xattr_list(&m.p("y")), vec!["user.color".to_string()]);
        xattr_set(&m.p("sub"), "user.dir", b"D");
        assert_eq!(xattr_get(&m.p("sub"), "user.dir").unwrap(), b"D");
        // mkfifo works and is a fifo.
        let cf = std::ffi::CString::new(m.p("fifo").to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(cf.as_ptr(), 0o644) }, 0);
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &fs::metadata(m.p("fifo")).unwrap().file_type()
        ));
        // chmod, truncate to grow, timestamps.
        fs::set_permissions(m.p("y"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            fs::metadata(m.p("y")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        truncate_grows_with_zeros_and_moves_times(&m.p("y"), b"x");
        // The volume's own files are hidden and cannot be created.
        let names: Vec<_> = fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!names
            .iter()
            .any(|n| n.to_str().unwrap().starts_with("envelopefs.")));
        // With encrypted names, a user's "envelopefs.conf" is an ordinary file.
        let cfg = fs::read(c.join("envelopefs.conf")).unwrap();
        fs::write(m.p("envelopefs.conf"), b"x").unwrap();
        assert_eq!(fs::read(c.join("envelopefs.conf")).unwrap(), cfg);
        // fallocate modes: plain allocate grows the file, KEEP_SIZE does not, punch is refused.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.p("y"))
            .unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        // SAFETY: valid fd.
        assert_eq!(unsafe { libc::fallocate(fd, 0, 0, 10_000) }, 0);
        assert_eq!(f.metadata().unwrap().len(), 10_000);
        // SAFETY: valid fd.
        assert_eq!(
            unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 0, 50_000) },
            0
        );
        assert_eq!(f.metadata().unwrap().len(), 10_000);
        // SAFETY: valid fd.
        let r = unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                10,
            )
        };
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EOPNOTSUPP)
        );
        let mut data = vec![0u8; 10_000];
        data[0] = b'x';
        assert_eq!(read_all(&m.p("y")), data);
        drop(f);
        assert!(backing_contains(&c, b"BLUE-SECRET").is_empty());
        m.unmount();
    });
}

/// mtime and ctime of `p`, to the nanosecond.
fn times(p: &Path) -> ((i64, i64), (i64, i64)) {
    let md = fs::metadata(p).unwrap();
    ((md.mtime(), md.mtime_nsec()), (md.ctime(), md.ctime_nsec()))
}

/// Growing `p` (holding `content`) by truncate(2) on its path and then by
/// ftruncate(2) on a handle: each time the size is the new one, the new
/// bytes read as zeros, and mtime and ctime move forward.
fn truncate_grows_with_zeros_and_moves_times(p: &Path, content: &[u8]) {
    let cp = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    for (how, size) in [("truncate", 3000u64), ("ftruncate", 9000)] {
        let (mtime, ctime) = times(p);
        // Past the timestamp granularity of the backing filesystem.
        std::thread::sleep(std::time::Duration::from_millis(20));
        if how == "truncate" {
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::truncate(cp.as_ptr(), size as i64) }, 0);
        } else {
            OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(size)
                .unwrap();
        }
        assert_eq!(fs::metadata(p).unwrap().len(), size, "{how}");
        let mut want = content.to_vec();
        want.resize(size as usize, 0);
        assert!(read_all(p) == want, "{how}: the grown part reads as zeros");
        let (mtime2, ctime2) = times(p);
        assert!(mtime2 > mtime, "{how}: mtime {mtime:?} -> {mtime2:?}");
        assert!(ctime2 > ctime, "{how}: ctime {ctime:?} -> {ctime2:?}");
    }
    OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(content.len() as u64)
        .unwrap();
}

#[test]
fn tampering_gives_eio_never_wrong_bytes() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let data = pattern(5, 3 * 4096 + 500);
        let mut bp = std::collections::HashMap::new();
        for n in ["a", "b", "flip", "swap", "move", "hdr", "trunc"] {
            fs::write(m.p(n), &data).unwrap();
            bp.insert(n, backing_path(&c, &m.p(n)));
        }
        m.unmount();
        let h = 84usize;
        let cbs = 4096 + 36;
        let edit = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = fs::read(&bp[name]).unwrap();
            f(&mut v);
            fs::write(&bp[name], v).unwrap();
        };
        let other = fs::read(&bp["b"]).unwrap();
        edit("flip", &|v| v[h + cbs + 100] ^= 0x10);
        edit("swap", &|v| {
            v[h..h + cbs].copy_from_slice(&other[h..h + cbs])
        });
        edit("move", &|v| {
            let b2 = v[h + 2 * cbs..h + 3 * cbs].to_vec();
            v[h + cbs..h + 2 * cbs].copy_from_slice(&b2)
        });
        edit("hdr", &|v| v[..h].copy_from_slice(&other[..h]));
        edit("trunc", &|v| v.truncate(h + cbs + cbs / 2));
        let m = env.mount(&c, "m", &[]);
        // The damaged files, and no other, are logged by their backing names.
        for n in ["flip", "swap", "move", "hdr", "trunc"] {
            m.expect_log(bp[n].file_name().unwrap().to_str().unwrap());
        }
        assert_eq!(read_all(&m.p("a")), data, "untouched file still reads");
        for n in ["flip", "swap", "move", "hdr"] {
            let e = fs::read(m.p(n)).expect_err(n);
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{n}");
        }
        // Torn mid-block at a length a block could have: that block gives EIO,
        // the intact block before it still reads.
        let e = fs::read(m.p("trunc")).expect_err("torn block");
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        let mut first = vec![0u8; 4096];
        File::open(m.p("trunc"))
            .unwrap()
            .read_exact_at(&mut first, 0)
            .unwrap();
        assert_eq!(first, data[..4096]);
        // The file with a torn tail can be truncated and deleted.
        fs::OpenOptions::new()
            .write(true)
            .open(m.p("trunc"))
            .unwrap()
            .set_len(10)
            .unwrap();
        assert_eq!(read_all(&m.p("trunc")), data[..10]);
        fs::remove_file(m.p("trunc")).unwrap();
        let log = m.unmount();
        let flip_name = bp["flip"].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            log.contains(&flip_name),
            "log names the backing file: {log}"
        );
        // An edited config is refused.
        let cfg = c.join("envelopefs.conf");
        let orig = fs::read_to_string(&cfg).unwrap();
        fs::write(
            &cfg,
            orig.replace("\"block_size\": 4096", "\"block_size\": 512"),
        )
        .unwrap();
        let out = env.run(&[
            "mount",
            c.to_str().unwrap(),
            env.path("m").to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("config"));
        assert!(!is_mounted(&env.path("m")));
    });
}

#[test]
fn bad_input_gives_clear_errors() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let mnt = env.path("m");
        fs::create_dir(&mnt).unwrap();
        let (cs, ms) = (c.to_str().unwrap(), mnt.to_str().unwrap());
        let one_line_err = |out: &std::process::Output, want: &str, code: i32| {
            assert_eq!(
                out.status.code(),
                Some(code),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let e = String::from_utf8_lossy(&out.stderr);
            assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
            assert!(e.contains(want), "{e}");
        };
        // Wrong passphrase.
        fs::write(env.path("wrong"), "nope").unwrap();
        fs::set_permissions(env.path("wrong"), fs::Permissions::from_mode(0o600)).unwrap();
        let out = env
            .cmd()
            .args(["mount", cs, ms])
            .env("ENVELOPEFS_PASSPHRASE_FILE", env.path("wrong"))
            .output()
            .unwrap();
        one_line_err(&out, "wrong passphrase", 12);
        // Not a volume.
        fs::create_dir(env.path("plain")).unwrap();
        one_line_err(
            &env.run(&["mount", env.path("plain").to_str().unwrap(), ms]),
            "not an envelopefs volume",
            10,
        );
        // Missing key store.
        let out = env
            .cmd()
            .args(["mount", cs, ms])
            .env("ENVELOPEFS_KEYSTORE", env.path("nostore"))
            .output()
            .unwrap();
        one_line_err(&out, "no key store", 13);
        // Missing mount point.
        one_line_err(
            &env.run(&["mount", cs, env.path("nodir").to_str().unwrap()]),
            "mount point",
            20,
        );
        // Daemon mode: returns once ready; a second mount of the same point or volume is refused.
        env.run_ok(&[
            "mount",
            cs,
            ms,
            "--log-file",
            env.path("d.log").to_str().unwrap(),
        ]);
        assert!(is_mounted(&mnt));
        fs::write(mnt.join("f"), b"daemon").unwrap();
        one_line_err(&env.run(&["mount", cs, ms]), "already in use", 20);
        let m2 = env.path("m2");
        fs::create_dir(&m2).unwrap();
        one_line_err(
            &env.run(&["mount", cs, m2.to_str().unwrap()]),
            "already mounted read-write",
            21,
        );
        // Read-only second mount is allowed and cannot write.
        env.run_ok(&["mount", cs, m2.to_str().unwrap(), "--read-only"]);
        assert_eq!(fs::read(m2.join("f")).unwrap(), b"daemon");
        assert_eq!(errno(fs::write(m2.join("g"), b"x")), Some(libc::EROFS));
        env.run_ok(&["umount", m2.to_str().unwrap()]);
        env.run_ok(&["umount", ms]);
        assert!(!is_mounted(&mnt));
        one_line_err(&env.run(&["umount", ms]), "not mounted", 20);
        // Bad flags.
        let out = env.run(&[
            "init",
            env.path("c2").to_str().unwrap(),
            "--block-size",
            "1000",
        ]);
        one_line_err(&out, "power of two", 2);
        // info works without a passphrase and prints JSON.
        let out = env
            .cmd()
            .args(["info", cs, "--output", "json"])
            .env_remove("ENVELOPEFS_PASSPHRASE_FILE")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["BlockSize"], 4096);
        assert_eq!(v["KeyLocation"], "header");
    });
}

#[test]
fn planted_symlinks_and_fifos_are_not_followed() {
    bounded(120, || {
        for names in [&["--plaintext-names"][..], &[]] {
            let env = Env::new();
            let c = env.init("c", names);
            let outside = env.path("outside");
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("victim"), b"untouched").unwrap();
            // Legitimate entries, then replaced in the backing dir by plants.
            let m = env.mount(&c, "m", &[]);
            fs::create_dir(m.p("evil-dir")).unwrap();
            fs::write(m.p("evil-file"), b"x").unwrap();
            fs::write(m.p("planted-fifo"), b"x").unwrap();
            let (bd, bf, bq) = (
                backing_path(&c, &m.p("evil-dir")),
                backing_path(&c, &m.p("evil-file")),
                backing_path(&c, &m.p("planted-fifo")),
            );
            m.unmount();
            fs::remove_dir_all(&bd).unwrap();
            fs::remove_file(&bf).unwrap();
            fs::remove_file(&bq).unwrap();
            std::os::unix::fs::symlink(&outside, &bd).unwrap();
            std::os::unix::fs::symlink(outside.join("victim"), &bf).unwrap();
            let cf = std::ffi::CString::new(bq.to_str().unwrap()).unwrap();
            // SAFETY: valid C string.
            assert_eq!(unsafe { libc::mkfifo(cf.as_ptr(), 0o666) }, 0);
            let m = env.mount(&c, "m", &[]);
            m.expect_log("symlink target fails authentication");
            // Planted links are symlinks in the mount whose targets do not decrypt: EIO, never followed.
            assert_eq!(errno(fs::read_link(m.p("evil-file"))), Some(libc::EIO));
            assert_eq!(
                errno(fs::write(m.p("evil-dir/x"), b"pwned")),
                Some(libc::EIO)
            );
            assert_eq!(
                errno(fs::write(m.p("evil-file"), b"pwned")),
                Some(libc::EIO)
            );
            assert!(!outside.join("x").exists());
            assert_eq!(fs::read(outside.join("victim")).unwrap(), b"untouched");
            // A planted fifo is shown as a fifo and never blocks the daemon.
            assert!(fs::symlink_metadata(m.p("planted-fifo"))
                .unwrap()
                .file_type()
                .is_fifo());
            fs::write(m.p("ok"), b"still serving").unwrap();
            assert_eq!(read_all(&m.p("ok")), b"still serving");
            m.unmount();
        }
    });
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn concurrent_handles_on_one_file_stay_consistent() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &["--block-size", "512"]);
        let m = env.mount(&c, "m", &[]);
        let path = m.p("shared");
        fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
        // Four writers through their own handles write interleaved, unaligned,
        // disjoint stripes that share blocks; readers run alongside.
        let stripe = 100usize;
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .unwrap();
                    for round in 0..3 {
                        for k in 0..(64 * 1024 / stripe / 4) {
                            let off = (k * 4 + t as usize) * stripe;
                            f.write_all_at(&vec![t + 1 + round * 4; stripe], off as u64)
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let d = fs::read(&path).unwrap();
                    assert_eq!(d.len(), 64 * 1024);
                }
            })
        };
        for t in threads {
            t.join().unwrap();
        }
        reader.join().unwrap();
        let d = read_all(&path);
        for (i, b) in d.iter().enumerate() {
            let k = i / stripe;
            let want = if k * stripe + stripe <= 64 * 1024 && k < (64 * 1024 / stripe / 4) * 4 {
                (k % 4) as u8 + 1 + 8
            } else {
                0
            };
            assert_eq!(*b, want, "byte {i}");
        }
        m.unmount();
    });
}

#[test]
fn allow_other_files_belong_to_their_creator() {
    if !need_fuse("allow_other_files_belong_to_their_creator") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &["--allow-other"]);
        fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o777)).unwrap();
        use std::os::unix::process::CommandExt;
        let nobody = 65534;
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo mine > {0}/theirs && mkdir {0}/theirdir",
                m.mnt.display()
            ))
            .uid(nobody)
            .gid(65534)
            .status()
            .unwrap();
        assert!(st.success());
        for n in ["theirs", "theirdir"] {
            assert_eq!(
                fs::metadata(m.p(n)).unwrap().uid(),
                nobody,
                "{n} in the mount"
            );
            assert_eq!(
                fs::metadata(backing_path(&c, &m.p(n))).unwrap().uid(),
                nobody,
                "{n} in the backing dir"
            );
        }
        assert_eq!(read_all(&m.p("theirs")), b"mine\n");
        m.unmount();
    });
}

#[test]
fn plaintext_names_volume_protects_its_own_files() {
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &["--plaintext-names"]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("visible name.txt"), b"x").unwrap();
        assert!(c.join("visible name.txt").exists(), "names stay plain");
        assert_eq!(
            errno(fs::write(m.p("envelopefs.conf"), b"x")),
            Some(libc::EINVAL),
            "a reserved name cannot be made"
        );
        // Hidden, so not there to remove.
        assert_eq!(
            errno(fs::remove_file(m.p("envelopefs.lock"))),
            Some(libc::ENOENT)
        );
        assert_eq!(
            errno(fs::rename(m.p("visible name.txt"), m.p("envelopefs.conf"))),
            Some(libc::EINVAL)
        );
        let names: Vec<_> = fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("visible name.txt")]);
        m.unmount();
        let v: serde_json::Value =
            serde_json::from_str(&env.run_ok(&["info", c.to_str().unwrap(), "--output", "json"]))
                .unwrap();
        assert_eq!(v["NameScheme"], "plaintext");
    });
}

#[test]
fn more_files_than_the_daemon_may_hold_descriptors_for() {
    bounded(240, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        // 256 descriptors at most: the node table keeps fewer and reopens by file handle.
        let m = env.mount_limited(&c, "m", &[], Some(256));
        fs::create_dir(m.p("d")).unwrap();
        for i in 0..1500 {
            fs::write(m.p(&format!("d/f{i}")), i.to_string()).unwrap();
        }
        let mut n = 0;
        for e in fs::read_dir(m.p("d")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert_eq!(fs::read_to_string(e.path()).unwrap(), name[1..]);
            assert_eq!(e.metadata().unwrap().len() as usize, name.len() - 1);
            n += 1;
        }
        assert_eq!(n, 1500);
        // Renames and deletes of nodes whose descriptors were closed.
        for i in 0..1500 {
            fs::rename(m.p(&format!("d/f{i}")), m.p(&format!("d/g{i}"))).unwrap();
        }
        for i in (0..1500).step_by(2) {
            fs::remove_file(m.p(&format!("d/g{i}"))).unwrap();
        }
        assert_eq!(fs::read_dir(m.p("d")).unwrap().count(), 750);
        let log = m.unmount();
        assert!(!log.contains("panicked"), "{log}");
    });
}

/// With the kernel's FUSE-over-io_uring switch on, one ring thread per CPU
/// serves the requests; with it off, with `--io-uring-depth 0`, or with
/// io_uring disabled for processes (`kernel.io_uring_disabled`, where the
/// daemon must not accept the ring at INIT: the kernel would then hold every
/// request), the daemon stays on /dev/fuse. Every way files round-trip (large
/// writes and reads fill the ring payload) and the daemon exits on unmount.
#[test]
fn io_uring_when_the_kernel_offers_it_dev_fuse_otherwise() {
    bounded(120, || {
        let offered = uring_offered();
        // One queue per possible CPU.
        let cpus = fuser::possible_cpus();
        let env = Env::new();
        let c = env.init("v", &[]);
        const DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";
        /// Puts `kernel.io_uring_disabled` back, also when the test fails.
        struct Restore(String);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = fs::write(DISABLED, &self.0);
            }
        }
        let disabled_was = fs::read_to_string(DISABLED).ok();
        let mut cases: Vec<(&[&str], bool, bool)> = vec![
            (&[], offered, false),
            (&["--io-uring-depth", "0"], false, false),
            (&["--io-uring-no-yield"], offered, false),
        ];
        if offered && disabled_was.as_deref().map(str::trim) == Some("0") {
            cases.push((&[], false, true));
        }
        for (i, (flags, ring, disable)) in cases.into_iter().enumerate() {
            let restore = disable.then(|| {
                fs::write(DISABLED, "2").unwrap();
                Restore("0".into())
            });
            let m = env.mount(&c, &format!("m{i}"), flags);
            let big = pattern(i as u64, (3 << 20) + 12345);
            fs::create_dir(m.p("d")).unwrap();
            // The daemon answered, so it has been through INIT: io_uring can
            // come back for everyone else.
            drop(restore);
            fs::write(m.p("d/big"), &big).unwrap();
            for n in 0..200 {
                fs::write(m.p(&format!("d/f{n}")), pattern(n, n as usize * 7)).unwrap();
            }
            assert_eq!(read_all(&m.p("d/big")), big);
            for n in 0..200 {
                assert_eq!(
                    read_all(&m.p(&format!("d/f{n}"))),
                    pattern(n, n as usize * 7)
                );
            }
            assert_eq!(fs::read_dir(m.p("d")).unwrap().count(), 201);
            fs::rename(m.p("d/big"), m.p("big")).unwrap();
            assert_eq!(fs::metadata(m.p("big")).unwrap().len(), big.len() as u64);
            fs::remove_dir_all(m.p("d")).unwrap();
            fs::remove_file(m.p("big")).unwrap();
            // The queue threads start after the mount appears: wait for them.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let rings = loop {
                let n = m
                    .thread_names()
                    .iter()
                    .filter(|n| n.starts_with("fuser-ring-"))
                    .count();
                if n == cpus || std::time::Instant::now() > deadline {
                    break n;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            assert_eq!(
                rings,
                if ring { cpus } else { 0 },
                "flags {flags:?}, disabled {disable}"
            );
            if flags.contains(&"--io-uring-no-yield") {
                let idle: Vec<_> = m
                    .threads()
                    .into_iter()
                    .filter(|(_, policy)| *policy != 0)
                    .collect();
                assert!(idle.is_empty(), "threads not in the normal class: {idle:?}");
            }
            assert!(
                m.unmount_exits(),
                "daemon did not exit after unmount (flags {flags:?})"
            );
        }
    });
}

/// Whether the kernel's FUSE-over-io_uring switch is on.
fn uring_offered() -> bool {
    fs::read_to_string("/sys/module/fuse/parameters/enable_uring").is_ok_and(|s| s.trim() == "Y")
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// On io_uring the queue threads yield their CPU (idle scheduling class), so
/// they must not starve behind busy processes: with every CPU busy, file
/// operations issued from one CPU still finish promptly, because the
/// watchdog puts a waiting queue thread back in the normal class.
#[test]
fn io_uring_queue_threads_do_not_starve_behind_busy_cpus() {
    if !uring_offered() {
        // Not a missing prerequisite: CI kernels may lack the switch.
        skip(
            "io_uring_queue_threads_do_not_starve_behind_busy_cpus",
            "FUSE over io_uring is off in this kernel",
        );
        return;
    }
    bounded(120, || {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        // At rest the queue threads are in the idle class. Requests from
        // every CPU let each of them settle (other tests may keep a CPU busy
        // for a while, so this is allowed time).
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut n = 0;
        loop {
            for cpu in 0..online {
                let probe = m.p(&format!("absent-{n}"));
                n += 1;
                std::thread::spawn(move || {
                    pin_to(cpu);
                    assert_eq!(errno(fs::metadata(probe)), Some(libc::ENOENT));
                })
                .join()
                .unwrap();
            }
            let rings: Vec<_> = m
                .threads()
                .into_iter()
                .filter(|(name, _)| name.starts_with("fuser-ring-"))
                .collect();
            if !rings.is_empty() && rings.iter().all(|(_, policy)| *policy == libc::SCHED_IDLE) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "queue threads never idle: {rings:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // Every CPU busy with a normal-class spinner.
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..online)
            .map(|cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin_to(cpu);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let dir = m.p("d");
        let work = std::thread::spawn(move || {
            pin_to(0);
            let t0 = Instant::now();
            fs::create_dir(&dir).unwrap();
            for i in 0..300u64 {
                let f = dir.join(format!("f{i}"));
                fs::write(&f, pattern(i, 100)).unwrap();
                assert_eq!(fs::read(&f).unwrap(), pattern(i, 100));
            }
            t0.elapsed()
        });
        // Past 30 s the spinners stop, so that a starving daemon finishes
        // the work and the test fails with the mount cleaned up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !work.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        let took = work.join().unwrap();
        // Starved in the idle class these take minutes; lifted by the
        // watchdog, well under a second plus its reaction time.
        assert!(
            took < Duration::from_secs(15),
            "300 files behind busy CPUs took {took:?}"
        );
        assert!(m.unmount_exits(), "daemon did not exit after unmount");
    });
}
