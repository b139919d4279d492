//! Mounts by users other than root (through the setuid fusermount3), the
//! mount's type `fuse.envelopefs` for every user, and a mount right after a
//! plain umount(8).
//!
//! The user tests run in a private mount namespace of their own
//! ([`FuseNs`]), where /dev/fuse and /etc/fuse.conf are what the test needs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::fusens::*;
use crate::common::users::TestUser;
use crate::common::*;

/// A user's fixture: a 0700 home of theirs inside a 0755 shared directory,
/// their own key store and passphrase, a volume whose path has a comma, a
/// space and a backslash, a mount point, and a copy of the binary.
struct UserVolume {
    env: Env,
    bin: PathBuf,
    home: PathBuf,
    cipher: PathBuf,
    mnt: PathBuf,
}

impl UserVolume {
    fn new(user: &TestUser) -> UserVolume {
        let env = Env::shared();
        let bin = env.shared_bin();
        let home = env.path("home");
        fs::create_dir(&home).unwrap();
        fs::write(home.join("pass"), "a user's passphrase\n").unwrap();
        for p in [home.clone(), home.join("pass")] {
            std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid)).unwrap();
        }
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(home.join("pass"), fs::Permissions::from_mode(0o600)).unwrap();
        let cipher = home.join("c, 1\\x");
        let mnt = home.join("mnt");
        UserVolume {
            env,
            bin,
            home,
            cipher,
            mnt,
        }
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "PATH",
                "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
            ),
            ("HOME", self.home.display().to_string()),
            (
                "ENVELOPEFS_KEYSTORE",
                self.home.join("ks").display().to_string(),
            ),
            (
                "ENVELOPEFS_PASSPHRASE_FILE",
                self.home.join("pass").display().to_string(),
            ),
        ]
    }

    /// `envelopefs args` as the user, in the namespace.
    fn run(&self, ns: &FuseNs, user: &TestUser, args: &[&Path], vars: &[(&str, String)]) -> Output {
        let mut env = self.vars();
        env.extend(vars.iter().cloned());
        let mut c = ns.cmd(Some(user), &env, &self.bin);
        c.args(args);
        output_within(60, c)
    }

    /// Make the volume and the mount point, as the user.
    fn init(&self, ns: &FuseNs, user: &TestUser) {
        let out = self.run(ns, user, &[Path::new("init"), &self.cipher], &[]);
        assert!(out.status.success(), "init: {}", stderr_of(&out));
        let mut c = ns.cmd(Some(user), &self.vars(), Path::new("mkdir"));
        c.arg(&self.mnt);
        assert!(output_within(10, c).status.success());
    }

    fn mount(
        &self,
        ns: &FuseNs,
        user: &TestUser,
        extra: &[&str],
        vars: &[(&str, String)],
    ) -> Output {
        let log = self.home.join("daemon.log");
        let mut args = vec![
            Path::new("mount"),
            &self.cipher,
            &self.mnt,
            Path::new("--log-file"),
            &log,
        ];
        args.extend(extra.iter().map(Path::new));
        self.run(ns, user, &args, vars)
    }
}

/// The one-line error of a refused mount, after checking its exit code.
fn mount_refusal(out: &Output) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(22), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn user_mounts_through_fusermount3() {
    if !need_root("user_mounts_through_fusermount3") {
        return;
    }
    let Some(user) = TestUser::create("user_mounts_through_fusermount3", "u") else {
        return;
    };
    let vol = UserVolume::new(&user);
    // /dev/fuse as udev makes it: the user opens it, mount(2) says EPERM.
    let ns = FuseNs::new(vol.env.path("ns"), 0o666, "# no user_allow_other\n");
    vol.init(&ns, &user);

    let out = vol.mount(&ns, &user, &[], &[]);
    assert!(out.status.success(), "user's mount: {}", stderr_of(&out));
    let mounts = fuse_mounts(&ns.mountinfo());
    let m = mount_at(&mounts, &vol.mnt).expect("the user's mount is listed");
    assert_eq!(m.fstype, "fuse.envelopefs");
    assert_eq!(
        Path::new(&m.source),
        vol.cipher,
        "source: the cipher directory"
    );
    assert!(
        m.super_opts.contains(&format!("user_id={}", user.uid)),
        "mounted for the user: {}",
        m.super_opts
    );

    // A file round-trips through the user's mount.
    let mut sh = ns.cmd(Some(&user), &vol.vars(), Path::new("sh"));
    sh.args(["-c", "printf %s \"$1\" > \"$2/f\" && cat \"$2/f\"", "sh"])
        .arg("round trip through fusermount3")
        .arg(&vol.mnt);
    let out = output_within(30, sh);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "round trip through fusermount3"
    );

    // The user unmounts with our command (EPERM for umount(2): fusermount3 -u).
    let out = vol.run(&ns, &user, &[Path::new("umount"), &vol.mnt], &[]);
    assert!(out.status.success(), "umount: {}", stderr_of(&out));
    assert!(mount_at(&fuse_mounts(&ns.mountinfo()), &vol.mnt).is_none());

    // --allow-other without user_allow_other: fusermount3 refuses, and the
    // error says what to change.
    let out = vol.mount(&ns, &user, &["--allow-other"], &[]);
    let err = mount_refusal(&out);
    assert!(
        err.contains("mount(2) is not permitted to this user, and fusermount3 refuses allow_other")
            && err.contains("/etc/fuse.conf has the line user_allow_other"),
        "{err}"
    );
    assert!(mount_at(&fuse_mounts(&ns.mountinfo()), &vol.mnt).is_none());
}

