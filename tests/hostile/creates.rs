//! Files the program writes where someone else may write: a planted symlink
//! at any name it uses never redirects root's write.

use std::fs;
use std::os::unix::fs::MetadataExt;
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

        // A symlink at the log's name: refused, the victim untouched.
        let planted = env.path("planted.log");
        std::os::unix::fs::symlink(&v, &planted).unwrap();
        let out = env.run(&["mount", cs, ms, "--log-file", planted.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!is_mounted(&mnt));
        assert_untouched(&v);

        // A log file another user made (and can read): refused.
        let theirs = env.path("theirs.log");
        fs::write(&theirs, b"").unwrap();
        std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
        let out = env.run(&["mount", cs, ms, "--log-file", theirs.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!is_mounted(&mnt));

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
