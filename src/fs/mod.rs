//! The FUSE frontend: translates kernel requests into node-table, name and
//! volume calls. It never touches ciphertext layout itself.

mod acl;
mod acl_mode;
pub mod idle;
mod killpriv;
pub mod nodes;
mod park;
mod whiteout;
mod xattr_names;
mod xattrs;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use log::{error, warn};
use parking_lot::Mutex;

use crate::crypto::names::{BackingName, DirContext, DIRIV_NAME};
use crate::error::ContentError;
use crate::sys;
use crate::volume::Volume;
use acl_mode::NewKind;
use nodes::{Node, NodeTable};

const TTL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, Default)]
pub struct FsOptions {
    pub read_only: bool,
}

/// The changes one setattr asks for.
struct SetAttr {
    /// Who asks: a truncate may clear setuid/setgid (killpriv.rs).
    caller: killpriv::Caller,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

struct FileHandleState {
    node: Arc<Node>,
    fd: OwnedFd,
}

struct DirHandleState {
    entries: Vec<(u64, FileType, OsString)>,
}

enum Handle {
    File(FileHandleState),
    Dir(DirHandleState),
}

/// The filesystem; cheap to clone, so that a request waiting for a hold can
/// be finished on the parking thread (park.rs).
#[derive(Clone)]
pub struct EnvelopeFs(Arc<FsState>);

pub struct FsState {
    vol: Arc<Volume>,
    nodes: NodeTable,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    opts: FsOptions,
    is_root_daemon: bool,
    /// The kernel enforces POSIX ACLs and leaves the umask to us (acl_mode.rs).
    acls: AtomicBool,
    /// Taken shared by every change, exclusively by a snapshot's hold.
    gate: park::Gate,
}

impl std::ops::Deref for EnvelopeFs {
    type Target = FsState;
    fn deref(&self) -> &FsState {
        &self.0
    }
}

type Res<T> = Result<T, Errno>;

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

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn io(e: std::io::Error) -> Errno {
    errno_of(&e)
}

/// The one place a content error becomes an errno; corruption is logged with
/// the backing file's path.
fn content_err(e: ContentError) -> Errno {
    if let ContentError::Corrupt { .. } = &e {
        error!("{e}");
    }
    Errno::from_i32(e.errno())
}

fn systime(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(st)) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
            Err(e) => {
                let d = e.duration();
                let mut sec = -(d.as_secs() as i64);
                let mut nsec = d.subsec_nanos() as i64;
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
    pub fn new(vol: Arc<Volume>, opts: FsOptions) -> std::io::Result<EnvelopeFs> {
        let root_fd = sys::open_dir_path(vol.root())?;
        let st = sys::fstat(root_fd.as_fd())?;
        Ok(EnvelopeFs(Arc::new(FsState {
            nodes: NodeTable::new(root_fd, &st),
            vol,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            opts,
            is_root_daemon: sys::geteuid() == 0,
            acls: AtomicBool::new(false),
            gate: park::Gate::new(),
        })))
    }

    /// The lock a snapshot takes exclusively to hold changes.
    pub fn hold_lock(&self) -> Arc<parking_lot::RwLock<()>> {
        self.gate.hold_lock()
    }

    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }

    fn node(&self, ino: INodeNo) -> Res<Arc<Node>> {
        idle::used();
        self.nodes.get(ino.0).ok_or(Errno::ESTALE)
    }

    fn dir_node(&self, ino: INodeNo) -> Res<Arc<Node>> {
        let n = self.node(ino)?;
        if n.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(n)
    }

