//! Attributes: getattr, setattr (mode, owner, size, times) and statfs.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileHandle, FileType, INodeNo, TimeOrNow};

use super::{content_err, io, killpriv, nodes, EnvelopeFs, Handle, Node, Res};
use crate::sys;

/// The changes one setattr asks for.
pub(super) struct SetAttr {
    /// Who asks: a truncate may clear setuid/setgid (killpriv.rs).
    pub caller: killpriv::Caller,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

impl SetAttr {
    /// Whether anything changes at all (a bare setattr is a getattr).
    pub fn changes(&self) -> bool {
        self.mode.is_some()
            || self.uid.is_some()
            || self.gid.is_some()
            || self.size.is_some()
            || self.atime.is_some()
            || self.mtime.is_some()
    }
}

/// The filesystem's statistics, as statfs(2) gives them.
pub(super) struct FsStats {
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub block_size: u32,
    pub name_max: u32,
    pub fragment_size: u32,
}

fn systime(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

fn timespec(time: Option<TimeOrNow>) -> libc::timespec {
    match time {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(at)) => match at.duration_since(UNIX_EPOCH) {
            Ok(since) => libc::timespec {
                tv_sec: since.as_secs() as libc::time_t,
                tv_nsec: since.subsec_nanos() as libc::c_long,
            },
            Err(before) => {
                let before = before.duration();
                let mut sec = -(before.as_secs() as i64);
                let mut nsec = before.subsec_nanos() as i64;
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                libc::timespec {
                    tv_sec: sec as libc::time_t,
                    tv_nsec: nsec as libc::c_long,
                }
            }
        },
    }
}

impl EnvelopeFs {
    pub(super) fn attr_of(&self, node: &Node, st: &libc::stat) -> FileAttr {
        let size = match node.kind {
            FileType::RegularFile => self.vol.plain_size(st.st_size as u64),
            FileType::Symlink => self.vol.symlink_target_len(st.st_size as u64),
            _ => st.st_size as u64,
        };
        FileAttr {
            ino: INodeNo(node.id),
            size,
            blocks: st.st_blocks as u64,
            atime: systime(st.st_atime, st.st_atime_nsec),
            mtime: systime(st.st_mtime, st.st_mtime_nsec),
            ctime: systime(st.st_ctime, st.st_ctime_nsec),
            crtime: UNIX_EPOCH,
            kind: node.kind,
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: self.vol.config().block_size,
            flags: 0,
        }
    }

    pub(super) fn node_attr(&self, node: &Node) -> Res<FileAttr> {
        let st = sys::fstat(node.fd().map_err(io)?.as_fd()).map_err(io)?;
        Ok(self.attr_of(node, &st))
    }

    /// The attributes of `ino`; with an open handle, of its descriptor: that
    /// works even for an unlinked file whose node descriptor was closed
    /// under pressure.
    pub(super) fn get_attr(&self, ino: INodeNo, fh: Option<FileHandle>) -> Res<FileAttr> {
        let via_handle = fh
            .and_then(|fh| self.file_handle(fh).ok())
            .and_then(|handle| match &*handle {
                Handle::File(state) => {
                    let st = sys::fstat(state.fd.as_fd()).ok()?;
                    Some(self.attr_of(&state.node, &st))
                }
                Handle::Dir(_) => None,
            });
        match via_handle {
            Some(attr) => Ok(attr),
            None => self.node_attr(&*self.node(ino)?),
        }
    }

    /// A real descriptor of a regular file node for content work outside a handle.
    pub(super) fn content_fd(&self, node: &Node, write: bool) -> Res<OwnedFd> {
        let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
        sys::reopen(node.fd().map_err(io)?.as_fd(), flags).map_err(io)
    }

    /// Truncate (or extend) a regular file, through its handle if one is given.
    fn set_size(&self, node: &Node, size: u64, fh: Option<FileHandle>) -> Res<()> {
        if node.kind != FileType::RegularFile {
            return Err(Errno::EINVAL);
        }
        if size > self.size_limit() {
            return Err(Errno::EFBIG);
        }
        match fh.and_then(|fh| self.file_handle(fh).ok()) {
            Some(handle) => match &*handle {
                Handle::File(state) => node
                    .content
                    .truncate(&self.vol, state.fd.as_fd(), size)
                    .map_err(content_err),
                Handle::Dir(_) => Err(Errno::EISDIR),
            },
            None => {
                let fd = self.content_fd(node, true)?;
                node.content
                    .truncate(&self.vol, fd.as_fd(), size)
                    .map_err(content_err)
            }
        }
    }

    pub(super) fn set_attr(
        &self,
        ino: INodeNo,
        change: SetAttr,
        fh: Option<FileHandle>,
    ) -> Res<FileAttr> {
        let node: Arc<Node> = self.node(ino)?;
        let _changing = if change.changes() {
            Some(self.writable()?)
        } else {
            None
        };
        if let Some(size) = change.size {
            self.set_size(&node, size, fh)?;
        }
        if change.uid.is_some() || change.gid.is_some() {
            let fd = node.fd().map_err(io)?;
            let before = sys::fstat(fd.as_fd()).map_err(io)?;
            sys::fchown_fd(fd.as_fd(), change.uid, change.gid).map_err(io)?;
            killpriv::after_chown(change.caller, fd.as_fd(), &before).map_err(io)?;
        }
        if let Some(mode) = change.mode {
            if node.kind == FileType::Symlink {
                return Err(Errno::EOPNOTSUPP);
            }
            sys::fchmod_fd(node.fd().map_err(io)?.as_fd(), mode & 0o7777).map_err(io)?;
            self.acl_after_chmod(&node, mode)?;
        }
        if change.size.is_some() {
            // The kernel leaves this to the daemon (FUSE_HANDLE_KILLPRIV_V2).
            // The reply carries the new mode.
            killpriv::on_change(change.caller, node.fd().map_err(io)?.as_fd()).map_err(io)?;
        }
        if change.atime.is_some() || change.mtime.is_some() {
            let times = [timespec(change.atime), timespec(change.mtime)];
            let _times = node.times.lock();
            sys::utimens_fd(node.fd().map_err(io)?.as_fd(), &times).map_err(io)?;
        }
        self.node_attr(&node)
    }

    /// The backing filesystem's statistics, with names up to 255 bytes.
    pub(super) fn stat_fs(&self) -> Res<FsStats> {
        let root = self.nodes.get(nodes::ROOT_ID).ok_or(Errno::EIO)?;
        let stats = sys::fstatvfs(root.fd().map_err(io)?.as_fd()).map_err(io)?;
        Ok(FsStats {
            blocks: stats.f_blocks,
            blocks_free: stats.f_bfree,
            blocks_available: stats.f_bavail,
            files: stats.f_files,
            files_free: stats.f_ffree,
            block_size: stats.f_bsize as u32,
            name_max: 255,
            fragment_size: stats.f_frsize as u32,
        })
    }
}
