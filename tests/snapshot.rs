//! Snapshots, copies under another key, import and fsck.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::Value;

/// Everything about a tree that a copy must keep, keyed by relative path.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut links: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = root.join(&r);
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let mut d = format!(
                "mode {:o} uid {} gid {} mtime {}.{}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                md.mtime_nsec()
            );
            if ft.is_dir() {
                stack.push(r.clone());
            } else if ft.is_symlink() {
                d += &format!(" -> {}", fs::read_link(&p).unwrap().display());
            } else if ft.is_file() {
                let data = fs::read(&p).unwrap();
                d += &format!(
                    " size {} sum {:x}",
                    data.len(),
                    data.iter()
                        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(*b as u64))
                );
                if md.nlink() > 1 {
                    let first = links
                        .entry(md.ino())
                        .or_insert_with(|| r.display().to_string())
                        .clone();
                    d += &format!(" linked-with {first}");
                }
            } else if ft.is_fifo() {
                d += " fifo";
            }
            if !ft.is_symlink() {
                for (k, v) in xattrs(&p) {
                    d += &format!(" xattr {k}={v:?}");
                }
            }
            out.insert(r.display().to_string(), d);
        }
    }
    out
}

/// The user xattrs of a path with their values, sorted.
fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = xattr_list(p)
        .into_iter()
        .filter(|n| n.starts_with("user."))
        .map(|n| {
            let v = xattr_get(p, &n).unwrap_or_default();
            (n, v)
        })
        .collect();
    out.sort();
    out
}

/// A tree with every file type, links, holes, modes, owners, times and xattrs.
fn populate(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("small"), b"hello").unwrap();
    // Large enough for the parallel, block-range path of reencrypt.
    fs::write(root.join("dir/big"), pattern(1, 40 << 20)).unwrap();
    let f = fs::File::create(root.join("sparse")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"end", 50 << 20).unwrap();
    drop(f);
    fs::write(root.join("dir/sub/empty"), b"").unwrap();
    fs::hard_link(root.join("small"), root.join("dir/link-to-small")).unwrap();
    std::os::unix::fs::symlink("../small", root.join("dir/sym")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    xattr_set(&root.join("small"), "user.tag", b"xattr value");
    xattr_set(&root.join("dir"), "user.dirtag", b"d");
    fs::set_permissions(root.join("dir/big"), fs::Permissions::from_mode(0o751)).unwrap();
    fs::set_permissions(root.join("dir/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::lchown(root.join("dir/sub/empty"), Some(65534), Some(65534)).unwrap();
    }
    let c = std::ffi::CString::new(root.join("small").to_str().unwrap()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 123,
        },
        libc::timespec {
            tv_sec: 1_100_000_000,
            tv_nsec: 456_789,
        },
    ];
    // SAFETY: valid pointers.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) };
}

fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--output", "json"]);
    serde_json::from_str(&env.run_ok(&a)).unwrap()
}

