//! The content of one regular file: header handling, block read-modify-write,
//! truncate and fallocate, under a per-file read/write lock. Works on a real
//! descriptor of the backing file; knows the layout, hides it from callers.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::{KeyLocation, Volume, HEADER_XATTR};
use crate::crypto::content::FileCrypto;
use crate::crypto::header::FileHeader;
use crate::crypto::keys::{DataKey, FileId, VolumeKey};
use crate::crypto::offsets::{BlockIndex, BLOCK_OVERHEAD};
use crate::error::{ContentError, VolumeError};
use crate::sys;
#[cfg(test)]
pub(crate) use planted::plant_on_thread;
use planted::planted;
pub use tail::{give_up_tail_copy, TailCopy, TAIL_XATTR};

mod planted;
mod tail;

/// Reads at least this large make the backing file prefetch what follows.
const PREFETCH_READ_MIN: u32 = 128 * 1024;

/// Per-file state shared by every handle of one file.
#[derive(Default, Debug)]
pub struct FileContent {
    crypto: RwLock<Option<Arc<FileCrypto>>>,
    /// The tail copy matches the last block (or none is needed): a sync
    /// need not write it again. Cleared by every change.
    tail_saved: AtomicBool,
    /// `restore_torn_tail_once` ran.
    tail_checked: AtomicBool,
}

pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .map(|p| p.display().to_string())
    .unwrap_or_else(|_| "<unknown>".into())
}

fn corrupt(fd: BorrowedFd<'_>, what: String) -> ContentError {
    ContentError::Corrupt {
        what,
        path: fd_path(fd),
    }
}

/// A volume error about the file behind `fd`: another session's file on a
/// write-only mount, an I/O error, or a header that does not open.
fn header_error(fd: BorrowedFd<'_>, e: VolumeError) -> ContentError {
    match e {
        VolumeError::WriteOnly(_) => ContentError::WriteOnly { path: fd_path(fd) },
        VolumeError::Io { source, .. } => ContentError::Io(source),
        e => corrupt(fd, e.to_string()),
    }
}

fn cipher_size(fd: BorrowedFd<'_>) -> Result<u64, ContentError> {
    Ok(sys::fstat(fd)?.st_size as u64)
}

impl FileContent {
    pub fn new() -> FileContent {
        FileContent::default()
    }

    /// Write a fresh header (new data key) to a new, empty backing file.
    pub fn create(&self, vol: &Volume, fd: BorrowedFd<'_>) -> Result<(), ContentError> {
        let mut state = self.crypto.write();
        *state = Some(Self::write_header(vol, fd)?);
        Ok(())
    }

    fn write_header(vol: &Volume, fd: BorrowedFd<'_>) -> Result<Arc<FileCrypto>, ContentError> {
        let fid = FileId::random();
        let key = DataKey::random();
        let header = vol
            .seal_header(fid, &key)
            .map_err(|e| header_error(fd, e))?;
        match vol.config().key_location {
            KeyLocation::Header => sys::pwrite_all(fd, header.as_bytes(), 0)?,
            KeyLocation::Xattr => sys::fsetxattr(fd, HEADER_XATTR, header.as_bytes(), 0)?,
        }
        vol.key_cache().insert(&header, &key);
        Ok(Arc::new(FileCrypto::new(fid, key)))
    }

    fn read_header(vol: &Volume, fd: BorrowedFd<'_>) -> Result<Option<FileHeader>, ContentError> {
        let raw = match vol.config().key_location {
            KeyLocation::Header => {
                if cipher_size(fd)? == 0 {
                    return Ok(None);
                }
                let mut b = vec![0u8; vol.config().header_length()];
                let n = sys::pread_exact_or_eof(fd, &mut b, 0)?;
                b.truncate(n);
                b
            }
            KeyLocation::Xattr => match sys::fgetxattr(fd, HEADER_XATTR) {
                Ok(v) => v,
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {
                    if cipher_size(fd)? == 0 {
                        return Ok(None);
                    }
                    return Err(corrupt(fd, "the header xattr is missing".into()));
                }
                Err(e) => return Err(e.into()),
            },
        };
        FileHeader::parse_for(&raw, vol.config().header_length())
            .map(Some)
            .map_err(|e| corrupt(fd, e.to_string()))
    }

