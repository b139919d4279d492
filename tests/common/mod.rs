//! Mount helpers for integration tests: every mount is unmounted on drop (even
//! when the test panics), and every wait is bounded.
#![allow(dead_code)]

pub mod fusens;
pub mod memscan;
pub mod s3;
pub mod users;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_envelopefs");

pub struct Env {
    pub dir: tempfile::TempDir,
}

/// Variables added to the commands of one environment, by its directory.
#[allow(clippy::type_complexity)]
static EXTRA_ENV: std::sync::Mutex<Vec<(PathBuf, Vec<(String, String)>)>> =
    std::sync::Mutex::new(Vec::new());

fn extra_env_of(env: &Env) -> Vec<(String, String)> {
    let all = EXTRA_ENV.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .find(|(d, _)| d == env.dir.path())
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("efs")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("pass"), "test passphrase\n").unwrap();
        // A secret: 0600, or every command warns that others can read it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("pass"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Env { dir }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("ENVELOPEFS_KEYSTORE", self.path("ks"))
            .env("ENVELOPEFS_PASSPHRASE_FILE", self.path("pass"))
            .env_remove("XDG_DATA_HOME")
            // A background daemon without a syslog socket logs here, not
            // in /var/log.
            .env("XDG_STATE_HOME", self.path("state"))
            .stdin(Stdio::null());
        for (k, v) in extra_env_of(self) {
            c.env(k, v);
        }
        c
    }

    /// Give every command of this environment these variables too (an S3
    /// server's endpoint and credentials).
    pub fn add_env(&self, vars: Vec<(String, String)>) {
        let mut all = EXTRA_ENV.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(d, _)| d != self.dir.path());
        all.push((self.dir.path().to_owned(), vars));
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        out
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "envelopefs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Create a volume at `name` with extra init flags.
    pub fn init(&self, name: &str, flags: &[&str]) -> PathBuf {
        let p = self.path(name);
        let mut args = vec!["init", p.to_str().unwrap()];
        args.extend_from_slice(flags);
        self.run_ok(&args);
        p
    }

    /// Mount in the foreground as a child process; ready when it shows in mountinfo.
    pub fn mount(&self, cipher: &Path, mnt_name: &str, flags: &[&str]) -> Mount {
        self.mount_limited(cipher, mnt_name, flags, None)
    }

    /// Mount with the daemon's open-file limit set to `nofile`.
    pub fn mount_limited(
        &self,
        cipher: &Path,
        mnt_name: &str,
        flags: &[&str],
        nofile: Option<u64>,
    ) -> Mount {
        self.mount_cmd(self.cmd(), cipher, mnt_name, flags, nofile)
    }

    /// Mount with extra environment variables for the daemon (e.g. `RUST_LOG`).
    pub fn mount_env(
        &self,
        cipher: &Path,
        mnt_name: &str,
        flags: &[&str],
        vars: &[(&str, &str)],
    ) -> Mount {
        let mut cmd = self.cmd();
        cmd.envs(vars.iter().copied());
        self.mount_cmd(cmd, cipher, mnt_name, flags, None)
    }

    /// Mount with `setup` run in the daemon's process just before exec
    /// (limits, capabilities); it must be async-signal-safe.
    pub fn mount_with_setup(
        &self,
        cipher: &Path,
        mnt_name: &str,
        flags: &[&str],
        setup: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Mount {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.cmd();
        // SAFETY: the caller's setup is async-signal-safe.
        unsafe {
            cmd.pre_exec(setup);
        }
        self.mount_cmd(cmd, cipher, mnt_name, flags, None)
    }

    fn mount_cmd(
        &self,
        mut cmd: Command,
        cipher: &Path,
        mnt_name: &str,
        flags: &[&str],
        nofile: Option<u64>,
    ) -> Mount {
        let mnt = self.path(mnt_name);
        std::fs::create_dir_all(&mnt).unwrap();
        // A log per daemon: a remount on the same point must not overwrite
        // the log its predecessor is checked by.
        let log = (0..)
            .map(|k| match k {
                0 => self.path(&format!("{mnt_name}.log")),
                k => self.path(&format!("{mnt_name}.{k}.log")),
            })
            .find(|p| !p.exists())
            .unwrap();
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("mount")
            .arg(cipher)
            .arg(&mnt)
            .arg("--foreground")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mount {
            mnt,
            child: Some(child),
            log,
            expected: std::sync::Mutex::new(Vec::new()),
            ended: None,
            unmount_ms: None,
            signalled: std::sync::atomic::AtomicBool::new(false),
        };
        // Bounded, with room for a machine busy with parallel tests.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&m.mnt) {
            if let Some(Ok(Some(st))) = m.child.as_mut().map(|c| c.try_wait()) {
                panic!("mount exited early ({st}): {}", m.log_text());
            }
            assert!(Instant::now() < deadline, "mount not ready in 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }
}

pub fn is_mounted(p: &Path) -> bool {
    let Ok(canon) = p.canonicalize() else {
        return false;
    };
    let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    s.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .map(|m| Path::new(m) == canon)
            .unwrap_or(false)
    })
}