#[test]
fn import_rekey_reencrypt_keep_everything() {
    bounded(300, || {
        let env = Env::new();
        let plain = env.path("plain");
        populate(&plain);
        let want = describe(&plain);
        let c = env.path("c");
        env.run_ok(&[
            "import",
            plain.to_str().unwrap(),
            c.to_str().unwrap(),
            "--block-size",
            "4096",
        ]);
        let m = env.mount(&c, "m", &[]);
        assert_eq!(describe(&m.mnt), want, "import equals the tree");
        m.unmount();
        assert!(backing_contains(&c, b"xattr value").is_empty());
        let k2 = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        for (mode, extra) in [
            ("rekey", vec!["--key-location", "xattr"]),
            (
                "reencrypt",
                vec!["--block-size", "1024", "--plaintext-names"],
            ),
        ] {
            let dst = env.path(&format!("copy-{mode}"));
            let mut args = vec![
                "snapshot",
                "copy",
                c.to_str().unwrap(),
                dst.to_str().unwrap(),
                "--key",
                &k2,
                "--mode",
                mode,
            ];
            args.extend(extra.iter());
            let s = json(&env, &args);
            assert_eq!(s["Files"], 4, "{s}"); // distinct inodes: the hard link is linked, not copied
            let info = json(&env, &["info", dst.to_str().unwrap()]);
            assert!(info["MasterKeyArn"].as_str().unwrap().ends_with(&k2));
            assert_ne!(
                info["VolumeId"],
                json(&env, &["info", c.to_str().unwrap()])["VolumeId"]
            );
            let m = env.mount(&dst, "m", &[]);
            assert_eq!(describe(&m.mnt), want, "{mode} copy equals the source");
            m.unmount();
            // Sparse stays sparse.
            let big_backing: u64 = fs::read_dir(&dst)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
                .max()
                .unwrap();
            assert!(big_backing < 20 << 20, "{mode}: holes kept");
        }
        // rekey cannot change the block size.
        let out = env.run(&[
            "snapshot",
            "copy",
            c.to_str().unwrap(),
            env.path("x").to_str().unwrap(),
            "--key",
            &k2,
            "--block-size",
            "8192",
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("reencrypt"));
        // An existing destination is refused.
        let out = env.run(&[
            "snapshot",
            "copy",
            c.to_str().unwrap(),
            env.path("copy-rekey").to_str().unwrap(),
            "--key",
            &k2,
        ]);
        assert!(!out.status.success());
        // The copies need the new key: with it disabled they do not mount; the source still does.
        env.run_ok(&["kms", "disable-key", "--key-id", &k2]);
        let out = env.run(&[
            "mount",
            env.path("copy-rekey").to_str().unwrap(),
            env.path("m").to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(15));
        let m = env.mount(&c, "m", &[]);
        assert_eq!(describe(&m.mnt), want);
        m.unmount();
    });
}

#[test]
fn fsck_finds_each_injected_fault() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        for n in ["flip", "swap1", "swap2", "nohdr", "name", "fine"] {
            fs::write(m.p(n), pattern(3, 9000)).unwrap();
        }
        let bp: BTreeMap<&str, PathBuf> = ["flip", "swap1", "swap2", "nohdr", "name"]
            .iter()
            .map(|n| (*n, backing_path(&c, &m.p(n))))
            .collect();
        m.unmount();
        let clean = json(&env, &["fsck", c.to_str().unwrap()]);
        assert_eq!(clean["Clean"], true, "{clean}");
        // Inject one fault of each kind.
        let mut v = fs::read(&bp["flip"]).unwrap();
        v[84 + 5000] ^= 1;
        fs::write(&bp["flip"], v).unwrap();
        let (a, b) = (
            fs::read(&bp["swap1"]).unwrap(),
            fs::read(&bp["swap2"]).unwrap(),
        );
        let mut a2 = a.clone();
        a2[..84].copy_from_slice(&b[..84]);
        fs::write(&bp["swap1"], a2).unwrap();
        let v = fs::read(&bp["nohdr"]).unwrap();
        fs::write(&bp["nohdr"], &v[84..]).unwrap();
        let mut nn = bp["name"].file_name().unwrap().to_str().unwrap().to_owned();
        let last = nn.pop().unwrap();
        nn.push(if last == 'Q' { 'R' } else { 'Q' });
        fs::rename(&bp["name"], c.join(&nn)).unwrap();
        let out = env.run(&["fsck", c.to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(30));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let problems = r["Problems"].as_array().unwrap();
        let find = |path: &str| problems.iter().any(|p| p["Path"] == path);
        assert!(find("/flip") && find("/swap1") && find("/nohdr"), "{r}");
        assert!(
            problems
                .iter()
                .any(|p| p["Path"].is_null() && p["BackingPath"] == nn.as_str()),
            "{r}"
        );
        assert!(!find("/fine") && !find("/swap2"));
        // An edited config: fsck refuses it.
        let cfg = c.join("envelopefs.conf");
        let orig = fs::read_to_string(&cfg).unwrap();
        fs::write(
            &cfg,
            orig.replace("\"block_size\": 4096", "\"block_size\": 2048"),
        )
        .unwrap();
        let out = env.run(&["fsck", c.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(11));
    });
}

#[test]
fn snapshot_while_writing_and_renaming_is_consistent() {
    bounded(180, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::create_dir(m.p("a")).unwrap();
        fs::create_dir(m.p("b")).unwrap();
        for i in 0..20 {
            fs::write(m.p(&format!("a/f{i}")), format!("file {i}")).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let appender = {
            let (p, stop) = (m.p("log"), stop.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    f.write_all(format!("record {n:08}\n").as_bytes()).unwrap();
                    f.sync_all().unwrap();
                    n += 1;
                }
            })
        };
        let renamer = {
            let (root, stop) = (m.mnt.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let i = k % 20;
                    let (from, to) = if (k / 20) % 2 == 0 {
                        ("a", "b")
                    } else {
                        ("b", "a")
                    };
                    fs::rename(
                        root.join(format!("{from}/f{i}")),
                        root.join(format!("{to}/f{i}")),
                    )
                    .unwrap();
                    k += 1;
                }
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        let snaps: Vec<PathBuf> = (0..3).map(|i| env.path(&format!("snap{i}"))).collect();
        for s in &snaps {
            env.run_ok(&[
                "snapshot",
                "create",
                c.to_str().unwrap(),
                s.to_str().unwrap(),
            ]);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        appender.join().unwrap();
        renamer.join().unwrap();
        m.unmount();
        for s in &snaps {
            let sm = env.mount(s, "sm", &["--read-only"]);
            let log = fs::read_to_string(sm.p("log")).unwrap();
            for (n, line) in log.lines().enumerate() {
                assert_eq!(line, format!("record {n:08}"), "a prefix of the records");
            }
            assert!(log.ends_with('\n') || log.is_empty());
            let mut seen = Vec::new();
            for d in ["a", "b"] {
                for e in fs::read_dir(sm.p(d)).unwrap() {
                    let e = e.unwrap();
                    let name = e.file_name().to_string_lossy().into_owned();
                    assert_eq!(
                        fs::read_to_string(e.path()).unwrap(),
                        format!("file {}", &name[1..])
                    );
                    seen.push(name);
                }
            }
            seen.sort();
            let mut want: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
            want.sort();
            assert_eq!(seen, want, "each file exactly once");
            sm.unmount();
        }
    });
}

#[test]
fn killed_copy_leaves_source_intact_and_no_destination() {
    bounded(180, || {
        let env = Env::new();
        let plain = env.path("plain");
        fs::create_dir(&plain).unwrap();
        for i in 0..40 {
            fs::write(plain.join(format!("f{i}")), pattern(i, 4 << 20)).unwrap();
        }
        let c = env.path("c");
        env.run_ok(&["import", plain.to_str().unwrap(), c.to_str().unwrap()]);
        let before = describe(&c);
        let k = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let dst = env.path("dst");
        let mut child = env
            .cmd()
            .args([
                "snapshot",
                "copy",
                c.to_str().unwrap(),
                dst.to_str().unwrap(),
                "--key",
                &k,
                "--mode",
                "reencrypt",
            ])
            .spawn()
            .unwrap();
        // Kill it once the partial copy exists.
        let t0 = std::time::Instant::now();
        while !fs::read_dir(env.dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .contains("envelopefs-partial")
        }) {
            assert!(t0.elapsed().as_secs() < 60, "no partial copy appeared");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!dst.exists(), "no destination after a killed copy");
        assert_eq!(describe(&c), before, "source untouched");
        // A later copy to the same place works.
        env.run_ok(&[
            "snapshot",
            "copy",
            c.to_str().unwrap(),
            dst.to_str().unwrap(),
            "--key",
            &k,
        ]);
        assert!(dst.join("envelopefs.conf").exists());
    });
}

