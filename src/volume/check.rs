//! What `fsck` asks of a volume without knowing the layout: a backing
//! file's size, and for a write-only volume (format 2) checked with the
//! recipient's public key alone, which write session each sealed object
//! names (its content cannot be authenticated without the private key).

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use super::content::FileContent;
use super::Volume;
use crate::crypto::recipient::SessionId;
use crate::error::VolumeError;

/// A session-sealed object of a format 2 volume, as stored.
#[derive(Debug, Clone, Copy)]
pub enum SealedObject<'a> {
    /// An entry's side file (its sealed name).
    SideFile(&'a [u8]),
    /// A backing symlink's target.
    SymlinkTarget(&'a [u8]),
    /// A directory's backing xattr value.
    DirXattr(&'a [u8]),
}

/// One write session's file and what is wrong with it, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub file_name: String,
    pub problem: Option<String>,
}

impl Volume {
    /// For a backing file of `cipher_size` bytes that ends mid-block (a torn
    /// write), the plaintext size of its intact part; `None` when the size
    /// is one a file can have.
    pub fn torn_tail(&self, cipher_size: u64) -> Option<u64> {
        self.layout()
            .plain_size(cipher_size)
            .err()
            .map(|e| e.plain_floor)
    }

    /// Format 2: every write session's file in the root, with what is wrong
    /// with it (does not parse against the recipient's public key, or, with
    /// the private key, does not unseal). Empty for format 1.
    pub fn check_sessions(&self) -> Result<Vec<SessionStatus>, VolumeError> {
        let Some(s) = self.sessions() else {
            return Ok(Vec::new());
        };
        Ok(s.check_all()?
            .into_iter()
            .map(|(file_name, problem)| SessionStatus { file_name, problem })
            .collect())
    }

    /// Format 2: the file name of the write session `obj` says it was sealed
    /// under (not whether it opens: that needs the session's key).
    pub fn sealed_session(&self, obj: SealedObject<'_>) -> Result<String, String> {
        let blob = match obj {
            SealedObject::SideFile(b) | SealedObject::DirXattr(b) => b.to_vec(),
            SealedObject::SymlinkTarget(t) => B64URL
                .decode(t)
                .map_err(|_| "the symlink target is not base64url".to_owned())?,
        };
        SessionId::of_blob(&blob)
            .map(|id| id.file_name())
            .ok_or_else(|| "too short to name a write session".to_owned())
    }

    /// Format 2: the file name of the write session a backing file's header
    /// names; None for an empty file without a header.
    pub fn header_session(&self, fd: BorrowedFd<'_>) -> Result<Option<String>, String> {
        let h = FileContent::header_of(self, fd).map_err(|e| e.to_string())?;
        match h {
            None => Ok(None),
            Some(h) => h
                .session()
                .map(|id| Some(id.file_name()))
                .ok_or_else(|| "not a format 2 header".to_owned()),
        }
    }

    /// Format 2: whether `backing` has the form of an entry's lookup name
    /// (base64url of a 32-byte keyed hash).
    pub fn is_lookup_name(&self, backing: &OsStr) -> bool {
        let b = backing.as_bytes();
        b.len() == 43 && B64URL.decode(b).is_ok_and(|raw| raw.len() == 32)
    }
}
