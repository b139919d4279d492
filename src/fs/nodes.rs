//! The node table: FUSE node ID -> backing inode, held open by an `O_PATH`
//! descriptor until the kernel forgets the node, so that the backing inode
//! number cannot be reused underneath a live node. The node ID is the backing
//! inode number where that is unique, so `st_ino` stays stable while mounted.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fuser::FileType;
use parking_lot::Mutex;

use crate::volume::FileContent;

pub const ROOT_ID: u64 = 1;
const SYNTHETIC_BASE: u64 = 1 << 62;

pub struct Node {
    pub id: u64,
    pub kind: FileType,
    pub dev: u64,
    pub ino: u64,
    fd: OwnedFd,
    lookups: AtomicU64,
    /// Shared content state of a regular file (all handles, all hard links).
    pub content: FileContent,
    /// A directory's name IV, read once.
    pub diriv: std::sync::OnceLock<[u8; crate::crypto::names::DIRIV_LEN]>,
}

impl Node {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn is_root(&self) -> bool {
        self.id == ROOT_ID
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
}

#[derive(Default)]
pub struct NodeTable {
    t: Mutex<Table>,
}

impl NodeTable {
    pub fn new(root_fd: OwnedFd, st: &libc::stat) -> NodeTable {
        let table = NodeTable::default();
        let node = Arc::new(Node {
            id: ROOT_ID,
            kind: FileType::Directory,
            dev: st.st_dev,
            ino: st.st_ino,
            fd: root_fd,
            lookups: AtomicU64::new(1),
            content: FileContent::new(),
            diriv: std::sync::OnceLock::new(),
        });
        let mut t = table.t.lock();
        t.by_inode.insert((st.st_dev, st.st_ino), ROOT_ID);
        t.by_id.insert(ROOT_ID, node);
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
        let mut t = self.t.lock();
        if let Some(id) = t.by_inode.get(&key).copied() {
            if let Some(n) = t.by_id.get(&id) {
                n.lookups.fetch_add(1, Ordering::Relaxed);
                return Some(n.clone());
            }
        }
        let mut id = st.st_ino;
        if id <= ROOT_ID || id >= SYNTHETIC_BASE || t.by_id.contains_key(&id) {
            t.next_synthetic += 1;
            id = SYNTHETIC_BASE + t.next_synthetic;
        }
        let node = Arc::new(Node {
            id,
            kind,
            dev: st.st_dev,
            ino: st.st_ino,
            fd,
            lookups: AtomicU64::new(1),
            content: FileContent::new(),
            diriv: std::sync::OnceLock::new(),
        });
        t.by_inode.insert(key, id);
        t.by_id.insert(id, node.clone());
        Some(node)
    }

    /// The kernel forgot `n` lookups of node `id`.
    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        let mut t = self.t.lock();
        let gone = match t.by_id.get(&id) {
            Some(node) => {
                let prev = node.lookups.fetch_sub(
                    n.min(node.lookups.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                prev <= n
            }
            None => false,
        };
        if gone {
            if let Some(node) = t.by_id.remove(&id) {
                t.by_inode.remove(&(node.dev, node.ino));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.t.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
