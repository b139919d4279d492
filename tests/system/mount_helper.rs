//! Mounting the way Linux mounts: fstab lines through mount(8) and
//! mount.fuse3, `mount -o`, the non-empty mount point, `envelopefs umount`
//! (only envelopefs mounts, by cipher directory, busy and stale mounts,
//! `--lazy`) and `--idle`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Unmounts (lazily) what a test mounted by other means than `Mount`.
struct Unmounted(PathBuf);

impl Drop for Unmounted {
    fn drop(&mut self) {
        for _ in 0..3 {
            if !is_mounted(&self.0) {
                break;
            }
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// `cmd args` with a 60 s bound (timeout(1)), stdin closed, output captured.
fn run_bounded(cmd: &str, args: &[&str], path_var: Option<&str>) -> Output {
    let mut c = Command::new("timeout");
    c.arg("60").arg(cmd).args(args).stdin(Stdio::null());
    if let Some(p) = path_var {
        c.env("PATH", p);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A volume with `hello.txt`, and the options that unlock it in a mount
/// helper's `-o` (the key store and passphrase file of `env`).
fn volume(env: &Env) -> (PathBuf, String) {
    let cipher = env.init("cipher", &[]);
    let m = env.mount(&cipher, "setup", &[]);
    std::fs::write(m.p("hello.txt"), b"hello through the helper").unwrap();
    m.unmount();
    // mount(8) runs its helper without our environment: the log file is
    // named, or a root daemon would log to /var/log/envelopefs.
    let opts = format!(
        "keystore={},passfile={},log_file={}",
        env.path("ks").display(),
        env.path("pass").display(),
        env.path("daemon.log").display()
    );
    (cipher, opts)
}

/// A root test's volume with `hello.txt`, its helper options and an empty
/// mount point that is unmounted when the test ends.
struct Case {
    env: Env,
    cipher: PathBuf,
    opts: String,
    mnt: PathBuf,
    _guard: Unmounted,
}

impl Case {
    fn new(test: &str) -> Option<Case> {
        if !need_root(test) {
            return None;
        }
        let env = Env::new();
        let (cipher, opts) = volume(&env);
        let mnt = mnt_dir(&env, "plain");
        let _guard = Unmounted(mnt.clone());
        Some(Case {
            env,
            cipher,
            opts,
            mnt,
            _guard,
        })
    }
}

/// The mount at `p` is `nodev,nosuid`.
fn is_nodev_nosuid(p: &Path) -> bool {
    let o = mount_options(p);
    o.contains(&"nodev".into()) && o.contains(&"nosuid".into())
}

fn mnt_dir(env: &Env, name: &str) -> PathBuf {
    let p = env.path(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn read_hello(mnt: &Path) -> Vec<u8> {
    let p = mnt.join("hello.txt");
    bounded(20, move || std::fs::read(p).unwrap())
}

/// The mount options of the top mount at `p` (the per-mount field of mountinfo).
fn mount_options(p: &Path) -> Vec<String> {
    let canon = p.canonicalize().unwrap();
    let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = s
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4).map(Path::new) == Some(&canon))
        .unwrap_or_else(|| panic!("{} not in mountinfo", p.display()));
    line.split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn bin_dir() -> PathBuf {
    Path::new(BIN).parent().unwrap().to_path_buf()
}

#[test]
fn fstab_line_with_absolute_type_mounts_via_mount_t() {
    if !need_root("fstab_line_with_absolute_type_mounts_via_mount_t") {
        return;
    }
    let env = Env::new();
    let (cipher, opts) = volume(&env);
    let mnt = mnt_dir(&env, "plain");
    // The README's line, with the type naming the binary by path (as
    // gocryptfs documents): mount(8) runs helpers without the caller's PATH.
    let fstab = env.path("test.fstab");
    std::fs::write(
        &fstab,
        format!(
            "{} {} fuse.{} {opts},allow_other,nofail,x-systemd.automount 0 0\n",
            cipher.display(),
            mnt.display(),
            BIN
        ),
    )
    .unwrap();
    let _guard = Unmounted(mnt.clone());
    let out = run_bounded(
        "mount",
        &["-T", fstab.to_str().unwrap(), mnt.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "mount -T: {}", text(&out));
    assert_eq!(read_hello(&mnt), b"hello through the helper");
    assert!(is_nodev_nosuid(&mnt), "{:?}", mount_options(&mnt));
}

/// The README's fstab line and `mount -t fuse.envelopefs` as written: the
/// type names the binary, found on mount.fuse3's PATH. mount(8) runs its
/// helpers with its default PATH, so the binary is bind-mounted into
/// /usr/local/sbin in a private mount namespace.
#[test]
fn readme_fstab_line_and_mount_t_find_envelopefs_on_path() {
    if !need_root("readme_fstab_line_and_mount_t_find_envelopefs_on_path") {
        return;
    }
    let env = Env::new();
    let (cipher, opts) = volume(&env);
    let mnt = mnt_dir(&env, "plain");
    let fstab = env.path("test.fstab");
    std::fs::write(
        &fstab,
        format!(
            "{} {} fuse.envelopefs {opts},allow_other 0 0\n",
            cipher.display(),
            mnt.display()
        ),
    )
    .unwrap();
    let bin = bin_dir();
    let (c, m, f, b) = (
        cipher.display(),
        mnt.display(),
        fstab.display(),
        bin.display(),
    );
    let script = format!(
        "set -e; trap 'umount -l {m} 2>/dev/null || true' EXIT INT TERM
         mount --bind {b} /usr/local/sbin
         mount -T {f} {m}; cat {m}/hello.txt; echo; umount {m}
         mount -t fuse.envelopefs -o {opts} {c} {m}; cat {m}/hello.txt; echo; umount {m}"
    );
    let out = run_bounded("unshare", &["-m", "sh", "-c", &script], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello through the helper\nhello through the helper\n"
    );
}

#[test]
fn mount_fuse3_finds_envelopefs_on_path() {
    let Some(Case {
        env: _env,
        cipher,
        opts,
        mnt,
        _guard,
    }) = Case::new("mount_fuse3_finds_envelopefs_on_path")
    else {
        return;
    };
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir().display());
    let out = run_bounded(
        "mount.fuse3",
        &[
            cipher.to_str().unwrap(),
            mnt.to_str().unwrap(),
            "-t",
            "fuse.envelopefs",
            "-o",
            &opts,
        ],
        Some(&path),
    );
    assert!(out.status.success(), "mount.fuse3: {}", text(&out));
    assert_eq!(read_hello(&mnt), b"hello through the helper");
}

#[test]
fn mount_t_with_options_and_a_read_only_mount() {
    let Some(Case {
        env: _env,
        cipher,
        opts,
        mnt,
        _guard,
    }) = Case::new("mount_t_with_options_and_a_read_only_mount")
    else {
        return;
    };
    let out = run_bounded(
        "mount",
        &[
            "-t",
            &format!("fuse.{BIN}"),
            "-o",
            &format!("{opts},ro,noexec,noatime"),
            cipher.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "mount -t: {}", text(&out));
    assert_eq!(read_hello(&mnt), b"hello through the helper");
    let o = mount_options(&mnt);
    for want in ["ro", "noexec", "noatime", "nodev", "nosuid"] {
        assert!(o.contains(&want.to_owned()), "{want} missing: {o:?}");
    }
    let p = mnt.join("new.txt");
    let e = bounded(10, move || std::fs::write(p, b"x").unwrap_err());
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn envelopefs_mount_takes_dash_o() {
    let Some(Case {
        env: _env,
        cipher,
        opts,
        mnt,
        _guard,
    }) = Case::new("envelopefs_mount_takes_dash_o")
    else {
        return;
    };
    // Repeatable -o, and -oOPTS glued; dev/suid are honoured on this form.
    let out = Command::new(BIN)
        .args(["mount", cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .args([
            "-o",
            &opts,
            "-oallow_other,dev",
            "-o",
            "suid,key_cache_size=64",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_hello(&mnt), b"hello through the helper");
    assert!(
        !mount_options(&mnt)
            .iter()
            .any(|o| o == "nodev" || o == "nosuid"),
        "{:?}",
        mount_options(&mnt)
    );
}

/// The options mount(8) and mount.fuse3 hand every helper are accepted and
/// change nothing; `dev` and `suid` (which mount.fuse3 adds to every line
/// without nodev/nosuid) do not make a helper mount trust device nodes or
/// setuid bits: only `allow_dev` / `allow_suid` do.
#[test]
fn helper_form_ignores_mount8_options_and_added_dev_suid() {
    let Some(Case {
        env: _env,
        cipher,
        opts,
        mnt,
        _guard,
    }) = Case::new("helper_form_ignores_mount8_options_and_added_dev_suid")
    else {
        return;
    };
    let ignored = "rw,dev,suid,nofail,_netdev,defaults,auto,noauto,users,nouser,x-systemd.automount,comment=x,relatime,exec,fsname=foo,subtype=bar";
    let out = Command::new(BIN)
        .args([cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .args(["-f", "-n", "-s", "-v", "-o"])
        .arg(format!("{opts},{ignored}"))
        .args(["-t", "fuse.envelopefs"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_hello(&mnt), b"hello through the helper");
    assert!(is_nodev_nosuid(&mnt), "{:?}", mount_options(&mnt));
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    let out = Command::new(BIN)
        .args([cipher.to_str().unwrap(), mnt.to_str().unwrap(), "-o"])
        .arg(format!("{opts},allow_dev,allow_suid"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !mount_options(&mnt)
            .iter()
            .any(|o| o == "nodev" || o == "nosuid"),
        "{:?}",
        mount_options(&mnt)
    );
}

#[test]
fn unknown_mount_option_is_a_usage_error() {
    let Some(Case {
        env: _env,
        cipher,
        opts,
        mnt,
        _guard,
    }) = Case::new("unknown_mount_option_is_a_usage_error")
    else {
        return;
    };
    let (c, m) = (cipher.to_str().unwrap(), mnt.to_str().unwrap());
    for args in [vec![c, m, "-o"], vec!["mount", c, m, "-o"]] {
        let out = Command::new(BIN)
            .args(&args)
            .arg(format!("{opts},frobnicate=3"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "envelopefs: unknown mount option frobnicate\n"
        );
    }
    // Through mount(8): refused, nothing mounted, the option named.
    let out = run_bounded(
        "mount",
        &[
            "-t",
            &format!("fuse.{BIN}"),
            "-o",
            &format!("{opts},frobnicate"),
            c,
            m,
        ],
        None,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown mount option frobnicate"),
        "{}",
        text(&out)
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_non_empty_mount_point_is_refused_unless_nonempty() {
    if !need_root("a_non_empty_mount_point_is_refused_unless_nonempty") {
        return;
    }
    let env = Env::new();
    let (cipher, opts) = volume(&env);
    let mnt = mnt_dir(&env, "plain");
    std::fs::write(mnt.join("underneath"), b"x").unwrap();
    let _guard = Unmounted(mnt.clone());
    let (c, m) = (cipher.to_str().unwrap(), mnt.to_str().unwrap());
    let out = env.run(&["mount", c, m]);
    assert_eq!(out.status.code(), Some(20), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("envelopefs: mount point {m} is not empty (the mount would hide its files); pass --nonempty (-o nonempty) to mount over them\n")
    );
    assert!(!is_mounted(&mnt));
    env.run_ok(&["mount", c, m, "--nonempty"]);
    assert_eq!(read_hello(&mnt), b"hello through the helper");
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    let out = Command::new(BIN)
        .args([c, m, "-o"])
        .arg(format!("{opts},nonempty"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_hello(&mnt), b"hello through the helper");
}

#[test]
fn umount_refuses_a_tmpfs() {
    if !need_root("umount_refuses_a_tmpfs") {
        return;
    }
    let env = Env::new();
    let t = mnt_dir(&env, "tmpfs");
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&t)
        .status()
        .unwrap()
        .success());
    let _guard = Unmounted(t.clone());
    let out = env.run(&["umount", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(20), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "envelopefs: {} is a tmpfs mount, not an envelopefs mount; left alone (use umount(8) for it)\n",
            t.display()
        )
    );
    assert!(is_mounted(&t), "envelopefs umount unmounted a tmpfs");
    // Not mounted at all.
    let d = mnt_dir(&env, "plain-dir");
    let out = env.run(&["umount", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(20), "{}", text(&out));
}

/// The daemon of `m` has exited (gone, or a zombie of this test).
fn daemon_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_until(secs: u64, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn umount_takes_the_cipher_directory() {
    if !need_root("umount_takes_the_cipher_directory") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("cipher", &[]);
    let m = env.mount(&cipher, "plain", &[]);
    let pid = m.pid().unwrap();
    let out = env.run(&["umount", cipher.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!is_mounted(&m.mnt));
    assert!(wait_until(10, || daemon_gone(pid)), "daemon still running");
}

#[test]
fn umount_of_a_busy_mount_names_the_process_and_lazy_detaches() {
    if !need_root("umount_of_a_busy_mount_names_the_process_and_lazy_detaches") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("cipher", &[]);
    let m = env.mount(&cipher, "plain", &[]);
    let pid = m.pid().unwrap();
    let mut holder = Command::new("sleep")
        .arg("60")
        .current_dir(&m.mnt)
        .spawn()
        .unwrap();
    let mp = m.mnt.to_str().unwrap().to_owned();
    let out = env.run(&["umount", &mp]);
    let _ = (holder.id(), &out);
    assert_eq!(out.status.code(), Some(20), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "envelopefs: {mp} is busy: in use by pid {} (sleep, working directory); stop them, or `envelopefs umount --lazy {mp}` detaches it now (the daemon exits once they let go)\n",
            holder.id()
        )
    );
    assert!(is_mounted(&m.mnt));
    let out = env.run(&["umount", "--lazy", &mp]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!is_mounted(&m.mnt));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(wait_until(10, || daemon_gone(pid)), "daemon still running");
}

#[test]
fn umount_of_a_stale_mount_says_lazy_clears_it() {
    if !need_root("umount_of_a_stale_mount_says_lazy_clears_it") {
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
    // A crash: the daemon dies, the mount stays.
    m.kill_daemon(libc::SIGKILL);
    let p = m.mnt.clone();
    assert!(wait_until(10, || std::fs::metadata(&p)
        .is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))));
    let out = env.run(&["umount", &mp]);
    assert_eq!(out.status.code(), Some(20), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "envelopefs: {mp} is a stale mount (its daemon has died) still in use by pid {} (sleep, working directory); `envelopefs umount --lazy {mp}` clears it\n",
            holder.id()
        )
    );
    assert!(is_mounted(&m.mnt));
    let out = env.run(&["umount", "--lazy", &mp]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!is_mounted(&m.mnt));
    let _ = holder.kill();
    let _ = holder.wait();
    // Without a holder, the stale mount goes with a plain umount.
    let m2 = env.mount(&cipher, "plain2", &[]);
    m2.kill_daemon(libc::SIGKILL);
    let p = m2.mnt.clone();
    assert!(wait_until(10, || std::fs::metadata(&p).is_err()));
    let out = env.run(&["umount", m2.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!is_mounted(&m2.mnt));
}

#[test]
fn idle_mount_unmounts_itself_but_not_while_a_file_is_open() {
    if !need_root("idle_mount_unmounts_itself_but_not_while_a_file_is_open") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("cipher", &[]);
    // A file held open keeps it mounted past the idle time.
    let m = env.mount(&cipher, "plain", &["--idle", "2s"]);
    let pid = m.pid().unwrap();
    let p = m.p("held.txt");
    let f = bounded(10, move || std::fs::File::create(p).unwrap());
    std::thread::sleep(Duration::from_secs(5));
    assert!(is_mounted(&m.mnt), "unmounted with a file open");
    let started = Instant::now();
    drop(f);
    assert!(
        wait_until(20, || !is_mounted(&m.mnt)),
        "still mounted 20 s after the last use"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "unmounted {:?} after the last use, before the idle time: {}",
        started.elapsed(),
        m.log_text()
    );
    assert!(wait_until(10, || daemon_gone(pid)), "daemon still running");
    // Unused from the start.
    let m = env.mount(&cipher, "plain2", &["--idle", "2"]);
    let pid = m.pid().unwrap();
    assert!(wait_until(20, || !is_mounted(&m.mnt)));
    assert!(wait_until(10, || daemon_gone(pid)), "daemon still running");
}