/// Runs `envelopefs ARGS` with the fault `fault` planted in that process
/// only (added to the faults `scripts/fault-check.sh` may have planted).
#[cfg(feature = "fault-check")]
fn run_with_fault(env: &Env, fault: &str, args: &[&str]) -> std::process::Output {
    let planted = match std::env::var("ENVELOPEFS_FAULT") {
        Ok(others) if !others.is_empty() => format!("{others},{fault}"),
        _ => fault.to_owned(),
    };
    env.cmd()
        .env("ENVELOPEFS_FAULT", planted)
        .args(args)
        .output()
        .unwrap()
}

/// A volume with a file and a directory that carry user xattrs.
#[cfg(feature = "fault-check")]
fn volume_with_xattrs(env: &Env, name: &str, flags: &[&str]) -> PathBuf {
    let c = env.init(name, flags);
    let m = env.mount(&c, "m", &[]);
    fs::write(m.p("f"), b"content").unwrap();
    fs::create_dir(m.p("d")).unwrap();
    xattr_set(&m.p("f"), "user.tag", b"file value");
    xattr_set(&m.p("d"), "user.tag", b"dir value");
    m.unmount();
    c
}

#[cfg(feature = "fault-check")]
#[test]
fn fsck_reports_xattrs_it_cannot_read() {
    bounded(120, || {
        let env = Env::new();
        let c = volume_with_xattrs(&env, "c", &[]);
        let cs = c.to_str().unwrap();
        assert_eq!(json(&env, &["fsck", cs])["Clean"], true);
        for (fault, problem) in [
            ("snapshot-listxattr-fails", "cannot list xattrs"),
            ("snapshot-getxattr-fails", "unreadable"),
        ] {
            let out = run_with_fault(&env, fault, &["fsck", cs, "--json"]);
            assert_eq!(out.status.code(), Some(30), "{fault}: fsck must not pass");
            let r: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(r["Clean"], false, "{r}");
            for path in ["/f", "/d"] {
                assert!(
                    r["Problems"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["Path"] == path
                            && p["Problem"].as_str().unwrap().contains(problem)),
                    "{fault}: {path} reported: {r}"
                );
            }
        }
    });
}

