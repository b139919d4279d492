//! Review 2 of issue 13 items 4-6: attacks on the snapshot holds that still
//! work. Each test asserts the outcome the issue requires and fails today.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::common::*;

/// Exit code of a destination inside the volume (src/error.rs, `exitcodes`).
const DESTINATION_INSIDE: i32 = 32;

/// A hold taken by hand on a daemon's control socket.
struct HandHold {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl HandHold {
    fn take(cipher: &Path) -> HandHold {
        let sock = envelopefs::snapshot::control::socket_path(&cipher.canonicalize().unwrap());
        let s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(b"HOLD\n").unwrap();
        let mut h = HandHold {
            r: BufReader::new(s),
            w,
        };
        let mut l = String::new();
        let _ = h.r.read_line(&mut l);
        assert_eq!(l.trim_end(), "HELD");
        h
    }

    fn release(mut self) -> String {
        self.w.write_all(b"RELEASE\n").unwrap();
        let mut l = String::new();
        let _ = self.r.read_line(&mut l);
        l.trim_end().to_owned()
    }
}

/// A bind mount, undone on drop.
struct Bind(PathBuf);

impl Bind {
    fn new(src: &Path, at: PathBuf) -> Bind {
        fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(&at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount --bind");
        Bind(at)
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A snapshot named by another path to the same cipher directory (a bind
/// mount: canonicalize keeps it) finds neither the daemon's control socket
/// (named by a hash of the path string) nor the mount (matched by the
/// mountinfo source string): it takes no hold, yet reports success. Shown
/// with a hold already taken by hand: a snapshot that asked the daemon would
/// wait behind it; this one finishes at once.
#[test]
fn snapshot_through_a_bind_mount_of_the_cipher_directory_takes_the_hold() {
    if !need_root("snapshot_through_a_bind_mount_of_the_cipher_directory_takes_the_hold") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("f"), b"data").unwrap();
        let bind = Bind::new(&c, env.path("cipher-bind"));
        let hold = HandHold::take(&c);
        let mut child = env
            .cmd()
            .args(["snapshot", "create"])
            .arg(&bind.0)
            .arg(env.path("snap"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        let finished = child.try_wait().unwrap();
        assert_eq!(hold.release(), "RELEASED");
        let out = child.wait_with_output().unwrap();
        assert!(
            finished.is_none(),
            "the snapshot ended ({finished:?}) while another hold was taken: it copied a mounted volume without holding its writes; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(bind);
        m.unmount();
    });
}

/// Through that bind-mount path, a destination inside the mount is not
/// refused either (exit 32 expected): the copy writes into the mount the
/// volume it is reading.
#[test]
fn snapshot_through_a_bind_mount_into_the_mount_is_refused() {
    if !need_root("snapshot_through_a_bind_mount_into_the_mount_is_refused") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("f"), b"data").unwrap();
        let bind = Bind::new(&c, env.path("cipher-bind"));
        let mut cmd = env.cmd();
        cmd.args(["snapshot", "create"])
            .arg(&bind.0)
            .arg(m.p("snap"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let snap_made = m.p("snap").exists();
        drop(bind);
        m.unmount();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(DESTINATION_INSIDE),
            "snap made in the mount: {snap_made}; stderr: {err}"
        );
    });
}

/// Opens the existing file `p` for writing (no truncation).
fn open_w(p: &Path) -> fs::File {
    fs::OpenOptions::new().write(true).open(p).unwrap()
}

fn spawn_write(mut f: fs::File, data: Vec<u8>) -> Receiver<Instant> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        f.write_all(&data).unwrap();
        let _ = tx.send(Instant::now());
    });
    rx
}

