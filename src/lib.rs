//! envelopefs: a transparent encrypted FUSE filesystem with AWS-KMS-style
//! envelope encryption (master key -> volume key -> per-file data key).

// Unit tests build fixtures with std's file creation; the program may not
// (clippy.toml: files are created through sys.rs).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
// Only sys holds `unsafe` (and, by clippy.toml, the raw libc calls): every
// other module is safe Rust over its wrappers. `forbid` on each module, not
// `deny` on the crate: an `#[allow(unsafe_code)]` inside one is an error.
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod cli;
#[forbid(unsafe_code)]
pub mod crypto;
#[forbid(unsafe_code)]
pub mod error;
#[forbid(unsafe_code)]
pub mod fault;
#[forbid(unsafe_code)]
pub mod fs;
#[forbid(unsafe_code)]
pub mod kms;
#[forbid(unsafe_code)]
pub mod snapshot;
#[allow(unsafe_code)]
pub mod sys;
#[forbid(unsafe_code)]
pub mod volume;