#[cfg(feature = "fault-check")]
#[test]
fn copies_fail_on_xattrs_they_cannot_read() {
    bounded(120, || {
        let env = Env::new();
        // Headers in xattrs: a copy that dropped them would lose the files.
        let c = volume_with_xattrs(&env, "c", &["--key-location", "xattr"]);
        let cs = c.to_str().unwrap();
        let k = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        for fault in ["snapshot-listxattr-fails", "snapshot-getxattr-fails"] {
            for mode in ["snapshot", "rekey", "reencrypt"] {
                let dst = env.path(&format!("{mode}-{fault}"));
                let ds = dst.to_str().unwrap();
                let args: Vec<&str> = match mode {
                    "snapshot" => vec!["snapshot", "create", cs, ds],
                    _ => vec!["snapshot", "copy", cs, ds, "--key", &k, "--mode", mode],
                };
                let out = run_with_fault(&env, fault, &args);
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(23), "{mode} with {fault}: {err}");
                assert!(err.contains("xattr"), "{mode} with {fault}: {err}");
                assert!(!dst.exists(), "{mode} with {fault}: no copy left");
            }
        }
    });
}

#[cfg(feature = "fault-check")]
#[test]
fn snapshot_fails_when_the_mount_cannot_be_flushed() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("f"), b"written before the snapshot").unwrap();
        let snap = env.path("snap");
        let out = run_with_fault(
            &env,
            "snapshot-syncfs-fails",
            &[
                "snapshot",
                "create",
                c.to_str().unwrap(),
                snap.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(23), "{err}");
        assert!(err.contains("cannot flush the mount"), "{err}");
        assert!(!snap.exists());
        // Without the fault the same snapshot is taken, with the write.
        env.run_ok(&[
            "snapshot",
            "create",
            c.to_str().unwrap(),
            snap.to_str().unwrap(),
        ]);
        m.unmount();
        let sm = env.mount(&snap, "sm", &["--read-only"]);
        assert_eq!(fs::read(sm.p("f")).unwrap(), b"written before the snapshot");
        sm.unmount();
    });
}

/// A bind mount of a directory onto itself, undone on drop: rmdir of it
/// fails with EBUSY.
struct BindOntoItself(PathBuf);

impl BindOntoItself {
    fn new(dir: &Path) -> BindOntoItself {
        let ok = std::process::Command::new("mount")
            .args(["--bind", dir.to_str().unwrap(), dir.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount --bind {}", dir.display());
        BindOntoItself(dir.to_owned())
    }
}

impl Drop for BindOntoItself {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// rmdir takes a directory's IV file out first; when the rmdir then fails,
/// the IV goes back and the directory stays usable.
#[test]
fn failed_rmdir_puts_the_directory_iv_back() {
    if !need_root("failed_rmdir_puts_the_directory_iv_back") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::create_dir(m.p("d")).unwrap();
        let bind = BindOntoItself::new(&backing_path(&c, &m.p("d")));
        let e = fs::remove_dir(m.p("d")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
        drop(bind);
        fs::write(m.p("d/x"), b"inside").unwrap();
        assert_eq!(fs::read(m.p("d/x")).unwrap(), b"inside");
        m.unmount();
        assert_eq!(json(&env, &["fsck", c.to_str().unwrap()])["Clean"], true);
    });
}

/// When the IV cannot be put back, rmdir says so (EIO, and an error in the
/// log) instead of the rmdir's own error over a directory left without it.
#[cfg(feature = "fault-check")]
#[test]
fn failed_rmdir_reports_an_iv_it_cannot_put_back() {
    if !need_root("failed_rmdir_reports_an_iv_it_cannot_put_back") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount_env(
            &c,
            "m",
            &[],
            &[("ENVELOPEFS_FAULT", "fs-diriv-restore-fails")],
        );
        m.expect_log("could not be put back");
        fs::create_dir(m.p("d")).unwrap();
        let bind = BindOntoItself::new(&backing_path(&c, &m.p("d")));
        let e = fs::remove_dir(m.p("d")).unwrap_err();
        drop(bind);
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        let log = m.unmount();
        assert!(log.contains("could not be put back"), "{log}");
    });
}
