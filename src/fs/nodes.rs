//! The node table: FUSE node ID -> backing inode. A node holds an `O_PATH`
//! descriptor so that the backing inode cannot be freed (and its number
//! reused) underneath a live node; the node ID is the backing inode number
//! where that is unique, so `st_ino` stays stable while mounted.
//!
//! Descriptors are a limited resource: past a budget (a share of the open-file
//! limit), descriptors of idle nodes are closed and the nodes keep a file
//! handle (name_to_handle_at) to reopen their inode on demand. A handle names
//! one inode generation, so a reused inode number gives ESTALE, never another
//! file.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use fuser::FileType;
use parking_lot::Mutex;

use crate::volume::FileContent;

pub const ROOT_ID: u64 = 1;

/// Nodes in the node table, root included, as last changed: one table per
/// daemon, read by the control socket's `NODES`.
static KNOWN_NODES: AtomicUsize = AtomicUsize::new(0);

/// How many nodes the kernel holds lookups of (see `KNOWN_NODES`).
pub fn known_nodes() -> usize {
    KNOWN_NODES.load(Ordering::Relaxed)
}
const SYNTHETIC_BASE: u64 = 1 << 62;

/// A node's descriptor for the length of one operation.
pub struct NodeFd(Arc<OwnedFd>);

impl AsFd for NodeFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

pub struct Node {
    pub id: u64,
    pub kind: FileType,
    pub dev: u64,
    pub ino: u64,
    fd: Mutex<Option<Arc<OwnedFd>>>,
    /// Taken (from the open descriptor) only when the descriptor is closed.
    handle: std::sync::OnceLock<crate::sys::InodeHandle>,
    mount_fd: Option<Arc<OwnedFd>>,
    lookups: AtomicU64,
    /// Shared content state of a regular file (all handles, all hard links).
    pub content: FileContent,
    /// A directory's name IV, read once.
    pub diriv: std::sync::OnceLock<[u8; crate::volume::DIRIV_LEN]>,
    /// Known to have no `security.capability`, no default ACL (xattrs.rs).
    pub no_fcaps: super::xattrs::KnownAbsent,
    pub no_default_acl: super::xattrs::KnownAbsent,
    /// The backing file's ctime (s, ns) and size at the last open, for a
    /// read-only mount's KEEP_CACHE (open_create.rs).
    pub opened_as: Mutex<Option<(i64, i64, i64)>>,
    /// Orders a page-cache WRITE, which keeps the backing mtime, and a
    /// SETATTR of the times (file_io.rs).
    pub times: Mutex<()>,
}

impl Node {
    /// The node's `O_PATH` descriptor, reopened from its file handle if it was closed.
    pub fn fd(&self) -> std::io::Result<NodeFd> {
        let g = self.fd.lock();
        if let Some(f) = &*g {
            return Ok(NodeFd(f.clone()));
        }
        let (Some(h), Some(m)) = (self.handle.get(), &self.mount_fd) else {
            return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
        };
        // Kept only for this operation, so the count of open descriptors stays in budget.
        drop(g);
        Ok(NodeFd(Arc::new(crate::sys::open_handle(m.as_fd(), h)?)))
    }

    pub fn is_root(&self) -> bool {
        self.id == ROOT_ID
    }

    /// The backing path, for log lines: it is public, the plaintext name is not.
    pub fn backing_path(&self) -> String {
        match self.fd() {
            Ok(f) => crate::volume::content::fd_path(f.as_fd()),
            Err(_) => format!("<node {}>", self.id),
        }
    }
}

pub fn kind_of(mode: u32) -> Option<FileType> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG => FileType::RegularFile,
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => return None,
    })
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Arc<Node>>,
    by_inode: HashMap<(u64, u64), u64>,
    next_synthetic: u64,
    /// Nodes that may hold an evictable descriptor, oldest first, so that
    /// eviction visits candidates only, never the whole table.
    evictable: VecDeque<Weak<Node>>,
}

pub struct NodeTable {
    t: Mutex<Table>,
    mount_fd: Arc<OwnedFd>,
    open: AtomicUsize,
    budget: usize,
    handles_work: bool,
}

impl NodeTable {
    pub fn new(root_fd: OwnedFd, st: &libc::stat) -> NodeTable {
        Self::with_budget(root_fd, st, None)
    }

