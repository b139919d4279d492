//! File content through an open handle: read, write, fallocate and fsync.
//! Flush has nothing to do (writes reach the backing file synchronously);
//! copy_file_range is the kernel's, through read and write.

use std::os::fd::AsFd;

use fuser::{FileHandle, WriteFlags};

use super::{content_err, io, killpriv, EnvelopeFs, Res};
use crate::sys;

impl EnvelopeFs {
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
        // Page-cache writeback is not a caller's write (ext4 clears nothing on it).
        let caller = (!write_flags.contains(WriteFlags::FUSE_WRITE_CACHE)).then_some(caller);
        self.with_file(fh, |state| {
            let _changing = self.writable()?;
            if let Some(caller) = caller {
                killpriv::on_change(caller, state.fd.as_fd()).map_err(io)?;
            }
            state
                .node
                .content
                .write(&self.vol, state.fd.as_fd(), offset, data)
                .map_err(content_err)
        })
    }

    pub(super) fn allocate(
        &self,
        caller: killpriv::Caller,
        fh: FileHandle,
        (offset, length): (u64, u64),
        mode: i32,
    ) -> Res<()> {
        self.with_file(fh, |state| {
            let _changing = self.writable()?;
            killpriv::on_change(caller, state.fd.as_fd()).map_err(io)?;
            state
                .node
                .content
                .fallocate(&self.vol, state.fd.as_fd(), mode, offset, length)
                .map_err(content_err)
        })
    }

    pub(super) fn sync_file(&self, fh: FileHandle, datasync: bool) -> Res<()> {
        self.with_file(fh, |state| {
            sys::fsync(state.fd.as_fd(), datasync).map_err(io)
        })
    }
}
