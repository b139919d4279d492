//! Typed errors, their errno inside the mount and their exit code outside it:
//! one table each, in one place.

use std::path::Path;

use crate::crypto::names::NameError;
use crate::kms::KmsError;
use crate::snapshot::CopyError;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0} is not an envelopefs volume (no envelopefs.conf)")]
    NotAVolume(String),
    #[error("bad volume config: {0}")]
    BadConfig(String),
    #[error("{0}")]
    BadOption(String),
    #[error("{0}")]
    Kms(#[from] KmsError),
    #[error("the volume's master key {0} cannot unwrap its volume key: {1}")]
    MasterKey(String, KmsError),
    #[error("the volume key does not unwrap: {0}")]
    VolumeKey(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the volume at {0} is already mounted read-write (lock held)")]
    Locked(String),
    #[error("mount point {0}: {1}")]
    MountPoint(String, String),
    #[error("mount failed: {0}")]
    Mount(String),
}

impl VolumeError {
    pub fn io(p: &Path, e: std::io::Error) -> VolumeError {
        VolumeError::Io {
            path: p.display().to_string(),
            source: e,
        }
    }
}

/// Errors of file content operations inside a mount.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{what} (backing file {path})")]
    Corrupt { what: String, path: String },
}

impl ContentError {
    pub fn errno(&self) -> i32 {
        match self {
            ContentError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            ContentError::Corrupt { .. } => libc::EIO,
        }
    }
}

/// The errno of a name the volume cannot take (one reserved for its own
/// files). Hidden, it does not exist for a request that looks it up
/// (ENOENT); a request that would make it gets EINVAL, as the kernel's
/// filesystems answer for a name they cannot store (vfat, a strict casefold
/// ext4).
pub fn name_errno(err: &NameError, creating: bool) -> i32 {
    match err {
        NameError::Reserved if creating => libc::EINVAL,
        NameError::Reserved => libc::ENOENT,
    }
}

/// The exit codes of the CLI, one per class of failure.
pub mod exitcodes {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_A_VOLUME: i32 = 10;
    pub const BAD_CONFIG: i32 = 11;
    pub const WRONG_PASSPHRASE: i32 = 12;
    pub const NO_KEYSTORE: i32 = 13;
    pub const KEYSTORE_CORRUPT: i32 = 14;
    pub const KEY_STATE: i32 = 15;
    pub const NOT_FOUND: i32 = 16;
    pub const INVALID_CIPHERTEXT: i32 = 17;
    pub const VALIDATION: i32 = 18;
    pub const MOUNT_POINT: i32 = 20;
    pub const LOCKED: i32 = 21;
    pub const MOUNT_FAILED: i32 = 22;
    pub const IO: i32 = 23;
    pub const PASSPHRASE: i32 = 24;
    pub const LIMIT_EXCEEDED: i32 = 25;
    pub const UNSUPPORTED: i32 = 26;
    pub const IMPORT: i32 = 27;
    pub const KMS_UNAVAILABLE: i32 = 28;
    pub const FSCK_PROBLEMS: i32 = 30;
    /// A copy's destination lies inside the volume, its mount or its source.
    pub const DESTINATION_INSIDE: i32 = 32;
    /// The mount daemon dropped a snapshot's hold before the copy ended.
    pub const HOLD_LOST: i32 = 33;
    /// Stopped by SIGINT (Ctrl-C): 128 + 2, as shells report it.
    pub const INTERRUPTED: i32 = 130;
    /// The reader of standard output went away (`| head`): 128 + SIGPIPE,
    /// the status a tool killed by SIGPIPE has, without the noise.
    pub const CLOSED_PIPE: i32 = 141;
    /// Stopped by SIGTERM: 128 + 15.
    pub const TERMINATED: i32 = 143;
}

pub fn kms_exit_code(e: &KmsError) -> i32 {
    use exitcodes::*;
    match e {
        KmsError::NotFound(_) | KmsError::AccessDenied(_) => NOT_FOUND,
        KmsError::Disabled(_) | KmsError::InvalidState(_) => KEY_STATE,
        KmsError::InvalidCiphertext | KmsError::IncorrectKey(_) => INVALID_CIPHERTEXT,
        KmsError::Validation(_) | KmsError::AlreadyExists(_) => VALIDATION,
        KmsError::LimitExceeded(_) => LIMIT_EXCEEDED,
        KmsError::UnsupportedOperation(_) => UNSUPPORTED,
        KmsError::IncorrectKeyMaterial(_)
        | KmsError::InvalidImportToken(_)
        | KmsError::ExpiredImportToken(_) => IMPORT,
        KmsError::WrongPassphrase(_) => WRONG_PASSPHRASE,
        KmsError::NoStore(_) => NO_KEYSTORE,
        KmsError::StoreCorrupt { .. } => KEYSTORE_CORRUPT,
        KmsError::Passphrase(_) => PASSPHRASE,
        KmsError::Unavailable(_) => KMS_UNAVAILABLE,
        KmsError::Io { .. } => IO,
    }
}

pub fn volume_exit_code(e: &VolumeError) -> i32 {
    use exitcodes::*;
    match e {
        VolumeError::NotAVolume(_) => NOT_A_VOLUME,
        VolumeError::BadConfig(_) | VolumeError::VolumeKey(_) => BAD_CONFIG,
        VolumeError::BadOption(_) => USAGE,
        VolumeError::Kms(k) | VolumeError::MasterKey(_, k) => kms_exit_code(k),
        VolumeError::Io { .. } => IO,
        VolumeError::Locked(_) => LOCKED,
        VolumeError::MountPoint(..) => MOUNT_POINT,
        VolumeError::Mount(_) => MOUNT_FAILED,
    }
}

pub fn copy_exit_code(e: &CopyError) -> i32 {
    use exitcodes::*;
    match e {
        CopyError::Volume(v) => volume_exit_code(v),
        CopyError::Refused(_) => USAGE,
        CopyError::Entry(_) => IO,
        CopyError::DestinationInside(_) => DESTINATION_INSIDE,
        CopyError::HoldLost(_) => HOLD_LOST,
        CopyError::Interrupted(libc::SIGTERM) => TERMINATED,
        CopyError::Interrupted(_) => INTERRUPTED,
    }
}
