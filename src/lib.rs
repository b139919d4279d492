//! envelopefs: a transparent encrypted FUSE filesystem with AWS-KMS-style
//! envelope encryption (master key -> volume key -> per-file data key).

// Unit tests build fixtures with std's file creation; the program may not
// (clippy.toml: files are created through sys.rs).
#![cfg_attr(test, allow(clippy::disallowed_methods))]
// Only sys holds `unsafe` (and, by clippy.toml, the raw libc calls): every
// other module is safe Rust over its wrappers.
#![deny(unsafe_code)]

pub mod cli;
pub mod crypto;
pub mod error;
pub mod fault;
pub mod fs;
pub mod kms;
pub mod snapshot;
#[allow(unsafe_code)]
pub mod sys;
pub mod volume;
