//! Attacks from the backing directory on a mount whose daemon runs as root:
//! each module performs one class of attack on a real mount and asserts the
//! safe outcome (docs/FORMAT.md, "Threat model").

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

#[path = "../common/mod.rs"]
mod common;

mod core_dump;
mod creates;
mod devices;
mod header_cache;
mod header_xattr;
mod holds;
mod keystore;
mod killpriv;
mod logs;
mod special_files;