/// A foreground daemon serving a mount point. When it is unmounted (or
/// dropped) the test fails if the daemon panicked, logged a warning or an
/// error the test did not declare with [`Mount::expect_log`], or did not
/// exit with status 0 (unless the test killed it on purpose).
pub struct Mount {
    pub mnt: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    /// Parts of warning and error lines the test provokes on purpose.
    expected: std::sync::Mutex<Vec<String>>,
    /// How the daemon ended, once the helper has reaped it.
    ended: Option<Ended>,
    /// When the helper started the unmount (ms since the epoch).
    unmount_ms: Option<u64>,
    /// The test signalled the daemon itself (`kill_daemon`).
    signalled: std::sync::atomic::AtomicBool,
}

/// How a mount's daemon ended.
#[derive(Debug)]
enum Ended {
    /// It exited by itself (after an unmount, or on its own).
    Exited(std::process::ExitStatus),
    /// The test killed it (kill9, signal_and_wait): its status is the test's.
    KilledByTest,
    /// It was still running 20 s after the unmount and was killed; what
    /// `envelopefs umount` said.
    Hung(String),
    /// Its end was already checked.
    Checked,
}

/// Warnings that depend on the machine, not the test: the daemon says them
/// whenever the limits of the process running the tests are low.
const ENVIRONMENT_WARNINGS: &[&str] = &[
    // RLIMIT_NOFILE's hard limit under 65536.
    "the daemon holds one descriptor per file in use by the kernel",
    // RLIMIT_MEMLOCK too low to lock the key arena (not as root).
    "cannot lock key memory in RAM",
];

/// fuser's error for a reply the kernel no longer waits for. An unmount
/// aborts the connection and drops the requests still unanswered (the
/// RELEASEDIR of `envelopefs umount`'s own probe of the mount, a RELEASE of a
/// file closed just before): their replies then fail with ENOENT. Only
/// tolerated when logged after the helper started the unmount.
const REPLY_AFTER_UNMOUNT: &str = "Failed to send FUSE reply: No such file or directory";

/// The lines of a daemon's log that fail a test: a panic, and warnings and
/// errors (env_logger's `[time LEVEL module] message`) not in `expected`.
/// `unmount_ms`: when the helper started the unmount (ms since the epoch).
pub fn unexpected_log_lines(
    log: &str,
    expected: &[String],
    unmount_ms: Option<u64>,
) -> Vec<String> {
    log.lines()
        .filter(|l| {
            if l.contains("panicked at") {
                return true;
            }
            let level = l
                .strip_prefix('[')
                .and_then(|r| r.split_whitespace().nth(1));
            let after_unmount = unmount_ms.is_some_and(|u| log_time_ms(l).is_some_and(|t| t >= u));
            let tolerated = ENVIRONMENT_WARNINGS.iter().any(|w| l.contains(w))
                || (after_unmount && l.contains(REPLY_AFTER_UNMOUNT))
                || expected.iter().any(|e| l.contains(e.as_str()));
            matches!(level, Some("ERROR") | Some("WARN")) && !tolerated
        })
        .map(str::to_owned)
        .collect()
}

