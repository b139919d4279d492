//! File content copied into another volume (`snapshot copy`, `import`): a new
//! file filled with freshly encrypted pieces, in any order and from several
//! threads, or a file's blocks carried over unchanged under its header
//! re-wrapped for the other volume's key. The copy engine moves the bytes;
//! the block layout stays here, in `content` and in `crypto`.

use std::io;
use std::os::fd::BorrowedFd;

use super::content::fd_path;
use super::{FileContent, Volume};
use crate::crypto::offsets::BLOCK_OVERHEAD;
use crate::error::ContentError;
use crate::sys;

/// Plaintext bytes of one piece of a new file: a whole number of blocks of
/// every block size (powers of two up to 1 MiB), so pieces share no block.
pub const NEW_FILE_PIECE: u64 = 1 << 20;

/// Where the blocks of a file carried over by `FileContent::rekey_from` go:
/// backing bytes `src..src + len` of the source file, unchanged, to
/// `dst..dst + len` of the destination file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarriedBody {
    pub src: u64,
    pub dst: u64,
    pub len: u64,
}

/// A call against the contract of this module (EINVAL).
/// The volume key of a format 1 volume; a write-only volume has none to
/// rewrap under.
fn volume_key<'a>(
    vol: &'a Volume,
    fd: BorrowedFd<'_>,
) -> Result<&'a crate::crypto::keys::VolumeKey, ContentError> {
    vol.volume_key().map_err(|e| ContentError::Corrupt {
        what: e.to_string(),
        path: fd_path(fd),
    })
}

fn invalid() -> ContentError {
    ContentError::Io(io::Error::from_raw_os_error(libc::EINVAL))
}

