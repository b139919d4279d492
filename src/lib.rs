//! envelopefs: a transparent encrypted FUSE filesystem with AWS-KMS-style
//! envelope encryption (master key -> volume key -> per-file data key).

pub mod cli;
pub mod crypto;
pub mod error;
pub mod fs;
pub mod kms;
pub mod snapshot;
pub mod sys;
pub mod volume;
