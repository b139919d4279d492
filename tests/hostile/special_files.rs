//! Special files planted where the volume keeps its own files (config, lock,
//! directory IVs, long-name side files): never opened, never a hang, never an
//! endless read; the documented error at once.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
}

fn mkchr(p: &Path) {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string; 1:5 is /dev/zero.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
}

/// Watches paths for IN_OPEN: proof that nobody opened them.
struct OpenWatch(OwnedFd);

impl OpenWatch {
    fn new(paths: &[&Path]) -> OpenWatch {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for p in paths {
            let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: valid fd and C string. IN_DONT_FOLLOW: watch the entry itself.
            let w = unsafe {
                libc::inotify_add_watch(
                    fd.as_raw_fd(),
                    c.as_ptr(),
                    libc::IN_OPEN | libc::IN_DONT_FOLLOW,
                )
            };
            assert!(
                w >= 0,
                "watch {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
        }
        OpenWatch(fd)
    }

    /// True if any watched path was opened since the watch began.
    fn opened(&self) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: buffer valid for its length.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    }
}

/// Run `envelopefs args` with a 20 s bound; its exit code and stderr.
fn run_bounded(env: &Env, args: &[&str]) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let mut child = env
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code(), err, t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("envelopefs {args:?} hung (killed after 20 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn planted_config_is_refused_at_once() {
    bounded(120, || {
        let env = Env::new();
        let mnt = env.path("m");
        fs::create_dir(&mnt).unwrap();
        type Plant = fn(&Path);
        let plants: [(&str, Plant); 3] = [
            ("fifo", mkfifo),
            ("char device", mkchr),
            ("symlink to /dev/zero", |p| {
                std::os::unix::fs::symlink("/dev/zero", p).unwrap()
            }),
        ];
        for (i, (what, plant)) in plants.iter().enumerate() {
            let c = env.init(&format!("c{i}"), &[]);
            let conf = c.join("envelopefs.conf");
            fs::remove_file(&conf).unwrap();
            plant(&conf);
            let watch = OpenWatch::new(&[&conf]);
            for args in [
                vec!["info", c.to_str().unwrap()],
                vec!["mount", c.to_str().unwrap(), mnt.to_str().unwrap()],
            ] {
                let (code, err, _) = run_bounded(&env, &args);
                assert_eq!(code, Some(11), "{what}, {args:?}: {err}");
                assert!(
                    err.contains("envelopefs.conf") && err.contains("not a regular file"),
                    "{what}: {err}"
                );
                assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
                assert!(!is_mounted(&mnt));
            }
            assert!(!watch.opened(), "the planted {what} was opened");
        }
    });
}

#[test]
fn planted_lock_is_refused_at_once() {
    bounded(120, || {
        let env = Env::new();
        let mnt = env.path("m");
        fs::create_dir(&mnt).unwrap();
        for (i, plant) in [mkfifo as fn(&Path), mkchr].iter().enumerate() {
            let c = env.init(&format!("c{i}"), &[]);
            let lock = c.join("envelopefs.lock");
            let _ = fs::remove_file(&lock);
            plant(&lock);
            let watch = OpenWatch::new(&[&lock]);
            let (code, err, _) =
                run_bounded(&env, &["mount", c.to_str().unwrap(), mnt.to_str().unwrap()]);
            assert_eq!(code, Some(23), "{err}");
            assert!(
                err.contains("envelopefs.lock") && err.contains("not a regular file"),
                "{err}"
            );
            assert!(!is_mounted(&mnt));
            assert!(!watch.opened(), "the planted lock was opened");
        }
    });
}

#[test]
fn planted_side_files_and_dir_ivs_are_never_opened() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &["--long-name-max", "64"]);
        let m = env.mount(&c, "m", &[]);
        let long = "L".repeat(120);
        fs::write(m.p(&long), b"long").unwrap();
        fs::write(m.p("short"), b"short").unwrap();
        fs::create_dir(m.p("d")).unwrap();
        fs::write(m.p("d/inner"), b"inner").unwrap();
        let long_b = backing_path(&c, &m.p(&long));
        let d_b = backing_path(&c, &m.p("d"));
        m.unmount();

        let mut side = long_b.clone().into_os_string();
        side.push(".name");
        let side = std::path::PathBuf::from(side);
        let iv = d_b.join("envelopefs.diriv");
        for (i, plant) in [mkfifo as fn(&Path), mkchr].iter().enumerate() {
            fs::remove_file(&side).unwrap();
            plant(&side);
            let _ = fs::remove_file(&iv);
            plant(&iv);
            let watch = OpenWatch::new(&[&side, &iv]);
            let m = env.mount(&c, &format!("m{i}"), &[]);
            m.expect_log("has a name that does not decrypt here");
            m.expect_log("cannot read its envelopefs.diriv: not a regular file");
            // The long name is not shown (its name cannot be read); the
            // rest of the directory is.
            let names: Vec<String> = fs::read_dir(&m.mnt)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(names.contains(&"short".to_owned()), "{names:?}");
            assert!(!names.contains(&long), "{names:?}");
            // A directory whose IV is not a file cannot be listed: EIO.
            let e = fs::read_dir(m.p("d"))
                .and_then(|mut it| it.next().transpose())
                .and_then(|_| fs::metadata(m.p("d/inner")))
                .expect_err("a directory without a readable IV");
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            assert!(!watch.opened(), "a planted special file was opened");
            m.unmount();
            fs::remove_file(&side).unwrap();
            fs::write(&side, b"x").unwrap();
        }
    });
}

/// `kms audit` reads `audit.log` in the key store directory: a planted fifo
/// once hung it forever (a symlink to /dev/zero would read until memory ran
/// out). It must be refused at once, like the planted lock file (IO, 23,
/// "not a regular file"), without opening the fifo.
#[test]
fn kms_audit_planted_fifo_is_refused_at_once() {
    let env = Env::new();
    env.run_ok(&["kms", "create-key", "--description", "x"]);
    let log = env.path("ks").join("audit.log");
    fs::remove_file(&log).unwrap();
    mkfifo(&log);
    let watch = OpenWatch::new(&[&log]);
    let (code, err, _) = run_bounded(&env, &["kms", "audit"]);
    assert!(!watch.opened(), "the planted fifo was opened");
    assert_eq!(code, Some(23), "{err}");
    assert!(
        err.contains("audit.log") && err.contains("not a regular file"),
        "{err}"
    );
}
