//! Snapshot holds (issue 13, item 4): a snapshot must not be able to freeze
//! the mount. A destination inside the volume is refused; a holder that stops
//! sending heartbeats, or outlives `--max-hold`, loses its hold; and requests
//! that wait for a hold are parked off the serving threads, so reads, stats
//! and listings are served during a hold, on whichever transport is active
//! (scripts/test.sh runs this binary on /dev/fuse and on io_uring).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::common::*;

/// Exit codes of the CLI (src/error.rs, `exitcodes`).
const DESTINATION_INSIDE: i32 = 32;
const HOLD_LOST: i32 = 33;

/// Runs `cmd` with a time bound: `None` (after killing it) if it is still
/// running after `secs`.
fn run_bounded(mut cmd: Command, secs: u64) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if Instant::now() > deadline {
            // Not waited for: a process stuck in a frozen mount would not die.
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
        assert_eq!(h.line(), "HELD");
        h
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let _ = self.r.read_line(&mut l);
        l.trim_end().to_owned()
    }

    fn alive(&mut self) {
        self.w.write_all(b"ALIVE\n").unwrap();
    }

    fn release(mut self) -> String {
        self.w.write_all(b"RELEASE\n").unwrap();
        self.line()
    }
}

/// Opens the existing file `p` for writing (no truncation, so the open does
/// not wait for a hold).
fn open_w(p: &Path) -> fs::File {
    fs::OpenOptions::new().write(true).open(p).unwrap()
}

/// Writes `data` at the start of `f` and fsyncs it on another thread (pinned to `cpu` when
/// given); the receiver gets the time it finished.
fn spawn_write(mut f: fs::File, data: Vec<u8>, cpu: Option<usize>) -> Receiver<Instant> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        if let Some(c) = cpu {
            pin_to(c);
        }
        f.write_all(&data).unwrap();
        // Under writeback caching write(2) ends in the page cache; the data
        // reaches the daemon (and waits for the hold) at fsync.
        f.sync_all().unwrap();
        let _ = tx.send(Instant::now());
    });
    rx
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn uring_offered() -> bool {
    fs::read_to_string("/sys/module/fuse/parameters/enable_uring").is_ok_and(|s| s.trim() == "Y")
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

fn partials(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("envelopefs-partial"))
        .collect()
}

#[test]
fn destination_inside_the_volume_is_refused() {
    if !need_root("destination_inside_the_volume_is_refused") {
        return;
    }
    bounded(300, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("f"), b"data").unwrap();
        std::os::unix::fs::symlink(&m.mnt, env.path("to-mount")).unwrap();
        let bind = Bind::new(&c, env.path("cipher-bind"));
        let plain = env.path("plain");
        fs::create_dir_all(plain.join("sub")).unwrap();
        fs::write(plain.join("a"), b"plain").unwrap();
        let out = env.run_ok(&["kms", "create-key", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let key = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let s = |p: PathBuf| p.to_str().unwrap().to_owned();
        let cs = s(c.clone());
        let cases: Vec<Vec<String>> = vec![
            // The mount of the volume, directly and through a symlink.
            vec![
                "snapshot".into(),
                "create".into(),
                cs.clone(),
                s(m.p("snap")),
            ],
            vec![
                "snapshot".into(),
                "create".into(),
                cs.clone(),
                s(env.path("to-mount/snap")),
            ],
            // The cipher directory, directly and through a bind mount (no
            // common string prefix).
            vec![
                "snapshot".into(),
                "create".into(),
                cs.clone(),
                s(c.join("snap")),
            ],
            vec![
                "snapshot".into(),
                "create".into(),
                cs.clone(),
                s(bind.0.join("snap")),
            ],
            vec![
                "snapshot".into(),
                "copy".into(),
                cs.clone(),
                s(m.p("copy")),
                "--key".into(),
                key.clone(),
            ],
            vec![
                "snapshot".into(),
                "copy".into(),
                cs.clone(),
                s(c.join("copy")),
                "--key".into(),
                key.clone(),
            ],
            // import into the tree it reads.
            vec!["import".into(), s(plain.clone()), s(plain.join("sub/vol"))],
        ];
        for args in &cases {
            let mut cmd = env.cmd();
            cmd.args(args);
            let out = run_bounded(cmd, 30).unwrap_or_else(|| panic!("{args:?} hung"));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(DESTINATION_INSIDE),
                "{args:?}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(err.contains("inside"), "{err}");
        }
        // Nothing was left behind, and the mount still takes writes.
        for d in [&m.mnt, &c, &bind.0, &plain.join("sub")] {
            assert!(partials(d).is_empty(), "partial output in {}", d.display());
        }
        assert!(!m.p("snap").exists() && !m.p("copy").exists());
        let g = m.p("g");
        bounded(10, move || fs::write(g, b"still writable").unwrap());
        drop(bind);
        m.unmount();
    });
}