/// The time of an env_logger line (`[2026-11-30T13:24:42.920Z ...`), in
/// milliseconds since the epoch.
fn log_time_ms(line: &str) -> Option<u64> {
    let t = line.get(1..24)?;
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let (y, mo) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// Now, in milliseconds since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Mount {
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Declare that the daemon may log warnings or errors containing `part`
    /// (the test provokes them); a panic is never expected.
    pub fn expect_log(&self, part: &str) -> &Self {
        self.expected.lock().unwrap().push(part.to_owned());
        self
    }

    /// Fail the test if the daemon panicked, logged what the test did not
    /// expect, exited non-zero or did not exit after the unmount. Once.
    fn check_end(&mut self) {
        let ended = match self.ended.take() {
            None | Some(Ended::Checked) => return,
            Some(e) => e,
        };
        self.ended = Some(Ended::Checked);
        let log = self.log_text();
        let expected = self.expected.lock().unwrap().clone();
        let mut wrong = unexpected_log_lines(&log, &expected, self.unmount_ms);
        let signalled = self.signalled.load(std::sync::atomic::Ordering::SeqCst);
        match ended {
            Ended::Exited(st) if !st.success() && !signalled => {
                wrong.push(format!("the daemon exited with {st}"))
            }
            Ended::Hung(umount) => wrong.push(format!(
                "the daemon did not exit within 20 s of the unmount (umount: {umount})"
            )),
            _ => {}
        }
        assert!(
            wrong.is_empty(),
            "daemon of {}: {}\n--- its log:\n{log}",
            self.mnt.display(),
            wrong.join("\n")
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Names of the daemon's threads.
    pub fn thread_names(&self) -> Vec<String> {
        self.threads().into_iter().map(|(name, _)| name).collect()
    }

    /// The daemon's threads: name and scheduling policy (`SCHED_OTHER` 0,
    /// `SCHED_IDLE` 5).
    pub fn threads(&self) -> Vec<(String, i32)> {
        let Some(pid) = self.child.as_ref().map(|c| c.id()) else {
            return Vec::new();
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        tasks
            .filter_map(|t| {
                let dir = t.ok()?.path();
                let name = std::fs::read_to_string(dir.join("comm")).ok()?;
                // stat: "tid (comm) state ...": the policy is field 41, the
                // 39th after the closing parenthesis.
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                let policy = stat[stat.rfind(')')? + 1..]
                    .split_whitespace()
                    .nth(38)?
                    .parse()
                    .ok()?;
                Some((name.trim().to_owned(), policy))
            })
            .collect()
    }

    /// Unmount; true if the daemon then exited by itself within 10 s.
    pub fn unmount_exits(mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        self.unmount_ms = Some(now_ms());
        let _ = Command::new(BIN).arg("umount").arg(&self.mnt).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                self.ended = Some(Ended::Exited(st));
                self.check_end();
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        false
    }

    /// Send `sig` to the daemon and leave the mount as it is (a crash leaves
    /// a stale mount): the daemon's exit status is then the test's to check.
    pub fn kill_daemon(&self, sig: i32) {
        let pid = self.pid().expect("a running daemon");
        self.signalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: kill with the pid of our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    }

    /// The daemon's process ID (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Send `sig` to the daemon and wait (bounded, 10 s) for it to die; the
    /// dead mount is detached. None if it did not die.
    pub fn signal_and_wait(&mut self, sig: i32) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill with a valid pid of our own child.
        unsafe { libc::kill(c.id() as i32, sig) };
        self.ended = Some(Ended::KilledByTest);
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            match c.try_wait() {
                Ok(Some(st)) => break Some(st),
                _ if Instant::now() > deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break None;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let m = std::ffi::CString::new(self.mnt.to_str().unwrap()).unwrap();
        // SAFETY: valid C string; detach the dead mount.
        unsafe { libc::umount2(m.as_ptr(), libc::MNT_DETACH) };
        st
    }

    /// kill -9 the daemon (a crash); the dead mount is detached on drop.
    pub fn kill9(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
            self.ended = Some(Ended::KilledByTest);
        }
        let c = std::ffi::CString::new(self.mnt.to_str().unwrap()).unwrap();
        // SAFETY: valid C string; detach the dead mount.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        self.child = None;
    }

    /// Unmount and wait (bounded) for the daemon to exit; its log. Fails
    /// the test as a drop does (see [`Mount`]).
    pub fn unmount(mut self) -> String {
        self.stop();
        self.check_end();
        self.log_text()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.unmount_ms = Some(now_ms());
        let umount = Command::new(BIN)
            .arg("umount")
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .output()
            .map_or_else(
                |e| format!("not run: {e}"),
                |o| {
                    format!(
                        "{}, {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    )
                },
            );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.ended = Some(Ended::Exited(st));
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.ended = Some(Ended::Hung(umount));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_mounted(&self.mnt) {
            let c = std::ffi::CString::new(self.mnt.to_str().unwrap()).unwrap();
            // SAFETY: valid C string; lazy unmount of a stuck mount.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop();
        // A second panic while unwinding would abort the whole test binary.
        if !std::thread::panicking() {
            self.check_end();
        }
    }
}

/// Run `f` with a time bound; a hung filesystem call fails the test instead of stalling.
pub fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("test body did not finish in {secs} s (hung mount?)"),
    }
}

/// The errno of a failed call; None when it succeeded (so that
/// `assert_eq!(errno(r), Some(libc::ENOENT))` checks both).
pub fn errno<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every backing file's bytes (and names, and symlink targets) under `dir`.
pub fn backing_contains(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = e.file_type().unwrap();
            let mut data = p.as_os_str().as_encoded_bytes().to_vec();
            if ft.is_dir() {
                stack.push(p.clone());
            } else if ft.is_symlink() {
                data.extend(
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                );
            } else if ft.is_file() {
                data.extend(std::fs::read(&p).unwrap());
            }
            if let Ok(x) = xattr_dump(&p) {
                data.extend(x);
            }
            if data.windows(needle.len()).any(|w| w == needle) {
                hits.push(p);
            }
        }
    }
    hits
}

