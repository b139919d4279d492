//! Finding a volume's mount among other users' FUSE mounts: a mount that
//! never answers does not hang `envelopefs mount`/`umount`, another user's
//! mount named after our cipher directory is not taken for ours, and a
//! crashed daemon's mount is called stale at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A FUSE mount whose daemon never answers, as another user could make with
/// fusermount3: a raw mount(2) on a /dev/fuse descriptor that a sleeping
/// process holds and never reads. Its listing is what fusermount3 writes for
/// that user (`user_id=`, the source and type the user chose).
struct SilentFuse {
    point: PathBuf,
    holder: Child,
}

impl SilentFuse {
    fn new(fstype: &str, source: &Path, point: &Path, uid: u32) -> SilentFuse {
        std::fs::create_dir_all(point).unwrap();
        let opts = format!("fd=3,rootmode=40000,user_id={uid},group_id={uid},allow_other");
        let holder = Command::new("timeout")
            .args(["300", "sh", "-c"])
            .arg(r#"exec 3<>/dev/fuse && mount -i -t "$1" -o "$2" "$3" "$4" && exec sleep 300"#)
            .args(["sh", fstype, &opts])
            .arg(source)
            .arg(point)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let f = SilentFuse {
            point: point.to_path_buf(),
            holder,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f.listed() {
            assert!(Instant::now() < deadline, "silent FUSE mount not listed");
            std::thread::sleep(Duration::from_millis(20));
        }
        f
    }

    /// In mountinfo (a stat of it would hang).
    fn listed(&self) -> bool {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let p = self.point.to_str().unwrap();
        mi.lines()
            .any(|l| l.split(' ').nth(4) == Some(p) && l.contains(" - fuse"))
    }
}

impl Drop for SilentFuse {
    fn drop(&mut self) {
        // Closing the descriptor aborts the connection: whatever waits on it
        // gets ENOTCONN; then the mount goes.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        for _ in 0..3 {
            if !self.listed() {
                break;
            }
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

/// `envelopefs args` under timeout(1): a hang is exit 124, not a stuck test.
fn run_within(env: &Env, secs: u32, args: &[&str]) -> (Output, Duration) {
    let mut c = Command::new("timeout");
    c.arg(secs.to_string()).arg(BIN).args(args);
    let plain = env.cmd();
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let start = Instant::now();
    let out = c.stdin(Stdio::null()).output().unwrap();
    (out, start.elapsed())
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn listed_at(p: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_str().unwrap();
    mi.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

#[test]
fn an_unanswering_fuse_mount_does_not_hang_mount_or_umount() {
    if !need_root("an_unanswering_fuse_mount_does_not_hang_mount_or_umount") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("cipher", &[]);
    let m = env.mount(&cipher, "plain", &[]);
    // Its source is its own mount point: a stat of the source hangs.
    let hung = env.path("hung");
    let _silent = SilentFuse::new("fuse", &hung, &hung, 65534);
    // A second mount of the locked volume is refused at once.
    let again = env.path("again");
    std::fs::create_dir(&again).unwrap();
    let (out, took) = run_within(
        &env,
        20,
        &[
            "mount",
            cipher.to_str().unwrap(),
            again.to_str().unwrap(),
            "--foreground",
        ],
    );
    assert_eq!(out.status.code(), Some(21), "{}", text(&out));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!listed_at(&again));
    // umount by cipher directory finds the live mount within a few seconds.
    let (out, took) = run_within(&env, 20, &["umount", cipher.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!listed_at(&m.mnt));
}

#[test]
fn umount_by_cipher_dir_takes_our_mount_not_another_users_fake() {
    if !need_root("umount_by_cipher_dir_takes_our_mount_not_another_users_fake") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("cipher", &[]);
    let m = env.mount(&cipher, "plain", &[]);
    // Another user's mount named after our cipher directory (fusermount3
    // -o fsname=CIPHER,subtype=envelopefs lists exactly this), made after ours.
    let fake = env.path("fake");
    let _fake = SilentFuse::new("fuse.envelopefs", &cipher, &fake, 65534);
    let (out, _) = run_within(&env, 20, &["umount", cipher.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!listed_at(&m.mnt), "our mount is still there");
    assert!(listed_at(&fake), "the other user's mount was unmounted");
}

#[test]
fn umount_right_after_a_crash_says_stale_and_lazy_clears_it() {
    if !need_root("umount_right_after_a_crash_says_stale_and_lazy_clears_it") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("cipher", &[]);
    let m = env.mount(&cipher, "plain", &[]);
    let mp = m.mnt.to_str().unwrap().to_owned();
    let mut holder = Command::new("sleep")
        .arg("60")
        .current_dir(&m.mnt)
        .spawn()
        .unwrap();
    let pid = m.pid().unwrap();
    // A crash: the daemon dies, the mount stays; its attributes are still
    // cached, so a stat of the mount point does not tell.
    m.kill_daemon(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(format!("/proc/{pid}/fd")).is_ok()
        && std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| d.count() > 0)
    {
        assert!(Instant::now() < deadline, "daemon did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (out, _) = run_within(&env, 20, &["umount", &mp]);
    assert_eq!(out.status.code(), Some(20), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "envelopefs: {mp} is a stale mount (its daemon has died) still in use by pid {} (sleep, working directory); `envelopefs umount --lazy {mp}` clears it\n",
            holder.id()
        )
    );
    let (out, _) = run_within(&env, 20, &["umount", "--lazy", &mp]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("envelopefs: {mp}: removed the stale mount of a daemon that had died\n")
    );
    assert!(!listed_at(&m.mnt));
    let _ = holder.kill();
    let _ = holder.wait();
}

/// A daemon slow to list its root (a loaded machine) must not make `umount`
/// fail with EBUSY: the staleness probe's own directory read, still waiting
/// for the daemon, must not count as a user of the mount.
#[cfg(feature = "fault-check")]
#[test]
fn umount_of_a_slow_daemon_is_not_busy_with_its_own_probe() {
    if !need_root("umount_of_a_slow_daemon_is_not_busy_with_its_own_probe") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("cipher", &[]);
    let m = env.mount_env(
        &cipher,
        "plain",
        &[],
        &[("ENVELOPEFS_FAULT", "fs-slow-root-opendir")],
    );
    let mp = m.mnt.to_str().unwrap().to_owned();
    let (out, _) = run_within(&env, 30, &["umount", &mp]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!listed_at(&m.mnt));
    m.unmount();
}