    /// The name context of a directory node (its IV read once).
    fn dir_ctx(&self, dir: &Node) -> Res<DirContext> {
        if let Some(iv) = dir.diriv.get() {
            return Ok(DirContext {
                is_root: dir.is_root(),
                iv: *iv,
            });
        }
        let ctx = self
            .vol
            .dir_ctx(dir.fd().map_err(io)?.as_fd(), dir.is_root())
            .map_err(|e| {
                error!("{}: cannot read its {DIRIV_NAME}: {e}", dir.backing_path());
                Errno::EIO
            })?;
        if self.vol.names().uses_diriv() {
            let _ = dir.diriv.set(ctx.iv);
        }
        Ok(ctx)
    }

    fn backing_name(&self, dir: &Node, name: &OsStr) -> Res<BackingName> {
        sys::check_component(name).map_err(io)?;
        let ctx = self.dir_ctx(dir)?;
        self.vol
            .names()
            .to_backing(&ctx, name)
            .map_err(|_| Errno::EPERM)
    }

    /// Write a long name's side file before its entry; true if this call made it.
    fn write_side(&self, dir: &Node, b: &BackingName) -> Res<bool> {
        self.vol
            .write_side(dir.fd().map_err(io)?.as_fd(), b)
            .map_err(io)
    }

    fn remove_side(&self, dir: &Node, b: &BackingName) {
        if let Some(sname) = b.side_name() {
            if let Ok(d) = dir.fd() {
                let _ = sys::unlinkat(d.as_fd(), &sname, false);
            }
        }
    }

    /// Create an entry through `f`, with its side file first; undo the side file on failure.
    fn with_side<T>(&self, dir: &Node, b: &BackingName, f: impl FnOnce() -> Res<T>) -> Res<T> {
        let made = self.write_side(dir, b)?;
        let r = f();
        if r.is_err() && made {
            self.remove_side(dir, b);
        }
        r
    }