#[test]
fn user_allow_other_from_fuse_conf() {
    if !need_root("user_allow_other_from_fuse_conf") {
        return;
    }
    let Some(user) = TestUser::create("user_allow_other_from_fuse_conf", "o") else {
        return;
    };
    let vol = UserVolume::new(&user);
    let ns = FuseNs::new(vol.env.path("ns"), 0o666, "user_allow_other\n");
    vol.init(&ns, &user);
    let out = vol.mount(&ns, &user, &["--allow-other"], &[]);
    assert!(out.status.success(), "allow_other: {}", stderr_of(&out));
    let mut sh = ns.cmd(Some(&user), &vol.vars(), Path::new("sh"));
    sh.args(["-c", "printf shared > \"$1/f\" && chmod 644 \"$1/f\"", "sh"])
        .arg(&vol.mnt);
    assert!(output_within(30, sh).status.success());
    // Root is another user here: it reads only because of allow_other.
    let mut cat = ns.cmd(None, &[], Path::new("cat"));
    cat.arg(vol.mnt.join("f"));
    let out = output_within(30, cat);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "shared",
        "{}",
        stderr_of(&out)
    );
    let out = vol.run(&ns, &user, &[Path::new("umount"), &vol.mnt], &[]);
    assert!(out.status.success(), "umount: {}", stderr_of(&out));
}

