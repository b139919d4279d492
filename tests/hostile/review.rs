//! Findings of the adversarial review of the issue-13 fixes (branch
//! `review`): each test performs one attack that still works on main and
//! asserts the safe outcome. They FAIL on main at the time of the review.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A caller that is root only inside its own user namespace has no
/// CAP_FSETID on the files of the host (the kernel checks `capable()`
/// against the initial namespace), so ext4 clears the setgid bit of a
/// non-group-executable file it writes when it is not in the file's group.
/// The daemon reads `CapEff` from /proc/PID/status, which shows the
/// namespace's full set, and keeps the bit.
#[test]
fn killpriv_user_namespace_root_has_no_fsetid() {
    if !need_root("review::killpriv_user_namespace_root_has_no_fsetid") {
        return;
    }
    // Precondition: unprivileged user namespaces (else the attack is moot).
    let probe = as_nobody("unshare -Ur true").status().unwrap();
    assert!(probe.success(), "nobody cannot unshare -Ur here");
    let env = Env::shared();
    let plain = env.path("plain");
    fs::create_dir(&plain).unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o777)).unwrap();
    let cipher = env.init("c", &[]);
    let m = env.mount(&cipher, "m", &["--allow-other"]);
    let dir = m.p("d");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let (pf, mf) = (plain.join("f"), dir.join("f"));
    for f in [&pf, &mf] {
        fs::write(f, b"hello").unwrap();
        std::os::unix::fs::chown(f, Some(0), Some(0)).unwrap();
        fs::set_permissions(f, fs::Permissions::from_mode(0o2747)).unwrap();
    }
    let script = format!(
        "unshare -Ur sh -c 'printf X | dd of={} conv=notrunc status=none && \
         printf X | dd of={} conv=notrunc status=none'",
        pf.display(),
        mf.display()
    );
    let out = bounded(60, move || as_nobody(&script).output().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        format!("{:04o}", mode_of(&pf)),
        "0747",
        "oracle: the local filesystem clears"
    );
    // The backing file holds the mode the daemon left (the mount's view may
    // lag by the attribute TTL).
    let b = backing_path(&cipher, &mf);
    assert_eq!(
        format!("{:04o}", mode_of(&b)),
        "0747",
        "a user-namespace root kept the setgid bit through the mount"
    );
}

