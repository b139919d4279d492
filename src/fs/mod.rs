//! The FUSE frontend: translates kernel requests into node-table, name and
//! volume calls. It never touches ciphertext layout itself.
//!
//! By theme, as gocryptfs's `fusefrontend/node_*.go`: requests.rs answers
//! the kernel and hands each request to a method in dir_ops.rs (lookup,
//! directories, listings), open_create.rs (open, create, mknod), file_io.rs
//! (read, write, fallocate, fsync), attrs.rs (getattr, setattr), links.rs
//! (symlink, link, rename, unlink) or xattrs.rs. This file holds what they
//! share: the node table, the handles and the creation of new entries.

mod acl;
mod acl_mode;
mod attrs;
mod dir_ops;
mod file_io;
pub mod idle;
mod killpriv;
mod links;
pub mod nodes;
mod open_create;
mod park;
mod refusals;
mod requests;
mod whiteout;
mod xattr_names;
mod xattrs;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Errno, FileAttr, FileHandle, FileType, INodeNo, Request};
use log::error;
use parking_lot::Mutex;

use crate::error::ContentError;
use crate::sys;
use crate::volume::{BackingName, DirContext, Volume, DIRIV_NAME};
use nodes::{Node, NodeTable};

const TTL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, Default)]
pub struct FsOptions {
    pub read_only: bool,
    /// FUSE_WRITEBACK_CACHE: writes land in the kernel's page cache and
    /// reach the daemon later, in large pieces; the kernel then owns size
    /// and mtime while pages are dirty, and write errors surface at fsync
    /// or close.
    pub writeback_cache: bool,
    /// A write-only mount (a format_version 2 volume opened with only the
    /// recipient's public key): entries of earlier sessions give EACCES,
    /// and the kernel caches no page across opens.
    pub write_only: bool,
}

struct FileHandleState {
    node: Arc<Node>,
    fd: OwnedFd,
}

/// A directory entry as a listing gives it: node ID, kind, name, and the
/// backing name READDIRPLUS looks it up by (none for `.` and `..`).
struct DirEntry {
    id: u64,
    kind: FileType,
    name: OsString,
    backing: Option<OsString>,
}

struct DirHandleState {
    dir: Arc<Node>,
    listing: Mutex<Listing>,
}

/// A directory's entries as last read.
struct Listing {
    entries: Arc<Vec<DirEntry>>,
    /// Read by opendir and not yet returned: offset 0 need not read again.
    fresh: bool,
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
    /// Tells the kernel to drop what it caches of a node (set once the
    /// session exists).
    notifier: std::sync::OnceLock<fuser::Notifier>,
}

impl std::ops::Deref for EnvelopeFs {
    type Target = FsState;
    fn deref(&self) -> &FsState {
        &self.0
    }
}

type Res<T> = Result<T, Errno>;

fn errno_of(err: &std::io::Error) -> Errno {
    Errno::from_i32(err.raw_os_error().unwrap_or(libc::EIO))
}

fn io(err: std::io::Error) -> Errno {
    errno_of(&err)
}

/// The one place a content error becomes an errno; corruption is logged with
/// the backing file's path.
fn content_err(err: ContentError) -> Errno {
    match &err {
        ContentError::Corrupt { .. } => error!("{err}"),
        ContentError::WriteOnly { path } => refusals::warn_once(path, format_args!("{err}")),
        ContentError::Io(_) => {}
    }
    Errno::from_i32(err.errno())
}

/// What a request does with a name: looks up an entry, or makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameUse {
    Existing,
    New,
}

