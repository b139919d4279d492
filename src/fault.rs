//! Planted faults: bugs a test must catch, switched on by name for
//! `scripts/fault-check.sh`. Built only with the `fault-check` feature; in every
//! other build `planted` is a constant `false` the optimiser removes.

/// True when the fault `name` is planted: `ENVELOPEFS_FAULT` holds it, among
/// others separated by commas. (`volume/content/planted.rs` adds a per-thread
/// switch for unit tests that plant a fault themselves.)
#[cfg(feature = "fault-check")]
pub fn planted(name: &str) -> bool {
    std::env::var("ENVELOPEFS_FAULT").is_ok_and(|v| v.split(',').any(|f| f == name))
}

/// Without the `fault-check` feature no fault is ever planted.
#[cfg(not(feature = "fault-check"))]
#[inline(always)]
pub fn planted(_name: &str) -> bool {
    false
}

/// A test's pause point: when the environment variable `var` names a PATH,
/// create `PATH.reached` and wait (at most 60 s) until PATH is removed, so
/// a test can act while the run stands at this point.
#[cfg(feature = "fault-check")]
pub fn pause_point(var: &str) {
    let Some(path) = std::env::var_os(var).map(std::path::PathBuf::from) else {
        return;
    };
    let mut reached = path.clone().into_os_string();
    reached.push(".reached");
    if let Ok((dir, name)) = crate::sys::open_parent(std::path::Path::new(&reached)) {
        use std::os::fd::AsFd;
        let _ = crate::sys::create_new(dir.as_fd(), &name, libc::O_WRONLY, 0o600);
    }
    let t0 = std::time::Instant::now();
    while path.exists() && t0.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Without the `fault-check` feature there is no pause point.
#[cfg(not(feature = "fault-check"))]
#[inline(always)]
pub fn pause_point(_var: &str) {}
