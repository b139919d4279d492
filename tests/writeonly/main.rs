//! Write-only volumes (format_version 2) on real mounts: a write-only mount
//! adds to a volume and cannot read anything written before it, by any
//! path, nor hold a key that would; a full mount reads everything back at
//! one key-service call per session; a swapped recipient in the config is
//! refused; tampering gives EIO for exactly what was tampered with.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

#[path = "../common/mod.rs"]
mod common;

mod support;
mod tree;

mod config_swap;
mod fsck;
mod kms_calls;
mod memory;
mod readme;
mod refusals;
mod roundtrip;
mod sealed;
mod snapshot;
mod tamper;
