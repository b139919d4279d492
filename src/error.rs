//! Typed errors, their errno inside the mount and their exit code outside it:
//! one table each, in one place.

use std::path::Path;

use crate::crypto::names::NameError;
use crate::kms::KmsError;
use crate::snapshot::remote::store::StoreErrorKind;
use crate::snapshot::remote::RemoteError;
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
    /// An entry of another write session, on a write-only mount.
    #[error("{0}")]
    WriteOnly(String),
    /// A value read from the volume that does not authenticate or parse.
    #[error("{0}")]
    Corrupt(String),
    /// An operation that does not support this volume's format.
    #[error("{0}")]
    Unsupported(String),
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
    /// A file of another write session, on a write-only mount.
    #[error("written by another session: a write-only mount cannot read it (backing file {path})")]
    WriteOnly { path: String },
}

impl ContentError {
    pub fn errno(&self) -> i32 {
        match self {
            ContentError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            ContentError::Corrupt { .. } => libc::EIO,
            ContentError::WriteOnly { .. } => libc::EACCES,
        }
    }
}

/// The errno of a volume error inside a mount: EACCES for another write
/// session's entry on a write-only mount (the mount may not read it),
/// the I/O error's own, EIO for anything that does not authenticate.
pub fn volume_errno(e: &VolumeError) -> i32 {
    match e {
        VolumeError::WriteOnly(_) => libc::EACCES,
        VolumeError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        VolumeError::Unsupported(_) => libc::EOPNOTSUPP,
        _ => libc::EIO,
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
    /// A key policy or grant refused the caller (AccessDeniedException).
    pub const ACCESS_DENIED: i32 = 19;
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
    /// The snapshot repository's store did not answer (network, throttling
    /// or server errors that outlasted the retries).
    pub const STORE_UNAVAILABLE: i32 = 34;
    /// The store refused: credentials or policy, or no such bucket/directory.
    pub const STORE_REFUSED: i32 = 35;
    /// An object of a remote snapshot is missing, or does not match what
    /// refers to it (tampered, damaged, swapped, from another repository).
    pub const REMOTE_DAMAGED: i32 = 36;
    /// Stopped by SIGINT (Ctrl-C): 128 + 2, as shells report it.
    pub const INTERRUPTED: i32 = 130;
    /// The reader of standard output went away (`| head`): 128 + SIGPIPE,
    /// the status a tool killed by SIGPIPE has, without the noise.
    pub const CLOSED_PIPE: i32 = 141;
    /// Stopped by SIGTERM: 128 + 15.
    pub const TERMINATED: i32 = 143;
}

/// A command's failure: what the CLI prints, as one line after
/// `envelopefs: `, and the exit code [`Failure::exit_code`] maps it to.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Arguments or options that cannot be used together or at all.
    #[error("{0}")]
    Usage(String),
    /// The mount point (or the mount to unmount) is missing, busy or unfit.
    #[error("{0}")]
    MountPoint(String),
    /// The kernel refused the mount, or it did not become ready.
    #[error("{0}")]
    MountFailed(String),
    /// The cipher directory named cannot be reached.
    #[error("{0}")]
    NotAVolume(String),
    #[error("unknown key provider {provider} in {dir}")]
    UnknownKeyProvider { provider: String, dir: String },
    /// An argument that should be base64 (a blob, a public key) is not.
    #[error("InvalidCiphertextException: {0} is not base64")]
    NotBase64(String),
    /// I/O of the command itself (the volume's own is [`VolumeError::Io`]).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{problems} problems found in {dir}")]
    FsckProblems { problems: usize, dir: String },
    /// `kms audit --verify` found the log's hash chain or anchor broken.
    #[error("the audit log is not intact: {0}")]
    AuditTampered(String),
    /// The process itself failed (a pipe, a fork, the session's loop).
    #[error("{0}")]
    Process(String),
    /// A failure the mount daemon reported to the command that started it,
    /// with the exit code it mapped it to there.
    #[error("{msg}")]
    Relayed { code: i32, msg: String },
    #[error("{0}")]
    Volume(#[from] VolumeError),
    #[error("{0}")]
    Kms(#[from] KmsError),
    #[error("{0}")]
    Copy(#[from] CopyError),
    #[error("{0}")]
    Remote(#[from] RemoteError),
    /// The reader of standard output went away (`| head`): nothing is left
    /// to say.
    #[error("the reader of standard output went away")]
    ClosedPipe,
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        use exitcodes::*;
        match self {
            Failure::Usage(_) => USAGE,
            Failure::MountPoint(_) => MOUNT_POINT,
            Failure::MountFailed(_) => MOUNT_FAILED,
            Failure::NotAVolume(_) => NOT_A_VOLUME,
            Failure::UnknownKeyProvider { .. } => BAD_CONFIG,
            Failure::NotBase64(_) => INVALID_CIPHERTEXT,
            Failure::Io { .. } => IO,
            Failure::FsckProblems { .. } | Failure::AuditTampered(_) => FSCK_PROBLEMS,
            Failure::Process(_) => OTHER,
            Failure::Relayed { code, .. } => *code,
            Failure::Volume(e) => volume_exit_code(e),
            Failure::Kms(e) => kms_exit_code(e),
            Failure::Copy(e) => copy_exit_code(e),
            Failure::Remote(e) => remote_exit_code(e),
            Failure::ClosedPipe => CLOSED_PIPE,
        }
    }

    /// A failed write of `what` to standard output.
    pub fn stdout(what: &str, source: std::io::Error) -> Failure {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::ClosedPipe
        } else {
            Failure::Io {
                what: what.to_owned(),
                source,
            }
        }
    }

    /// Says the failure on standard error, as one line (nothing for a
    /// closed pipe), and gives the exit code.
    pub fn tell(&self) -> i32 {
        if !matches!(self, Failure::ClosedPipe) {
            eprintln!("envelopefs: {self}");
        }
        self.exit_code()
    }

    /// How the mount daemon reports its failure to the waiting command on
    /// the ready pipe: `CODE message`.
    pub fn report(&self) -> String {
        format!("{} {self}", self.exit_code())
    }

    /// The failure a daemon's [`Failure::report`] tells of.
    pub fn from_report(report: &str) -> Failure {
        match report.split_once(' ') {
            // Only a code a failure can have: not success, nor one the
            // exit status would truncate.
            Some((code, msg)) => match code.parse::<u8>() {
                Ok(_) if crate::fault::planted("kms-relayed-exit-code") => {
                    Failure::MountFailed(msg.to_owned())
                }
                Ok(code) if code != 0 => Failure::Relayed {
                    code: i32::from(code),
                    msg: msg.to_owned(),
                },
                _ => Failure::MountFailed(msg.to_owned()),
            },
            None => Failure::MountFailed("the mount daemon exited".into()),
        }
    }
}

/// The exit code of a command line clap rejected, or of `--help`/`--version`.
pub fn clap_exit_code(e: &clap::Error) -> i32 {
    if e.use_stderr() {
        exitcodes::USAGE
    } else {
        exitcodes::OK
    }
}

pub fn kms_exit_code(e: &KmsError) -> i32 {
    use exitcodes::*;
    match e {
        KmsError::NotFound(_) => NOT_FOUND,
        KmsError::AccessDenied(_) => ACCESS_DENIED,
        KmsError::Disabled(_) | KmsError::InvalidState(_) => KEY_STATE,
        KmsError::InvalidCiphertext | KmsError::IncorrectKey(_) | KmsError::InvalidSignature => {
            INVALID_CIPHERTEXT
        }
        KmsError::Validation(_)
        | KmsError::AlreadyExists(_)
        | KmsError::InvalidAliasName(_)
        | KmsError::Tag(_)
        | KmsError::InvalidMarker(_)
        | KmsError::MalformedPolicyDocument(_)
        | KmsError::InvalidGrantToken(_)
        | KmsError::InvalidGrantId(_)
        | KmsError::InvalidArn(_) => VALIDATION,
        KmsError::LimitExceeded(_) => LIMIT_EXCEEDED,
        KmsError::UnsupportedOperation(_) | KmsError::InvalidKeyUsage(_) => UNSUPPORTED,
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
        VolumeError::WriteOnly(_) | VolumeError::Unsupported(_) => UNSUPPORTED,
        VolumeError::Corrupt(_) => BAD_CONFIG,
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

pub fn remote_exit_code(e: &RemoteError) -> i32 {
    use exitcodes::*;
    match e {
        RemoteError::Store(s) => match s.kind {
            StoreErrorKind::Unavailable => STORE_UNAVAILABLE,
            StoreErrorKind::AccessDenied | StoreErrorKind::NoSuchBucket => STORE_REFUSED,
            StoreErrorKind::Other => IO,
        },
        RemoteError::Damaged { .. } | RemoteError::VerifyFailed { .. } => REMOTE_DAMAGED,
        RemoteError::Usage(_) => USAGE,
        RemoteError::NotFound(_) => NOT_FOUND,
        RemoteError::Key { source, .. } => kms_exit_code(source),
        RemoteError::Copy(c) => copy_exit_code(c),
        RemoteError::Unsupported(_) => UNSUPPORTED,
        RemoteError::Io(_) => IO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::remote::store::StoreError;

    #[test]
    fn each_failure_has_its_class_exit_code_and_line() {
        let cases: Vec<(Failure, i32, &str)> = vec![
            (Failure::Usage("bad flag".into()), 2, "bad flag"),
            (Failure::MountPoint("busy".into()), 20, "busy"),
            (Failure::MountFailed("no fuse".into()), 22, "no fuse"),
            (Failure::NotAVolume("/x: gone".into()), 10, "/x: gone"),
            (
                Failure::UnknownKeyProvider {
                    provider: "vault".into(),
                    dir: "/v".into(),
                },
                11,
                "unknown key provider vault in /v",
            ),
            (
                Failure::NotBase64("the blob".into()),
                17,
                "InvalidCiphertextException: the blob is not base64",
            ),
            (
                Failure::Io {
                    what: "/m".into(),
                    source: std::io::Error::from_raw_os_error(libc::EACCES),
                },
                23,
                "/m: Permission denied (os error 13)",
            ),
            (
                Failure::FsckProblems {
                    problems: 3,
                    dir: "/v".into(),
                },
                30,
                "3 problems found in /v",
            ),
            (Failure::Process("fork failed".into()), 1, "fork failed"),
            (
                Failure::Kms(KmsError::NoStore("/ks".into())),
                13,
                "no key store at /ks (create one with `envelopefs kms create-key` or `envelopefs init`)",
            ),
            (
                Failure::Volume(VolumeError::Locked("/v".into())),
                21,
                "the volume at /v is already mounted read-write (lock held)",
            ),
            (
                Failure::Copy(CopyError::HoldLost("hold gone".into())),
                33,
                "hold gone",
            ),
            (
                Failure::Remote(RemoteError::Store(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "get chunks/ab/abc in s3://b: no answer",
                ))),
                34,
                "get chunks/ab/abc in s3://b: no answer",
            ),
            (
                Failure::Remote(RemoteError::Store(StoreError::new(
                    StoreErrorKind::AccessDenied,
                    "list manifests/ in s3://b: AccessDenied",
                ))),
                35,
                "list manifests/ in s3://b: AccessDenied",
            ),
            (
                Failure::Remote(RemoteError::Damaged {
                    key: "chunks/ab/abc".into(),
                    what: "missing from the repository".into(),
                }),
                36,
                "chunks/ab/abc: missing from the repository",
            ),
            (
                Failure::Remote(RemoteError::VerifyFailed {
                    count: 2,
                    snapshot: "file:///r/s1".into(),
                }),
                36,
                "2 damaged or missing objects in file:///r/s1",
            ),
            (
                Failure::stdout("the result", std::io::ErrorKind::BrokenPipe.into()),
                141,
                "the reader of standard output went away",
            ),
            (
                Failure::stdout("the result", std::io::Error::from_raw_os_error(libc::ENOSPC)),
                23,
                "the result: No space left on device (os error 28)",
            ),
        ];
        for (f, code, line) in cases {
            assert_eq!((f.exit_code(), f.to_string().as_str()), (code, line));
        }
    }

    #[test]
    fn a_daemon_report_comes_back_as_the_same_failure() {
        let f = Failure::Kms(KmsError::WrongPassphrase("/ks".into()));
        let back = Failure::from_report(&f.report());
        assert_eq!((back.exit_code(), back.to_string()), (12, f.to_string()));
        let odd = Failure::from_report("x the daemon said this");
        assert_eq!(
            (odd.exit_code(), odd.to_string()),
            (22, "the daemon said this".into())
        );
        // A code no failure has (success, out of range, negative) would
        // make the waiting command exit as if mounted, or with another code.
        for report in ["0 said zero", "256 too big", "-1 negative", "+22 signed"] {
            let odd = Failure::from_report(report);
            let msg = report.split_once(' ').unwrap().1;
            assert_eq!(
                (odd.exit_code(), odd.to_string()),
                (22, msg.into()),
                "{report}"
            );
        }
        // A message of several lines comes back whole.
        let two = Failure::from_report("23 first\nsecond");
        assert_eq!(
            (two.exit_code(), two.to_string()),
            (23, "first\nsecond".into())
        );
        let mute = Failure::from_report("");
        assert_eq!(
            (mute.exit_code(), mute.to_string()),
            (22, "the mount daemon exited".into())
        );
    }
}
