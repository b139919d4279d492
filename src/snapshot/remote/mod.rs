//! Snapshots in object storage: `snapshot push|list|pull|delete|verify`.

#[cfg(feature = "s3")]
pub mod s3;
pub mod store;
