//! Requests that must wait for a snapshot's hold are parked here, off the
//! threads that serve the kernel, so that reads, stats and listings go on
//! during a hold: on /dev/fuse a waiting change would take a worker thread,
//! on io_uring the only queue thread of its CPU. A parked request owns its
//! reply and copies of its arguments; one thread runs parked requests, in
//! order, each once the hold is gone. Past `MAX_PARKED` waiting requests a
//! change waits on its serving thread, as it did before parking.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

/// Changes parked at most; each may hold a copy of a write (up to 1 MiB).
pub const MAX_PARKED: usize = 64;

/// A parked request: runs the operation again, on the parking thread.
pub type Parked = Box<dyn FnOnce() + Send>;

thread_local! {
    /// This thread is inside a change and holds the hold lock shared.
    static CHANGING: Cell<bool> = const { Cell::new(false) };
}

/// The hold lock: taken shared by every change, exclusively by a snapshot's
/// hold (src/snapshot/control.rs).
pub struct Gate {
    hold: Arc<RwLock<()>>,
    parked: Arc<AtomicUsize>,
    tx: Mutex<Option<Sender<Parked>>>,
}

/// A change in progress: the hold cannot be taken until it is dropped.
pub struct Changing<'a> {
    _shared: Option<RwLockReadGuard<'a, ()>>,
    /// This guard marked the thread as changing (and unmarks it).
    outer: bool,
}

impl Changing<'_> {
    /// No hold needed (a read-only mount refuses the change anyway).
    pub fn none() -> Changing<'static> {
        Changing {
            _shared: None,
            outer: false,
        }
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        if self.outer {
            CHANGING.with(|c| c.set(false));
        }
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            hold: Arc::new(RwLock::new(())),
            parked: Arc::new(AtomicUsize::new(0)),
            tx: Mutex::new(None),
        }
    }

    pub fn hold_lock(&self) -> Arc<RwLock<()>> {
        self.hold.clone()
    }

    fn enter_shared<'a>(guard: RwLockReadGuard<'a, ()>) -> Changing<'a> {
        CHANGING.with(|c| c.set(true));
        Changing {
            _shared: Some(guard),
            outer: true,
        }
    }

    /// Enters a change on this thread, waiting for a hold to end if one is
    /// taken (the fallback when parking is not possible).
    pub fn wait(&self) -> Changing<'_> {
        if CHANGING.with(|c| c.get()) {
            return Changing {
                _shared: None,
                outer: false,
            };
        }
        Self::enter_shared(self.hold.read())
    }

    /// Enters a change now if no hold is taken (or this thread is already
    /// inside one), giving the reply back; otherwise parks the request that
    /// `park` builds around the reply and returns `None`.
    pub fn enter<R>(&self, reply: R, park: impl FnOnce(R) -> Parked) -> Option<(Changing<'_>, R)> {
        if CHANGING.with(|c| c.get()) {
            return Some((
                Changing {
                    _shared: None,
                    outer: false,
                },
                reply,
            ));
        }
        if let Some(g) = self.hold.try_read() {
            return Some((Self::enter_shared(g), reply));
        }
        if self.parked.fetch_add(1, Ordering::AcqRel) >= MAX_PARKED {
            self.parked.fetch_sub(1, Ordering::AcqRel);
            return Some((self.wait(), reply));
        }
        let job = park(reply);
        if let Err(back) = self.sender().send(job) {
            // No parking thread: run it here, waiting for the hold.
            self.parked.fetch_sub(1, Ordering::AcqRel);
            let _changing = self.wait();
            (back.0)();
        }
        None
    }

    /// The parking thread's queue, started on first use.
    fn sender(&self) -> Sender<Parked> {
        let mut tx = self.tx.lock();
        if let Some(t) = tx.as_ref() {
            return t.clone();
        }
        let (t, rx) = channel::<Parked>();
        let (hold, parked) = (self.hold.clone(), self.parked.clone());
        let spawned = std::thread::Builder::new()
            .name("envelopefs-parked".into())
            .spawn(move || {
                for job in rx {
                    let shared = hold.read();
                    let changing = Self::enter_shared(shared);
                    // A panicking request must not strand the ones behind it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    drop(changing);
                    parked.fetch_sub(1, Ordering::AcqRel);
                }
            });
        if let Err(e) = spawned {
            log::warn!("no thread for requests waiting for a hold ({e}); they wait where they are");
        } else {
            *tx = Some(t.clone());
        }
        t
    }
}

impl super::EnvelopeFs {
    /// Enters a change that `changes` anything (see `park_while_held!`):
    /// now, with the reply given back, or parked (`None`) while a hold is
    /// taken, as the request `park` builds around the reply.
    pub(super) fn changing<R>(
        &self,
        changes: bool,
        reply: R,
        park: impl FnOnce(R) -> Parked,
    ) -> Option<(Changing<'_>, R)> {
        if !changes || self.opts.read_only {
            // Nothing to hold (a read-only mount refuses the change anyway).
            return Some((Changing::none(), reply));
        }
        self.gate.enter(reply, park)
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    #[test]
    fn a_change_is_parked_while_held_and_runs_once_released() {
        let gate = Gate::new();
        let ran = Arc::new(AtomicBool::new(false));
        let hold = gate.hold_lock();
        let held = hold.write();
        let r = ran.clone();
        let entered = gate.enter((), move |()| {
            Box::new(move || r.store(true, Ordering::SeqCst)) as Parked
        });
        assert!(entered.is_none(), "parked, not run on this thread");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!ran.load(Ordering::SeqCst), "not while held");
        drop(held);
        let t0 = Instant::now();
        while !ran.load(Ordering::SeqCst) {
            assert!(t0.elapsed() < Duration::from_secs(5), "ran once released");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Without a hold a change enters at once, and nested entries do not
        // take the lock again (a waiting hold would deadlock them).
        let (outer, ()) = gate.enter((), |()| unreachable!()).unwrap();
        let (inner, ()) = gate.enter((), |()| unreachable!()).unwrap();
        assert!(gate.hold.try_write().is_none());
        drop(inner);
        drop(outer);
        assert!(gate.hold.try_write().is_some());
    }
}