/// `kms audit` reads `audit.log` in the key store directory with
/// `std::fs::read_to_string`: a planted fifo hangs it forever (a symlink to
/// /dev/zero would read until memory runs out). It must be refused at once,
/// like the planted lock file (IO, 23, "not a regular file").
#[test]
fn kms_audit_planted_fifo_is_refused_at_once() {
    let env = Env::new();
    env.run_ok(&["kms", "create-key", "--description", "x"]);
    let log = env.path("ks").join("audit.log");
    fs::remove_file(&log).unwrap();
    let c = std::ffi::CString::new(log.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    let mut child = env
        .cmd()
        .args(["kms", "audit"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`kms audit` hung on a planted fifo (killed after 10 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(st.code(), Some(23), "{err}");
    assert!(
        err.contains("audit.log") && err.contains("not a regular file"),
        "{err}"
    );
}

/// Mounts are nodev,nosuid; `snapshot create` (root) copies the backing
/// tree raw, re-creating planted device nodes and root-owned setuid files
/// with their modes wherever the snapshot goes. A disk mounted
/// nodev,nosuid (udisks does that for removable media) thus becomes a
/// world-writable device node and a setuid-root program of the attacker's
/// bytes on the host's filesystem.
#[test]
fn snapshot_does_not_recreate_planted_devices_or_setuid_files() {
    if !need_root("review::snapshot_does_not_recreate_planted_devices_or_setuid_files") {
        return;
    }
    let env = Env::new();
    let c = env.init("c", &[]);
    let dev = c.join("planteddevice");
    let cd = std::ffi::CString::new(dev.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string; 1:3 is /dev/null (harmless for the test).
    let r = unsafe { libc::mknod(cd.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
    let suid = c.join("plantedsuid");
    fs::copy("/usr/bin/id", &suid).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();

    let snap = env.path("snap");
    env.run_ok(&[
        "snapshot",
        "create",
        c.to_str().unwrap(),
        snap.to_str().unwrap(),
    ]);
    let mut bad = Vec::new();
    for e in fs::read_dir(&snap).unwrap() {
        let p = e.unwrap().path();
        let md = fs::symlink_metadata(&p).unwrap();
        let fmt = md.mode() & libc::S_IFMT;
        if fmt == libc::S_IFCHR || fmt == libc::S_IFBLK {
            bad.push(format!("{}: device node", p.display()));
        }
        if md.mode() & (libc::S_ISUID | libc::S_ISGID) != 0 {
            bad.push(format!("{}: mode {:04o}", p.display(), md.mode() & 0o7777));
        }
    }
    assert!(
        bad.is_empty(),
        "the snapshot re-created:\n{}",
        bad.join("\n")
    );
}

/// An existing log file others can read (created 0644 by an older version,
/// or by an admin) is appended to and stays world-readable; `open_log`
/// checks owner and link count, not the mode.
#[test]
fn existing_world_readable_log_file_does_not_stay_readable() {
    if !need_root("review::existing_world_readable_log_file_does_not_stay_readable") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let mnt = env.path("m");
        fs::create_dir(&mnt).unwrap();
        let log = env.path("old.log");
        fs::write(&log, b"").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
        let out = env
            .cmd()
            .env("RUST_LOG", "info")
            .args([
                "mount",
                c.to_str().unwrap(),
                mnt.to_str().unwrap(),
                "--log-file",
                log.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let mounted = is_mounted(&mnt);
        if mounted {
            let _ = env.run(&["umount", mnt.to_str().unwrap()]);
        }
        assert!(
            out.status.success() && mounted,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(fs::metadata(&log).unwrap().len() > 0, "the log was written");
        assert_eq!(
            format!("{:04o}", mode_of(&log) & 0o077),
            "0000",
            "others may read the log"
        );
    });
}

/// This thread acts as `nobody` for file access: fsuid/fsgid are per thread
/// (the kernel drops the filesystem capabilities with a non-zero fsuid),
/// and a FUSE request carries the fsuid.
fn thread_as_nobody() {
    // SAFETY: plain syscalls; they affect the calling thread only.
    unsafe {
        libc::setfsgid(NOBODY);
        libc::setfsuid(NOBODY);
    }
}

/// CREATE on a name whose backing entry exists (it appeared between the
/// kernel's LOOKUP, which found nothing, and its CREATE) opens the existing
/// file as root and hands the caller a read/write handle: the kernel checked
/// only the right to create in the directory, never the file's mode. Any
/// user who owns a directory of the volume (its backing directory is theirs,
/// and the cipher directory `init` makes is 0755) renames the backing entry
/// of root's 0600 file in it in and out of the backing name of a fresh name
/// while opening that name with O_CREAT (without O_EXCL) through the mount,
/// and reads root's plaintext. No writable cipher directory is needed.
#[test]
fn create_never_opens_an_existing_file_for_the_caller() {
    if !need_root("review::create_never_opens_an_existing_file_for_the_caller") {
        return;
    }
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let env = Env::shared();
    // A volume as `init` makes it (0755, root's): no warning at mount.
    let c = env.init("c", &[]);
    let m = env.mount(&c, "m", &["--allow-other"]);
    // nobody's home directory in the volume; root leaves a 0600 file in it.
    fs::create_dir(m.p("home")).unwrap();
    std::os::unix::fs::chown(m.p("home"), Some(NOBODY), Some(NOBODY)).unwrap();
    fs::write(m.p("home/secret"), b"TOPSECRET").unwrap();
    fs::set_permissions(m.p("home/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let bs = backing_path(&c, &m.p("home/secret"));
    let bp = backing_path(&c, &m.p("home"));
    assert_eq!(
        fs::metadata(&bp).unwrap().uid(),
        NOBODY,
        "nobody owns the backing directory"
    );
    let pub_dir = m.p("home");
    let secret = m.p("home/secret");

    let won = bounded(120, move || {
        // The attacker learns the backing names of fresh names by making
        // and removing them through the mount.
        let names: Vec<(std::path::PathBuf, std::path::PathBuf)> = std::thread::spawn(move || {
            thread_as_nobody();
            // The mount refuses nobody root's file by its own name.
            let e = fs::File::open(&secret).expect_err("nobody opened root's 0600 file");
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
            let mut made = Vec::new();
            for i in 0..3000 {
                let p = pub_dir.join(format!("n{i}"));
                fs::write(&p, b"").unwrap();
                made.push((p.clone(), fs::metadata(&p).unwrap().ino()));
            }
            let by_ino: std::collections::HashMap<u64, std::path::PathBuf> = fs::read_dir(&bp)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (e.metadata().unwrap().ino(), e.path())
                })
                .collect();
            let names = made
                .into_iter()
                .map(|(p, ino)| (p, by_ino[&ino].clone()))
                .collect::<Vec<_>>();
            for (p, _) in &names {
                fs::remove_file(p).unwrap();
            }
            names
        })
        .join()
        .unwrap();
        let names = Arc::new(names);
        let current = Arc::new(AtomicUsize::new(usize::MAX));
        let stop = Arc::new(AtomicBool::new(false));
        let (n2, c2, s2, bs2) = (names.clone(), current.clone(), stop.clone(), bs.clone());
        let mover = std::thread::spawn(move || {
            thread_as_nobody();
            while !s2.load(Ordering::Relaxed) {
                let i = c2.load(Ordering::Relaxed);
                if i == usize::MAX {
                    continue;
                }
                let bx = &n2[i].1;
                if fs::rename(&bs2, bx).is_ok() {
                    let _ = fs::rename(bx, &bs2);
                }
            }
        });
        let (n3, c3) = (names.clone(), current.clone());
        let won = std::thread::spawn(move || {
            thread_as_nobody();
            for (i, (p, _)) in n3.iter().enumerate() {
                c3.store(i, Ordering::Relaxed);
                let Ok(f) = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                else {
                    continue;
                };
                let mut buf = [0u8; 64];
                let n = f.read_at(&mut buf, 0).unwrap_or(0);
                if buf[..n].starts_with(b"TOPSECRET") {
                    return Some(i + 1);
                }
            }
            None
        })
        .join()
        .unwrap();
        current.store(usize::MAX, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        mover.join().unwrap();
        // Put root's file back where it belongs.
        if !bs.exists() {
            for (_, bx) in names.iter() {
                if fs::rename(bx, &bs).is_ok() {
                    break;
                }
            }
        }
        won
    });
    let mut s = String::new();
    fs::File::open(m.p("home/secret"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "TOPSECRET", "root's file is intact");
    assert_eq!(
        won, None,
        "nobody read root's 0600 file through a CREATE handle (attempt {won:?})"
    );
}
