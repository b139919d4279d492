//! The tail copy. A write that rewrites a file's partial last block in place
//! (an append, the padding before a later block) can be cut short by a crash:
//! the kernel stops a killed writer between pages, and a block is 36 bytes
//! longer than its plaintext, so a 4 KiB block always spans two pages. The
//! cut block fails authentication and takes the fsync'd bytes in it along.
//! So fsync keeps the partial last block's ciphertext in the backing file's
//! xattr `user.envelopefs.tail` (block index, u64 big-endian, then the block
//! as stored), set before the backing fsync so that one fsync makes both
//! durable, and the first lookup of the file after a crash writes it back
//! when the last block fails. FORMAT.md ("The tail copy") has the rules.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::{cipher_size, fd_path, FileContent};
use crate::crypto::content::FileCrypto;
use crate::crypto::offsets::{BlockIndex, Layout, BLOCK_OVERHEAD};
use crate::error::ContentError;
use crate::sys;
use crate::volume::Volume;

/// The backing xattr that holds the tail copy (the volume's own, as the
/// header xattr; not a user xattr).
pub const TAIL_XATTR: &[u8] = b"user.envelopefs.tail";

const INDEX_LEN: usize = 8;

/// A copy may hold only the block's first bytes, at most this many short of
/// the whole: what a backing filesystem with small xattrs (ext4 without
/// `ea_inode`: about 4 KiB for all of an inode's) takes of a nearly full
/// 4 KiB block. The rest is read from the backing file, where a rewrite cut
/// after the copied bytes left it as it was.
const PARTIAL_MAX_MISSING: usize = 256;

/// What a backing file's tail copy can do for it.
#[derive(Debug, PartialEq, Eq)]
pub enum TailCopy {
    /// No copy (none made, or no user xattrs on the backing filesystem).
    None,
    /// The last block authenticates: the copy is not needed.
    Intact,
    /// The last block, `block`, fails authentication and the copy restores
    /// it: the file becomes as it was at its last fsync.
    Restores { block: u64 },
    /// The last block fails and the copy cannot stand in for it (why).
    Unusable(String),
}

/// What `inspect` found: the public verdict, and the block to write back.
struct Found {
    verdict: TailCopy,
    cipher: Vec<u8>,
}

impl Found {
    fn just(verdict: TailCopy) -> Found {
        Found {
            verdict,
            cipher: Vec::new(),
        }
    }
}

/// The last block of a backing file of `cs` bytes (None: no block).
fn last_block(layout: &Layout, cs: u64) -> Option<BlockIndex> {
    let body = cs.checked_sub(layout.header_len())?;
    (body > 0).then(|| BlockIndex((body - 1) / layout.cipher_block_size()))
}

/// Whether `cipher` is an authentic block `b` of the file.
fn authentic(fc: &FileCrypto, b: BlockIndex, cipher: &[u8]) -> bool {
    let oh = BLOCK_OVERHEAD as usize;
    if cipher.len() <= oh {
        return false;
    }
    let mut scratch = cipher.to_vec();
    fc.decrypt_blocks_in_place(b, &mut scratch, &[cipher.len() - oh])
        .is_ok()
}

