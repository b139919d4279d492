//! Ctrl-C (SIGINT) and SIGTERM during a copy: the first stops the copy at
//! its next check, which removes the partial copy and exits 130 or 143; a
//! second one exits at once (the partial stays, and the next run removes
//! it: see `partial`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::SigId;

use super::CopyError;
use crate::error::exitcodes;

/// The signals caught while a copy runs.
pub struct Interrupt {
    hit: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    setters: Vec<SigId>,
}

impl Interrupt {
    /// Catch SIGINT and SIGTERM until dropped.
    pub fn catch() -> Result<Interrupt, CopyError> {
        let hit = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        let err = |e: std::io::Error| CopyError::Refused(format!("cannot catch signals: {e}"));
        // Registered first, so they run before `hit` is set: they end the
        // process only on a signal after the first.
        for (sig, code) in [
            (SIGINT, exitcodes::INTERRUPTED),
            (SIGTERM, exitcodes::TERMINATED),
        ] {
            signal_hook::flag::register_conditional_shutdown(sig, code, hit.clone())
                .map_err(err)?;
        }
        let mut setters = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            setters.push(
                signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
                    .map_err(err)?,
            );
            setters.push(signal_hook::flag::register(sig, hit.clone()).map_err(err)?);
        }
        Ok(Interrupt {
            hit,
            signal,
            setters,
        })
    }

    /// Err(Interrupted) once a signal came.
    pub fn check(&self) -> Result<(), CopyError> {
        if self.hit.load(Ordering::Relaxed) {
            Err(CopyError::Interrupted(
                self.signal.load(Ordering::Relaxed) as i32
            ))
        } else {
            Ok(())
        }
    }
}

impl Drop for Interrupt {
    /// signal-hook cannot give the default action back; with `hit` raised,
    /// the conditional shutdowns end the process on the next signal, as the
    /// default action would (with the shell's 128 + N code).
    fn drop(&mut self) {
        for id in self.setters.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        self.hit.store(true, Ordering::Relaxed);
    }
}