fn xattr_dump(p: &Path) -> std::io::Result<Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: buffer valid for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = buf[..n as usize].to_vec();
    for name in buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: buffers valid.
        let m =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr() as *mut _, v.len()) };
        if m > 0 {
            out.extend_from_slice(&v[..m as usize]);
        }
    }
    Ok(out)
}

/// The backing entry of a file seen in the mount: the mount's inode number is
/// the backing inode number, so search the cipher directory for it.
pub fn backing_path(cipher: &Path, in_mount: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::symlink_metadata(in_mount).unwrap().ino();
    let mut stack = vec![cipher.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.ino() == ino {
                return e.path();
            }
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    panic!("no backing entry for {}", in_mount.display());
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// Set an xattr (not following a symlink); the test fails if it cannot.
pub fn xattr_set(p: &Path, name: &str, v: &[u8]) {
    let (c, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    // SAFETY: valid C strings and a buffer of v.len() bytes.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr() as *const _, v.len(), 0) };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// An xattr's value, if it has one (up to 64 KiB).
pub fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let (c, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings and buffer.
    let r = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut _,
            buf.len(),
        )
    };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

/// The xattr names of a path, in the order the filesystem lists them.
pub fn xattr_list(p: &Path) -> Vec<String> {
    let c = cpath(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C string and buffer.
    let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf[..r as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Records that `test` did not run: `SKIPPED: test: reason` on stderr (which
/// cargo hides for a passing test) and appended to the file that
/// `ENVELOPEFS_SKIP_LOG` names, where scripts/test.sh counts skips.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED: {test}: {reason}\n");
    eprint!("{line}");
    if let Some(path) = std::env::var_os("ENVELOPEFS_SKIP_LOG") {
        use std::io::Write;
        // One append-mode write per line: concurrent tests do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        assert!(written.is_ok(), "cannot record the skip: {written:?}");
    }
}

/// A prerequisite of the machine (root, /dev/fuse, moto) is missing: the
/// test is skipped, except under `CI=true`, where it fails.
pub fn missing_prerequisite(test: &str, reason: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {reason} (CI=true: a missing prerequisite fails)"
    );
    skip(test, reason);
}

/// True when the test may run as root; otherwise records the skip (see
/// [`missing_prerequisite`]) and returns false.
pub fn need_root(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    missing_prerequisite(test, "needs root");
    false
}

/// True when the test may mount as root (root and /dev/fuse); otherwise
/// records the skip (see [`missing_prerequisite`]) and returns false.
pub fn need_fuse(test: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    missing_prerequisite(test, "needs /dev/fuse");
    false
}

/// The unprivileged user the multi-user tests act as.
pub const NOBODY: u32 = 65534;

impl Env {
    /// An environment another user can walk into: the directory is 0755
    /// (temp directories are 0700), the passphrase file stays 0600.
    pub fn shared() -> Env {
        use std::os::unix::fs::PermissionsExt;
        let env = Env::new();
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(env.path("pass"), std::fs::Permissions::from_mode(0o600)).unwrap();
        env
    }

    /// A copy of the binary that `nobody` can run (the build tree may sit
    /// under root's 0700 home).
    pub fn shared_bin(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dst = self.path("envelopefs-bin");
        if !dst.exists() {
            copy_executable(Path::new(BIN), &dst);
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dst
    }
}

/// Copy an executable by `cp`, so that the copy is never open for writing in
/// this process: a child forked meanwhile by another test thread would
/// inherit that descriptor, and exec of the copy would fail with ETXTBSY
/// until the child execs.
pub fn copy_executable(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "cp {} {}", src.display(), dst.display());
}

/// `sh -c script` as `nobody` (uid and gid 65534; std drops root's
/// supplementary groups when it changes the uid).
pub fn as_nobody(script: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .current_dir("/")
        .stdin(Stdio::null());
    // std drops the supplementary groups itself when root sets a uid (a
    // pre_exec setgroups would run after setuid, and fail with EPERM).
    c.uid(NOBODY).gid(NOBODY);
    c
}

/// The permission bits (with setuid, setgid, sticky) of `p`, not following a
/// symlink.
pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}
