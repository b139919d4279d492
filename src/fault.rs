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
