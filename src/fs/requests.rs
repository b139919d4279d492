//! The kernel's requests: each is parked while a snapshot holds changes,
//! handed to the method of its theme, and its result replied.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, ForgetOne, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::attrs::SetAttr;
use super::links::RenameEnds;
use super::{killpriv, EnvelopeFs, Node, Res, TTL};
use crate::volume::FileContent;

/// While a snapshot holds changes, parks the rest of this operation (park.rs):
/// `$call` runs it again on the parking thread, with `$fs` a clone of the
/// filesystem and owned copies (`name = copy`) of its borrowed arguments.
/// Otherwise the operation goes on, with `$reply` given back. `if` says
/// whether it changes anything at all.
macro_rules! park_while_held {
    (if $changes:expr, $self:ident, $reply:ident, $fs:ident $(, $own:ident = $e:expr)*
     => $call:expr) => {
        let Some((_changing, $reply)) = $self.changing($changes, $reply, |$reply| {
            let $fs = $self.clone();
            $(let $own = $e;)*
            Box::new(move || $call)
        }) else {
            return;
        };
    };
    ($self:ident, $($rest:tt)*) => {
        park_while_held!(if true, $self, $($rest)*)
    };
}

fn reply_entry(reply: ReplyEntry, result: Res<(Arc<Node>, FileAttr)>) {
    match result {
        Ok((_, attr)) => reply.entry(&TTL, &attr, Generation(0)),
        Err(err) => reply.error(err),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Res<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(err) => reply.error(err),
    }
}

fn reply_attr(reply: ReplyAttr, result: Res<FileAttr>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(err) => reply.error(err),
    }
}

fn reply_opened(reply: ReplyOpen, result: Res<u64>) {
    reply_opened_with(reply, result, FopenFlags::empty());
}

