//! The object store a remote snapshot lives in: S3 or an S3-compatible
//! service (`s3://BUCKET/PREFIX`, feature `s3`), or a local directory
//! (`file:///PATH`) with the same semantics, for backups to a mounted disk
//! and for tests. Keys are relative to the repository's prefix and use `/`.
//!
//! The interface is synchronous: an implementation that talks over the
//! network keeps its own runtime, retries transient failures with backoff
//! and bounds every call in time.

use std::fmt;

/// What a failed store call means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The credentials are refused, or the bucket's policy says no.
    AccessDenied,
    /// The bucket (or the directory) does not exist.
    NoSuchBucket,
    /// Throttling or server errors that outlasted the retries, or no answer.
    Unavailable,
    /// Anything else the store answered (the message says what).
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    /// One line naming the operation, the object key and the store's answer.
    pub message: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }
}

/// How a put treats an object that already exists under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it.
    Overwrite,
    /// Leave it and answer `PutOutcome::AlreadyExists` (S3 `If-None-Match: *`,
    /// a 412 or a 409 conflict that, re-checked, found the object).
    IfAbsent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    AlreadyExists,
}

/// An object as a listing or a head request reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key relative to the repository prefix.
    pub key: String,
    pub size: u64,
    /// Last modification on the store's clock, seconds since the epoch.
    pub modified_unix: i64,
}

/// A repository of remote snapshots: one bucket prefix or one directory.
pub trait ObjectStore: Send + Sync {
    /// The repository's URL, for messages (`s3://bucket/prefix`).
    fn url(&self) -> String;

    /// Store `body` under `key`. Bodies larger than the implementation's part
    /// size go up as a multipart upload (S3) or through a temporary file and
    /// a rename (directory); either way a reader never sees half an object.
    fn put(&self, key: &str, body: &[u8], mode: PutMode) -> Result<PutOutcome, StoreError>;

    /// The whole object, or `None` if there is none. An object larger than
    /// `max_len` is an error naming the key (never read into memory).
    fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// The object's size and time, or `None` if there is none.
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;

    /// Every object whose key starts with `prefix` (all pages), sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// Remove the object; removing an absent object is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// The store's clock now, seconds since the epoch (S3: the `Date` of a
    /// response, or the time of an object just written), so that ages
    /// compare against `ObjectInfo::modified_unix` without trusting the
    /// local clock.
    fn now_unix(&self) -> Result<i64, StoreError>;
}

impl fmt::Debug for dyn ObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectStore({})", self.url())
    }
}

/// How a network store moves data: parts of a multipart upload in flight at
/// once, and the part size (objects larger than one part go up in parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    pub jobs: usize,
    pub part_size: u64,
}

impl Default for TransferOptions {
    fn default() -> TransferOptions {
        TransferOptions {
            jobs: 4,
            part_size: 8 << 20,
        }
    }
}
