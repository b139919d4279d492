//! Directory-level helpers of a volume: name contexts, listings with
//! decrypted names, long-name side files. Shared by the FUSE layer, snapshot
//! copies and fsck; all work relative to directory descriptors.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::Volume;
use crate::crypto::names::{
    side_matches, BackingName, DirContext, EntryKind, LONGNAME_SUFFIX, MAX_SIDE_LEN,
};
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
        sys::read_regular(dir, &n, MAX_SIDE_LEN).ok()
    }

    /// Write a long name's side file; true if this call made it.
    pub fn write_side(&self, dir: BorrowedFd<'_>, b: &BackingName) -> std::io::Result<bool> {
        let (Some(side), Some(sname)) = (&b.side, b.side_name()) else {
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
}