    fn load(
        vol: &Volume,
        fd: BorrowedFd<'_>,
        create: bool,
    ) -> Result<Option<Arc<FileCrypto>>, ContentError> {
        match Self::read_header(vol, fd)? {
            Some(h) => {
                // A hit needs the very header bytes the cached key was
                // unwrapped from; any other header is authenticated anew.
                let key = match vol.key_cache().get(&h) {
                    Some(k) => k,
                    None => {
                        let k = vol.open_header(&h).map_err(|e| header_error(fd, e))?;
                        vol.key_cache().insert(&h, &k);
                        k
                    }
                };
                Ok(Some(Arc::new(FileCrypto::new(h.file_id, key))))
            }
            None if create => Ok(Some(Self::write_header(vol, fd)?)),
            None => Ok(None),
        }
    }

    /// The file's crypto state, loading (or, for an empty headerless file,
    /// creating) the header on first use.
    pub fn crypto(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
    ) -> Result<Arc<FileCrypto>, ContentError> {
        self.crypto_with(vol, fd, true)?
            .ok_or_else(|| corrupt(fd, "no header".into()))
    }

    /// The cached crypto state, or the one loaded from the header (made, for
    /// an empty headerless file, only when `create`).
    fn crypto_with(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        create: bool,
    ) -> Result<Option<Arc<FileCrypto>>, ContentError> {
        if let Some(c) = &*self.crypto.read() {
            return Ok(Some(c.clone()));
        }
        let mut state = self.crypto.write();
        if state.is_none() {
            *state = Self::load(vol, fd, create)?;
        }
        Ok(state.clone())
    }

    /// The file's header as stored (None for an empty file that has none).
    pub fn header_of(vol: &Volume, fd: BorrowedFd<'_>) -> Result<Option<FileHeader>, ContentError> {
        Self::read_header(vol, fd)
    }

    /// Test support only (tests/hostile/core_dump.rs looks for copies of
    /// keys in a daemon's memory): the volume key and the data key of the
    /// backing file `fd`, unwrapped from its header.
    #[doc(hidden)]
    pub fn keys_for_memory_scan_test(
        vol: &Volume,
        fd: BorrowedFd<'_>,
    ) -> Result<(VolumeKey, DataKey), ContentError> {
        let h = Self::read_header(vol, fd)?.ok_or_else(|| corrupt(fd, "no header".into()))?;
        let dk = vol.open_header(&h).map_err(|e| header_error(fd, e))?;
        let vk = vol.volume_key().map_err(|e| header_error(fd, e))?;
        Ok((vk.clone(), dk))
    }

    /// Store a header for this file (a copy's rewrapped header) and use it.
    pub fn install_header(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        h: &FileHeader,
    ) -> Result<(), ContentError> {
        match vol.config().key_location {
            KeyLocation::Header => sys::pwrite_all(fd, h.as_bytes(), 0)?,
            KeyLocation::Xattr => sys::fsetxattr(fd, HEADER_XATTR, h.as_bytes(), 0)?,
        }
        *self.crypto.write() = None;
        self.tail_saved.store(false, Ordering::Release);
        Ok(())
    }

    /// Forget the cached crypto state (the backing file was replaced).
    pub fn reset(&self) {
        *self.crypto.write() = None;
        self.tail_saved.store(false, Ordering::Release);
    }