    /// A table whose descriptor budget is `budget`, or half the open-file limit.
    fn with_budget(root_fd: OwnedFd, st: &libc::stat, budget: Option<usize>) -> NodeTable {
        let root_fd = Arc::new(root_fd);
        // open_by_handle_at wants a real (not O_PATH) descriptor on the filesystem.
        let mount_fd = crate::sys::reopen(root_fd.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)
            .map(Arc::new)
            .unwrap_or_else(|_| root_fd.clone());
        // Handles are usable only where open_by_handle_at is allowed (CAP_DAC_READ_SEARCH).
        let handles_work = crate::sys::file_handle(root_fd.as_fd())
            .and_then(|h| crate::sys::open_handle(mount_fd.as_fd(), &h).ok())
            .is_some();
        let limit = crate::sys::nofile_limit() as usize;
        let budget = budget.unwrap_or((limit / 2).max(32));
        log::info!(
            "node table: descriptor budget {budget} of {limit}; file handles {}",
            if handles_work {
                "usable"
            } else {
                "unusable: every live node keeps a descriptor"
            }
        );
        let table = NodeTable {
            t: Mutex::new(Table::default()),
            mount_fd,
            open: AtomicUsize::new(2),
            budget,
            handles_work,
        };
        let node = Arc::new(Node {
            id: ROOT_ID,
            kind: FileType::Directory,
            dev: st.st_dev,
            ino: st.st_ino,
            fd: Mutex::new(Some(root_fd)),
            handle: std::sync::OnceLock::new(),
            mount_fd: None,
            lookups: AtomicU64::new(1),
            content: FileContent::new(),
            diriv: std::sync::OnceLock::new(),
            no_fcaps: Default::default(),
            no_default_acl: Default::default(),
            opened_as: Mutex::new(None),
            times: Mutex::new(()),
        });
        let mut t = table.t.lock();
        t.by_inode.insert((st.st_dev, st.st_ino), ROOT_ID);
        t.by_id.insert(ROOT_ID, node);
        KNOWN_NODES.store(t.by_id.len(), Ordering::Relaxed);
        drop(t);
        table
    }

    pub fn get(&self, id: u64) -> Option<Arc<Node>> {
        self.t.lock().by_id.get(&id).cloned()
    }

    /// Node ID a directory entry of this inode shows (without taking a reference).
    pub fn id_for(&self, dev: u64, ino: u64) -> u64 {
        self.t
            .lock()
            .by_inode
            .get(&(dev, ino))
            .copied()
            .unwrap_or(ino)
    }

    /// Register one kernel lookup of the inode behind `fd`; reuses the live
    /// node of that inode (hard links share one node).
    pub fn lookup(&self, fd: OwnedFd, st: &libc::stat) -> Option<Arc<Node>> {
        let kind = kind_of(st.st_mode)?;
        let key = (st.st_dev, st.st_ino);
        let mut table = self.t.lock();
        if let Some(id) = table.by_inode.get(&key).copied() {
            if let Some(live) = table.by_id.get(&id) {
                live.lookups.fetch_add(1, Ordering::Relaxed);
                return Some(live.clone());
            }
        }
        let mut id = st.st_ino;
        if id <= ROOT_ID || id >= SYNTHETIC_BASE || table.by_id.contains_key(&id) {
            table.next_synthetic += 1;
            id = SYNTHETIC_BASE + table.next_synthetic;
        }
        let node = Arc::new(Node {
            id,
            kind,
            dev: st.st_dev,
            ino: st.st_ino,
            fd: Mutex::new(Some(Arc::new(fd))),
            mount_fd: (self.handles_work && kind != FileType::Symlink)
                .then(|| self.mount_fd.clone()),
            handle: std::sync::OnceLock::new(),
            lookups: AtomicU64::new(1),
            content: FileContent::new(),
            diriv: std::sync::OnceLock::new(),
            no_fcaps: Default::default(),
            no_default_acl: Default::default(),
            opened_as: Mutex::new(None),
            times: Mutex::new(()),
        });
        table.by_inode.insert(key, id);
        table.by_id.insert(id, node.clone());
        KNOWN_NODES.store(table.by_id.len(), Ordering::Relaxed);
        if node.mount_fd.is_some() {
            table.evictable.push_back(Arc::downgrade(&node));
            // Forgotten nodes leave dead entries behind: drop them before
            // they outnumber the live ones.
            if table.evictable.len() > 2 * table.by_id.len() + 64 {
                table.evictable.retain(|w| w.strong_count() > 0);
            }
        }
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        if open > self.budget {
            self.evict(&mut table);
        }
        Some(node)
    }

