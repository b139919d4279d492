//! The mount as a system daemon: sd_notify readiness for a `Type=notify`
//! unit, logs to syslog (a test socket stands in for /dev/log) or to a
//! private fallback file, SIGHUP reopening the log file, a clean process
//! (cwd `/`, no inherited descriptors), and the shipped systemd units.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A mount made by a process other than `Env::mount` (a background daemon,
/// or a foreground child we watch): lazily unmounted and its daemon killed
/// on drop, whatever the test did.
struct Guard {
    mnt: PathBuf,
    child: Option<Child>,
    pid: Option<u32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.pid {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: the daemon this test started, found by its command line.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// The background daemon serving `mnt`: the process whose command line is
/// `BIN mount ... MNT ...`.
fn daemon_pid(mnt: &Path) -> u32 {
    let want = mnt.to_str().unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.first() == Some(&BIN.as_bytes())
            && args.get(1) == Some(&&b"mount"[..])
            && args.contains(&want.as_bytes())
        {
            return pid;
        }
    }
    panic!("no daemon serving {}", mnt.display());
}

/// Run `cmd` to completion (a background mount returns once ready), bounded.
fn output(mut cmd: Command) -> Output {
    bounded(60, move || cmd.stdin(Stdio::null()).output().unwrap())
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Datagrams arriving on `sock` until one satisfies `done` (returned last)
/// or `secs` pass (then the test fails, showing what came).
fn receive_until(sock: &UnixDatagram, secs: u64, done: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "not received in {secs} s; got {got:#?}");
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let last = done(&m);
                got.push(m);
                if last {
                    return got;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("recv: {e}; got {got:#?}"),
        }
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "daemon did not exit in {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A foreground mount with NOTIFY_SOCKET set to `notify`.
fn notified_mount(env: &Env, cipher: &Path, notify: &str) -> Guard {
    let mnt = env.path("m");
    std::fs::create_dir_all(&mnt).unwrap();
    let child = env
        .cmd()
        .args(["mount", cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .arg("--foreground")
        .env("NOTIFY_SOCKET", notify)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.path("m.log")).unwrap())
        .spawn()
        .unwrap();
    Guard {
        mnt,
        child: Some(child),
        pid: None,
    }
}

/// READY=1 (with MAINPID and STATUS) arrives once the mount answers;
/// nothing before it is mounted.
fn expect_ready(sock: &UnixDatagram, g: &Guard) {
    let got = receive_until(sock, 30, |m| m.lines().any(|l| l == "READY=1"));
    assert!(is_mounted(&g.mnt), "READY=1 before the mount: {got:?}");
    assert_eq!(got.len(), 1, "one notification before READY: {got:?}");
    let pid = g.child.as_ref().unwrap().id();
    let lines: Vec<&str> = got[0].lines().collect();
    assert!(
        lines.contains(&format!("MAINPID={pid}").as_str()),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("STATUS=")), "{lines:?}");
    // The mount answers at once.
    let f = g.mnt.join("after-ready");
    bounded(5, move || {
        std::fs::write(&f, b"ready").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"ready");
    });
}