#[test]
fn idle_holder_loses_its_hold_after_30_s() {
    if !need_root("idle_holder_loses_its_hold_after_30_s") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        m.expect_log("snapshot hold dropped: its holder sent no heartbeat");
        fs::write(m.p("f"), b"before").unwrap();
        let f = open_w(&m.p("f"));
        let mut hold = HandHold::take(&c);
        let t0 = Instant::now();
        let done = spawn_write(f, b"AFTER!".to_vec(), None);
        assert!(
            done.recv_timeout(Duration::from_secs(3)).is_err(),
            "the hold holds writes"
        );
        let at = done
            .recv_timeout(Duration::from_secs(50))
            .expect("a write still waits 50 s after an idle holder's HOLD");
        let waited = at - t0;
        assert!(
            waited >= Duration::from_secs(25) && waited <= Duration::from_secs(45),
            "held for {waited:?}"
        );
        assert!(hold.line().starts_with("DROPPED"), "the holder is told");
        assert_eq!(fs::read(m.p("f")).unwrap(), b"AFTER!");
        let log = m.unmount();
        assert!(log.contains("no heartbeat"), "daemon log: {log}");
    });
}

#[test]
fn holder_that_sends_heartbeats_keeps_its_hold() {
    if !need_root("holder_that_sends_heartbeats_keeps_its_hold") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("f"), b"before").unwrap();
        let f = open_w(&m.p("f"));
        let mut hold = HandHold::take(&c);
        let done = spawn_write(f, b"AFTER!".to_vec(), None);
        // Longer than the 30 s a silent holder keeps it.
        for _ in 0..8 {
            assert!(
                done.recv_timeout(Duration::from_secs(5)).is_err(),
                "the hold holds writes while its holder is alive"
            );
            hold.alive();
        }
        assert_eq!(hold.release(), "RELEASED");
        done.recv_timeout(Duration::from_secs(10))
            .expect("the write goes through once released");
        assert_eq!(fs::read(m.p("f")).unwrap(), b"AFTER!");
        m.unmount();
    });
}

#[test]
fn max_hold_ends_a_snapshot_cleanly() {
    if !need_root("max_hold_ends_a_snapshot_cleanly") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let a = env.init("a", &[]);
        let b = env.init("b", &[]);
        let ma = env.mount(&a, "ma", &["--max-hold", "2"]);
        ma.expect_log("held for the mount's --max-hold");
        let mb = env.mount(&b, "mb", &[]);
        for i in 0..10 {
            fs::write(ma.p(&format!("f{i}")), pattern(i, 10_000)).unwrap();
        }
        // The snapshot's destination lies in a held mount: the snapshot takes
        // its hold on `a`, then waits there (its heartbeats still going)
        // until `a`'s --max-hold has passed.
        let hb = HandHold::take(&b);
        let dest = mb.p("snap");
        let mut cmd = env.cmd();
        cmd.args([
            "snapshot",
            "create",
            a.to_str().unwrap(),
            dest.to_str().unwrap(),
        ]);
        let snap = std::thread::spawn(move || run_bounded(cmd, 60));
        let t0 = Instant::now();
        while !ma.log_text().contains("--max-hold") {
            assert!(t0.elapsed() < Duration::from_secs(20), "{}", ma.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        let w = spawn_write(open_w(&ma.p("f0")), b"changed".to_vec(), None);
        w.recv_timeout(Duration::from_secs(10))
            .expect("writes go through once --max-hold has passed");
        assert_eq!(hb.release(), "RELEASED");
        let out = snap.join().unwrap().expect("the snapshot ends");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(HOLD_LOST), "{err}");
        assert!(err.contains("hold"), "{err}");
        assert!(!dest.exists(), "no snapshot");
        assert!(partials(&mb.mnt).is_empty(), "no partial output");
        mb.unmount();
        ma.unmount();
    });
}

