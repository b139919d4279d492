//! Opening and creating: open, create and mknod. A new regular file gets its
//! content header before anyone can open it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, INodeNo, OpenFlags, Request};

use super::acl_mode::NewKind;
use super::{content_err, io, EnvelopeFs, FileHandleState, Handle, Node, Res};
use crate::sys;

/// Whether the backing file behind `fd` has the ctime and size it had when
/// `node` was last opened (then the pages the kernel kept are still right).
fn unchanged_since_last_open(node: &Node, fd: BorrowedFd<'_>) -> Res<bool> {
    let st = sys::fstat(fd).map_err(io)?;
    let now = (st.st_ctime, st.st_ctime_nsec, st.st_size);
    let before = node.opened_as.lock().replace(now);
    Ok(before == Some(now))
}

/// The flags a file is opened with in the backing directory.
fn open_backing_flags(flags: i32) -> i32 {
    // The daemon reads for read-modify-write and computes offsets itself;
    // under writeback caching the kernel also reads partial pages through a
    // write-only handle, and appends at the size it keeps itself.
    let strip = libc::O_APPEND
        | libc::O_TRUNC
        | libc::O_DIRECT
        | libc::O_CREAT
        | libc::O_EXCL
        | libc::O_NOCTTY
        | libc::O_ACCMODE
        | libc::O_PATH;
    (flags & !strip) | libc::O_RDWR
}

impl EnvelopeFs {
    /// Open a regular file: its handle, and whether the kernel may keep the
    /// pages it caches of it (FOPEN_KEEP_CACHE).
    pub(super) fn open_file(&self, ino: INodeNo, flags: OpenFlags) -> Res<(u64, bool)> {
        let node = self.node(ino)?;
        if node.kind != FileType::RegularFile {
            return Err(Errno::EINVAL);
        }
        let access = flags.0 & libc::O_ACCMODE;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let _changing = if truncate {
            Some(self.writable()?)
        } else {
            if access != libc::O_RDONLY && self.opts.read_only {
                return Err(Errno::EROFS);
            }
            None
        };
        let node_fd = node.fd().map_err(io)?;
        let fd = if self.opts.read_only {
            sys::reopen(node_fd.as_fd(), libc::O_RDONLY).map_err(io)?
        } else {
            match sys::reopen(node_fd.as_fd(), open_backing_flags(flags.0)) {
                Ok(fd) => fd,
                // A non-root daemon may lack read access to a write-only file.
                Err(err) if err.raw_os_error() == Some(libc::EACCES) => sys::reopen(
                    node_fd.as_fd(),
                    (open_backing_flags(flags.0) & !libc::O_ACCMODE) | access,
                )
                .map_err(io)?,
                Err(err) => return Err(io(err)),
            }
        };
        if self.opts.write_only {
            // Refused at open, before O_TRUNC: a file of an earlier session
            // is neither read nor changed.
            node.content
                .crypto(&self.vol, fd.as_fd())
                .map_err(content_err)?;
        }
        if truncate {
            node.content
                .truncate(&self.vol, fd.as_fd(), 0)
                .map_err(content_err)?;
        }
        // Every change a read-write mount's file sees goes through its kernel;
        // a read-only mount may share the volume with a read-write one. A
        // write-only mount keeps no page beyond the open that made it.
        let keep_cache = !self.opts.write_only
            && (!self.opts.read_only || unchanged_since_last_open(&node, fd.as_fd())?);
        let fh = self.new_fh(Handle::File(FileHandleState { node, fd }));
        Ok((fh, keep_cache))
    }

    /// Create and open a regular file: its attributes and handle.
    pub(super) fn create_file(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        (mode, umask): (u32, u32),
        flags: i32,
    ) -> Res<(FileAttr, u64)> {
        let entry = self.new_entry(parent, name)?;
        let (node, attr, fd) = self.create_regular(req, &entry, (mode, umask))?;
        if flags & libc::O_TRUNC != 0 {
            node.content
                .truncate(&self.vol, fd.as_fd(), 0)
                .map_err(content_err)?;
        }
        let fh = self.new_fh(Handle::File(FileHandleState { node, fd }));
        Ok((attr, fh))
    }

    /// mknod: a regular file, fifo, socket or device node.
    pub(super) fn make_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        (mode, umask): (u32, u32),
        rdev: u32,
    ) -> Res<(Arc<Node>, FileAttr)> {
        let entry = self.new_entry(parent, name)?;
        let format = mode & libc::S_IFMT;
        if format == libc::S_IFREG || format == 0 {
            let (node, attr, _fd) = self.create_regular(req, &entry, (mode, umask))?;
            return Ok((node, attr));
        }
        // A whiteout (0:0, what overlayfs makes) needs no privilege, as in the kernel.
        let whiteout = format == libc::S_IFCHR && rdev == 0;
        let device = format == libc::S_IFCHR || format == libc::S_IFBLK;
        if device && !self.is_root_daemon && !whiteout {
            return Err(Errno::EPERM);
        }
        let mode = self
            .inherit(&entry.dir, mode, umask, NewKind::Special)?
            .mode;
        self.make_entry(&entry, |dir_fd, backing_name| {
            sys::mknodat(dir_fd, backing_name, mode, rdev as u64)
        })?;
        self.adopt_entry(req, &entry)
    }

    /// A new regular file with its inherited ACLs: its node, attributes and
    /// an open RDWR descriptor.
    fn create_regular(
        &self,
        req: &Request,
        entry: &super::NewEntry<'_>,
        (mode, umask): (u32, u32),
    ) -> Res<(Arc<Node>, FileAttr, OwnedFd)> {
        let inherited = self.inherit(&entry.dir, mode, umask, NewKind::File)?;
        let created = self.with_side(&entry.dir, &entry.backing, || {
            self.create_file_entry(req, &entry.dir, &entry.backing.name, inherited.mode)
        })?;
        self.store_inherited(&created.0, &inherited)?;
        Ok(created)
    }

    /// Create a regular file with its header; returns its node and an open RDWR fd.
    /// Only ever a new file: the kernel sends CREATE after a LOOKUP found
    /// nothing and checked only the right to create in the directory, so an
    /// entry that appeared in the backing directory since (planted, or
    /// renamed there by a user who owns that backing directory) is EEXIST,
    /// never opened as root for the caller.
    fn create_file_entry(
        &self,
        req: &Request,
        dir: &Node,
        backing_name: &OsStr,
        mode: u32,
    ) -> Res<(Arc<Node>, FileAttr, OwnedFd)> {
        let perm = mode & 0o7777;
        let fd = sys::create_new(
            dir.fd().map_err(io)?.as_fd(),
            backing_name,
            libc::O_RDWR,
            perm,
        )
        .map_err(io)?;
        self.set_owner(req, dir, fd.as_fd())?;
        if perm & (libc::S_ISUID | libc::S_ISGID) != 0 {
            // chown cleared the set-id bits; put back what was asked for.
            let _ = sys::fchmod_fd(fd.as_fd(), perm);
        }
        let st = sys::fstat(fd.as_fd()).map_err(io)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Errno::EEXIST);
        }
        let path_fd = sys::reopen(fd.as_fd(), libc::O_PATH).map_err(io)?;
        let (node, _) = self.register(path_fd)?;
        if let Err(err) = node.content.create(&self.vol, fd.as_fd()) {
            let _ = sys::unlinkat(dir.fd().map_err(io)?.as_fd(), backing_name, false);
            return Err(content_err(err));
        }
        let attr = self.node_attr(&node)?;
        Ok((node, attr, fd))
    }
}
