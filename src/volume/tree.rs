//! Directory-level helpers of a volume: name contexts, listings with
//! decrypted names, long-name side files (format 2: every entry's sealed
//! name). Shared by the FUSE layer, snapshot copies and fsck; all work
//! relative to directory descriptors.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::Volume;
use crate::crypto::names::{
    side_matches, BackingName, DirContext, EntryKind, LONGNAME_SUFFIX, MAX_SIDE_LEN,
};
use crate::crypto::names_v2::MAX_SIDE_V2_LEN;
use crate::error::VolumeError;
use crate::sys;

/// One user entry of a backing directory.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub plain: OsString,
    pub backing: OsString,
    pub dtype: u8,
    pub ino: u64,
}

/// A backing entry whose name does not decrypt (corrupt, or moved here).
#[derive(Debug, Clone)]
pub struct BadName {
    pub backing: OsString,
}

impl Volume {
    /// The name context of the backing directory behind `dir`.
    pub fn dir_ctx(&self, dir: BorrowedFd<'_>, is_root: bool) -> std::io::Result<DirContext> {
        let mut ctx = DirContext::plain(is_root);
        if self.names().uses_diriv() {
            ctx.iv = super::read_diriv(dir)?;
        }
        Ok(ctx)
    }

    /// A long name's side file content (bounded; never blocks on a planted fifo).
    pub fn read_side(&self, dir: BorrowedFd<'_>, long: &OsStr) -> Option<Vec<u8>> {
        let mut n = long.to_owned();
        n.push(LONGNAME_SUFFIX);
        let max = if self.sessions().is_some() {
            MAX_SIDE_V2_LEN
        } else {
            MAX_SIDE_LEN
        };
        sys::read_regular(dir, &n, max).ok()
    }

    /// Write a name's side file (format 1: a long name's; format 2: every
    /// new entry's, sealed under this mount's session); true if this call
    /// made it.
    pub fn write_side(&self, dir: BorrowedFd<'_>, b: &BackingName) -> std::io::Result<bool> {
        let Some(sname) = b.side_name() else {
            return Ok(false);
        };
        let sealed = self.seal_side(b).map_err(|e| match e {
            VolumeError::Io { source, .. } => source,
            e => std::io::Error::other(e.to_string()),
        })?;
        let Some(side) = sealed.as_ref().or(b.side.as_ref()) else {
            return Ok(false);
        };
        match sys::create_new(dir, &sname, libc::O_WRONLY, 0o400) {
            Ok(f) => {
                sys::pwrite_all(f.as_fd(), side, 0)?;
                Ok(true)
            }
            // The same long name's side file: its content is the same.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The user entries of a backing directory with their plaintext names,
    /// and the entries whose names do not decrypt.
    pub fn list_dir(
        &self,
        dir: BorrowedFd<'_>,
        ctx: &DirContext,
    ) -> std::io::Result<(Vec<DirEntry>, Vec<BadName>)> {
        let names = self.names();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (name, dtype, ino) in sys::list_dir(dir)? {
            let backing = OsString::from_vec(name);
            let plain = match names.classify(ctx, &backing) {
                EntryKind::Internal => continue,
                EntryKind::Short => names.to_plain(ctx, backing.as_bytes()),
                EntryKind::Long if self.sessions().is_some() => {
                    match self.sealed_name(dir, ctx, &backing) {
                        Ok(p) => p,
                        // Another session's entry: a write-only mount
                        // cannot name it, and shows nothing of it.
                        Err(()) => continue,
                    }
                }
                EntryKind::Long => self
                    .read_side(dir, &backing)
                    .filter(|enc| side_matches(&backing, enc))
                    .and_then(|enc| names.to_plain(ctx, &enc)),
            };
            match plain {
                Some(plain) => good.push(DirEntry {
                    plain,
                    backing,
                    dtype,
                    ino,
                }),
                None => bad.push(BadName { backing }),
            }
        }
        Ok((good, bad))
    }

    /// Format 2: the name in an entry's side file; `Err` for an entry a
    /// write-only mount skips silently (another session's, or no side file
    /// to attribute), `Ok(None)` for one that is corrupt.
    fn sealed_name(
        &self,
        dir: BorrowedFd<'_>,
        ctx: &DirContext,
        backing: &OsStr,
    ) -> Result<Option<OsString>, ()> {
        let write_only = self.is_write_only();
        let Some(side) = self.read_side(dir, backing) else {
            return if write_only { Err(()) } else { Ok(None) };
        };
        match self.open_side_v2(ctx, backing, &side) {
            Ok(p) => Ok(p),
            Err(_) => Err(()),
        }
    }
}