/// A new entry about to be made: the change admitted (held until the entry
/// is made), its directory and its backing name.
struct NewEntry<'a> {
    _changing: park::Changing<'a>,
    dir: Arc<Node>,
    backing: BackingName,
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
            notifier: std::sync::OnceLock::new(),
        })))
    }

    /// The session's notifier, for [`EnvelopeFs::attrs_changed`].
    pub fn set_notifier(&self, notifier: fuser::Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// The daemon changed attributes of `node` that the kernel caches and
    /// no reply carries (a mode cleared on a write): drop the kernel's copy.
    fn attrs_changed(&self, node: &Node) {
        if let Some(notifier) = self.notifier.get() {
            if let Err(err) = notifier.inval_inode(INodeNo(node.id), -1, 0) {
                log::debug!("attribute invalidation of node {}: {err}", node.id);
            }
        }
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
        let node = self.node(ino)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(node)
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
            .map_err(|err| {
                error!(
                    "{}: cannot read its {DIRIV_NAME}: {err}",
                    dir.backing_path()
                );
                Errno::EIO
            })?;
        if self.vol.names().uses_diriv() {
            let _ = dir.diriv.set(ctx.iv);
        }
        Ok(ctx)
    }

    /// The backing name of `name` in `dir`, for an entry that exists
    /// (`Existing`) or that the request would make (`New`): a name the
    /// volume cannot take fails as error.rs says for that use.
    fn backing_name(&self, dir: &Node, name: &OsStr, name_use: NameUse) -> Res<BackingName> {
        sys::check_component(name).map_err(io)?;
        let ctx = self.dir_ctx(dir)?;
        self.vol.names().to_backing(&ctx, name).map_err(|err| {
            if crate::fault::planted("fs-name-eperm") {
                return Errno::EPERM;
            }
            let creating = name_use == NameUse::New;
            Errno::from_i32(crate::error::name_errno(&err, creating))
        })
    }

    /// Write a long name's side file before its entry; true if this call made it.
    fn write_side(&self, dir: &Node, backing: &BackingName) -> Res<bool> {
        self.vol
            .write_side(dir.fd().map_err(io)?.as_fd(), backing)
            .map_err(io)
    }

    fn remove_side(&self, dir: &Node, backing: &BackingName) {
        if let Some(side_name) = backing.side_name() {
            if let Ok(dir_fd) = dir.fd() {
                let _ = sys::unlinkat(dir_fd.as_fd(), &side_name, false);
            }
        }
    }

    /// Create an entry through `make`, with its side file first; undo the
    /// side file on failure.
    fn with_side<T>(
        &self,
        dir: &Node,
        backing: &BackingName,
        make: impl FnOnce() -> Res<T>,
    ) -> Res<T> {
        let made = self.write_side(dir, backing)?;
        let result = make();
        if result.is_err() && made {
            self.remove_side(dir, backing);
        }
        result
    }

    /// The preamble every create-entry request shares (mknod, mkdir,
    /// symlink, link, create): the change admitted, the directory found and
    /// the name translated.
    fn new_entry(&self, parent: INodeNo, name: &OsStr) -> Res<NewEntry<'_>> {
        let changing = self.writable()?;
        let dir = self.dir_node(parent)?;
        let backing = self.backing_name(&dir, name, NameUse::New)?;
        Ok(NewEntry {
            _changing: changing,
            dir,
            backing,
        })
    }

    /// Make the backing entry of `entry` with `make` (given the directory's
    /// descriptor and the backing name), its side file first.
    fn make_entry<T>(
        &self,
        entry: &NewEntry<'_>,
        make: impl FnOnce(BorrowedFd<'_>, &OsStr) -> std::io::Result<T>,
    ) -> Res<T> {
        self.with_side(&entry.dir, &entry.backing, || {
            make(entry.dir.fd().map_err(io)?.as_fd(), &entry.backing.name).map_err(io)
        })
    }

    /// Open a just-made entry, give it to the caller and register it.
    fn adopt_entry(&self, req: &Request, entry: &NewEntry<'_>) -> Res<(Arc<Node>, FileAttr)> {
        let fd = sys::openat(
            entry.dir.fd().map_err(io)?.as_fd(),
            &entry.backing.name,
            libc::O_PATH,
            0,
        )
        .map_err(io)?;
        self.set_owner(req, &entry.dir, fd.as_fd())?;
        self.register(fd)
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

    /// Open `dir/backing_name` as O_PATH and register a lookup of it.
    fn lookup_backing(&self, dir: &Node, backing_name: &OsStr) -> Res<(Arc<Node>, FileAttr)> {
        let fd = sys::openat(dir.fd().map_err(io)?.as_fd(), backing_name, libc::O_PATH, 0)
            .map_err(io)?;
        self.register(fd)
    }

    fn register(&self, fd: OwnedFd) -> Res<(Arc<Node>, FileAttr)> {
        let mut st = sys::fstat(fd.as_fd()).map_err(io)?;
        let node = self.nodes.lookup(fd, &st).ok_or(Errno::EIO)?;
        if self.restore_torn_tail(&node) {
            st = sys::fstat(node.fd().map_err(io)?.as_fd()).map_err(io)?;
        }
        let attr = self.attr_of(&node, &st);
        Ok((node, attr))
    }

    /// Give a new entry to the caller: as root, create-then-chown so that the
    /// backing owner matches the mount's.
    fn set_owner(&self, req: &Request, dir: &Node, fd: BorrowedFd<'_>) -> Res<()> {
        if !self.is_root_daemon {
            return Ok(());
        }
        let dir_st = sys::fstat(dir.fd().map_err(io)?.as_fd()).map_err(io)?;
        let setgid = dir_st.st_mode & libc::S_ISGID != 0;
        // Root's own files already have the owner the daemon gave them.
        if req.uid() == 0 && (req.gid() == 0 || setgid) {
            return Ok(());
        }
        let gid = if setgid { None } else { Some(req.gid()) };
        sys::fchown_fd(fd, Some(req.uid()), gid).map_err(io)
    }

    fn new_fh(&self, handle: Handle) -> u64 {
        idle::opened();
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(handle));
        fh
    }

    fn file_handle(&self, fh: FileHandle) -> Res<Arc<Handle>> {
        idle::used();
        let handle = self
            .handles
            .lock()
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)?;
        match &*handle {
            Handle::File(_) => Ok(handle),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn with_file<T>(&self, fh: FileHandle, f: impl FnOnce(&FileHandleState) -> Res<T>) -> Res<T> {
        let handle = self.file_handle(fh)?;
        match &*handle {
            Handle::File(state) => f(state),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// Forget a file or directory handle.
    fn release_handle(&self, fh: FileHandle) {
        self.handles.lock().remove(&fh.0);
        idle::closed();
    }
}
