//! The filesystem as a system component: mounted by mount(8) and fstab,
//! run under systemd, logging to syslog, passphrases from programs, used by
//! unprivileged users, and serving ACLs and overlayfs (issue 14).

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

#[path = "../common/mod.rs"]
mod common;

mod acl;
mod daemon;
mod dir_cache;
mod lookup;
mod mount_helper;
mod passphrase;
mod readme;
mod review17;
mod semantics;
mod unprivileged;
mod writeback;
