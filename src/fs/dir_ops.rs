//! Directories: lookup, mkdir, rmdir, listings (opendir, readdir) and fsyncdir.
//! With encrypted names a backing directory carries its name IV file, made
//! with the directory and taken out before it is removed or replaced.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, Generation, INodeNo, ReplyDirectoryPlus, Request};
use log::{error, warn};
use parking_lot::Mutex;

use super::acl_mode::NewKind;
use super::{io, DirEntry, DirHandleState, EnvelopeFs, Handle, Listing, NameUse, Node, Res, TTL};
use crate::sys;
use crate::volume::{self, BackingName, DIRIV_NAME};

/// What `take_dir_iv` took: the directory, and its IV to put back.
pub(super) type TakenIv = (OwnedFd, Option<[u8; 16]>);

/// The kind of a directory entry from its `d_type`.
fn kind_of(dtype: u8) -> FileType {
    match dtype {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

impl EnvelopeFs {
    pub(super) fn look_up(&self, parent: INodeNo, name: &OsStr) -> Res<(Arc<Node>, FileAttr)> {
        let dir = self.dir_node(parent)?;
        let backing = self.backing_name(&dir, name, NameUse::Existing)?;
        self.lookup_backing(&dir, &backing.name)
    }

    pub(super) fn make_dir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        (mode, umask): (u32, u32),
    ) -> Res<(Arc<Node>, FileAttr)> {
        let entry = self.new_entry(parent, name)?;
        let (dir, backing) = (&entry.dir, &entry.backing);
        let inherited = self.inherit(dir, mode, umask, NewKind::Dir)?;
        self.make_entry(&entry, |dir_fd, backing_name| {
            sys::mkdirat(dir_fd, backing_name, inherited.mode & 0o7777)
        })?;
        let fd = sys::openat(
            dir.fd().map_err(io)?.as_fd(),
            &backing.name,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(io)?;
        if self.vol.names().uses_diriv() {
            if let Err(err) = volume::write_diriv_at(fd.as_fd()) {
                let _ = sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &backing.name, true);
                self.remove_side(dir, backing);
                return Err(io(err));
            }
        }
        self.set_owner(req, dir, fd.as_fd())?;
        let (node, attr) = self.register(fd)?;
        self.store_inherited(&node, &inherited)?;
        Ok((node, attr))
    }

    pub(super) fn remove_dir_entry(&self, parent: INodeNo, name: &OsStr) -> Res<()> {
        let _changing = self.writable()?;
        let dir = self.dir_node(parent)?;
        let backing = self.backing_name(&dir, name, NameUse::Existing)?;
        self.remove_dir(&dir, &backing)?;
        self.remove_side(&dir, &backing);
        Ok(())
    }

    /// Take the IV file out of an empty backing directory `parent/name`
    /// (ENOTEMPTY otherwise), so that the directory can be removed or
    /// replaced; returns what `restore_iv` needs to put it back on failure.
    pub(super) fn take_dir_iv(&self, parent: &Node, name: &OsStr) -> Res<TakenIv> {
        let child = sys::openat(
            parent.fd().map_err(io)?.as_fd(),
            name,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(io)?;
        let entries = sys::list_dir(child.as_fd()).map_err(io)?;
        if entries
            .iter()
            .any(|(entry_name, _, _)| entry_name.as_slice() != DIRIV_NAME.as_bytes())
        {
            return Err(Errno::ENOTEMPTY);
        }
        let iv = volume::read_diriv(child.as_fd()).ok();
        match sys::unlinkat(child.as_fd(), OsStr::new(DIRIV_NAME), false) {
            Ok(()) => Ok((child, iv)),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok((child, None)),
            Err(err) => Err(io(err)),
        }
    }

    /// EIO when the IV cannot be put back: names in that directory could no
    /// longer be made or read.
    pub(super) fn restore_iv(taken: TakenIv) -> Res<()> {
        let (fd, Some(iv)) = taken else { return Ok(()) };
        let restored = match crate::fault::planted("fs-diriv-restore-fails") {
            true => Err(std::io::Error::from_raw_os_error(libc::EIO)),
            false => volume::write_diriv_bytes(fd.as_fd(), &iv),
        };
        restored.map_err(|err| {
            let dir = volume::content::fd_path(fd.as_fd());
            error!("{dir}: its {DIRIV_NAME} could not be put back: {err}");
            Errno::EIO
        })
    }

    /// Remove a backing directory, and its IV file first (restored if rmdir fails).
    fn remove_dir(&self, dir: &Node, backing: &BackingName) -> Res<()> {
        if !self.vol.names().uses_diriv() {
            return sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &backing.name, true).map_err(io);
        }
        let taken = self.take_dir_iv(dir, &backing.name)?;
        match sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &backing.name, true) {
            Ok(()) => Ok(()),
            Err(err) => {
                Self::restore_iv(taken)?;
                Err(io(err))
            }
        }
    }

    /// The entries of `dir`, names decrypted, with `.` and `..` first.
    fn list_entries(&self, dir: &Node) -> Res<Vec<DirEntry>> {
        let ctx = self.dir_ctx(dir)?;
        let dot = |name: &str| DirEntry {
            id: dir.id,
            kind: FileType::Directory,
            name: OsString::from(name),
            backing: None,
        };
        let mut entries = vec![dot("."), dot("..")];
        let (good, bad) = self
            .vol
            .list_dir(dir.fd().map_err(io)?.as_fd(), &ctx)
            .map_err(io)?;
        for entry in bad {
            warn!(
                "directory node {}: backing entry {:?} has a name that does not decrypt here (corrupt, or moved from another directory); skipped",
                dir.id, entry.backing
            );
        }
        for entry in good {
            let id = self.nodes.id_for(dir.dev, entry.ino);
            entries.push(DirEntry {
                id,
                kind: kind_of(entry.dtype),
                name: entry.plain,
                backing: Some(entry.backing),
            });
        }
        Ok(entries)
    }

    /// Open a listing of directory `ino`, read now.
    pub(super) fn open_dir(&self, ino: INodeNo) -> Res<u64> {
        let dir = self.dir_node(ino)?;
        let entries = Arc::new(self.list_entries(&dir)?);
        let listing = Mutex::new(Listing {
            entries,
            fresh: true,
        });
        Ok(self.new_fh(Handle::Dir(DirHandleState { dir, listing })))
    }

    /// The entries of the listing `fh`. Offset 0 after the listing was read
    /// (a rewinddir) reads the directory again, as Linux filesystems do, so
    /// that names made since opendir show.
    pub(super) fn dir_entries(&self, fh: u64, offset: u64) -> Res<Arc<Vec<DirEntry>>> {
        self.listing(fh, offset).map(|(_, entries)| entries)
    }

    /// The directory and the entries of the listing `fh` (see `dir_entries`).
    fn listing(&self, fh: u64, offset: u64) -> Res<(Arc<Node>, Arc<Vec<DirEntry>>)> {
        let handle = self.handles.lock().get(&fh).cloned().ok_or(Errno::EBADF)?;
        let Handle::Dir(state) = &*handle else {
            return Err(Errno::ENOTDIR);
        };
        let mut listing = state.listing.lock();
        if offset == 0 && !listing.fresh && !crate::fault::planted("fs-rewind-stale") {
            listing.entries = Arc::new(self.list_entries(&state.dir)?);
        }
        listing.fresh = false;
        Ok((state.dir.clone(), listing.entries.clone()))
    }

    /// Fill a READDIRPLUS reply from the listing `fh` at `offset`. The
    /// kernel counts a lookup of every entry it is sent but `.` and `..`, so
    /// each is registered as a lookup, and taken back if it does not fit.
    pub(super) fn fill_plus(
        &self,
        fh: u64,
        offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> Res<()> {
        let (dir, entries) = self.listing(fh, offset)?;
        for (index, entry) in entries.iter().enumerate().skip(offset as usize) {
            let next = (index + 1) as u64;
            let looked_up = entry
                .backing
                .as_ref()
                .map(|backing| self.lookup_backing(&dir, backing));
            let full = match looked_up {
                Some(Ok((node, attr))) => {
                    let full = reply.add(
                        INodeNo(node.id),
                        next,
                        &entry.name,
                        &TTL,
                        &attr,
                        Generation(0),
                    );
                    if full {
                        self.nodes.forget(node.id, 1);
                    }
                    full
                }
                // `.` and `..`, or an entry gone or unreadable since the
                // listing was read: shown as READDIR shows it, and a lookup
                // then says what became of it.
                _ => reply.add_without_lookup(INodeNo(entry.id), next, entry.kind, &entry.name),
            };
            if full {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn sync_dir(&self, ino: INodeNo, datasync: bool) -> Res<()> {
        let dir = self.dir_node(ino)?;
        let fd = sys::reopen(
            dir.fd().map_err(io)?.as_fd(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )
        .map_err(io)?;
        sys::fsync(fd.as_fd(), datasync).map_err(io)
    }
}
