//! The /dev/fuse transport: workers that poll their descriptor for a while
//! after a request (`--dev-fuse-spin-us`) and run in the idle scheduling
//! class (`--dev-fuse-yield`). Polling must end when the mount is idle and
//! at unmount, and the idle class must not starve a worker behind busy CPUs.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Kept on /dev/fuse whether or not the kernel offers io_uring.
const DEV_FUSE: &[&str] = &["--io-uring-depth", "0"];

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after the ')'.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).unwrap_or(100)
}

/// Stats of absent names: one LOOKUP round trip each.
fn lookups(m: &Mount, from: usize, n: usize) {
    for i in from..from + n {
        assert_eq!(
            errno(fs::metadata(m.p(&format!("absent-{i}")))),
            Some(libc::ENOENT)
        );
    }
}

/// After a burst of requests the workers poll for a bounded time only: a
/// mount at rest costs (next to) no CPU.
#[test]
fn dev_fuse_workers_stop_polling_when_the_mount_is_idle() {
    if !need_fuse("dev_fuse_workers_stop_polling_when_the_mount_is_idle") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        // A long poll (10 ms, the flag's limit is 10,000 µs) still ends.
        let mut flags = DEV_FUSE.to_vec();
        flags.extend(["--dev-fuse-spin-us", "10000"]);
        let m = env.mount(&c, "m", &flags);
        let pid = m.pid().unwrap();
        lookups(&m, 0, 3000);
        std::thread::sleep(Duration::from_millis(300));
        let t0 = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(2));
        let used = cpu_ticks(pid) - t0;
        // Polling on would be 2 s of CPU or more; at rest the watchdog's
        // ticks cost a few milliseconds.
        assert!(
            used * 1000 / ticks_per_second() <= 60,
            "the idle daemon used {used} ticks of CPU in 2 s"
        );
        assert!(m.unmount_exits(), "daemon did not exit after unmount");
    });
}

/// An unmount while the workers are polling ends the daemon promptly: a
/// client asks every millisecond and the workers poll for 10 ms after each
/// request, so they are polling when the unmount comes.
#[test]
fn dev_fuse_unmount_while_workers_poll_is_prompt() {
    if !need_fuse("dev_fuse_unmount_while_workers_poll_is_prompt") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let mut flags = DEV_FUSE.to_vec();
        flags.extend(["--dev-fuse-spin-us", "10000"]);
        let m = env.mount(&c, "m", &flags);
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let stop = stop.clone();
            let dir = m.p("");
            std::thread::spawn(move || {
                let mut i = 0;
                // Once unmounted the names are looked up in the empty mount
                // point: absent as well.
                while !stop.load(Ordering::Relaxed) {
                    assert!(fs::metadata(dir.join(format!("absent-{i}"))).is_err());
                    i += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let exited = m.unmount_exits();
        let took = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        client.join().unwrap();
        assert!(exited, "daemon did not exit after unmount");
        assert!(
            took < Duration::from_secs(3),
            "daemon took {took:?} to exit"
        );
    });
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// The workers poll in the idle class, but take and serve a request in the
/// normal class: with every CPU busy, file operations still finish promptly
/// (a request taken by a worker that then waited for its CPU in the idle
/// class would wait for seconds).
#[test]
fn dev_fuse_workers_do_not_starve_behind_busy_cpus() {
    if !need_root("dev_fuse_workers_do_not_starve_behind_busy_cpus") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("v", &[]);
        let mut flags = DEV_FUSE.to_vec();
        flags.extend(["--dev-fuse-spin-us", "50", "--dev-fuse-spinners", "4"]);
        let m = env.mount(&c, "m", &flags);
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        lookups(&m, 0, 100);
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..online)
            .map(|cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin_to(cpu);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let dir = m.p("d");
        let work = std::thread::spawn(move || {
            pin_to(0);
            let t0 = Instant::now();
            fs::create_dir(&dir).unwrap();
            for i in 0..300u64 {
                let f = dir.join(format!("f{i}"));
                fs::write(&f, pattern(i, 100)).unwrap();
                assert_eq!(fs::read(&f).unwrap(), pattern(i, 100));
            }
            t0.elapsed()
        });
        // Past 30 s the spinners stop, so that a starving daemon finishes
        // the work and the test fails with the mount cleaned up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !work.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        let took = work.join().unwrap();
        assert!(
            took < Duration::from_secs(15),
            "300 files behind busy CPUs took {took:?}"
        );
        assert!(m.unmount_exits(), "daemon did not exit after unmount");
    });
}
