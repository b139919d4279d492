//! Snapshots in object storage: `snapshot push|pull|list|verify|delete|gc`.
//! A repository (an S3 prefix or a local directory) holds content-addressed
//! chunks of a volume's backing tree and one encrypted manifest per snapshot;
//! docs/FORMAT.md ("Remote snapshots") describes the layout.

pub mod dir;
pub mod manifest;
pub mod pull;
pub mod push;
mod rate;
mod repository;
#[cfg(feature = "s3")]
pub mod s3;
pub mod signature;
pub mod store;
pub mod sweep;
mod tree;
pub mod verify;

use crate::kms::KmsError;
use store::{ObjectStore, StoreError, TransferOptions};

pub use super::CopyError;

/// A chunk is this long (the last piece of a file shorter).
pub const CHUNK_SIZE: u64 = 4 << 20;
/// A push re-checks its chunks at least this long after its lease landed;
/// a sweep issues deletes only within half of it after listing the leases.
pub const SWEEP_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);
/// The largest manifest read back.
pub const MANIFEST_MAX: u64 = 256 << 20;

pub const REPOSITORY_KEY: &str = "envelopefs-repository.json";
pub const CHUNKS: &str = "chunks/";
pub const MANIFESTS: &str = "manifests/";
pub const LEASES: &str = "leases/";

/// The key of the chunk whose SHA-256 is `hex`.
pub fn chunk_key(hex: &str) -> String {
    format!("{CHUNKS}{}/{hex}", hex.get(..2).unwrap_or("00"))
}

pub fn manifest_key(name: &str) -> String {
    format!("{MANIFESTS}{name}")
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The store did not do what was asked (the message names the object).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// An object that is missing or does not match what refers to it
    /// (hash, length, authentication, name, repository).
    #[error("{key}: {what}")]
    Damaged { key: String, what: String },
    /// `verify` found damaged objects (each named on standard error).
    #[error("{count} damaged or missing objects in {snapshot}")]
    VerifyFailed { count: usize, snapshot: String },
    /// Arguments that cannot be used (URL, name, a name already taken).
    #[error("{0}")]
    Usage(String),
    /// No snapshot of that name.
    #[error("{0}")]
    NotFound(String),
    /// The key service refused (a disabled key, no such key).
    #[error("{what}: {source}")]
    Key {
        what: String,
        #[source]
        source: KmsError,
    },
    #[error("{0}")]
    Copy(#[from] CopyError),
    /// Built without the store's support.
    #[error("{0}")]
    Unsupported(String),
    /// Local files of the command (staging trees).
    #[error("{0}")]
    Io(String),
}

impl RemoteError {
    pub fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::Io(format!("{what}: {e}"))
    }
}

/// `[A-Za-z0-9._-]{1,128}`, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), RemoteError> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RemoteError::Usage(format!(
            "{name:?} is not a snapshot name: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with ."
        )))
    }
}

/// The default name of a push: the UTC time, `YYYYMMDDTHHMMSSZ`.
pub fn default_name(unix: u64) -> String {
    crate::kms::audit::format_iso(unix).replace(['-', ':'], "")
}

/// `URL/NAME` split into the repository URL and the snapshot name.
pub fn split_snapshot_url(url: &str) -> Result<(String, String), RemoteError> {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((repo, name))
            if !repo.ends_with(':') && !repo.ends_with(":/") && !repo.ends_with("://") =>
        {
            check_name(name)?;
            Ok((repo.to_owned(), name.to_owned()))
        }
        _ => Err(RemoteError::Usage(format!(
            "{url}: a snapshot is REPOSITORY_URL/NAME (file:///PATH/NAME, s3://BUCKET/PREFIX/NAME)"
        ))),
    }
}

/// The repository at `url`: `file:///ABSOLUTE/PATH` or `s3://BUCKET[/PREFIX]`.
pub fn open(url: &str, opts: TransferOptions) -> Result<Box<dyn ObjectStore>, RemoteError> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(RemoteError::Usage(format!(
                "{url}: a file:// repository URL names an absolute path (file:///PATH)"
            )));
        }
        return Ok(Box::new(dir::DirStore::open(std::path::Path::new(path))?));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        return open_s3(rest, opts);
    }
    Err(RemoteError::Usage(format!(
        "{url}: a repository URL is file:///PATH or s3://BUCKET[/PREFIX]"
    )))
}

#[cfg(feature = "s3")]
fn open_s3(rest: &str, opts: TransferOptions) -> Result<Box<dyn ObjectStore>, RemoteError> {
    let rest = rest.trim_end_matches('/');
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(Box::new(s3::S3Store::open(bucket, prefix, opts)?))
}

#[cfg(not(feature = "s3"))]
fn open_s3(_rest: &str, _opts: TransferOptions) -> Result<Box<dyn ObjectStore>, RemoteError> {
    Err(RemoteError::Unsupported(
        "this envelopefs was built without S3 support (cargo feature `s3`)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(check_name("20261201T073311Z").is_ok());
        assert!(check_name("a.b_c-d").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(default_name(1_798_000_000), "20261223T042640Z");
        assert_eq!(
            split_snapshot_url("file:///r/s1").unwrap(),
            ("file:///r".to_owned(), "s1".to_owned())
        );
        assert_eq!(
            split_snapshot_url("s3://b/p/q/n").unwrap(),
            ("s3://b/p/q".to_owned(), "n".to_owned())
        );
        assert!(split_snapshot_url("s3://b").is_err());
        assert!(split_snapshot_url("file:///").is_err());
        assert_eq!(chunk_key("abcdef"), "chunks/ab/abcdef");
    }
}