#[test]
fn user_without_dev_fuse_is_told_why() {
    if !need_root("user_without_dev_fuse_is_told_why") {
        return;
    }
    let Some(user) = TestUser::create("user_without_dev_fuse_is_told_why", "d") else {
        return;
    };
    let vol = UserVolume::new(&user);
    // /dev/fuse as a bare devtmpfs makes it: root's alone. fusermount3
    // opens it as the calling user, so it cannot help either.
    let ns = FuseNs::new(vol.env.path("ns"), 0o600, "");
    vol.init(&ns, &user);
    let err = mount_refusal(&vol.mount(&ns, &user, &[], &[]));
    assert!(
        err.contains(
            "mount failed: cannot open /dev/fuse: permission denied, and fusermount3 cannot either"
        ),
        "{err}"
    );

    // No fusermount3 at all.
    let missing = vol.env.path("nowhere/fusermount3");
    let vars = [
        ("PATH", vol.env.path("nowhere").display().to_string()),
        ("FUSERMOUNT_PATH", missing.display().to_string()),
    ];
    let err = mount_refusal(&vol.mount(&ns, &user, &[], &vars));
    let want = format!(
        "mount failed: cannot open /dev/fuse: permission denied, and fusermount3 could not be run ({}: ",
        missing.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(mount_at(&fuse_mounts(&ns.mountinfo()), &vol.mnt).is_none());
}

#[test]
fn user_with_fusermount3_not_setuid_is_told_why() {
    if !need_root("user_with_fusermount3_not_setuid_is_told_why") {
        return;
    }
    let Some(real) = [
        "/usr/bin/fusermount3",
        "/bin/fusermount3",
        "/usr/sbin/fusermount3",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "fusermount3 missing"
        );
        skip(
            "user_with_fusermount3_not_setuid_is_told_why",
            "no fusermount3",
        );
        return;
    };
    let Some(user) = TestUser::create("user_with_fusermount3_not_setuid", "s") else {
        return;
    };
    let vol = UserVolume::new(&user);
    let ns = FuseNs::new(vol.env.path("ns"), 0o666, "");
    vol.init(&ns, &user);
    // A copy: root's, without the setuid bit.
    let copy = vol.env.path("fusermount3");
    fs::copy(real, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let vars = [("FUSERMOUNT_PATH", copy.display().to_string())];
    let err = mount_refusal(&vol.mount(&ns, &user, &[], &vars));
    assert!(
        err.contains(
            "mount failed: mount(2) is not permitted to this user, and fusermount3 is not setuid root ("
        ),
        "{err}"
    );
}

#[test]
fn root_mount_is_fuse_envelopefs_of_the_cipher_directory() {
    if !need_root("root_mount_is_fuse_envelopefs_of_the_cipher_directory") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("c, 1\\x", &[]);
    let m = env.mount(&cipher, "m", &[]);
    let mnt = m.mnt.canonicalize().unwrap();
    let proc_mounts = fs::read_to_string("/proc/mounts").unwrap();
    let line = proc_mounts
        .lines()
        .find(|l| l.split(' ').nth(1).map(unescape) == Some(mnt.display().to_string()))
        .expect("listed in /proc/mounts");
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f[2], "fuse.envelopefs", "{line}");
    assert_eq!(unescape(f[0]), cipher.display().to_string(), "{line}");
    let out = Command::new("findmnt")
        .args(["-n", "-r", "-o", "FSTYPE,SOURCE", "--mountpoint"])
        .arg(&mnt)
        .output();
    match out {
        Ok(o) => assert_eq!(
            unhex(String::from_utf8_lossy(&o.stdout).trim_end()),
            format!("fuse.envelopefs {}", cipher.display())
        ),
        Err(_) => eprintln!("findmnt missing: /proc/mounts checked only"),
    }
    fs::write(m.p("f"), b"root's").unwrap();
    assert_eq!(fs::read(m.p("f")).unwrap(), b"root's");
    // The mount is found by its cipher directory: a second read-write mount
    // is refused at once, not after the wait for a daemon going away.
    let started = Instant::now();
    let m2 = env.path("m2");
    fs::create_dir(&m2).unwrap();
    let out = env.run(&["mount", cipher.to_str().unwrap(), m2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(21), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("already mounted read-write"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once"
    );
    assert!(m.unmount_exits(), "envelopefs umount unmounts it");
}

/// Detaches the mount point on drop (mounts made by `envelopefs mount`).
struct Detach(PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn mount_right_after_umount8() {
    if !need_root("mount_right_after_umount8") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let mnt = env.path("m");
    fs::create_dir(&mnt).unwrap();
    let (c, m) = (cipher.to_str().unwrap(), mnt.to_str().unwrap());
    let _detach = Detach(mnt.clone());
    let log = env.path("d.log");
    let mount = || {
        let started = Instant::now();
        let out = env.run(&["mount", c, m, "--log-file", log.to_str().unwrap()]);
        (out, started.elapsed())
    };
    let (out, _) = mount();
    assert!(out.status.success(), "{}", stderr_of(&out));
    fs::write(mnt.join("f"), b"kept across mounts").unwrap();

    // While the first is live, a second read-write mount is refused at once.
    let m2 = env.path("m2");
    fs::create_dir(&m2).unwrap();
    let started = Instant::now();
    let out = env.run(&["mount", c, m2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(21), "{}", stderr_of(&out));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once"
    );
    assert!(!is_mounted(&m2));

    for i in 0..100 {
        let st = Command::new("umount").arg(&mnt).status().unwrap();
        assert!(st.success(), "umount(8), round {i}");
        let (out, took) = mount();
        assert!(
            out.status.success(),
            "mount right after umount(8), round {i} ({took:?}): {}",
            stderr_of(&out)
        );
        let data = bounded(30, {
            let f = mnt.join("f");
            move || fs::read(f).unwrap()
        });
        assert_eq!(data, b"kept across mounts", "round {i}");
    }
}

#[test]
fn mount_waits_for_a_daemon_going_away() {
    if !need_root("mount_waits_for_a_daemon_going_away") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let first = env.mount(&cipher, "m", &[]);
    fs::write(first.p("f"), b"handed over").unwrap();
    let mnt = first.mnt.clone();
    let _detach = Detach(mnt.clone());
    // A daemon slow to notice the unmount (a loaded machine): stopped while
    // umount(8) detaches its mount, continued 3 s later. (umount
    // --no-canonicalize: umount(8) would otherwise stat the mount point,
    // a request the stopped daemon cannot answer.)
    let pid = first.pid().unwrap() as i32;
    // SAFETY: signals to the test's own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // Retried: the kernel counts the file just written as busy until the
    // daemon has answered its (asynchronous) RELEASE, which a daemon stopped
    // too early never does (umount(8) then fails with EBUSY): between tries
    // it runs for a moment to answer it.
    let st = bounded(20, {
        let mnt = mnt.clone();
        move || {
            let mut st = None;
            for _ in 0..25 {
                let s = Command::new("umount")
                    .arg("--no-canonicalize")
                    .arg(&mnt)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                if s.success() {
                    return s;
                }
                st = Some(s);
                // SAFETY: signals to the test's own child.
                unsafe { libc::kill(pid, libc::SIGCONT) };
                std::thread::sleep(Duration::from_millis(200));
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
            }
            st.unwrap()
        }
    });
    let cont = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    assert!(st.success(), "umount(8)");
    let started = Instant::now();
    let out = env.run(&[
        "mount",
        cipher.to_str().unwrap(),
        mnt.to_str().unwrap(),
        "--log-file",
        env.path("d.log").to_str().unwrap(),
    ]);
    cont.join().unwrap();
    assert!(
        out.status.success(),
        "mount while the old daemon goes away ({:?}): {}",
        started.elapsed(),
        stderr_of(&out)
    );
    let data = bounded(30, {
        let f = mnt.join("f");
        move || fs::read(f).unwrap()
    });
    assert_eq!(data, b"handed over");
    // The first daemon let go of the lock: it is gone; the second one goes
    // when its mount does.
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    drop(first);
}
