//! envelopefs: a transparent encrypted FUSE filesystem with AWS-KMS-style
//! envelope encryption (master key -> volume key -> per-file data key).

// Unit tests build fixtures with std's file creation; the program may not
// (clippy.toml: files are created through sys.rs).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod cli;
pub mod crypto;
pub mod error;
pub mod fault;
pub mod fs;
pub mod kms;
pub mod snapshot;
pub mod sys;
pub mod volume;