#[test]
fn sd_notify_ready_once_serving_and_stopping_at_umount() {
    if !need_root("sd_notify_ready_once_serving_and_stopping_at_umount") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut g = notified_mount(&env, &cipher, path.to_str().unwrap());
    expect_ready(&sock, &g);
    let out = env.run(&["umount", g.mnt.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receive_until(&sock, 10, |m| m.lines().any(|l| l == "STOPPING=1"));
    assert_eq!(got.len(), 1, "{got:?}");
    let st = wait_exit(g.child.as_mut().unwrap(), 10);
    assert!(st.success(), "{st}");
}

#[test]
fn sd_notify_abstract_socket_and_sigterm_unmounts() {
    if !need_root("sd_notify_abstract_socket_and_sigterm_unmounts") {
        return;
    }
    use std::os::linux::net::SocketAddrExt;
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let name = format!(
        "envelopefs-test-{}-{}",
        std::process::id(),
        env.dir.path().file_name().unwrap().to_string_lossy()
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let mut g = notified_mount(&env, &cipher, &format!("@{name}"));
    expect_ready(&sock, &g);
    signal(g.child.as_ref().unwrap().id(), libc::SIGTERM);
    let got = receive_until(&sock, 10, |m| m.lines().any(|l| l == "STOPPING=1"));
    assert_eq!(got.len(), 1, "{got:?}");
    let st = wait_exit(g.child.as_mut().unwrap(), 10);
    assert!(st.success(), "{st}");
    assert!(!is_mounted(&g.mnt));
}

/// A volume holding one file whose last block and one xattr were altered
/// in the backing directory; the file and xattr names are canaries.
fn tampered_volume(env: &Env) -> PathBuf {
    let cipher = env.init("c", &[]);
    let m = env.mount(&cipher, "prep", &[]);
    let f = m.p("CANARY-file-4d2a");
    std::fs::write(&f, b"CANARY contents").unwrap();
    xattr_set(&f, "user.CANARY-xattr-77e1", b"v");
    let backing = backing_path(&cipher, &f);
    m.unmount();
    let mut bytes = std::fs::read(&backing).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&backing, &bytes).unwrap();
    let mut tampered = 0;
    for name in xattr_list(&backing) {
        if let Some(mut v) = xattr_get(&backing, &name) {
            if name.starts_with("user.") && !v.is_empty() {
                *v.last_mut().unwrap() ^= 1;
                xattr_set(&backing, &name, &v);
                tampered += 1;
            }
        }
    }
    assert_eq!(tampered, 1);
    cipher
}

#[test]
fn background_daemon_logs_to_syslog_at_daemon_facility() {
    if !need_root("background_daemon_logs_to_syslog_at_daemon_facility") {
        return;
    }
    let env = Env::new();
    let cipher = tampered_volume(&env);
    let path = env.path("syslog.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mnt = env.path("m");
    std::fs::create_dir(&mnt).unwrap();
    let mut cmd = env.cmd();
    cmd.args(["mount", cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .args(["--log-level", "info"])
        .env("ENVELOPEFS_SYSLOG_SOCKET", &path);
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "syslog is there");
    let pid = daemon_pid(&mnt);
    let _g = Guard {
        mnt: mnt.clone(),
        child: None,
        pid: Some(pid),
    };
    // Info records: facility daemon (3), severity info (6).
    let info = format!("<30>envelopefs[{pid}]: ");
    let mut all = receive_until(&sock, 10, |m| m.starts_with(&info));
    // A block that fails authentication: an error (severity 3).
    let f = mnt.join("CANARY-file-4d2a");
    let read = bounded(10, move || std::fs::read(&f).map_err(|e| e.raw_os_error()));
    assert_eq!(read, Err(Some(libc::EIO)));
    let err = format!("<27>envelopefs[{pid}]: ");
    all.extend(receive_until(&sock, 10, |m| m.starts_with(&err)));
    // An xattr that fails authentication: a warning (severity 4).
    let f = mnt.join("CANARY-file-4d2a");
    assert!(bounded(10, move || xattr_list(&f)).is_empty());
    let warn = format!("<28>envelopefs[{pid}]: ");
    all.extend(receive_until(&sock, 10, |m| {
        m.starts_with(&warn) && m.contains("authentication")
    }));
    assert!(
        all.iter().all(|m| !m.contains("CANARY")),
        "a plaintext name in syslog: {all:#?}"
    );
    let out = env.run(&["umount", mnt.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `systemd-escape --path` of a temporary directory's path (letters,
/// digits and slashes only).
fn escaped(p: &Path) -> String {
    let s = p.to_str().unwrap().trim_start_matches('/');
    assert!(
        s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/'),
        "{s}"
    );
    s.replace('/', "-")
}

#[test]
fn without_syslog_socket_logs_to_private_file_and_says_so_once() {
    if !need_root("without_syslog_socket_logs_to_private_file_and_says_so_once") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let mnt = env.path("m");
    std::fs::create_dir(&mnt).unwrap();
    let state = env.path("state");
    let mut cmd = env.cmd();
    cmd.args(["mount", cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .args(["--log-level", "info"])
        .env("ENVELOPEFS_SYSLOG_SOCKET", env.path("no-such-socket"))
        .env("XDG_STATE_HOME", &state);
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _g = Guard {
        mnt: mnt.clone(),
        child: None,
        pid: Some(daemon_pid(&mnt)),
    };
    let log = state
        .join("envelopefs")
        .join(format!("{}.log", escaped(&mnt)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no syslog socket"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains(log.to_str().unwrap()), "{stderr}");
    assert_eq!(mode_of(&log), 0o600);
    assert_eq!(mode_of(log.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "{text}");
    let out = env.run(&["umount", mnt.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sighup_reopens_the_log_file_and_keeps_the_mount() {
    if !need_root("sighup_reopens_the_log_file_and_keeps_the_mount") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let mnt = env.path("m");
    std::fs::create_dir(&mnt).unwrap();
    let log = env.path("d.log");
    let mut cmd = env.cmd();
    // Named relative to where mount ran: the daemon works in `/`, and the
    // reopen must find the same file.
    cmd.args(["mount", cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .args(["--log-file", "d.log"])
        .current_dir(env.dir.path())
        .env("RUST_LOG", "info");
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = daemon_pid(&mnt);
    let _g = Guard {
        mnt: mnt.clone(),
        child: None,
        pid: Some(pid),
    };
    let f = mnt.join("f");
    bounded(10, move || std::fs::write(&f, b"before").unwrap());
    let rotated = env.path("d.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(pid, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened")) {
        assert!(Instant::now() < deadline, "no new log at {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mode_of(&log), 0o600);
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("reopened"));
    // Still mounted and serving, by the same daemon.
    assert!(is_mounted(&mnt));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let f = mnt.join("f");
    assert_eq!(bounded(10, move || std::fs::read(&f).unwrap()), b"before");
    let out = env.run(&["umount", mnt.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn daemon_works_in_root_and_closes_inherited_descriptors() {
    if !need_root("daemon_works_in_root_and_closes_inherited_descriptors") {
        return;
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let mnt = env.path("m");
    std::fs::create_dir(&mnt).unwrap();
    let marker = env.path("inherited");
    let file = std::fs::File::create(&marker).unwrap();
    let fd = file.as_raw_fd();
    let sock_path = env.path("syslog.sock");
    let _sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut cmd = env.cmd();
    cmd.args(["mount", cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .env("ENVELOPEFS_SYSLOG_SOCKET", &sock_path)
        .current_dir(env.dir.path());
    // SAFETY: dup2 is async-signal-safe; fd 9 is left open across exec, as
    // a careless parent (a shell, a service manager) leaves descriptors.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = daemon_pid(&mnt);
    let _g = Guard {
        mnt: mnt.clone(),
        child: None,
        pid: Some(pid),
    };
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    let mut fds = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let n: i32 = e.file_name().to_string_lossy().parse().unwrap();
        if let Ok(t) = std::fs::read_link(e.path()) {
            fds.push((n, t.to_string_lossy().into_owned()));
        }
    }
    fds.sort();
    let allowed = |t: &str| {
        t == "/dev/null"
            || t == "/dev/fuse"
            || Path::new(t).starts_with(&cipher)
            || ["socket:[", "anon_inode:", "pipe:["]
                .iter()
                .any(|p| t.starts_with(p))
    };
    for (n, t) in &fds {
        assert!(*n > 2 || t == "/dev/null", "fd {n} -> {t}: {fds:?}");
        assert!(allowed(t), "fd {n} -> {t} open in the daemon: {fds:?}");
    }
    let marker = marker.to_string_lossy();
    assert!(fds.iter().all(|(_, t)| *t != *marker), "{fds:?}");
    let out = env.run(&["umount", mnt.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_systemd_units_pass_systemd_analyze_verify() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze missing (CI=true: a missing prerequisite fails)"
        );
        skip(
            "shipped_systemd_units_pass_systemd_analyze_verify",
            "no systemd-analyze",
        );
        return;
    };
    assert!(v.status.success());
    let env = Env::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    let dir = env.path("units");
    std::fs::create_dir(&dir).unwrap();
    // The binary where this build put it, not /usr/bin.
    let service = std::fs::read_to_string(src.join("envelopefs@.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/envelopefs mount --foreground "));
    std::fs::write(
        dir.join("envelopefs@.service"),
        service.replace("/usr/bin/envelopefs", BIN),
    )
    .unwrap();
    std::fs::copy(src.join("srv-plain.mount"), dir.join("srv-plain.mount")).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify")
        .arg(dir.join("envelopefs@test.service"))
        .arg(dir.join("srv-plain.mount"));
    let out = output(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Warnings ("ignoring" a bad setting) do not change the exit code.
    assert_eq!(stderr, "", "systemd-analyze verify complains");
    // The mount unit is named after its Where=, and the fstab example is the
    // same mount.
    let unit = std::fs::read_to_string(src.join("srv-plain.mount")).unwrap();
    assert!(unit.contains("\nWhere=/srv/plain\n") && unit.contains("\nWhat=/srv/cipher\n"));
    let fstab = std::fs::read_to_string(src.join("fstab.example")).unwrap();
    assert!(fstab
        .lines()
        .any(|l| l.starts_with("/srv/cipher /srv/plain fuse.envelopefs ")));
}

/// A mount whose daemon may be wedged: on drop, aborts its FUSE connection
/// through fusectl (nothing else frees a connection whose daemon cannot
/// finish exiting), unmounts it lazily, and ends the mount command.
#[cfg(feature = "fault-check")]
struct WedgedGuard {
    /// Canonical, found before mounting: resolving it later could hang.
    mnt: PathBuf,
    mount_cmd: Child,
}

/// The FUSE connection number (the device minor) of the mount at `mnt`.
#[cfg(feature = "fault-check")]
fn fuse_connection(mnt: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let fuse = l.contains(" - fuse");
        (fuse && f.get(4).map(Path::new) == Some(mnt))
            .then(|| f[2].split_once(':').map(|(_, minor)| minor.to_owned()))?
    })
}

#[cfg(feature = "fault-check")]
impl Drop for WedgedGuard {
    fn drop(&mut self) {
        if let Some(n) = fuse_connection(&self.mnt) {
            let conns = Path::new("/sys/fs/fuse/connections");
            if !conns.join(&n).exists() {
                let _ = Command::new("mount")
                    .args(["-t", "fusectl", "none"])
                    .arg(conns)
                    .status();
            }
            let _ = std::fs::write(conns.join(&n).join("abort"), "1");
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = self.mount_cmd.kill();
        let _ = self.mount_cmd.wait();
    }
}

/// The child of `parent` running the mount: the daemon (its probe, a fork
/// of it, is a grandchild).
#[cfg(feature = "fault-check")]
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the `(comm)` field: state, then the parent's pid.
        let ppid = stat.rsplit_once(") ")?.1.split(' ').nth(1)?;
        (ppid.parse::<u32>().ok()? == parent).then_some(pid)
    })
}

/// SIGKILL of the daemon while its own readiness check is being answered:
/// the mount must go stale (ENOTCONN at once) and `umount -l` clear it. A
/// FUSE request from inside the daemon's process waits uninterruptibly for
/// an answer that never comes, so the killed daemon would never finish
/// exiting, and every access to the mount would hang for ever.
#[cfg(feature = "fault-check")]
#[test]
fn daemon_killed_while_checking_readiness_leaves_a_stale_mount_not_a_hung_one() {
    if !need_root("daemon_killed_while_checking_readiness_leaves_a_stale_mount_not_a_hung_one") {
        return;
    }
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let mnt = env.path("m");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    // Every getattr of the root takes 2 s: the readiness check's too.
    let mount_cmd = env
        .cmd()
        .args(["mount", cipher.to_str().unwrap(), mnt.to_str().unwrap()])
        .arg("--log-file")
        .arg(env.path("d.log"))
        .env("ENVELOPEFS_FAULT", "daemon-slow-root-getattr")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut g = WedgedGuard {
        mnt: mnt.clone(),
        mount_cmd,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while fuse_connection(&mnt).is_none() {
        assert!(Instant::now() < deadline, "not mounted in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let daemon = child_of(g.mount_cmd.id()).expect("the daemon");
    // Well inside the readiness check's 2 s getattr.
    std::thread::sleep(Duration::from_millis(500));
    signal(daemon, libc::SIGKILL);
    // The mount command hears that the daemon is gone: it has finished
    // exiting, its descriptors (the ready pipe, /dev/fuse) closed.
    let st = wait_exit(&mut g.mount_cmd, 10);
    assert_eq!(st.code(), Some(22), "{st}");
    let mut said = String::new();
    std::io::Read::read_to_string(g.mount_cmd.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(said.contains("the mount daemon exited"), "{said}");
    // Stale: the connection is aborted (a request caught by the abort
    // itself says ECONNABORTED; later ones ENOTCONN).
    let m = mnt.clone();
    let stat = bounded(10, move || loop {
        match errno(std::fs::metadata(&m)) {
            Some(libc::ECONNABORTED) => std::thread::sleep(Duration::from_millis(20)),
            e => return e,
        }
    });
    assert_eq!(stat, Some(libc::ENOTCONN));
    let st = Command::new("umount").arg("-l").arg(&mnt).status().unwrap();
    assert!(st.success(), "{st}");
    assert!(fuse_connection(&mnt).is_none());
}