impl FileContent {
    /// Encrypt `data`, the plaintext at `offset` of a new file of `plain_size`
    /// bytes (its header written by `create`), straight into its blocks,
    /// with no read-modify-write. `offset` is a multiple of `NEW_FILE_PIECE`
    /// and `data` the whole piece there (shorter only at the file's end).
    /// Pieces may be written in any order and from several threads; an
    /// all-zero piece is best not written at all: `finish_new` leaves it a
    /// hole, which reads as zeros.
    pub fn write_new_piece(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        plain_size: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ContentError> {
        if offset % NEW_FILE_PIECE != 0
            || offset >= plain_size
            || data.len() as u64 != (plain_size - offset).min(NEW_FILE_PIECE)
        {
            return Err(invalid());
        }
        let fc = self.crypto(vol, fd)?;
        let l = vol.layout();
        let blocks: Vec<&[u8]> = data.chunks(l.block_size() as usize).collect();
        let mut out = Vec::with_capacity(data.len() + blocks.len() * BLOCK_OVERHEAD as usize);
        let mut first = l.block_of(offset);
        let at = l.cipher_offset(first);
        if crate::fault::planted("snapshot-piece-misplaced") {
            first.0 += 1; // sealed as the next blocks: they fail authentication
        }
        fc.encrypt_blocks(first, &blocks, &mut out);
        sys::pwrite_all(fd, &out, at)?;
        Ok(())
    }

    /// Give a new file filled by `write_new_piece` its size, `plain_size`:
    /// the pieces not written become holes.
    pub fn finish_new(
        &self,
        vol: &Volume,
        fd: BorrowedFd<'_>,
        plain_size: u64,
    ) -> Result<(), ContentError> {
        sys::ftruncate(fd, vol.layout().cipher_size(plain_size))?;
        Ok(())
    }

    /// Make the new, empty file `dfd` of `to` a copy of `sfd` of `from` under
    /// the same data key: its header re-wrapped for `to`'s volume key (a
    /// fresh header for an empty source that has none), and its size set.
    /// Returns where the blocks are to be copied, unchanged (`None`: no
    /// blocks). The volumes must have the same block size.
    pub fn rekey_from(
        &self,
        to: &Volume,
        dfd: BorrowedFd<'_>,
        from: &Volume,
        sfd: BorrowedFd<'_>,
    ) -> Result<Option<CarriedBody>, ContentError> {
        let (sl, dl) = (from.layout(), to.layout());
        if sl.block_size() != dl.block_size() {
            return Err(invalid());
        }
        let Some(h) = FileContent::header_of(from, sfd)? else {
            self.create(to, dfd)?;
            return Ok(None);
        };
        let nh = h
            .rewrap(
                (volume_key(from, sfd)?, from.volume_id()),
                (volume_key(to, dfd)?, to.volume_id()),
            )
            .map_err(|e| ContentError::Corrupt {
                what: format!("header: {e}"),
                path: fd_path(sfd),
            })?;
        self.install_header(to, dfd, &nh)?;
        let size = sys::fstat(sfd)?.st_size as u64;
        let body = CarriedBody {
            src: sl.header_len(),
            dst: dl.header_len(),
            len: size.saturating_sub(sl.header_len()),
        };
        sys::ftruncate(dfd, body.dst + body.len)?;
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::testutil::volume;
    use crate::volume::InitOptions;
    use std::os::fd::AsFd;

    fn new_file(v: &Volume, name: &str) -> std::fs::File {
        crate::volume::testutil::create_in_root(v, name)
    }

    /// Pieces written out of order, one all-zero piece left out, read back
    /// through the ordinary read path.
    #[test]
    fn pieces_in_any_order_with_holes_read_back() {
        for block_size in [4096, 1 << 20] {
            let tv = volume(InitOptions {
                block_size,
                ..InitOptions::default()
            });
            let v = &tv.vol;
            let f = new_file(v, "f");
            let size = 3 * NEW_FILE_PIECE + 1234;
            let plain: Vec<u8> = (0..size)
                .map(|i| {
                    if (NEW_FILE_PIECE..2 * NEW_FILE_PIECE).contains(&i) {
                        0
                    } else {
                        (i % 251) as u8
                    }
                })
                .collect();
            let c = FileContent::new();
            c.create(v, f.as_fd()).unwrap();
            for i in [3, 0, 2] {
                let off = i * NEW_FILE_PIECE;
                let end = (off + NEW_FILE_PIECE).min(size);
                c.write_new_piece(v, f.as_fd(), size, off, &plain[off as usize..end as usize])
                    .unwrap();
            }
            c.finish_new(v, f.as_fd(), size).unwrap();
            assert_eq!(f.metadata().unwrap().len(), v.layout().cipher_size(size));
            let r = FileContent::new();
            let mut got = Vec::new();
            while (got.len() as u64) < size {
                let b = r.read(v, f.as_fd(), got.len() as u64, 1 << 20).unwrap();
                assert!(!b.is_empty(), "read ended early at {}", got.len());
                got.extend_from_slice(&b);
            }
            assert!(got == plain, "block size {block_size}: content differs");
        }
    }

    /// Sizes at and around block and piece boundaries, under both key
    /// locations and the smallest and largest block sizes, each piece
    /// written from its own thread in reverse order (all-zero ones left
    /// out): the copy reads back exactly and has the backing size an
    /// ordinary write of the same bytes gives.
    #[test]
    fn pieces_at_boundaries_read_back_as_ordinary_writes() {
        use crate::volume::KeyLocation;
        let p = NEW_FILE_PIECE;
        for key_location in [KeyLocation::Header, KeyLocation::Xattr] {
            for block_size in [512u32, 1 << 20] {
                let tv = volume(InitOptions {
                    block_size,
                    key_location,
                    ..InitOptions::default()
                });
                let v = &tv.vol;
                let bs = u64::from(block_size);
                let sizes = [
                    1,
                    bs - 1,
                    bs,
                    bs + 1,
                    p - 1,
                    p,
                    p + 1,
                    2 * p + bs,
                    3 * p - 1,
                ];
                for (n, size) in sizes.into_iter().enumerate() {
                    // The second piece all zeros (a hole), the rest a pattern.
                    let plain: Vec<u8> = (0..size)
                        .map(|i| {
                            if (p..2 * p).contains(&i) {
                                0
                            } else {
                                (i % 251 + 1) as u8
                            }
                        })
                        .collect();
                    let f = new_file(v, &format!("copy{n}"));
                    let c = FileContent::new();
                    c.create(v, f.as_fd()).unwrap();
                    std::thread::scope(|s| {
                        for i in (0..size.div_ceil(p)).rev() {
                            let (c, f, plain) = (&c, &f, &plain);
                            s.spawn(move || {
                                let off = i * p;
                                let data = &plain[off as usize..(off + p).min(size) as usize];
                                if data.iter().any(|b| *b != 0) {
                                    c.write_new_piece(v, f.as_fd(), size, off, data).unwrap();
                                }
                            });
                        }
                    });
                    c.finish_new(v, f.as_fd(), size).unwrap();
                    let o = new_file(v, &format!("ordinary{n}"));
                    let w = FileContent::new();
                    w.create(v, o.as_fd()).unwrap();
                    assert_eq!(w.write(v, o.as_fd(), 0, &plain).unwrap(), plain.len());
                    let what = format!("{key_location:?}, block size {bs}, size {size}");
                    assert_eq!(
                        f.metadata().unwrap().len(),
                        o.metadata().unwrap().len(),
                        "{what}: backing size"
                    );
                    let r = FileContent::new();
                    let mut got = Vec::new();
                    while (got.len() as u64) < size {
                        let b = r.read(v, f.as_fd(), got.len() as u64, 1 << 20).unwrap();
                        assert!(!b.is_empty(), "{what}: read ended early at {}", got.len());
                        got.extend_from_slice(&b);
                    }
                    assert!(
                        r.read(v, f.as_fd(), size, 4096).unwrap().is_empty(),
                        "{what}"
                    );
                    assert!(got == plain, "{what}: content differs");
                }
            }
        }
    }

    #[test]
    fn misaligned_pieces_are_refused() {
        let tv = volume(InitOptions::default());
        let v = &tv.vol;
        let f = new_file(v, "f");
        let c = FileContent::new();
        c.create(v, f.as_fd()).unwrap();
        let size = 2 * NEW_FILE_PIECE;
        let piece = vec![1u8; NEW_FILE_PIECE as usize];
        for (off, len) in [(4096, NEW_FILE_PIECE), (0, NEW_FILE_PIECE - 1), (size, 1)] {
            let e = c
                .write_new_piece(v, f.as_fd(), size, off, &piece[..len as usize])
                .unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "offset {off}, length {len}");
        }
    }
}