/// Parking is capped at 64 (src/fs/park.rs MAX_PARKED); past that a change
/// waits on its serving thread. Any user of an --allow-other mount can
/// start 64 + (worker threads) writes during a snapshot's hold: then every
/// worker waits and reads, stats and listings stop for the whole hold,
/// which item 4 says must not happen.
#[test]
fn many_held_writers_leave_reads_served() {
    if !need_root("many_held_writers_leave_reads_served") {
        return;
    }
    bounded(180, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        let writers = 64 + 2 + 4;
        fs::write(m.p("s"), b"stat me").unwrap();
        fs::write(m.p("r"), pattern(1, 100_000)).unwrap();
        for i in 0..writers {
            fs::write(m.p(&format!("w{i}")), b"old").unwrap();
        }
        m.unmount();
        let m = env.mount(&c, "m", &["--threads", "2"]);
        let files: Vec<fs::File> = (0..writers)
            .map(|i| open_w(&m.p(&format!("w{i}"))))
            .collect();
        let hold = HandHold::take(&c);
        let done: Vec<Receiver<Instant>> = files
            .into_iter()
            .map(|f| spawn_write(f, pattern(7, 4096)))
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        let (s, r) = (m.p("s"), m.p("r"));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let ok = fs::metadata(&s).map(|x| x.len()).ok() == Some(7) && {
                let mut b = Vec::new();
                fs::File::open(&r)
                    .and_then(|mut f| f.read_to_end(&mut b))
                    .is_ok()
                    && b == pattern(1, 100_000)
            };
            let _ = tx.send(ok);
        });
        let served = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(hold.release(), "RELEASED");
        for d in &done {
            d.recv_timeout(Duration::from_secs(30))
                .expect("every writer completes once released");
        }
        m.unmount();
        assert_eq!(
            served,
            Ok(true),
            "a stat and a read were not served within 5 s while {writers} writes waited for a hold"
        );
    });
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Over io_uring a queue adds at most 16 entries for parked requests
/// (vendor/fuser/src/uring.rs MAX_EXTRA_ENTRIES): 40 writers pinned to a
/// CPU take every entry of its queue during a hold (far below the 64 that
/// parking takes), and then nothing from that CPU is served until the hold
/// ends. Passes on /dev/fuse; run with enable_uring=Y.
#[test]
fn many_held_writers_on_one_cpu_leave_its_reads_served() {
    if !need_root("many_held_writers_on_one_cpu_leave_its_reads_served") {
        return;
    }
    bounded(180, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        let writers = 40;
        fs::write(m.p("s"), b"stat me").unwrap();
        for i in 0..writers {
            fs::write(m.p(&format!("w{i}")), b"old").unwrap();
        }
        m.unmount();
        let m = env.mount(&c, "m", &["--threads", "2"]);
        eprintln!("threads: {:?}", m.thread_names());
        let files: Vec<fs::File> = (0..writers)
            .map(|i| open_w(&m.p(&format!("w{i}"))))
            .collect();
        let hold = HandHold::take(&c);
        let done: Vec<Receiver<Instant>> = files
            .into_iter()
            .map(|mut f| {
                let (tx, rx) = channel();
                std::thread::spawn(move || {
                    pin_to(0);
                    f.write_all(&pattern(7, 4096)).unwrap();
                    let _ = tx.send(Instant::now());
                });
                rx
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        let s = m.p("s");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            pin_to(0);
            let _ = tx.send(fs::metadata(&s).map(|x| x.len()).ok());
        });
        let served = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(hold.release(), "RELEASED");
        for d in &done {
            d.recv_timeout(Duration::from_secs(30))
                .expect("every writer completes once released");
        }
        m.unmount();
        assert_eq!(
            served,
            Ok(Some(7)),
            "a stat on CPU 0 was not served within 5 s while {writers} writes from CPU 0 waited for a hold"
        );
    });
}

/// `--max-hold` bounds a hold only between lines: the daemon checks it when
/// `read_line` returns (src/snapshot/control.rs watch_holder), and a holder
/// that sends one byte a second and never a newline keeps `read_line`
/// waiting (each byte restarts the socket's read timeout), so the hold
/// outlives the bound (and the line grows without limit).
#[test]
fn max_hold_bounds_a_holder_that_never_ends_a_line() {
    if !need_root("max_hold_bounds_a_holder_that_never_ends_a_line") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &["--max-hold", "2"]);
        fs::write(m.p("w"), b"old").unwrap();
        let f = open_w(&m.p("w"));
        let mut hold = HandHold::take(&c);
        let done = spawn_write(f, b"new".to_vec());
        let t0 = Instant::now();
        let mut written_at = None;
        while t0.elapsed() < Duration::from_secs(8) {
            let _ = hold.w.write_all(b"A");
            std::thread::sleep(Duration::from_millis(500));
            if written_at.is_none() {
                written_at = done.try_recv().ok().map(|_| t0.elapsed());
            }
        }
        drop(hold);
        done.recv_timeout(Duration::from_secs(30))
            .expect("the write completes once the holder is gone");
        m.unmount();
        assert!(
            written_at.is_some_and(|t| t < Duration::from_secs(5)),
            "with --max-hold 2 the write waited {written_at:?} (None: over 8 s)"
        );
    });
}
