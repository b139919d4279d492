//! The content of one regular file: header handling, block read-modify-write,
//! truncate and fallocate, under a per-file read/write lock. Works on a real
//! descriptor of the backing file; knows the layout, hides it from callers.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{KeyLocation, Volume, HEADER_XATTR};
use crate::crypto::content::FileCrypto;
use crate::crypto::header::{FileHeader, HEADER_LEN};
use crate::crypto::keys::{DataKey, FileId, VolumeKey};
use crate::crypto::offsets::{BlockIndex, BLOCK_OVERHEAD};
use crate::error::ContentError;
use crate::sys;

/// Reads at least this large make the backing file prefetch what follows.
const PREFETCH_READ_MIN: u32 = 128 * 1024;

/// Per-file state shared by every handle of one file.
#[derive(Default, Debug)]
pub struct FileContent {
    crypto: RwLock<Option<Arc<FileCrypto>>>,
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

fn cipher_size(fd: BorrowedFd<'_>) -> Result<u64, ContentError> {
    Ok(sys::fstat(fd)?.st_size as u64)
}

impl FileContent {
    pub fn new() -> FileContent {
        FileContent::default()
    }

    /// Write a fresh header (new data key) to a new, empty backing file.
    pub fn create(&self, vol: &Volume, fd: BorrowedFd<'_>) -> Result<(), ContentError> {
        let mut g = self.crypto.write();
        *g = Some(Self::write_header(vol, fd)?);
        Ok(())
    }

    fn write_header(vol: &Volume, fd: BorrowedFd<'_>) -> Result<Arc<FileCrypto>, ContentError> {
        let fid = FileId::random();
        let key = DataKey::random();
        let h = FileHeader::seal(vol.volume_key(), vol.volume_id(), fid, &key);
        match vol.config().key_location {
            KeyLocation::Header => sys::pwrite_all(fd, h.as_bytes(), 0)?,
            KeyLocation::Xattr => sys::fsetxattr(fd, HEADER_XATTR, h.as_bytes(), 0)?,
        }
        vol.key_cache().insert(&h, &key);
        Ok(Arc::new(FileCrypto::new(fid, key)))
    }