#[test]
fn held_writes_leave_reads_stats_and_listings_served() {
    if !need_root("held_writes_leave_reads_stats_and_listings_served") {
        return;
    }
    bounded(180, || {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        eprintln!(
            "transport: {}",
            if uring_offered() {
                "io_uring"
            } else {
                "/dev/fuse"
            }
        );
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &[]);
        // More writers than worker threads (2), spread over the CPUs: over
        // io_uring each CPU has one queue thread, and more writers per CPU
        // than it has ring entries (4).
        let writers = 5 * cpus;
        for i in 0..cpus {
            fs::write(m.p(&format!("r{i}")), pattern(i as u64, 300_000)).unwrap();
            fs::write(m.p(&format!("s{i}")), b"stat me").unwrap();
        }
        for i in 0..writers {
            fs::write(m.p(&format!("w{i}")), b"old").unwrap();
        }
        fs::create_dir(m.p("d")).unwrap();
        for i in 0..10 {
            fs::write(m.p(&format!("d/e{i}")), b"").unwrap();
        }
        // A fresh mount: nothing below is in the kernel's caches, so every
        // read, stat and listing reaches the daemon.
        m.unmount();
        let m = env.mount(&c, "m", &["--threads", "2"]);
        if uring_offered() {
            // The queue threads start after the mount appears: wait for them.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !m.thread_names().iter().any(|n| n.starts_with("fuser-ring")) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the mount serves on io_uring"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let data = |i: usize| pattern(100 + i as u64, 128 * 1024);
        let files: Vec<fs::File> = (0..writers)
            .map(|i| open_w(&m.p(&format!("w{i}"))))
            .collect();
        let hold = HandHold::take(&c);
        let done: Vec<Receiver<Instant>> = files
            .into_iter()
            .enumerate()
            .map(|(i, f)| spawn_write(f, data(i), Some(i % cpus)))
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        for d in &done {
            assert!(d.try_recv().is_err(), "the hold holds writes");
        }
        for cpu in 0..cpus {
            let (r, s, d) = (m.p(&format!("r{cpu}")), m.p(&format!("s{cpu}")), m.p("d"));
            let t = bounded(20, move || {
                pin_to(cpu);
                let t0 = Instant::now();
                let mut buf = Vec::new();
                fs::File::open(&r).unwrap().read_to_end(&mut buf).unwrap();
                assert!(buf == pattern(cpu as u64, 300_000), "read back");
                assert_eq!(fs::metadata(&s).unwrap().len(), 7);
                assert_eq!(fs::read_dir(&d).unwrap().count(), 10);
                t0.elapsed()
            });
            assert!(t < Duration::from_secs(5), "cpu {cpu}: served in {t:?}");
        }
        for d in &done {
            assert!(d.try_recv().is_err(), "still held");
        }
        assert_eq!(hold.release(), "RELEASED");
        for (i, d) in done.iter().enumerate() {
            d.recv_timeout(Duration::from_secs(20))
                .expect("every writer completes once released");
            assert!(fs::read(m.p(&format!("w{i}"))).unwrap() == data(i));
        }
        m.unmount();
    });
}

/// A mounted volume with a file, and a bind mount of its cipher directory.
fn bound_volume(env: &Env) -> (PathBuf, Mount, Bind) {
    let c = env.init("v", &[]);
    let m = env.mount(&c, "m", &[]);
    fs::write(m.p("f"), b"data").unwrap();
    let bind = Bind::new(&c, env.path("cipher-bind"));
    (c, m, bind)
}

/// `envelopefs snapshot create src dst`, stderr piped.
fn snapshot_cmd(env: &Env, src: &Path, dst: &Path) -> Command {
    let mut cmd = env.cmd();
    cmd.args(["snapshot", "create"])
        .arg(src)
        .arg(dst)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A snapshot named by another path to the same cipher directory (a bind
/// mount: canonicalize keeps it) must find the daemon and its hold: the
/// socket once hashed the path string and the mount was matched by the
/// mountinfo source string, so it took no hold and reported success. With a
/// hold already taken by hand, a snapshot that asks the daemon waits.
#[test]
fn snapshot_through_a_bind_mount_of_the_cipher_directory_takes_the_hold() {
    if !need_root("snapshot_through_a_bind_mount_of_the_cipher_directory_takes_the_hold") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let (c, m, bind) = bound_volume(&env);
        let hold = HandHold::take(&c);
        let mut child = snapshot_cmd(&env, &bind.0, &env.path("snap"))
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

/// Through that bind-mount path, a destination inside the mount is refused
/// too (exit 32): the copy once wrote into the mount of the volume it read.
#[test]
fn snapshot_through_a_bind_mount_into_the_mount_is_refused() {
    if !need_root("snapshot_through_a_bind_mount_into_the_mount_is_refused") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let (_, m, bind) = bound_volume(&env);
        let mut child = snapshot_cmd(&env, &bind.0, &m.p("snap")).spawn().unwrap();
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

/// `--max-hold` (and the heartbeat timeout) bound a hold whatever the holder
/// sends: one byte a second and never a newline once kept the daemon's
/// `read_line` waiting (each byte restarted the socket's read timeout).
#[test]
fn max_hold_bounds_a_holder_that_never_ends_a_line() {
    if !need_root("max_hold_bounds_a_holder_that_never_ends_a_line") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let m = env.mount(&c, "m", &["--max-hold", "2"]);
        m.expect_log("held for the mount's --max-hold");
        fs::write(m.p("w"), b"old").unwrap();
        let f = open_w(&m.p("w"));
        let mut hold = HandHold::take(&c);
        let done = spawn_write(f, b"new".to_vec(), None);
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
        if written_at.is_none() {
            done.recv_timeout(Duration::from_secs(30))
                .expect("the write completes once the holder is gone");
        }
        m.unmount();
        assert!(
            written_at.is_some_and(|t| t < Duration::from_secs(5)),
            "with --max-hold 2 the write waited {written_at:?} (None: over 8 s)"
        );
    });
}
