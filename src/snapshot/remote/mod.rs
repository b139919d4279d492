//! Snapshots in object storage: `snapshot push|list|pull|delete|verify`.

pub mod store;
