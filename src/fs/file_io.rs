//! File content through an open handle: read, write, fallocate and fsync;
//! and the repair of a last block a crash tore.
//! Flush has nothing to do: each WRITE reaches the backing file before it
//! is answered, and under writeback caching the kernel sends its dirty
//! pages before FLUSH and FSYNC (and reports their errors there).
//! copy_file_range is the kernel's, through read and write.

use std::os::fd::AsFd;

use fuser::{Errno, FileHandle, FileType, WriteFlags};

use super::{content_err, io, killpriv, EnvelopeFs, Node, Res};
use crate::sys;

impl EnvelopeFs {
    /// The largest file size: a write, fallocate or truncate past it is
    /// EFBIG. The kernel cannot check it (a FUSE mount's limit is the largest
    /// offset), and the backing file is larger than its plaintext.
    pub(super) fn size_limit(&self) -> u64 {
        if crate::fault::planted("fs-efbig-unchecked") {
            return u64::MAX;
        }
        self.vol.max_file_size()
    }

    /// Read into `buf` (the reply's buffer): the number of bytes read.
    pub(super) fn read_file(
        &self,
        fh: FileHandle,
        offset: u64,
        size: u32,
        buf: &mut [u8],
    ) -> Res<usize> {
        self.with_file(fh, |state| {
            state
                .node
                .content
                .read_into(&self.vol, state.fd.as_fd(), offset, size, buf)
                .map_err(content_err)
        })
    }

    pub(super) fn write_file(
        &self,
        caller: killpriv::Caller,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
    ) -> Res<usize> {
        // Page-cache writeback (FUSE_WRITE_CACHE) is not a caller's write:
        // its fh is any of the file's writable handles, its uid/gid/pid are
        // not valid, and the kernel writes through, with the caller, when
        // setuid/setgid must go (killpriv.rs).
        let caller = (!write_flags.contains(WriteFlags::FUSE_WRITE_CACHE)).then_some(caller);
        // As the kernel's own filesystems: EFBIG at the limit, a short write up to it.
        let limit = self.size_limit();
        if offset >= limit && !data.is_empty() {
            return Err(Errno::EFBIG);
        }
        let room = limit - offset.min(limit);
        let data = &data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        self.with_file(fh, |state| {
            let _changing = self.writable()?;
            if let Some(caller) = caller {
                if killpriv::on_change(caller, state.fd.as_fd()).map_err(io)? {
                    // No reply to a WRITE carries the mode.
                    self.attrs_changed(&state.node);
                }
            }
            // The kernel keeps mtime under writeback caching and sends it
            // (SETATTR) when it changes it, also before or beside the pages:
            // the WRITE of a page must not move it.
            let page_write = match caller {
                Some(_) => None,
                None => {
                    let times = state.node.times.lock();
                    Some((times, sys::fstat(state.fd.as_fd()).map_err(io)?))
                }
            };
            let written = state
                .node
                .content
                .write(&self.vol, state.fd.as_fd(), offset, data)
                .map_err(content_err)?;
            if let Some((_times, before)) = page_write {
                let kept = [
                    libc::timespec {
                        tv_sec: 0,
                        tv_nsec: libc::UTIME_OMIT,
                    },
                    libc::timespec {
                        tv_sec: before.st_mtime,
                        tv_nsec: before.st_mtime_nsec,
                    },
                ];
                if let Err(err) = sys::utimens_fd(state.fd.as_fd(), &kept) {
                    log::debug!("mtime of node {} after a page write: {err}", state.node.id);
                }
            }
            Ok(written)
        })
    }

    pub(super) fn allocate(
        &self,
        caller: killpriv::Caller,
        fh: FileHandle,
        (offset, length): (u64, u64),
        mode: i32,
    ) -> Res<()> {
        if offset
            .checked_add(length)
            .is_none_or(|end| end > self.size_limit())
        {
            return Err(Errno::EFBIG);
        }
        self.with_file(fh, |state| {
            let _changing = self.writable()?;
            if killpriv::on_change(caller, state.fd.as_fd()).map_err(io)? {
                self.attrs_changed(&state.node);
            }
            state
                .node
                .content
                .fallocate(&self.vol, state.fd.as_fd(), mode, offset, length)
                .map_err(content_err)
        })
    }

    /// fsync and fdatasync: the volume keeps a partial last block's copy
    /// with them, so that a crash during a later rewrite of that block does
    /// not take the fsync'd bytes in it along.
    pub(super) fn sync_file(&self, fh: FileHandle, datasync: bool) -> Res<()> {
        self.with_file(fh, |state| {
            state
                .node
                .content
                .sync(&self.vol, state.fd.as_fd(), datasync)
                .map_err(content_err)
        })
    }

    /// Before the kernel first hears of a regular file's size (under
    /// writeback caching it keeps its own from then on): restore a last
    /// block torn by a crash from the copy its last fsync kept, once per
    /// node. True when the backing file changed. A read-only mount leaves it
    /// torn (EIO).
    pub(super) fn restore_torn_tail(&self, node: &Node) -> bool {
        if node.kind != FileType::RegularFile || self.opts.read_only {
            return false;
        }
        let Ok(path_fd) = node.fd() else {
            return false;
        };
        let open = || sys::reopen(path_fd.as_fd(), libc::O_RDWR);
        match node
            .content
            .restore_torn_tail_once(&self.vol, path_fd.as_fd(), open)
        {
            Ok(restored) => restored,
            Err(err) => {
                log::debug!("tail of node {} not checked: {err}", node.id);
                false
            }
        }
    }
}
