//! Files the program writes where someone else may write: a planted symlink
//! at any name it uses never redirects root's write.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;

const VICTIM: &[u8] = b"the victim's own bytes\n";

fn victim(env: &Env) -> std::path::PathBuf {
    let v = env.path("victim");
    fs::write(&v, VICTIM).unwrap();
    v
}

fn assert_untouched(v: &Path) {
    assert_eq!(
        fs::read(v).unwrap(),
        VICTIM,
        "{} was overwritten",
        v.display()
    );
}

fn assert_regular(p: &Path) {
    let md = fs::symlink_metadata(p).unwrap();
    assert!(
        md.file_type().is_file(),
        "{} is {:?}",
        p.display(),
        md.file_type()
    );
}

#[test]
fn init_never_writes_through_a_racing_symlink() {
    bounded(120, || {
        let env = Env::new();
        let v = victim(&env);
        for round in 0..10 {
            let c = env.path(&format!("c{round}"));
            fs::create_dir(&c).unwrap();
            // The attacker waits for init to pass its emptiness check (the
            // first entry it makes: with --key-location xattr, its xattr
            // probe), then plants a symlink at the temporary name the config
            // was written under.
            let stop = Arc::new(AtomicBool::new(false));
            let (s2, c2, v2) = (stop.clone(), c.clone(), v.clone());
            let racer = std::thread::spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    if fs::read_dir(&c2).unwrap().next().is_some() {
                        let _ = std::os::unix::fs::symlink(&v2, c2.join(".envelopefs.conf.tmp"));
                        return;
                    }
                }
            });
            let out = env.run(&["init", c.to_str().unwrap(), "--key-location", "xattr"]);
            stop.store(true, Ordering::Relaxed);
            racer.join().unwrap();
            assert_untouched(&v);
            if out.status.success() {
                assert_regular(&c.join("envelopefs.conf"));
            } else {
                assert!(!c.join("envelopefs.conf").exists());
            }
        }
    });
}

#[test]
fn rewrap_never_writes_through_a_planted_symlink() {
    bounded(120, || {
        use std::os::unix::process::CommandExt;
        let env = Env::new();
        let v = victim(&env);
        let c = env.init("c", &[]);
        let before = fs::read(c.join("envelopefs.conf")).unwrap();
        // The attacker knows the process's PID (it is in /proc): plant the
        // symlink at every name derived from it before rewrap runs.
        let mut cmd = env.cmd();
        let (c2, v2) = (c.clone(), v.clone());
        // SAFETY: only symlink(2) runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let pid = std::process::id();
                let _ =
                    std::os::unix::fs::symlink(&v2, c2.join(format!(".envelopefs.conf.tmp.{pid}")));
                Ok(())
            });
        }
        let out = cmd.args(["rewrap", c.to_str().unwrap()]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_untouched(&v);
        assert_regular(&c.join("envelopefs.conf"));
        assert_ne!(fs::read(c.join("envelopefs.conf")).unwrap(), before);
        // The volume still opens.
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("x"), b"y").unwrap();
        m.unmount();
    });
}

#[test]
fn audit_log_is_never_written_through_a_symlink() {
    bounded(60, || {
        let env = Env::new();
        let v = victim(&env);
        env.init("c", &[]);
        let log = env.path("ks").join("audit.log");
        let _ = fs::remove_file(&log);
        std::os::unix::fs::symlink(&v, &log).unwrap();
        env.run_ok(&["kms", "create-key", "--description", "x"]);
        assert_untouched(&v);
    });
}

/// A background mount, unmounted on drop.
struct Background<'a> {
    env: &'a Env,
    mnt: std::path::PathBuf,
}

impl Drop for Background<'_> {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = self.env.run(&["umount", self.mnt.to_str().unwrap()]);
        }
    }
}

#[test]
fn log_file_is_private_and_never_another_users() {
    if !need_root("log_file_is_private_and_never_another_users") {
        return;
    }
    bounded(120, || {
        let env = Env::shared();
        let v = victim(&env);
        let c = env.init("c", &[]);
        let mnt = env.path("m");
        fs::create_dir(&mnt).unwrap();
        let bg = Background {
            env: &env,
            mnt: mnt.clone(),
        };
        let (cs, ms) = (c.to_str().unwrap(), mnt.to_str().unwrap());
        let refused = |log: &Path| {
            let out = env.run(&["mount", cs, ms, "--log-file", log.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!is_mounted(&mnt));
        };

        // A symlink at the log's name: refused, the victim untouched.
        let planted = env.path("planted.log");
        std::os::unix::fs::symlink(&v, &planted).unwrap();
        refused(&planted);
        assert_untouched(&v);

        // A log file another user made (and can read): refused.
        let theirs = env.path("theirs.log");
        fs::write(&theirs, b"").unwrap();
        std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
        refused(&theirs);

        // A new log file is created 0600.
        let log = env.path("new.log");
        let out = env.run(&["mount", cs, ms, "--log-file", log.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(is_mounted(&mnt));
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o7777, 0o600);
        drop(bg);
        assert!(!is_mounted(&mnt));
    });
}

/// An existing log file others can read (created 0644 by an older version,
/// or by an admin) must not stay readable once the daemon logs to it.
#[test]
fn existing_world_readable_log_file_does_not_stay_readable() {
    if !need_root("existing_world_readable_log_file_does_not_stay_readable") {
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
/// kernel's LOOKUP, which found nothing, and its CREATE) must not open the
/// existing file for the caller: the kernel checked only the right to create
/// in the directory, never the file's mode. The attack: a user who owns a
/// directory of the volume (its backing directory is theirs, and the cipher
/// directory `init` makes is 0755) renames the backing entry of root's 0600
/// file in it in and out of the backing name of a fresh name while opening
/// that name with O_CREAT (without O_EXCL) through the mount; it once read
/// root's plaintext within seconds. The daemon now answers EEXIST.
#[test]
fn create_never_opens_an_existing_file_for_the_caller() {
    if !need_root("create_never_opens_an_existing_file_for_the_caller") {
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
