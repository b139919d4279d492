//! The key service through the CLI: AWS KMS's operations, shapes and
//! errors, asymmetric keys against openssl, imported key material, and
//! volumes across key changes.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

#[path = "../common/mod.rs"]
mod common;

mod support;

mod args;
mod asym;
mod asym_states;
mod audit;
mod basics;
mod bugs;
mod ops;
mod policies;
mod readme;
mod review;