    fn read_header(vol: &Volume, fd: BorrowedFd<'_>) -> Result<Option<FileHeader>, ContentError> {
        let raw = match vol.config().key_location {
            KeyLocation::Header => {
                if cipher_size(fd)? == 0 {
                    return Ok(None);
                }
                let mut b = [0u8; HEADER_LEN];
                let n = sys::pread_exact_or_eof(fd, &mut b, 0)?;
                b[..n].to_vec()
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
        FileHeader::parse(&raw)
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
                        let k = h
                            .open(vol.volume_key(), vol.volume_id())
                            .map_err(|e| corrupt(fd, e.to_string()))?;
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
        let mut g = self.crypto.write();
        if g.is_none() {
            *g = Self::load(vol, fd, create)?;
        }
        Ok(g.clone())
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
        let dk = h
            .open(vol.volume_key(), vol.volume_id())
            .map_err(|e| corrupt(fd, e.to_string()))?;
        Ok((vol.volume_key().clone(), dk))
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
        Ok(())
    }

    /// Forget the cached crypto state (the backing file was replaced).
    pub fn reset(&self) {
        *self.crypto.write() = None;
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
        let l = vol.layout();
        if blocks.is_empty() {
            return Ok(0);
        }
        let first = BlockIndex(blocks.start);
        let lens: Vec<usize> = blocks
            .map(|b| l.block_plain_len(BlockIndex(b), plain_size) as usize)
            .collect();
        let clen: usize = lens.iter().map(|p| p + BLOCK_OVERHEAD as usize).sum();
        let Some(cbuf) = buf.get_mut(..clen) else {
            return Err(std::io::Error::other("read buffer smaller than the ciphertext").into());
        };
        let got = sys::pread_exact_or_eof(fd, cbuf, l.cipher_offset(first))?;
        if got != cbuf.len() {
            return Err(corrupt(fd, format!("short read at block {}", first.0)));
        }
        fc.decrypt_blocks_in_place(first, cbuf, &lens)
            .map_err(|b| corrupt(fd, format!("block {} failed authentication", b.0)))
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
        let fc = self.crypto(vol, fd)?;
        let _g = self.crypto.read();
        let psize = Self::plain_size(vol, fd)?;
        if offset >= psize || size == 0 {
            return Ok(0);
        }
        let end = psize.min(offset + size as u64);
        let l = vol.layout();
        let blocks = l.blocks_touched(offset, end - offset);
        let start = l.plain_offset(BlockIndex(blocks.start));
        // A large read is the kernel's readahead of a sequential reader: ask
        // the backing filesystem for the next stretch now, so that the disk
        // works while this one is decrypted (backing readahead alone is
        // 128 KiB; on disk +25-100 % sequential read, no change on tmpfs).
        if size >= PREFETCH_READ_MIN && end < psize {
            let next = l.cipher_offset(BlockIndex(blocks.end));
            sys::prefetch(fd, next, Self::cipher_len(vol, blocks.clone()) as u64);
        }
        Self::decrypt_range_into(vol, &fc, fd, psize, blocks, buf)?;
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
        let l = vol.layout();
        if size % l.block_size() == 0 {
            return Ok(());
        }
        let b = l.block_of(size);
        let bstart = l.plain_offset(b);
        let new_len = (new_end - bstart).min(l.block_size()) as usize;
        let mut plain = Self::decrypt_range(vol, fc, fd, size, b.0..b.0 + 1)?;
        plain.resize(new_len, 0);
        let mut out = Vec::with_capacity(new_len + BLOCK_OVERHEAD as usize);
        fc.encrypt_blocks(b, &[&plain], &mut out);
        sys::pwrite_all(fd, &out, l.cipher_offset(b))?;
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
        let fc = self.crypto(vol, fd)?;
        let _g = self.crypto.write();
        let l = vol.layout();
        let bs = l.block_size();
        let size = Self::plain_size(vol, fd)?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        let blocks = l.blocks_touched(offset, data.len() as u64);
        // The old last block must become a full block before a later one is written.
        if size % bs != 0 && l.block_of(size).0 < blocks.start {
            Self::pad_last_block(vol, &fc, fd, size, end)?;
        }
        let first = BlockIndex(blocks.start);
        let last = BlockIndex(blocks.end - 1);
        // The block's start and the part of it the write covers.
        let span = |b: BlockIndex| {
            let bstart = l.plain_offset(b);
            (bstart, offset.max(bstart), end.min(bstart + bs))
        };
        // A block the write covers from its start to its new end is encrypted
        // straight from `data`; a partly covered first or last block is merged
        // with its old content (or zeros) first.
        let merge = |b: BlockIndex| -> Result<Option<(BlockIndex, Vec<u8>)>, ContentError> {
            let (bstart, ws, we) = span(b);
            let old_len = l.block_plain_len(b, size);
            if ws == bstart && we - bstart >= old_len {
                return Ok(None);
            }
            let mut buf = if old_len > 0 {
                Self::decrypt_range(vol, &fc, fd, size, b.0..b.0 + 1)?
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
        #[cfg(test)]
        if super::content_fuzz::planted_bug_active()
            && chunks.last().is_some_and(|p| (p.len() as u64) < bs)
            && l.block_plain_len(last, size) == 0
        {
            chunks.pop();
        }
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let mut out = Vec::with_capacity(total + chunks.len() * BLOCK_OVERHEAD as usize);
        fc.encrypt_blocks(first, &chunks, &mut out);
        sys::pwrite_all(fd, &out, l.cipher_offset(first))?;
        Ok(data.len())
    }

    pub fn truncate(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        new_size: u64,
    ) -> Result<(), ContentError> {
        let fc = self.crypto(vol, fd)?;
        let _g = self.crypto.write();
        let l = vol.layout();
        let size = Self::plain_size(vol, fd)?;
        if new_size == size {
            // Still cut a torn tail, so the backing size is valid again.
            let want = l.cipher_size(size);
            if cipher_size(fd)? != want {
                sys::ftruncate(fd, want)?;
            }
            return Ok(());
        }
        if new_size < size {
            let rem = new_size % l.block_size();
            if rem != 0 {
                let b = l.block_of(new_size);
                let mut plain = Self::decrypt_range(vol, &fc, fd, size, b.0..b.0 + 1)?;
                plain.truncate(rem as usize);
                let mut out = Vec::new();
                fc.encrypt_blocks(b, &[&plain], &mut out);
                sys::ftruncate(fd, l.cipher_size(new_size))?;
                sys::pwrite_all(fd, &out, l.cipher_offset(b))?;
            } else {
                sys::ftruncate(fd, l.cipher_size(new_size))?;
            }
        } else {
            Self::pad_last_block(vol, &fc, fd, size, new_size)?;
            // The gap becomes all-zero ciphertext blocks: holes that read as zeros.
            sys::ftruncate(fd, l.cipher_size(new_size))?;
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
        let l = vol.layout();
        // Reserve the backing space without changing the backing size.
        let cs = l.cipher_offset(l.block_of(offset));
        let ce = l.cipher_size(end.div_ceil(l.block_size()) * l.block_size());
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
mod tests {
    use super::*;
    use crate::volume::testutil::volume;
    use crate::volume::InitOptions;
    use std::os::fd::AsFd;

    fn new_file(
        tv: &crate::volume::testutil::TestVolume,
        name: &str,
    ) -> (std::fs::File, FileContent) {
        let p = tv.vol.root().join(name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(p)
            .unwrap();
        let c = FileContent::new();
        c.create(&tv.vol, f.as_fd()).unwrap();
        (f, c)
    }

    fn check_model(opts: InitOptions) {
        let tv = volume(opts);
        let (f, c) = new_file(&tv, "a");
        let fd = f.as_fd();
        let mut model: Vec<u8> = Vec::new();
        let mut seed = 0x1234_5678_u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for i in 0..400 {
            match rnd(10) {
                0..=5 => {
                    let off = rnd(20_000);
                    let len = rnd(9000) as usize + 1;
                    let data: Vec<u8> = (0..len).map(|j| (i + j) as u8 | 1).collect();
                    c.write(&tv.vol, fd, off, &data).unwrap();
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                6..=7 => {
                    let ns = rnd(25_000);
                    c.truncate(&tv.vol, fd, ns).unwrap();
                    model.resize(ns as usize, 0);
                }
                _ => {
                    let off = rnd(26_000);
                    let len = rnd(10_000) as u32;
                    let got = c.read(&tv.vol, fd, off, len).unwrap();
                    let s = (off as usize).min(model.len());
                    let e = (off as usize + len as usize).min(model.len());
                    assert_eq!(got, &model[s..e], "op {i}");
                }
            }
            let cs = f.metadata().unwrap().len();
            assert_eq!(
                tv.vol.layout().plain_size(cs),
                Ok(model.len() as u64),
                "op {i}"
            );
        }
        // A fresh FileContent (as after remount) reads the same.
        let c2 = FileContent::new();
        assert_eq!(
            c2.read(&tv.vol, fd, 0, model.len() as u32 + 10).unwrap(),
            model
        );
    }

    #[test]
    fn random_ops_match_model_header() {
        check_model(InitOptions::default());
    }

    #[test]
    fn random_ops_match_model_xattr_small_blocks() {
        check_model(InitOptions {
            block_size: 512,
            key_location: KeyLocation::Xattr,
            ..Default::default()
        });
    }

    #[test]
    fn data_keys_differ_between_files() {
        let tv = volume(InitOptions::default());
        let mut keys = std::collections::HashSet::new();
        for i in 0..50 {
            let (f, _) = new_file(&tv, &format!("f{i}"));
            let c = FileContent::new();
            tv.vol.key_cache().flush();
            let fc = c.crypto(&tv.vol, f.as_fd()).unwrap();
            assert!(keys.insert(*fc.data_key().expose()));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let tv = volume(InitOptions::default());
        let (f, c) = new_file(&tv, "a");
        let data = vec![7u8; 3 * 4096 + 100];
        c.write(&tv.vol, f.as_fd(), 0, &data).unwrap();
        let (g, cg) = new_file(&tv, "b");
        cg.write(&tv.vol, g.as_fd(), 0, &data).unwrap();
        let path = tv.vol.root().join("a");
        let orig = std::fs::read(&path).unwrap();
        let other = std::fs::read(tv.vol.root().join("b")).unwrap();
        let cbs = 4096 + 36;
        let h = HEADER_LEN;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bit flip in block 1", {
                let mut v = orig.clone();
                v[h + cbs + 50] ^= 4;
                v
            }),
            ("block swapped from another file", {
                let mut v = orig.clone();
                v[h..h + cbs].copy_from_slice(&other[h..h + cbs]);
                v
            }),
            ("block moved within file", {
                let mut v = orig.clone();
                let b1 = v[h + cbs..h + 2 * cbs].to_vec();
                v[h..h + cbs].copy_from_slice(&b1);
                v
            }),
            ("header from another file", {
                let mut v = orig.clone();
                v[..h].copy_from_slice(&other[..h]);
                v
            }),
            ("bit flip in header", {
                let mut v = orig.clone();
                v[40] ^= 1;
                v
            }),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            tv.vol.key_cache().flush();
            let fresh = FileContent::new();
            let r = fresh.read(&tv.vol, f.as_fd(), 0, data.len() as u32);
            match r {
                Err(ContentError::Corrupt { path, .. }) => assert!(path.ends_with("/a"), "{what}"),
                other => panic!(
                    "{what}: expected corruption error, got {:?}",
                    other.map(|v| v.len())
                ),
            }
        }
        // Truncated mid-block: the torn block is not shown; the rest reads fine.
        std::fs::write(&path, &orig[..h + cbs + 10]).unwrap();
        let fresh = FileContent::new();
        assert_eq!(
            fresh.read(&tv.vol, f.as_fd(), 0, 10_000).unwrap(),
            vec![7u8; 4096]
        );
    }

    /// A header naming another file's ID whose key is cached, but which
    /// does not authenticate, is refused: the cache never skips the check.
    #[test]
    fn forged_header_with_a_cached_key_is_refused() {
        let tv = volume(InitOptions::default());
        let (f, c) = new_file(&tv, "a");
        let (g, cg) = new_file(&tv, "b");
        let data = vec![9u8; 5000];
        c.write(&tv.vol, f.as_fd(), 0, &data).unwrap();
        cg.write(&tv.vol, g.as_fd(), 0, &vec![3u8; 5000]).unwrap();
        let b = std::fs::read(tv.vol.root().join("b")).unwrap();
        let mut forged = b.clone();
        forged[40] ^= 1; // the wrapped key: B's file ID stays
        std::fs::write(tv.vol.root().join("a"), &forged).unwrap();
        assert_eq!(tv.vol.key_cache().len(), 2, "both keys are cached");
        let fresh = FileContent::new();
        match fresh.read(&tv.vol, f.as_fd(), 0, 5000) {
            Err(ContentError::Corrupt { path, .. }) => assert!(path.ends_with("/a")),
            other => panic!("expected corruption, got {:?}", other.map(|v| v.len())),
        }
        // B's own header still hits the cache and reads.
        std::fs::write(tv.vol.root().join("a"), &b).unwrap();
        let fresh = FileContent::new();
        assert_eq!(
            fresh.read(&tv.vol, f.as_fd(), 0, 5000).unwrap(),
            vec![3u8; 5000]
        );
    }

    /// Simulate a crash part way through a backing write: for each byte
    /// offset the write could have been cut at, the file reads per block as
    /// its old content, its new content, or EIO; never other bytes.
    #[test]
    fn torn_writes_never_show_other_bytes() {
        for loc in [KeyLocation::Header, KeyLocation::Xattr] {
            let tv = volume(InitOptions {
                block_size: 512,
                key_location: loc,
                ..Default::default()
            });
            let (f, c) = new_file(&tv, "t");
            let old: Vec<u8> = (0..1300u32).map(|i| (i % 251) as u8 | 1).collect();
            c.write(&tv.vol, f.as_fd(), 0, &old).unwrap();
            let before = std::fs::read(tv.vol.root().join("t")).unwrap();
            // An unaligned write that rewrites two partial blocks and extends the file.
            let data = vec![0xEEu8; 700];
            c.write(&tv.vol, f.as_fd(), 1000, &data).unwrap();
            let after = std::fs::read(tv.vol.root().join("t")).unwrap();
            let mut new = old.clone();
            new.resize(1700, 0);
            new[1000..1700].copy_from_slice(&data);
            let first_diff = before
                .iter()
                .zip(&after)
                .position(|(a, b)| a != b)
                .unwrap_or(before.len());
            let bs = 512usize;
            for cut in first_diff..=after.len() {
                let mut torn = before.clone();
                if torn.len() < cut {
                    torn.resize(cut, 0);
                }
                torn[first_diff..cut].copy_from_slice(&after[first_diff..cut]);
                let p = tv.vol.root().join("torn");
                std::fs::write(&p, &torn).unwrap();
                if loc == KeyLocation::Xattr {
                    let h = sys::fgetxattr(f.as_fd(), HEADER_XATTR).unwrap();
                    let g = std::fs::File::open(&p).unwrap();
                    sys::fsetxattr(g.as_fd(), HEADER_XATTR, &h, 0).unwrap();
                }
                let g = std::fs::File::open(&p).unwrap();
                let fresh = FileContent::new();
                for b in 0..4 {
                    if let Ok(got) = fresh.read(&tv.vol, g.as_fd(), (b * bs) as u64, bs as u32) {
                        let pick = |v: &Vec<u8>| {
                            v[(b * bs).min(v.len())..((b + 1) * bs).min(v.len())].to_vec()
                        };
                        let (o, n) = (pick(&old), pick(&new));
                        // A cut may shorten the visible file, never change bytes.
                        assert!(
                            o.starts_with(&got) || n.starts_with(&got),
                            "{loc:?} cut {cut} block {b}: other bytes"
                        );
                    }
                }
            }
        }
    }
}
