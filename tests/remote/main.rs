//! Remote snapshots (`snapshot push|pull|list|verify|delete|gc`) on
//! `file://` repositories and real mounts. Every test goes through the
//! [`fixture::Repo`] fixture, whose `url()` is all the commands see, so the
//! same tests can run against an S3 server.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

#[path = "../common/mod.rs"]
mod common;

mod fixture;

mod hostile;
mod incremental;
mod resume;
mod roundtrip;
mod signed;
mod sweep;
mod tamper;