    /// Close descriptors of idle nodes that can be reopened by handle,
    /// oldest first; a node whose descriptor is in use goes to the back.
    fn evict(&self, t: &mut Table) {
        let target = self.budget * 3 / 4;
        for _ in 0..t.evictable.len() {
            if self.open.load(Ordering::Relaxed) <= target {
                break;
            }
            let Some(n) = t.evictable.pop_front().and_then(|w| w.upgrade()) else {
                continue;
            };
            let mut g = n.fd.lock();
            let Some(f) = g.as_ref() else {
                continue;
            };
            if Arc::strong_count(f) > 1 {
                drop(g);
                t.evictable.push_back(Arc::downgrade(&n));
                continue;
            }
            if n.handle.get().is_none() {
                match crate::sys::file_handle(f.as_fd()) {
                    Some(h) => {
                        let _ = n.handle.set(h);
                    }
                    None => continue,
                }
            }
            *g = None;
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The kernel forgot `count` lookups of node `id`.
    pub fn forget(&self, id: u64, count: u64) {
        self.forget_batch([(id, count)]);
    }

    /// The kernel forgot lookups of several nodes (ID, count): one pass
    /// under the table lock.
    pub fn forget_batch(&self, forgotten: impl IntoIterator<Item = (u64, u64)>) {
        let mut removed = Vec::new();
        {
            let mut table = self.t.lock();
            for (id, count) in forgotten {
                if let Some(node) = self.forget_one(&mut table, id, count) {
                    removed.push(node);
                }
            }
            KNOWN_NODES.store(table.by_id.len(), Ordering::Relaxed);
        }
        // The nodes' descriptors close here, outside the table lock that
        // every request takes.
        drop(removed);
    }

    /// Take `count` lookups off node `id`; the node, if that was its last.
    fn forget_one(&self, table: &mut Table, id: u64, count: u64) -> Option<Arc<Node>> {
        if id == ROOT_ID {
            return None;
        }
        let node = table.by_id.get(&id)?;
        let cur = node.lookups.load(Ordering::Relaxed);
        node.lookups
            .store(cur.saturating_sub(count), Ordering::Relaxed);
        if cur > count {
            return None;
        }
        let node = table.by_id.remove(&id)?;
        table.by_inode.remove(&(node.dev, node.ino));
        if node.fd.lock().is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// Eviction keeps the descriptors within budget by visiting candidates
    /// only: its queue never outgrows the table, however many nodes come
    /// and go.
    #[test]
    fn eviction_stays_in_budget_and_its_queue_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = crate::sys::open_dir_path(dir.path()).unwrap();
        let st = crate::sys::fstat(root.as_fd()).unwrap();
        let nodes = NodeTable::with_budget(root, &st, Some(64));
        let root_fd = nodes.get(ROOT_ID).unwrap().fd().unwrap();
        let mut live = Vec::new();
        for i in 0..3000 {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), b"x").unwrap();
            let fd =
                crate::sys::openat(root_fd.as_fd(), OsStr::new(&name), libc::O_PATH, 0).unwrap();
            let st = crate::sys::fstat(fd.as_fd()).unwrap();
            let node = nodes.lookup(fd, &st).unwrap();
            // Most nodes are forgotten at once, as after an unlink.
            if i % 10 != 0 {
                nodes.forget(node.id, 1);
            } else {
                live.push(node);
            }
            let queued = nodes.t.lock().evictable.len();
            assert!(queued <= 2 * (live.len() + 2) + 65, "queue {queued} at {i}");
        }
        if nodes.handles_work {
            assert!(nodes.open.load(Ordering::Relaxed) <= 64);
            // An evicted node reopens from its handle.
            let st = crate::sys::fstat(live[0].fd().unwrap().as_fd()).unwrap();
            assert_eq!(st.st_ino, live[0].ino);
        }
    }
}
