//! `--idle`: the daemon unmounts itself after no use for that long. Use is
//! any request reaching the filesystem, or any handle left open
//! (src/fs/idle.rs counts both).
//!
//! It unmounts by path, as `envelopefs umount` does, not through the
//! session's unmount callable: that forgets the mount after one failed
//! attempt, so a busy mount (a shell's working directory inside) would leave
//! SIGTERM unable to unmount. Here a busy mount stays mounted, and the
//! watcher tries again after another idle period.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mount::mounts;
use crate::fs::idle;

/// The device ("major:minor") of the top mount at `point`.
fn device_at(point: &Path) -> Option<String> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.point == point)
        .map(|m| m.dev)
}

/// Start the watcher (nothing without `--idle`). Call once the mount is
/// live, so that its device is known: the watcher unmounts only that
/// mount, never one mounted later at the same path.
pub fn watch(limit: Option<Duration>, mountpoint: &Path) {
    let Some(limit) = limit else {
        return;
    };
    let Some(dev) = device_at(mountpoint) else {
        log::warn!("--idle: the mount is not in mountinfo; idle unmount is off");
        return;
    };
    let point = mountpoint.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("idle".into())
        .spawn(move || run(limit, point, dev));
    if let Err(e) = spawned {
        log::warn!("--idle: no watcher thread ({e}); idle unmount is off");
    }
}

fn run(limit: Duration, point: PathBuf, dev: String) {
    let tick = (limit / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut last = idle::sample().0;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(tick);
        let (requests, open) = idle::sample();
        if requests != last || open > 0 {
            last = requests;
            since = Instant::now();
            continue;
        }
        if since.elapsed() < limit {
            continue;
        }
        if device_at(&point).as_deref() != Some(dev.as_str()) {
            // Unmounted (or covered) by someone else: the session ends by itself.
            return;
        }
        match super::umount::unmount(&point, false) {
            Ok(()) => {
                log::info!(
                    "unmounted {} after {} s idle",
                    point.display(),
                    limit.as_secs()
                );
                return;
            }
            Err(e) => {
                log::info!(
                    "idle unmount of {} failed ({e}); trying again later",
                    point.display()
                );
                since = Instant::now();
            }
        }
    }
}