/// Remove the tail copy (none, or no xattrs on the backing filesystem: done).
fn remove(fd: BorrowedFd<'_>) -> Result<(), ContentError> {
    match sys::fremovexattr(fd, TAIL_XATTR) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Give up the tail copy of `fd` to make room in its xattrs (a user xattr
/// that did not fit beside it): the copy is a crash aid, the user's xattr is
/// data. True when there was one to remove; the next fsync keeps what copy
/// still fits.
pub fn give_up_tail_copy(fd: BorrowedFd<'_>) -> Result<bool, ContentError> {
    match sys::removexattr_fd(fd, TAIL_XATTR) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Make block `b`'s ciphertext the tail copy: all of it, or where the
/// backing filesystem cannot hold that, the longest start of it it takes
/// (no shorter than `PARTIAL_MAX_MISSING` less). Where not even that fits
/// (or there are no user xattrs) any older copy goes. True when a copy was
/// made.
fn store(fd: BorrowedFd<'_>, b: BlockIndex, cipher: &[u8]) -> Result<bool, ContentError> {
    let mut value = Vec::with_capacity(INDEX_LEN + cipher.len());
    value.extend_from_slice(&b.0.to_be_bytes());
    value.extend_from_slice(cipher);
    let set = |n: usize| sys::fsetxattr(fd, TAIL_XATTR, &value[..INDEX_LEN + n], 0);
    let Err(e) = set(cipher.len()) else {
        return Ok(true);
    };
    let too_large = matches!(
        e.raw_os_error(),
        Some(libc::E2BIG | libc::ENOSPC | libc::ERANGE)
    );
    let shortest = cipher.len().saturating_sub(PARTIAL_MAX_MISSING).max(1);
    if !too_large || shortest == cipher.len() || set(shortest).is_err() {
        log::debug!("{}: no tail copy ({e})", fd_path(fd));
        return remove(fd).map(|()| false);
    }
    // The longest start that fits: `fits` was set, `fails` was refused.
    let (mut fits, mut fails) = (shortest, cipher.len());
    let mut last_set = fits;
    while fails - fits > 1 {
        let mid = fits + (fails - fits) / 2;
        if set(mid).is_ok() {
            fits = mid;
            last_set = mid;
        } else {
            fails = mid;
        }
    }
    if last_set != fits {
        set(fits)?;
    }
    Ok(true)
}

impl FileContent {
    /// fsync (or fdatasync) of the backing file, the tail copy brought up
    /// to date first.
    pub fn sync(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        datasync: bool,
    ) -> Result<(), ContentError> {
        if let Err(err) = self.save_tail(vol, fd) {
            // No copy (a handle that cannot read, say) fails no fsync; but a
            // copy older than this fsync must not stay.
            log::debug!("{}: no tail copy ({err})", fd_path(fd));
            remove(fd)?;
        }
        sys::fsync(fd, datasync)?;
        Ok(())
    }

    /// Keep the partial last block as the tail copy (a full last block or
    /// an empty file needs none): unless nothing changed since the last one.
    fn save_tail(&self, vol: &Volume, fd: BorrowedFd<'_>) -> Result<(), ContentError> {
        if self.tail_saved.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(fc) = self.crypto_with(vol, fd, false)? else {
            return remove(fd);
        };
        let _g = self.crypto.write();
        if self.tail_saved.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let saved = Self::store_tail(vol, &fc, fd);
        if !matches!(saved, Ok(true)) {
            self.tail_saved.store(false, Ordering::Release);
        }
        saved.map(|_| ())
    }

    /// The tail copy of the file as it is now: true when it matches.
    fn store_tail(vol: &Volume, fc: &FileCrypto, fd: BorrowedFd<'_>) -> Result<bool, ContentError> {
        let layout = vol.layout();
        let cs = cipher_size(fd)?;
        let Ok(size) = layout.plain_size(cs) else {
            // A tail torn by a failed write (reported then): the older copy
            // still holds the last fsync'd state of the block.
            return Ok(false);
        };
        if size % layout.block_size() == 0 {
            return remove(fd).map(|()| true);
        }
        let b = layout.block_of(size);
        let off = layout.cipher_offset(b);
        let mut cipher = vec![0u8; (cs - off) as usize];
        let n = sys::pread_exact_or_eof(fd, &mut cipher, off)?;
        if n != cipher.len() || !authentic(fc, b, &cipher) {
            return Ok(false);
        }
        store(fd, b, &cipher)
    }

    /// Before a truncate to `new_size` (from a larger size) whose new last
    /// block `b` is `cipher`: that block becomes the tail copy, so that a
    /// crash while it is written leaves the truncated file. A copy of a
    /// block the truncate cuts away must never come back, so without a new
    /// copy the old one goes before the backing file is cut.
    pub(super) fn tail_before_shrink(
        &self,
        fd: BorrowedFd<'_>,
        new_last: Option<(BlockIndex, &[u8])>,
    ) -> Result<(), ContentError> {
        let saved = match new_last {
            Some((b, cipher)) => store(fd, b, cipher)?,
            None => remove(fd).map(|()| true)?,
        };
        self.tail_saved.store(saved, Ordering::Release);
        Ok(())
    }

    /// What the tail copy can do for the file behind `fd` (for fsck).
    pub fn tail_copy(&self, vol: &Volume, fd: BorrowedFd<'_>) -> Result<TailCopy, ContentError> {
        let Some(fc) = self.crypto_with(vol, fd, false)? else {
            return Ok(TailCopy::None);
        };
        let _g = self.crypto.read();
        Ok(Self::inspect(vol, &fc, fd)?.verdict)
    }

    fn inspect(vol: &Volume, fc: &FileCrypto, fd: BorrowedFd<'_>) -> Result<Found, ContentError> {
        let layout = vol.layout();
        let max = (layout.cipher_block_size() as usize) + INDEX_LEN;
        let value = match sys::fgetxattr_capped(fd, TAIL_XATTR, max) {
            Ok(v) => v,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => {
                return Ok(Found::just(TailCopy::None))
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                return Ok(Found::just(TailCopy::Unusable(
                    "the tail copy is larger than a block".into(),
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let cs = cipher_size(fd)?;
        let Some(last) = last_block(layout, cs) else {
            return Ok(Found::just(TailCopy::Intact));
        };
        let off = layout.cipher_offset(last);
        let mut current = vec![0u8; (cs - off) as usize];
        let n = sys::pread_exact_or_eof(fd, &mut current, off)?;
        current.truncate(n);
        if value.get(INDEX_LEN..) == Some(&current[..]) || authentic(fc, last, &current) {
            return Ok(Found::just(TailCopy::Intact));
        }
        let unusable = |why: String| Ok(Found::just(TailCopy::Unusable(why)));
        let Some((index, copy)) = value.split_first_chunk::<INDEX_LEN>() else {
            return unusable("the tail copy is too short".into());
        };
        let index = u64::from_be_bytes(*index);
        if index != last.0 {
            return unusable(format!("the tail copy is of block {index}"));
        }
        if copy.is_empty() || copy.len() > current.len() {
            return unusable("the tail copy ends past the file".into());
        }
        match Self::complete(fc, last, copy, &current) {
            Some(cipher) => Ok(Found {
                verdict: TailCopy::Restores { block: last.0 },
                cipher,
            }),
            None => unusable("the tail copy fails authentication".into()),
        }
    }

    /// The block `copy` stands in for, authenticated as block `b`: the copy
    /// itself, or for a copy of the block's start, the copy followed by what
    /// the backing file (`current`, from the block's offset on) holds after
    /// it, for each length the block can have.
    fn complete(fc: &FileCrypto, b: BlockIndex, copy: &[u8], current: &[u8]) -> Option<Vec<u8>> {
        if authentic(fc, b, copy) {
            return Some(copy.to_vec());
        }
        let longest = current.len().min(copy.len() + PARTIAL_MAX_MISSING);
        let mut candidate = copy.to_vec();
        for byte in current.get(copy.len()..longest)? {
            candidate.push(*byte);
            if authentic(fc, b, &candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// Once per `FileContent`, before the file's size is first shown: a last
    /// block that fails authentication is restored from the tail copy, so
    /// the file is as it was at its last fsync. `path_fd` may be `O_PATH`;
    /// `open` gives a read-write descriptor, asked for only when a copy
    /// exists. Returns whether the file changed.
    pub fn restore_torn_tail_once(
        &self,
        vol: &Volume,
        path_fd: BorrowedFd<'_>,
        open: impl FnOnce() -> std::io::Result<OwnedFd>,
    ) -> Result<bool, ContentError> {
        if self.tail_checked.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        match sys::xattr_len_fd(path_fd, TAIL_XATTR) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => {
                return Ok(false)
            }
            Err(e) => return Err(e.into()),
        }
        let fd = open()?;
        self.restore_torn_tail(vol, fd.as_fd())
    }

    /// Restore a torn last block from the tail copy (see
    /// `restore_torn_tail_once`).
    pub fn restore_torn_tail(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
    ) -> Result<bool, ContentError> {
        let Some(fc) = self.crypto_with(vol, fd, false)? else {
            return Ok(false);
        };
        let _g = self.crypto.write();
        let found = Self::inspect(vol, &fc, fd)?;
        let TailCopy::Restores { block } = found.verdict else {
            if let TailCopy::Unusable(why) = found.verdict {
                log::warn!("{}: last block fails authentication; {why}", fd_path(fd));
            }
            return Ok(false);
        };
        // Cut first: a crash in between leaves a block that fails, and the
        // copy is still there for the next try.
        let off = vol.layout().cipher_offset(BlockIndex(block));
        sys::ftruncate(fd, off + found.cipher.len() as u64)?;
        sys::pwrite_all(fd, &found.cipher, off)?;
        self.tail_saved.store(true, Ordering::Release);
        log::warn!(
            "{}: last block {block} was torn by a crash; restored as it was at the last fsync",
            fd_path(fd)
        );
        Ok(true)
    }
}