fn reply_opened_with(reply: ReplyOpen, result: Res<u64>, flags: FopenFlags) {
    match result {
        Ok(fh) => reply.opened(FileHandle(fh), flags),
        Err(err) => reply.error(err),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, result: Res<Vec<u8>>) {
    match result {
        Ok(value) if size == 0 => reply.size(value.len() as u32),
        Ok(value) if value.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(value) => reply.data(&value),
        Err(err) => reply.error(err),
    }
}

impl Filesystem for EnvelopeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // Offered only when the kernel has FUSE over io_uring enabled; the
        // session uses it if the mount asked for ring entries.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_OVER_IO_URING);
        // The daemon clears setuid/setgid itself (killpriv.rs); in return the
        // kernel sets SB_NOSEC and stops asking for security.capability
        // before every write.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        if self.opts.writeback_cache {
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE);
        }
        // Times are stored with utimensat on the backing file, to the
        // nanosecond; the kernel keeps mtime itself under writeback caching.
        let _ = config.set_time_granularity(std::time::Duration::from_nanos(1));
        self.enable_acls(config);
        // Lookups and listings of one directory run side by side; every
        // listing carries its entries' attributes (READDIRPLUS, not only
        // after a lookup as READDIRPLUS_AUTO would: ls -l, du and rm -rf
        // read a whole directory before they stat any entry).
        let _ = config
            .add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_DO_READDIRPLUS);
        Ok(())
    }

    fn destroy(&mut self) {
        self.vol.key_cache().flush();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.look_up(parent, name) {
            // Cached by the kernel as a negative entry: a name made through
            // the mount replaces it at once.
            Err(Errno::ENOENT) => reply.negative(&TTL),
            result => reply_entry(reply, result),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
    }

    fn batch_forget(&self, _req: &Request, nodes: &[ForgetOne]) {
        let forgotten = nodes.iter().map(|n| (n.nodeid().0, n.nlookup()));
        self.nodes.forget_batch(forgotten);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT && crate::fault::planted("daemon-slow-root-getattr") {
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        reply_attr(reply, self.get_attr(ino, fh));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            caller: killpriv::Caller::of(req),
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        park_while_held!(if change.changes(), self, reply, fs, req = req.clone() =>
            fs.setattr(&req, ino, mode, uid, gid, size, atime, mtime, _ctime, fh, _crtime,
                _chgtime, _bkuptime, _flags, reply));
        reply_attr(reply, self.set_attr(ino, change, fh));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.read_link(ino) {
            Ok(target) => reply.data(&target),
            Err(err) => reply.error(err),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.mknod(&req, parent, &name, mode, umask, rdev, reply));
        reply_entry(
            reply,
            self.make_node(req, parent, name, (mode, umask), rdev),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.mkdir(&req, parent, &name, mode, umask, reply));
        reply_entry(reply, self.make_dir(req, parent, name, (mode, umask)));
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.unlink(&req, parent, &name, reply));
        reply_empty(reply, self.remove_link(parent, name));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.rmdir(&req, parent, &name, reply));
        reply_empty(reply, self.remove_dir_entry(parent, name));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(),
            link_name = link_name.to_owned(), target = target.to_owned() =>
            fs.symlink(&req, parent, &link_name, &target, reply));
        reply_entry(reply, self.make_symlink(req, parent, link_name, target));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(),
            name = name.to_owned(), newname = newname.to_owned() =>
            fs.rename(&req, parent, &name, newparent, &newname, flags, reply));
        let ends = RenameEnds {
            parent,
            name,
            new_parent: newparent,
            new_name: newname,
        };
        reply_empty(reply, self.rename_entry(req, ends, flags));
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(), newname = newname.to_owned() =>
            fs.link(&req, ino, newparent, &newname, reply));
        reply_entry(reply, self.make_link(ino, newparent, newname));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        park_while_held!(if flags.0 & libc::O_TRUNC != 0, self, reply, fs, req = req.clone() =>
            fs.open(&req, ino, flags, reply));
        // Pages of an unchanged file stay cached across opens: every change
        // to its content goes through the kernel (on a read-only mount,
        // only while the backing file is unchanged).
        let opened = self.open_file(ino, flags);
        let keep = match opened {
            Ok((_, true)) => FopenFlags::FOPEN_KEEP_CACHE,
            _ => FopenFlags::empty(),
        };
        reply_opened_with(reply, opened.map(|(fh, _)| fh), keep);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Decrypted where the reply goes: over io_uring, the ring entry.
        let capacity = FileContent::read_capacity(&self.vol, offset, size);
        reply.data_in_place(capacity, |buf| self.read_file(fh, offset, size, buf));
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(), data = data.to_vec() =>
            fs.write(&req, _ino, fh, offset, &data, write_flags, _flags, _lock_owner, reply));
        let caller = killpriv::Caller::of(req);
        match self.write_file(caller, fh, offset, data, write_flags) {
            Ok(written) => reply.written(written as u32),
            Err(err) => reply.error(err),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes go to the backing file before they are answered (and the
        // kernel sends its cached pages before FLUSH), so there is nothing to
        // flush; ENOSYS tells the kernel to stop sending FLUSH on every close
        // (one round trip fewer per open file).
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_handle(fh);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.sync_file(fh, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == INodeNo::ROOT && crate::fault::planted("fs-slow-root-opendir") {
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        reply_opened(reply, self.open_dir(ino));
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.dir_entries(fh.0, offset) {
            Ok(entries) => entries,
            Err(err) => return reply.error(err),
        };
        for (index, entry) in entries.iter().enumerate().skip(offset as usize) {
            let next = (index + 1) as u64;
            if reply.add(INodeNo(entry.id), next, entry.kind, &entry.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.fill_plus(fh.0, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(err),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.release_handle(fh);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.sync_dir(ino, datasync));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.stat_fs() {
            Ok(stats) => reply.statfs(
                stats.blocks,
                stats.blocks_free,
                stats.blocks_available,
                stats.files,
                stats.files_free,
                stats.block_size,
                stats.name_max,
                stats.fragment_size,
            ),
            Err(err) => reply.error(err),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(),
            name = name.to_owned(), value = value.to_vec() =>
            fs.setxattr(&req, ino, &name, &value, flags, _position, reply));
        let result = self.set_xattr(killpriv::Caller::of(req), ino, name, value, flags);
        reply_empty(reply, result);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let result = self.get_xattr(killpriv::Caller::of(req), ino, name);
        reply_xattr(reply, size, result);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let result = self.list_xattrs(killpriv::Caller::of(req), ino);
        reply_xattr(reply, size, result);
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.removexattr(&req, ino, &name, reply));
        let result = self.remove_xattr(killpriv::Caller::of(req), ino, name);
        reply_empty(reply, result);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.create(&req, parent, &name, mode, umask, flags, reply));
        match self.create_file(req, parent, name, (mode, umask), flags) {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(err) => reply.error(err),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        park_while_held!(self, reply, fs, req = req.clone() =>
            fs.fallocate(&req, _ino, fh, offset, length, mode, reply));
        let caller = killpriv::Caller::of(req);
        reply_empty(reply, self.allocate(caller, fh, (offset, length), mode));
    }
}