    /// Take the IV file out of an empty backing directory `parent/name`
    /// (ENOTEMPTY otherwise), so that the directory can be removed or
    /// replaced; returns what `restore_iv` needs to put it back on failure.
    fn take_dir_iv(&self, parent: &Node, name: &OsStr) -> Res<(OwnedFd, Option<[u8; 16]>)> {
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
            .any(|(n, _, _)| n.as_slice() != DIRIV_NAME.as_bytes())
        {
            return Err(Errno::ENOTEMPTY);
        }
        let iv = crate::volume::read_diriv(child.as_fd()).ok();
        match sys::unlinkat(child.as_fd(), OsStr::new(DIRIV_NAME), false) {
            Ok(()) => Ok((child, iv)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((child, None)),
            Err(e) => Err(io(e)),
        }
    }

    /// EIO when the IV cannot be put back: names in that directory could no
    /// longer be made or read.
    fn restore_iv(taken: (OwnedFd, Option<[u8; 16]>)) -> Res<()> {
        let (fd, Some(iv)) = taken else { return Ok(()) };
        let restored = match crate::fault::planted("fs-diriv-restore-fails") {
            true => Err(std::io::Error::from_raw_os_error(libc::EIO)),
            false => crate::volume::write_diriv_bytes(fd.as_fd(), &iv),
        };
        restored.map_err(|e| {
            let dir = crate::volume::content::fd_path(fd.as_fd());
            error!("{dir}: its {DIRIV_NAME} could not be put back: {e}");
            Errno::EIO
        })
    }

    /// Remove a backing directory, and its IV file first (restored if rmdir fails).
    fn remove_dir(&self, dir: &Node, b: &BackingName) -> Res<()> {
        if !self.vol.names().uses_diriv() {
            return sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &b.name, true).map_err(io);
        }
        let taken = self.take_dir_iv(dir, &b.name)?;
        match sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &b.name, true) {
            Ok(()) => Ok(()),
            Err(e) => {
                Self::restore_iv(taken)?;
                Err(io(e))
            }
        }
    }

    /// A change may go on: inside an operation that entered it with
    /// `changing` (which parks it while a hold is taken) this returns at once.
    fn writable(&self) -> Res<park::Changing<'_>> {
        if self.opts.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(self.gate.wait())
        }
    }

    fn attr_of(&self, node: &Node, st: &libc::stat) -> FileAttr {
        let size = match node.kind {
            FileType::RegularFile => self.vol.plain_size(st.st_size as u64),
            FileType::Symlink => {
                // base64 (no padding) of nonce || target || tag
                let raw = (st.st_size as u64) * 3 / 4;
                raw.saturating_sub(28)
            }
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

    fn node_attr(&self, node: &Node) -> Res<FileAttr> {
        let st = sys::fstat(node.fd().map_err(io)?.as_fd()).map_err(io)?;
        Ok(self.attr_of(node, &st))
    }

    /// Open `dir/bname` as O_PATH and register a lookup of it.
    fn lookup_backing(&self, dir: &Node, bname: &OsStr) -> Res<(Arc<Node>, FileAttr)> {
        let fd = sys::openat(dir.fd().map_err(io)?.as_fd(), bname, libc::O_PATH, 0).map_err(io)?;
        self.register(fd)
    }

    fn register(&self, fd: OwnedFd) -> Res<(Arc<Node>, FileAttr)> {
        let st = sys::fstat(fd.as_fd()).map_err(io)?;
        let node = self.nodes.lookup(fd, &st).ok_or(Errno::EIO)?;
        let attr = self.attr_of(&node, &st);
        Ok((node, attr))
    }

    /// Give a new entry to the caller: as root, create-then-chown so that the
    /// backing owner matches the mount's.
    fn set_owner(&self, req: &Request, dir: &Node, fd: BorrowedFd<'_>) -> Res<()> {
        if !self.is_root_daemon {
            return Ok(());
        }
        let dst = sys::fstat(dir.fd().map_err(io)?.as_fd()).map_err(io)?;
        let setgid = dst.st_mode & libc::S_ISGID != 0;
        // Root's own files already have the owner the daemon gave them.
        if req.uid() == 0 && (req.gid() == 0 || setgid) {
            return Ok(());
        }
        let gid = if setgid { None } else { Some(req.gid()) };
        sys::fchown_fd(fd, Some(req.uid()), gid).map_err(io)
    }

    fn new_fh(&self, h: Handle) -> u64 {
        idle::opened();
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(h));
        fh
    }

    fn file_handle(&self, fh: FileHandle) -> Res<Arc<Handle>> {
        idle::used();
        let h = self
            .handles
            .lock()
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)?;
        match &*h {
            Handle::File(_) => Ok(h),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn with_file<T>(&self, fh: FileHandle, f: impl FnOnce(&FileHandleState) -> Res<T>) -> Res<T> {
        let h = self.file_handle(fh)?;
        match &*h {
            Handle::File(fs) => f(fs),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// A real descriptor of a regular file node for content work outside a handle.
    fn content_fd(&self, node: &Node, write: bool) -> Res<OwnedFd> {
        let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
        sys::reopen(node.fd().map_err(io)?.as_fd(), flags).map_err(io)
    }

    fn open_backing_flags(flags: i32) -> i32 {
        // The daemon reads for read-modify-write and computes offsets itself.
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

    fn do_setattr(&self, node: &Arc<Node>, c: SetAttr, fh: Option<FileHandle>) -> Res<FileAttr> {
        let SetAttr {
            caller,
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        } = c;
        let _hold = if mode.is_some()
            || uid.is_some()
            || gid.is_some()
            || size.is_some()
            || atime.is_some()
            || mtime.is_some()
        {
            Some(self.writable()?)
        } else {
            None
        };
        if let Some(size) = size {
            if node.kind != FileType::RegularFile {
                return Err(Errno::EINVAL);
            }
            let own;
            let fd = match fh.and_then(|f| self.file_handle(f).ok()) {
                Some(h) => match &*h {
                    Handle::File(s) => {
                        let r = node.content.truncate(&self.vol, s.fd.as_fd(), size);
                        r.map_err(content_err)?;
                        None
                    }
                    Handle::Dir(_) => return Err(Errno::EISDIR),
                },
                None => {
                    own = self.content_fd(node, true)?;
                    Some(own)
                }
            };
            if let Some(fd) = fd {
                node.content
                    .truncate(&self.vol, fd.as_fd(), size)
                    .map_err(content_err)?;
            }
        }
        if uid.is_some() || gid.is_some() {
            sys::fchown_fd(node.fd().map_err(io)?.as_fd(), uid, gid).map_err(io)?;
        }
        if let Some(mode) = mode {
            if node.kind == FileType::Symlink {
                return Err(Errno::EOPNOTSUPP);
            }
            sys::fchmod_fd(node.fd().map_err(io)?.as_fd(), mode & 0o7777).map_err(io)?;
            self.acl_after_chmod(node, mode)?;
        }
        if size.is_some() {
            // After the mode a truncate's SETATTR may carry: the kernel's,
            // which keeps a setgid bit ext4 clears.
            killpriv::on_change(caller, node.fd().map_err(io)?.as_fd()).map_err(io)?;
        }
        if atime.is_some() || mtime.is_some() {
            let ts = [timespec(atime), timespec(mtime)];
            sys::utimens_fd(node.fd().map_err(io)?.as_fd(), &ts).map_err(io)?;
        }
        self.node_attr(node)
    }

    fn do_create_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        (mode, umask): (u32, u32),
        rdev: u32,
    ) -> Res<(Arc<Node>, FileAttr)> {
        let _hold = self.writable()?;
        let dir = self.dir_node(parent)?;
        let b = self.backing_name(&dir, name)?;
        let fmt = mode & libc::S_IFMT;
        if fmt == libc::S_IFREG || fmt == 0 {
            let inh = self.inherit(&dir, mode, umask, NewKind::File)?;
            let (node, attr, _fd) = self.with_side(&dir, &b, || {
                self.do_create_file(req, &dir, &b.name, inh.mode)
            })?;
            self.store_inherited(&node, &inh)?;
            return Ok((node, attr));
        }
        // A whiteout (0:0, what overlayfs makes) needs no privilege, as in the kernel.
        let whiteout = fmt == libc::S_IFCHR && rdev == 0;
        if (fmt == libc::S_IFCHR || fmt == libc::S_IFBLK) && !self.is_root_daemon && !whiteout {
            return Err(Errno::EPERM);
        }
        let mode = self.inherit(&dir, mode, umask, NewKind::Special)?.mode;
        self.with_side(&dir, &b, || {
            sys::mknodat(dir.fd().map_err(io)?.as_fd(), &b.name, mode, rdev as u64).map_err(io)
        })?;
        let fd =
            sys::openat(dir.fd().map_err(io)?.as_fd(), &b.name, libc::O_PATH, 0).map_err(io)?;
        self.set_owner(req, &dir, fd.as_fd())?;
        self.register(fd)
    }

    /// Create a regular file with its header; returns its node and an open RDWR fd.
    /// Only ever a new file: the kernel sends CREATE after a LOOKUP found
    /// nothing and checked only the right to create in the directory, so an
    /// entry that appeared in the backing directory since (planted, or
    /// renamed there by a user who owns that backing directory) is EEXIST,
    /// never opened as root for the caller.
    fn do_create_file(
        &self,
        req: &Request,
        dir: &Node,
        bname: &OsStr,
        mode: u32,
    ) -> Res<(Arc<Node>, FileAttr, OwnedFd)> {
        let perm = mode & 0o7777;
        let fd = sys::create_new(dir.fd().map_err(io)?.as_fd(), bname, libc::O_RDWR, perm)
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
        let pfd = sys::reopen(fd.as_fd(), libc::O_PATH).map_err(io)?;
        let (node, _) = self.register(pfd)?;
        if let Err(e) = node.content.create(&self.vol, fd.as_fd()) {
            let _ = sys::unlinkat(dir.fd().map_err(io)?.as_fd(), bname, false);
            return Err(content_err(e));
        }
        let attr = self.node_attr(&node)?;
        Ok((node, attr, fd))
    }
}

fn reply_entry(reply: ReplyEntry, r: Res<(Arc<Node>, FileAttr)>) {
    match r {
        Ok((_, attr)) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, r: Res<Vec<u8>>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for EnvelopeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // Offered only when the kernel has FUSE over io_uring enabled; the
        // session uses it if the mount asked for ring entries.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_OVER_IO_URING);
        self.enable_acls(config);
        Ok(())
    }

    fn destroy(&mut self) {
        self.vol.key_cache().flush();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = (|| {
            let dir = self.dir_node(parent)?;
            let b = self.backing_name(&dir, name).map_err(|e| {
                if e == Errno::EPERM {
                    Errno::ENOENT
                } else {
                    e
                }
            })?;
            self.lookup_backing(&dir, &b.name)
        })();
        reply_entry(reply, r);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        // With an open handle, stat its descriptor: it works even for an
        // unlinked file whose node descriptor was closed under pressure.
        let via_handle = fh
            .and_then(|f| self.file_handle(f).ok())
            .and_then(|h| match &*h {
                Handle::File(s) => {
                    let st = sys::fstat(s.fd.as_fd()).ok()?;
                    Some(self.attr_of(&s.node, &st))
                }
                Handle::Dir(_) => None,
            });
        if let Some(a) = via_handle {
            return reply.attr(&TTL, &a);
        }
        match self.node(ino).and_then(|n| self.node_attr(&n)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
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
        let changes = [mode, uid, gid].iter().any(Option::is_some)
            || size.is_some()
            || atime.is_some()
            || mtime.is_some();
        park_while_held!(if changes, self, reply, fs, req = req.clone() =>
            fs.setattr(&req, ino, mode, uid, gid, size, atime, mtime, _ctime, fh, _crtime,
                _chgtime, _bkuptime, _flags, reply));
        let r = self.node(ino).and_then(|n| {
            let c = SetAttr {
                caller: killpriv::Caller::of(req),
                mode,
                uid,
                gid,
                size,
                atime,
                mtime,
            };
            self.do_setattr(&n, c, fh)
        });
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = (|| {
            let n = self.node(ino)?;
            if n.kind != FileType::Symlink {
                return Err(Errno::EINVAL);
            }
            let raw = sys::readlink_fd(n.fd().map_err(io)?.as_fd()).map_err(io)?;
            self.vol.decrypt_symlink(&raw).ok_or_else(|| {
                error!("{}: symlink target fails authentication", n.backing_path());
                Errno::EIO
            })
        })();
        match r {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
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
            self.do_create_node(req, parent, name, (mode, umask), rdev),
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
        let r = (|| {
            let _hold = self.writable()?;
            let dir = self.dir_node(parent)?;
            let b = self.backing_name(&dir, name)?;
            let inh = self.inherit(&dir, mode, umask, NewKind::Dir)?;
            self.with_side(&dir, &b, || {
                sys::mkdirat(dir.fd().map_err(io)?.as_fd(), &b.name, inh.mode & 0o7777).map_err(io)
            })?;
            let fd = sys::openat(
                dir.fd().map_err(io)?.as_fd(),
                &b.name,
                libc::O_PATH | libc::O_DIRECTORY,
                0,
            )
            .map_err(io)?;
            if self.vol.names().uses_diriv() {
                if let Err(e) = crate::volume::write_diriv_at(fd.as_fd()) {
                    let _ = sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &b.name, true);
                    self.remove_side(&dir, &b);
                    return Err(io(e));
                }
            }
            self.set_owner(req, &dir, fd.as_fd())?;
            let (node, attr) = self.register(fd)?;
            self.store_inherited(&node, &inh)?;
            Ok((node, attr))
        })();
        reply_entry(reply, r);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.unlink(&req, parent, &name, reply));
        let r = (|| {
            let _hold = self.writable()?;
            let dir = self.dir_node(parent)?;
            let b = self.backing_name(&dir, name)?;
            sys::unlinkat(dir.fd().map_err(io)?.as_fd(), &b.name, false).map_err(io)?;
            self.remove_side(&dir, &b);
            Ok(())
        })();
        reply_empty(reply, r);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.rmdir(&req, parent, &name, reply));
        let r = (|| {
            let _hold = self.writable()?;
            let dir = self.dir_node(parent)?;
            let b = self.backing_name(&dir, name)?;
            self.remove_dir(&dir, &b)?;
            self.remove_side(&dir, &b);
            Ok(())
        })();
        reply_empty(reply, r);
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
        let r = (|| {
            let _hold = self.writable()?;
            let dir = self.dir_node(parent)?;
            let b = self.backing_name(&dir, link_name)?;
            let t = target.as_os_str().as_bytes();
            if t.len() > Volume::MAX_SYMLINK_TARGET {
                return Err(Errno::ENAMETOOLONG);
            }
            let enc = self.vol.encrypt_symlink(t);
            self.with_side(&dir, &b, || {
                sys::symlinkat(&enc, dir.fd().map_err(io)?.as_fd(), &b.name).map_err(io)
            })?;
            let fd =
                sys::openat(dir.fd().map_err(io)?.as_fd(), &b.name, libc::O_PATH, 0).map_err(io)?;
            self.set_owner(req, &dir, fd.as_fd())?;
            self.register(fd)
        })();
        reply_entry(reply, r);
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
        let r = (|| {
            let _hold = self.writable()?;
            let od = self.dir_node(parent)?;
            let nd = self.dir_node(newparent)?;
            let on = self.backing_name(&od, name)?;
            let nn = self.backing_name(&nd, newname)?;
            let allowed = RenameFlags::RENAME_NOREPLACE
                | RenameFlags::RENAME_EXCHANGE
                | RenameFlags::RENAME_WHITEOUT;
            let whiteout = flags.contains(RenameFlags::RENAME_WHITEOUT);
            if !(flags - allowed).is_empty()
                || (whiteout && flags.contains(RenameFlags::RENAME_EXCHANGE))
            {
                return Err(Errno::EINVAL);
            }
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                // Names stay where they are; only the entries behind them swap.
                return sys::renameat2(
                    od.fd().map_err(io)?.as_fd(),
                    &on.name,
                    nd.fd().map_err(io)?.as_fd(),
                    &nn.name,
                    flags.bits(),
                )
                .map_err(io);
            }
            // Replacing an empty directory: its IV file must go first.
            let mut restore_iv = None;
            if self.vol.names().uses_diriv() && !flags.contains(RenameFlags::RENAME_NOREPLACE) {
                let src = sys::fstatat(od.fd().map_err(io)?.as_fd(), &on.name).map_err(io)?;
                if let Ok(st) = sys::fstatat(nd.fd().map_err(io)?.as_fd(), &nn.name) {
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR
                        && src.st_mode & libc::S_IFMT == libc::S_IFDIR
                        && (st.st_dev, st.st_ino) != (src.st_dev, src.st_ino)
                    {
                        restore_iv = Some(self.take_dir_iv(&nd, &nn.name)?);
                    }
                }
            }
            let r = self.with_side(&nd, &nn, || {
                sys::renameat2(
                    od.fd().map_err(io)?.as_fd(),
                    &on.name,
                    nd.fd().map_err(io)?.as_fd(),
                    &nn.name,
                    flags.bits(),
                )
                .map_err(io)
            });
            match r {
                // A whiteout keeps the source's name, side file and all.
                Ok(()) if whiteout => self.give_whiteout(req, &od, &on.name),
                Ok(()) => {
                    if on.side_name() != nn.side_name() || od.id != nd.id {
                        self.remove_side(&od, &on);
                    }
                    Ok(())
                }
                Err(e) => {
                    if let Some(taken) = restore_iv {
                        Self::restore_iv(taken)?;
                    }
                    Err(e)
                }
            }
        })();
        reply_empty(reply, r);
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
        let r = (|| {
            let _hold = self.writable()?;
            let n = self.node(ino)?;
            let nd = self.dir_node(newparent)?;
            let nn = self.backing_name(&nd, newname)?;
            self.with_side(&nd, &nn, || {
                sys::linkat_fd(
                    n.fd().map_err(io)?.as_fd(),
                    nd.fd().map_err(io)?.as_fd(),
                    &nn.name,
                )
                .map_err(io)
            })?;
            self.lookup_backing(&nd, &nn.name)
        })();
        reply_entry(reply, r);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        park_while_held!(if flags.0 & libc::O_TRUNC != 0, self, reply, fs, req = req.clone() =>
            fs.open(&req, ino, flags, reply));
        let r = (|| {
            let node = self.node(ino)?;
            if node.kind != FileType::RegularFile {
                return Err(Errno::EINVAL);
            }
            let acc = flags.0 & libc::O_ACCMODE;
            let _hold = if flags.0 & libc::O_TRUNC != 0 {
                Some(self.writable()?)
            } else {
                if acc != libc::O_RDONLY && self.opts.read_only {
                    return Err(Errno::EROFS);
                }
                None
            };
            let fd = if self.opts.read_only {
                sys::reopen(node.fd().map_err(io)?.as_fd(), libc::O_RDONLY).map_err(io)?
            } else {
                match sys::reopen(
                    node.fd().map_err(io)?.as_fd(),
                    Self::open_backing_flags(flags.0),
                ) {
                    Ok(fd) => fd,
                    // A non-root daemon may lack read access to a write-only file.
                    Err(e) if e.raw_os_error() == Some(libc::EACCES) => sys::reopen(
                        node.fd().map_err(io)?.as_fd(),
                        (Self::open_backing_flags(flags.0) & !libc::O_ACCMODE) | acc,
                    )
                    .map_err(io)?,
                    Err(e) => return Err(io(e)),
                }
            };
            if flags.0 & libc::O_TRUNC != 0 {
                node.content
                    .truncate(&self.vol, fd.as_fd(), 0)
                    .map_err(content_err)?;
            }
            Ok(self.new_fh(Handle::File(FileHandleState { node, fd })))
        })();
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
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
        let cap = crate::volume::content::FileContent::read_capacity(&self.vol, offset, size);
        reply.data_in_place(cap, |buf| {
            self.with_file(fh, |h| {
                h.node
                    .content
                    .read_into(&self.vol, h.fd.as_fd(), offset, size, buf)
                    .map_err(content_err)
            })
        });
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
        // Page-cache writeback is not a caller's write (ext4 clears nothing on it).
        let caller = (!write_flags.contains(WriteFlags::FUSE_WRITE_CACHE))
            .then(|| killpriv::Caller::of(req));
        let r = self.with_file(fh, |h| {
            let _hold = self.writable()?;
            if let Some(c) = caller {
                killpriv::on_change(c, h.fd.as_fd()).map_err(io)?;
            }
            h.node
                .content
                .write(&self.vol, h.fd.as_fd(), offset, data)
                .map_err(content_err)
        });
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
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
        // Writes go to the backing file synchronously, so there is nothing to
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
        self.handles.lock().remove(&fh.0);
        idle::closed();
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
        let r = self.with_file(fh, |h| sys::fsync(h.fd.as_fd(), datasync).map_err(io));
        reply_empty(reply, r);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let dir = self.dir_node(ino)?;
            let ctx = self.dir_ctx(&dir)?;
            let mut entries = vec![
                (dir.id, FileType::Directory, OsString::from(".")),
                (dir.id, FileType::Directory, OsString::from("..")),
            ];
            let (good, bad) = self
                .vol
                .list_dir(dir.fd().map_err(io)?.as_fd(), &ctx)
                .map_err(io)?;
            for b in bad {
                warn!(
                    "directory node {}: backing entry {:?} has a name that does not decrypt here (corrupt, or moved from another directory); skipped",
                    dir.id, b.backing
                );
            }
            for e in good {
                let (plain, dtype, ino) = (e.plain, e.dtype, e.ino);
                let kind = match dtype {
                    libc::DT_DIR => FileType::Directory,
                    libc::DT_LNK => FileType::Symlink,
                    libc::DT_FIFO => FileType::NamedPipe,
                    libc::DT_SOCK => FileType::Socket,
                    libc::DT_CHR => FileType::CharDevice,
                    libc::DT_BLK => FileType::BlockDevice,
                    _ => FileType::RegularFile,
                };
                entries.push((self.nodes.id_for(dir.dev, ino), kind, plain));
            }
            Ok(self.new_fh(Handle::Dir(DirHandleState { entries })))
        })();
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let h = self.handles.lock().get(&fh.0).cloned();
        let Some(h) = h else {
            return reply.error(Errno::EBADF);
        };
        let Handle::Dir(d) = &*h else {
            return reply.error(Errno::ENOTDIR);
        };
        for (i, (ino, kind, name)) in d.entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().remove(&fh.0);
        idle::closed();
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
        let r = (|| {
            let n = self.dir_node(ino)?;
            let fd = sys::reopen(
                n.fd().map_err(io)?.as_fd(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            )
            .map_err(io)?;
            sys::fsync(fd.as_fd(), datasync).map_err(io)
        })();
        reply_empty(reply, r);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self
            .nodes
            .get(nodes::ROOT_ID)
            .map(|r| r.fd().and_then(|f| sys::fstatvfs(f.as_fd())))
        {
            Some(Ok(s)) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Some(Err(e)) => reply.error(io(e)),
            None => reply.error(Errno::EIO),
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
        let r = self.set_xattr(killpriv::Caller::of(req), ino, name, value, flags);
        reply_empty(reply, r);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = self.get_xattr(killpriv::Caller::of(req), ino, name);
        reply_xattr(reply, size, r);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(
            reply,
            size,
            self.list_xattrs(killpriv::Caller::of(req), ino),
        );
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        park_while_held!(self, reply, fs, req = req.clone(), name = name.to_owned() =>
            fs.removexattr(&req, ino, &name, reply));
        let r = self.remove_xattr(killpriv::Caller::of(req), ino, name);
        reply_empty(reply, r);
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
        let r = (|| {
            let _hold = self.writable()?;
            let dir = self.dir_node(parent)?;
            let b = self.backing_name(&dir, name)?;
            let inh = self.inherit(&dir, mode, umask, NewKind::File)?;
            let (node, attr, fd) = self.with_side(&dir, &b, || {
                self.do_create_file(req, &dir, &b.name, inh.mode)
            })?;
            self.store_inherited(&node, &inh)?;
            if flags & libc::O_TRUNC != 0 {
                node.content
                    .truncate(&self.vol, fd.as_fd(), 0)
                    .map_err(content_err)?;
            }
            let fh = self.new_fh(Handle::File(FileHandleState { node, fd }));
            Ok((attr, fh))
        })();
        match r {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
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
        let r = self.with_file(fh, |h| {
            let _hold = self.writable()?;
            killpriv::on_change(caller, h.fd.as_fd()).map_err(io)?;
            h.node
                .content
                .fallocate(&self.vol, h.fd.as_fd(), mode, offset, length)
                .map_err(content_err)
        });
        reply_empty(reply, r);
    }
}
