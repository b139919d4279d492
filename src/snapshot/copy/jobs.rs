//! The file jobs of a copy, run on every core with a progress bar, and the
//! carried-over data of a file, copied in pieces that a signal can stop.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{cerr, Copier};
use crate::snapshot::progress::Progress;
use crate::snapshot::CopyError;
use crate::sys;

/// Carried-over data is copied in pieces of this size, checking for a signal
/// between pieces (a file of gigabytes is one copy_file_range otherwise).
const PIECE: u64 = 64 << 20;

impl Copier<'_> {
    pub(super) fn run_jobs(&self) -> Result<(), CopyError> {
        let jobs = std::mem::take(&mut *self.jobs.lock());
        let next = AtomicU64::new(0);
        let first_err: Mutex<Option<CopyError>> = Mutex::new(None);
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(8);
        let bar = Progress::new(
            self.progress,
            self.total_work.load(Ordering::Relaxed),
            jobs.len() as u64,
        );
        let update = || {
            bar.update(
                self.done_bytes.load(Ordering::Relaxed),
                self.files_done.load(Ordering::Relaxed),
            )
        };
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    sc.spawn(|| loop {
                        if self.failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(job) = jobs.get(i) else { return };
                        if let Err(e) = self.check_cancel().and_then(|()| self.copy_file(job)) {
                            self.failed.store(true, Ordering::Relaxed);
                            first_err.lock().get_or_insert(e);
                            return;
                        }
                        self.files_done.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                update();
            }
        });
        match first_err.into_inner() {
            Some(e) => {
                bar.clear();
                Err(e)
            }
            None => {
                bar.finish(self.done_bytes.load(Ordering::Relaxed));
                Ok(())
            }
        }
    }

    /// Copy `len` bytes of carried-over data in pieces, checking for a
    /// signal between them; returns the bytes counted as progress.
    pub(super) fn copy_data(
        &self,
        (sfd, soff): (BorrowedFd<'_>, u64),
        (dfd, doff): (BorrowedFd<'_>, u64),
        len: u64,
        p: &Path,
    ) -> Result<u64, CopyError> {
        let mut done = 0;
        while done < len {
            self.check_cancel()?;
            let n = (len - done).min(PIECE);
            sys::copy_range(sfd, soff + done, dfd, doff + done, n).map_err(|e| cerr(p, e))?;
            self.done_bytes.fetch_add(n, Ordering::Relaxed);
            done += n;
        }
        Ok(done)
    }
}
