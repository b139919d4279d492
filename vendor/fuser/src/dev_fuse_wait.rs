//! How a /dev/fuse worker waits for its next request (envelopefs fork).
//!
//! A worker asleep in `read(2)` is woken by the process that queued the
//! request. On a VM whose other CPU is idle that is an interrupt and a
//! wake-up from halt, and the reply wakes the caller the same way, which
//! costs far more than the request itself. So after answering, a worker may
//! poll its own cloned descriptor without blocking for a short, bounded
//! time (`spin`): a request that follows at once is picked up with no
//! wake-up, and a CPU with a polling worker does not halt. Only then does it
//! block. Polling never outlasts `spin` after the last request, so an idle
//! mount costs no CPU, and an unmount ends the poll at once (the read fails
//! with ENODEV as it does when blocked).
//!
//! While it polls, a worker may be in the idle scheduling class
//! (`yield_cpu`): it then polls only while its CPU has nothing else to run,
//! and costs a busy machine nothing. It checks for a request without taking
//! it (`poll(2)` with no timeout) and takes it only once back in the normal
//! class, so a request is never held by a worker that waits for its CPU; it
//! serves and blocks in the normal class. At most `spinners` workers poll at
//! a time; the others block at once.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log::debug;
use nix::errno::Errno;

use crate::channel::Channel;

/// The transport levers of the /dev/fuse workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WaitConfig {
    /// Poll without blocking for this long after a request (zero: never).
    pub(crate) spin: Duration,
    /// Poll in the idle scheduling class.
    pub(crate) yield_cpu: bool,
    /// Workers that may poll at the same time.
    pub(crate) spinners: usize,
    /// Pin worker `i` to the `i`-th allowed CPU (round robin).
    pub(crate) pin: bool,
}

impl WaitConfig {
    /// No lever when `off` (the io_uring queue threads serve instead).
    pub(crate) fn unless(self, off: bool) -> WaitConfig {
        if off { WaitConfig::default() } else { self }
    }
}

/// Shared by the workers of a session.
pub(crate) struct WaitShared {
    config: WaitConfig,
    cpus: Vec<usize>,
    /// Workers polling now.
    polling: Arc<AtomicUsize>,
}

impl WaitShared {
    pub(crate) fn new(config: WaitConfig) -> WaitShared {
        let cpus = if config.pin { allowed_cpus() } else { Vec::new() };
        WaitShared {
            config,
            cpus,
            polling: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The calling worker's side; `index` counts from 0.
    pub(crate) fn waiter(&self, index: usize) -> Waiter {
        if let Some(&cpu) = self.cpus.get(index % self.cpus.len().max(1)) {
            if let Err(e) = pin_to(cpu) {
                debug!("/dev/fuse worker {index}: not pinned to CPU {cpu}: {e}");
            }
        }
        Waiter {
            config: self.config,
            nonblocking: false,
            idle_class: false,
            polling: self.polling.clone(),
        }
    }
}

/// One worker's state between requests.
pub(crate) struct Waiter {
    config: WaitConfig,
    /// Whether O_NONBLOCK is set on the worker's descriptor now.
    nonblocking: bool,
    /// Whether the worker is in the idle class now.
    idle_class: bool,
    polling: Arc<AtomicUsize>,
}

impl Waiter {
    /// Reads the next request into `buf`: polls for up to `spin` if the
    /// descriptor is the worker's alone (`exclusive`: its file status flags
    /// are its own to change) and few enough others poll, then blocks.
    pub(crate) fn receive(
        &mut self,
        ch: &Channel,
        buf: &mut [u8],
        exclusive: bool,
    ) -> nix::Result<usize> {
        if exclusive && !self.config.spin.is_zero() && self.enter_polling() {
            let got = self.poll(ch, buf);
            self.polling.fetch_sub(1, Ordering::AcqRel);
            self.set_idle_class(false);
            if let Some(n) = got? {
                return Ok(n);
            }
        }
        if self.nonblocking && set_nonblocking(ch, false).is_ok() {
            self.nonblocking = false;
        }
        if !self.nonblocking {
            return ch.receive_retrying(buf);
        }
        // O_NONBLOCK stuck: block in poll(2) instead, never spin unbounded.
        loop {
            wait_readable(ch)?;
            match ch.receive(buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn enter_polling(&self) -> bool {
        let max = self.config.spinners;
        self.polling
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Polls until a request comes or `spin` has passed; takes the request
    /// in the normal class.
    fn poll(&mut self, ch: &Channel, buf: &mut [u8]) -> nix::Result<Option<usize>> {
        if !self.nonblocking {
            if let Err(e) = set_nonblocking(ch, true) {
                debug!("/dev/fuse worker: no polling: {e}");
                self.config.spin = Duration::ZERO;
                return Ok(None);
            }
            self.nonblocking = true;
        }
        let start = Instant::now();
        loop {
            if self.config.yield_cpu {
                self.set_idle_class(true);
                let ready = readable(ch)?;
                if ready {
                    self.set_idle_class(false);
                }
                if !ready && start.elapsed() >= self.config.spin {
                    return Ok(None);
                }
                if !ready {
                    std::hint::spin_loop();
                    continue;
                }
            }
            match ch.receive(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= self.config.spin {
                return Ok(None);
            }
            std::hint::spin_loop();
        }
    }

    fn set_idle_class(&mut self, idle: bool) {
        if self.idle_class == idle {
            return;
        }
        match set_class(idle) {
            Ok(()) => self.idle_class = idle,
            Err(e) => {
                debug!("/dev/fuse worker: scheduling class: {e}");
                // Without the normal class back, never leave it.
                self.config.yield_cpu = false;
            }
        }
    }
}

/// Blocks until a request (or the end of the connection) waits on `ch`.
fn wait_readable(ch: &Channel) -> nix::Result<()> {
    let mut p = libc::pollfd {
        fd: ch.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd that lives across the call.
    if unsafe { libc::poll(&mut p, 1, -1) } < 0 && Errno::last() != Errno::EINTR {
        return Err(Errno::last());
    }
    Ok(())
}

/// Whether a request (or the end of the connection) waits on `ch`.
fn readable(ch: &Channel) -> nix::Result<bool> {
    let mut p = libc::pollfd {
        fd: ch.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd that lives across the call; a zero timeout never blocks.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    if rc < 0 {
        let e = Errno::last();
        return if e == Errno::EINTR { Ok(false) } else { Err(e) };
    }
    Ok(rc > 0)
}

/// Sets the calling thread's scheduling class: idle or normal.
fn set_class(idle: bool) -> io::Result<()> {
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` only; 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_nonblocking(ch: &Channel, on: bool) -> nix::Result<()> {
    let fd = ch.as_fd().as_raw_fd();
    // SAFETY: fcntl on a descriptor the channel owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(Errno::last());
    }
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above; F_SETFL takes an int.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the size of the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from the allowed set, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity reads the set only; 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
