//! Crash tests: kill -9 of the daemon under writers, and a full backing
//! filesystem. What was fsync'd survives; torn data reads as EIO, never as
//! other bytes; a damaged file can still be listed, stat'ed, truncated, deleted.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const REC: usize = 1000;

fn record(file: usize, n: u64) -> Vec<u8> {
    let mut r = format!("file {file} record {n:08} ").into_bytes();
    r.resize(REC - 1, b'.');
    r.push(b'\n');
    r
}

#[test]
fn kill9_keeps_every_fsynced_record() {
    bounded(180, || {
        let env = Env::new();
        let c = env.init("c", &["--block-size", "4096"]);
        let mut m = env.mount(&c, "m", &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let synced: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let writers: Vec<_> = (0..3)
            .map(|i| {
                let p = m.p(&format!("log{i}"));
                let stop = stop.clone();
                let synced = synced[i].clone();
                std::thread::spawn(move || {
                    let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&p) else {
                        return;
                    };
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if f.write_all(&record(i, n)).is_err() {
                            return;
                        }
                        n += 1;
                        if n % 3 == 0 {
                            if f.sync_all().is_err() {
                                return;
                            }
                            synced.store(n, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        m.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        let m2 = env.mount(&c, "m", &[]);
        // fsck names whatever the kill tore (or finds nothing), and never fails otherwise.
        let out = env.run(&["fsck", c.to_str().unwrap(), "--json"]);
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(30),
            "fsck: {code:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for p in report["Problems"].as_array().unwrap() {
            let what = p["Problem"].as_str().unwrap();
            assert!(
                what.contains("torn") || what.contains("block"),
                "unexpected problem {p}"
            );
            assert!(p["Path"].as_str().unwrap().starts_with("/log"), "{p}");
        }
        for (i, s) in synced.iter().enumerate() {
            let s = s.load(Ordering::SeqCst);
            assert!(s > 0, "writer {i} synced nothing");
            let p = m2.p(&format!("log{i}"));
            let f = fs::File::open(&p).unwrap();
            let mut buf = vec![0u8; s as usize * REC];
            f.read_exact_at(&mut buf, 0).unwrap();
            for n in 0..s {
                let at = n as usize * REC;
                assert_eq!(
                    &buf[at..at + REC],
                    record(i, n).as_slice(),
                    "file {i} record {n}"
                );
            }
            // Whatever follows is further records or EIO, never other bytes.
            let len = fs::metadata(&p).unwrap().len();
            let mut off = s * REC as u64;
            while off < len {
                let mut b = vec![0u8; 4096.min((len - off) as usize)];
                match f.read_exact_at(&mut b, off) {
                    Ok(()) => {
                        for (k, byte) in b.iter().enumerate() {
                            let pos = off as usize + k;
                            let want = record(i, (pos / REC) as u64)[pos % REC];
                            assert_eq!(*byte, want, "file {i} byte {pos} after the synced part");
                        }
                    }
                    Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
                }
                off += 4096;
            }
            // A damaged or not, the file can be listed, stat'ed, truncated and deleted.
            assert!(fs::read_dir(&m2.mnt)
                .unwrap()
                .any(|e| e.unwrap().file_name() == *format!("log{i}")));
            OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(s * REC as u64)
                .unwrap();
            assert_eq!(fs::metadata(&p).unwrap().len(), s * REC as u64);
            fs::remove_file(&p).unwrap();
        }
        m2.unmount();
    });
}

#[test]
fn full_backing_filesystem_reports_enospc_and_keeps_data() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to mount a small tmpfs");
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let small = env.path("small");
        fs::create_dir(&small).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&small)
            .status()
            .unwrap();
        assert!(st.success());
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
        let _guard = Unmount(small.clone());
        let c = small.join("c");
        env.run_ok(&["init", c.to_str().unwrap()]);
        let m = env.mount(&c, "m", &[]);
        let keep = pattern(1, 300_000);
        fs::write(m.p("keep"), &keep).unwrap();
        let mut f = fs::File::create(m.p("filler")).unwrap();
        let chunk = pattern(2, 64 * 1024);
        let err = loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        drop(f);
        assert_eq!(
            fs::read(m.p("keep")).unwrap(),
            keep,
            "data written before stays intact"
        );
        // The filler holds a prefix of what was written, or EIO past a torn tail.
        let len = fs::metadata(m.p("filler")).unwrap().len();
        if let Ok(got) = fs::read(m.p("filler")) {
            assert_eq!(got.len() as u64, len);
            for (i, b) in got.iter().enumerate() {
                assert_eq!(*b, chunk[i % chunk.len()], "filler byte {i}");
            }
        }
        fs::remove_file(m.p("filler")).unwrap();
        // The backing file's space comes back when the daemon closes it: on
        // the kernel's FORGET, which is asynchronous (and with FUSE over
        // io_uring travels apart from the other requests). Bounded wait.
        let t0 = std::time::Instant::now();
        loop {
            match fs::write(m.p("after"), b"space again") {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && t0.elapsed().as_secs() < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("write after freeing space: {e}"),
            }
        }
        eprintln!("space freed after {:?}", t0.elapsed());
        assert_eq!(fs::read(m.p("after")).unwrap(), b"space again");
        m.unmount();
    });
}
