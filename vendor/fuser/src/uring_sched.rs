//! Scheduling class of the io_uring queue threads (envelopefs fork).
//!
//! A queue thread serves the process running on its CPU and wakes it with
//! the reply. Linux 6.18 wakes that process without a same-CPU hint (one was
//! proposed for FUSE over io_uring, `__wake_up_on_current_cpu`), so the
//! scheduler sees the queue thread's CPU busy and moves the process to the
//! other, idle CPU: on a VM that is an interrupt and a wake-up from halt for
//! every request, and the next request then goes to that CPU's queue. A
//! thread in the idle class (`SCHED_IDLE`) does not count as load when the
//! woken task is placed: the process stays on its CPU and runs at once, the
//! queue thread finishing its loop after it.
//!
//! The price: an idle-class thread gets the CPU only when nothing else wants
//! it, and behind a busy process it would wait for seconds. So a watchdog
//! reads each queue thread's run-queue wait (`/proc/self/task/TID/schedstat`)
//! and moves a thread that waited for most of a tick without running back to
//! the normal class at once; the queue thread returns to the idle class
//! itself after `QUIET` without such waits. A queue thread is also in the
//! normal class while it has large reads out with its helper or commits one:
//! copying a read into the page cache is work the reader waits for.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use log::debug;

/// Tick of the watchdog while any queue thread ran or waited.
const TICK: Duration = Duration::from_millis(20);
/// Tick while all of them slept: the watchdog need not wake an idle machine often.
const SLOW_TICK: Duration = Duration::from_millis(200);
/// Time without run-queue waits after which a demoted thread may idle again.
const QUIET: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Idle,
    Normal,
}

fn set_class(tid: libc::pid_t, class: Class) -> io::Result<()> {
    let policy = match class {
        Class::Idle => libc::SCHED_IDLE,
        Class::Normal => libc::SCHED_OTHER,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` only; `tid` is a thread of
    // this process (0 = the calling thread).
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Per queue: its thread's id and whether the watchdog demoted it.
#[derive(Default)]
struct Slot {
    tid: AtomicI32,
    demoted: AtomicBool,
    /// Times the watchdog set the normal class on the thread.
    demotions: AtomicU32,
}

/// Shared between the queue threads and the watchdog.
pub(crate) struct Sched {
    slots: Vec<Slot>,
    stop: AtomicBool,
}

impl Sched {
    pub(crate) fn new(queues: usize) -> Arc<Sched> {
        Arc::new(Sched {
            slots: (0..queues).map(|_| Slot::default()).collect(),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts the watchdog; `stop` ends it. Fails if a thread of this
    /// process could not leave the idle class again: unprivileged, that
    /// takes an RLIMIT_NICE of 20, and without it the watchdog could not
    /// lift a starving queue thread.
    pub(crate) fn watch(self: &Arc<Self>) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("fuser-sched-probe".into())
            .spawn(|| set_class(0, Class::Idle).and_then(|()| set_class(0, Class::Normal)))?
            .join()
            .map_err(|_| io::Error::other("scheduling probe panicked"))??;
        let me = self.clone();
        std::thread::Builder::new()
            .name("fuser-sched-watch".into())
            .spawn(move || me.watchdog())
    }

    pub(crate) fn stop(&self, watchdog: std::thread::JoinHandle<()>) {
        self.stop.store(true, Ordering::Release);
        watchdog.thread().unpark();
        let _ = watchdog.join();
    }

    fn watchdog(&self) {
        // Per slot: (run time, run-queue wait) at the last tick, quiet time.
        let mut last: Vec<Option<(u64, u64)>> = vec![None; self.slots.len()];
        let mut quiet = vec![Duration::ZERO; self.slots.len()];
        let mut at = Instant::now();
        let mut tick = TICK;
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(tick);
            let now = Instant::now();
            let elapsed = now - at;
            at = now;
            let span = elapsed.as_nanos() as u64;
            let mut active = false;
            for (i, slot) in self.slots.iter().enumerate() {
                let tid = slot.tid.load(Ordering::Acquire);
                let Some(now_stat) = (tid > 0).then(|| schedstat(tid)).flatten() else {
                    continue;
                };
                let Some((ran0, waited0)) = last[i].replace(now_stat) else {
                    continue;
                };
                let ran = now_stat.0.saturating_sub(ran0);
                let waited = now_stat.1.saturating_sub(waited0);
                active |= ran > 0 || waited > 0;
                if waited * 2 >= span && ran * 10 <= span {
                    // Runnable most of the tick and hardly ran: starving.
                    // Applied here, since the thread cannot do it itself.
                    if set_class(tid, Class::Normal).is_ok() {
                        slot.demotions.fetch_add(1, Ordering::AcqRel);
                        if !slot.demoted.swap(true, Ordering::AcqRel) {
                            debug!("io_uring queue {i}: waited for its CPU, normal class");
                        }
                    }
                    quiet[i] = Duration::ZERO;
                } else if slot.demoted.load(Ordering::Acquire) {
                    if waited * 20 < span {
                        quiet[i] += elapsed;
                    } else {
                        quiet[i] = Duration::ZERO;
                    }
                    if quiet[i] >= QUIET {
                        slot.demoted.store(false, Ordering::Release);
                        quiet[i] = Duration::ZERO;
                    }
                }
            }
            tick = if active { TICK } else { SLOW_TICK };
        }
    }
}

/// Nanoseconds on the CPU and waiting on a run queue, of a thread of ours.
fn schedstat(tid: libc::pid_t) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut f = s.split_ascii_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// A queue thread's side: it applies the class it should be in before each
/// wait (the wait also submits its replies, which wake their callers).
pub(crate) struct QueueClass {
    sched: Arc<Sched>,
    qid: usize,
    applied: Class,
    demotions: u32,
}

impl QueueClass {
    /// Registers the calling thread as queue `qid`'s.
    pub(crate) fn register(sched: &Arc<Sched>, qid: usize) -> QueueClass {
        // SAFETY: gettid has no memory effects.
        let tid = unsafe { libc::gettid() };
        if let Some(slot) = sched.slots.get(qid) {
            slot.tid.store(tid, Ordering::Release);
        }
        QueueClass {
            sched: sched.clone(),
            qid,
            applied: Class::Normal,
            demotions: 0,
        }
    }

    /// `busy`: large reads are out with the helper or being committed.
    pub(crate) fn settle(&mut self, busy: bool) {
        let Some(slot) = self.sched.slots.get(self.qid) else {
            return;
        };
        let demotions = slot.demotions.load(Ordering::Acquire);
        if demotions != self.demotions {
            // The watchdog set the normal class behind our back.
            self.demotions = demotions;
            self.applied = Class::Normal;
        }
        let want = if busy || slot.demoted.load(Ordering::Acquire) {
            Class::Normal
        } else {
            Class::Idle
        };
        if want != self.applied {
            match set_class(0, want) {
                Ok(()) => self.applied = want,
                Err(e) => debug!("io_uring queue {}: {want:?} class: {e}", self.qid),
            }
        }
    }
}