    fn decrypt_range(
        vol: &Volume,
        fc: &FileCrypto,
        fd: BorrowedFd<'_>,
        plain_size: u64,
        blocks: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, ContentError> {
        let mut buf = vec![0u8; Self::cipher_len(vol, blocks.clone())];
        let n = Self::decrypt_range_into(vol, fc, fd, plain_size, blocks, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Bytes of ciphertext `blocks` take at most (all full).
    fn cipher_len(vol: &Volume, blocks: std::ops::Range<u64>) -> usize {
        let per_block = vol.layout().block_size() + BLOCK_OVERHEAD;
        ((blocks.end - blocks.start) * per_block) as usize
    }

    /// Read `blocks` of a file of `plain_size` bytes into `buf` and decrypt
    /// them there; returns the plaintext length, at the front of `buf`.
    fn decrypt_range_into(
        vol: &Volume,
        fc: &FileCrypto,
        fd: BorrowedFd<'_>,
        plain_size: u64,
        blocks: std::ops::Range<u64>,
        buf: &mut [u8],
    ) -> Result<usize, ContentError> {
        let layout = vol.layout();
        if blocks.is_empty() {
            return Ok(0);
        }
        let first = BlockIndex(blocks.start);
        let lens: Vec<usize> = blocks
            .map(|b| layout.block_plain_len(BlockIndex(b), plain_size) as usize)
            .collect();
        let clen: usize = lens.iter().map(|p| p + BLOCK_OVERHEAD as usize).sum();
        let Some(cbuf) = buf.get_mut(..clen) else {
            return Err(std::io::Error::other("read buffer smaller than the ciphertext").into());
        };
        let got = sys::pread_exact_or_eof(fd, cbuf, layout.cipher_offset(first))?;
        if got != cbuf.len() {
            return Err(corrupt(fd, format!("short read at block {}", first.0)));
        }
        let decrypted = fc.decrypt_blocks_in_place(first, cbuf, &lens);
        if planted("content-ignore-auth-failure") && decrypted.is_err() {
            return Ok(lens.iter().sum());
        }
        decrypted.map_err(|b| corrupt(fd, format!("block {} failed authentication", b.0)))
    }

    fn plain_size(vol: &Volume, fd: BorrowedFd<'_>) -> Result<u64, ContentError> {
        let cs = cipher_size(fd)?;
        match vol.layout().plain_size(cs) {
            Ok(s) => Ok(s),
            Err(e) => {
                log::warn!(
                    "{}: backing size {cs} is torn mid-block; using the intact {} bytes",
                    fd_path(fd),
                    e.plain_floor
                );
                Ok(e.plain_floor)
            }
        }
    }

    /// The buffer `read_into` needs for `size` bytes at `offset`.
    pub fn read_capacity(vol: &Volume, offset: u64, size: u32) -> usize {
        Self::cipher_len(vol, vol.layout().blocks_touched(offset, size.into()))
    }

    pub fn read(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, ContentError> {
        let mut buf = vec![0u8; Self::read_capacity(vol, offset, size)];
        let n = self.read_into(vol, fd, offset, size, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Read up to `size` bytes at `offset` into `buf` (at least
    /// `read_capacity` bytes: the ciphertext is read and decrypted in place
    /// there); returns how many bytes, at the front of `buf`, were read.
    pub fn read_into(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        offset: u64,
        size: u32,
        buf: &mut [u8],
    ) -> Result<usize, ContentError> {
        let file_crypto = self.crypto(vol, fd)?;
        let _g = self.crypto.read();
        let psize = Self::plain_size(vol, fd)?;
        if offset >= psize || size == 0 {
            return Ok(0);
        }
        let end = psize.min(offset + size as u64);
        let layout = vol.layout();
        if planted("content-eio-partial-tail") && end == psize && psize % layout.block_size() != 0 {
            return Err(corrupt(
                fd,
                "planted: a partial last block reads as corrupt".into(),
            ));
        }
        let blocks = layout.blocks_touched(offset, end - offset);
        let start = layout.plain_offset(BlockIndex(blocks.start));
        // A large read is the kernel's readahead of a sequential reader: ask
        // the backing filesystem for the next stretch now, so that the disk
        // works while this one is decrypted (the backing filesystem's own
        // readahead is smaller than our reads; README has the A/B).
        if size >= PREFETCH_READ_MIN && end < psize {
            let next = layout.cipher_offset(BlockIndex(blocks.end));
            sys::prefetch(fd, next, Self::cipher_len(vol, blocks.clone()) as u64);
        }
        let decrypted = Self::decrypt_range_into(vol, &file_crypto, fd, psize, blocks, buf);
        if planted("content-empty-on-auth-failure") && decrypted.is_err() {
            return Ok(0);
        }
        decrypted?;
        // Block-aligned reads (all of sequential reading) need no move.
        let (a, b) = ((offset - start) as usize, (end - start) as usize);
        if a > 0 {
            buf.copy_within(a..b, 0);
        }
        Ok(b - a)
    }

    /// Re-encrypt the partial last block of a file of `size` bytes, padded with
    /// zeros to `new_len` bytes, so that the file can grow past it.
    fn pad_last_block(
        vol: &Volume,
        fc: &FileCrypto,
        fd: BorrowedFd<'_>,
        size: u64,
        new_end: u64,
    ) -> Result<(), ContentError> {
        let layout = vol.layout();
        if size % layout.block_size() == 0 {
            return Ok(());
        }
        let b = layout.block_of(size);
        let bstart = layout.plain_offset(b);
        let new_len = (new_end - bstart).min(layout.block_size()) as usize;
        let mut plain = Self::decrypt_range(vol, fc, fd, size, b.0..b.0 + 1)?;
        let old_len = plain.len();
        plain.resize(new_len, 0);
        if planted("content-stale-block") {
            planted::restore_stale(fc.file_id(), b, old_len, &mut plain);
        }
        let mut out = Vec::with_capacity(new_len + BLOCK_OVERHEAD as usize);
        fc.encrypt_blocks(b, &[&plain], &mut out);
        sys::pwrite_all(fd, &out, layout.cipher_offset(b))?;
        Ok(())
    }

    pub fn write(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, ContentError> {
        if data.is_empty() {
            return Ok(0);
        }
        let file_crypto = self.crypto(vol, fd)?;
        let _g = self.crypto.write();
        self.tail_saved.store(false, Ordering::Release);
        let layout = vol.layout();
        let bs = layout.block_size();
        let size = Self::plain_size(vol, fd)?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        let blocks = layout.blocks_touched(offset, data.len() as u64);
        // The old last block must become a full block before a later one is written.
        if size % bs != 0 && layout.block_of(size).0 < blocks.start {
            Self::pad_last_block(vol, &file_crypto, fd, size, end)?;
        }
        let first = BlockIndex(blocks.start);
        let last = BlockIndex(blocks.end - 1);
        // The block's start and the part of it the write covers.
        let span = |b: BlockIndex| {
            let bstart = layout.plain_offset(b);
            (bstart, offset.max(bstart), end.min(bstart + bs))
        };
        // A block the write covers from its start to its new end is encrypted
        // straight from `data`; a partly covered first or last block is merged
        // with its old content (or zeros) first.
        let merge = |b: BlockIndex| -> Result<Option<(BlockIndex, Vec<u8>)>, ContentError> {
            let (bstart, ws, we) = span(b);
            let old_len = layout.block_plain_len(b, size);
            if ws == bstart && we - bstart >= old_len {
                return Ok(None);
            }
            let mut buf = if old_len > 0 {
                // Planted: merge into the previous block's old plaintext.
                let neighbour = planted("content-merge-neighbour") && b.0 > 0;
                let src = if neighbour { b.0 - 1 } else { b.0 };
                Self::decrypt_range(vol, &file_crypto, fd, size, src..src + 1)?
            } else {
                Vec::new()
            };
            buf.resize(old_len.max(we - bstart) as usize, 0);
            buf[(ws - bstart) as usize..(we - bstart) as usize]
                .copy_from_slice(&data[(ws - offset) as usize..(we - offset) as usize]);
            Ok(Some((b, buf)))
        };
        let mut merged = Vec::with_capacity(2);
        merged.extend(merge(first)?);
        if last != first {
            merged.extend(merge(last)?);
        }
        let mut chunks: Vec<&[u8]> = Vec::with_capacity((blocks.end - blocks.start) as usize);
        for b in blocks.clone() {
            let bi = BlockIndex(b);
            match merged.iter().find(|(m, _)| *m == bi) {
                Some((_, buf)) => chunks.push(buf),
                None => {
                    let (_, ws, we) = span(bi);
                    chunks.push(&data[(ws - offset) as usize..(we - offset) as usize]);
                }
            }
        }
        if planted("content-drop-tail-block")
            && chunks.last().is_some_and(|p| (p.len() as u64) < bs)
            && layout.block_plain_len(last, size) == 0
        {
            chunks.pop();
        }
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let mut out = Vec::with_capacity(total + chunks.len() * BLOCK_OVERHEAD as usize);
        file_crypto.encrypt_blocks(first, &chunks, &mut out);
        sys::pwrite_all(fd, &out, layout.cipher_offset(first))?;
        Ok(data.len())
    }

    pub fn truncate(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        new_size: u64,
    ) -> Result<(), ContentError> {
        let file_crypto = self.crypto(vol, fd)?;
        let _g = self.crypto.write();
        self.tail_saved.store(false, Ordering::Release);
        let layout = vol.layout();
        let size = Self::plain_size(vol, fd)?;
        if new_size == size {
            // Still cut a torn tail, so the backing size is valid again.
            let want = layout.cipher_size(size);
            if cipher_size(fd)? != want {
                self.tail_before_shrink(fd, None)?;
                sys::ftruncate(fd, want)?;
            }
            return Ok(());
        }
        if new_size < size {
            let rem = new_size % layout.block_size();
            if rem != 0 {
                let b = layout.block_of(new_size);
                let mut plain = Self::decrypt_range(vol, &file_crypto, fd, size, b.0..b.0 + 1)?;
                if planted("content-stale-block") {
                    planted::keep_stale(file_crypto.file_id(), b, &plain);
                }
                plain.truncate(rem as usize);
                let mut out = Vec::new();
                file_crypto.encrypt_blocks(b, &[&plain], &mut out);
                self.tail_before_shrink(fd, Some((b, &out)))?;
                sys::ftruncate(fd, layout.cipher_size(new_size))?;
                sys::pwrite_all(fd, &out, layout.cipher_offset(b))?;
            } else {
                self.tail_before_shrink(fd, None)?;
                sys::ftruncate(fd, layout.cipher_size(new_size))?;
            }
        } else {
            // Growing keeps the tail copy: it still holds the last fsync'd
            // state of a block the padding rewrites.
            Self::pad_last_block(vol, &file_crypto, fd, size, new_size)?;
            // The gap becomes all-zero ciphertext blocks: holes that read as zeros.
            sys::ftruncate(fd, layout.cipher_size(new_size))?;
        }
        Ok(())
    }

    /// fallocate: mode 0 (may grow the file) and KEEP_SIZE; others are unsupported.
    pub fn fallocate(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> Result<(), ContentError> {
        let unsupported = || ContentError::Io(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(unsupported());
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        let layout = vol.layout();
        // Reserve the backing space without changing the backing size.
        let cs = layout.cipher_offset(layout.block_of(offset));
        let ce = layout.cipher_size(end.div_ceil(layout.block_size()) * layout.block_size());
        if let Err(e) = sys::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, cs, ce - cs) {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                return Err(e.into());
            }
            // Some backing filesystems cannot preallocate; growth below still works.
        }
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
            let size = {
                let _g = self.crypto.read();
                Self::plain_size(vol, fd)?
            };
            if end > size {
                self.truncate(vol, fd, end)?;
            }
        }
        Ok(())
    }

    /// Load the crypto state without creating a header (for xattrs of files
    /// that might be empty and headerless).
    pub fn crypto_if_any(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
    ) -> Result<Option<Arc<FileCrypto>>, ContentError> {
        self.crypto_with(vol, fd, false)
    }
}

#[cfg(test)]
mod tests;
