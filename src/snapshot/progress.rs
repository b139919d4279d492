//! The progress bar of a copy (on stderr, only when the command line asked
//! for one: a terminal): bytes done of the total, the rate and indicatif's
//! own ETA estimate, and files done.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `[####>-----]  40% 20.00 MiB/50.00 MiB 180.00 MiB/s ETA 00:00:01 2/6 files`,
/// the bar as wide as the terminal leaves room for (one line, no wrapping);
/// the ETA as hh:mm:ss, so scripts and tests can read it.
const TEMPLATE: &str = "[{wide_bar}] {percent:>3}% {binary_bytes}/{binary_total_bytes} \
                        {binary_bytes_per_sec} ETA {eta_precise} {msg}";

pub struct Progress {
    bar: ProgressBar,
    files: u64,
}

impl Progress {
    /// A bar over `total` bytes in `files` files, drawn only if `shown`
    /// (and stderr is a terminal: indicatif checks again).
    pub fn new(shown: bool, total: u64, files: u64) -> Progress {
        let target = if shown {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("#>-"));
        }
        let p = Progress { bar, files };
        p.update(0, 0);
        p
    }

    /// `done` bytes (never past the total: a file may grow while copied).
    pub fn update(&self, done: u64, files_done: u64) {
        self.bar
            .set_message(format!("{files_done}/{} files", self.files));
        self.bar
            .set_position(done.min(self.bar.length().unwrap_or(done)));
    }

    /// Drawn at its final state and left on the screen.
    pub fn finish(&self, done: u64) {
        self.update(done, self.files);
        self.bar.abandon();
    }

    /// Taken off the screen (the error line follows on its own).
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}
