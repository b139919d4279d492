//! The backing tree as a manifest sees it: a walk of a (staging) tree with
//! directory descriptors, never following a symlink, into entries and the
//! pieces of its files; opening a manifest path again below a root; and
//! the worker pool that transfers pieces.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::manifest::{b64, Entry, Kind, RawName};
use super::{RemoteError, CHUNK_SIZE};
use crate::sys;

/// A piece of a file to read: `len` bytes at `offset` of `name` in `dir`.
pub struct Piece {
    pub entry: usize,
    pub dir: Arc<OwnedFd>,
    pub name: OsString,
    pub offset: u64,
    pub len: u64,
}

pub struct Scan {
    pub entries: Vec<Entry>,
    pub pieces: Vec<Piece>,
    /// Entries not stored (special files), named for the summary.
    pub skipped: Vec<String>,
    pub files: u64,
    pub bytes: u64,
}

pub fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

fn serr(path: &[u8], e: impl std::fmt::Display) -> RemoteError {
    RemoteError::io(format!("staging tree: /{}", lossy(path)), e)
}

/// Nanoseconds since the epoch, clamped to what an i64 holds (1677..2262):
/// a time set past either end must not wrap around to the other side.
pub fn mtime_ns(st: &libc::stat) -> i64 {
    st.st_mtime
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec)
}

fn entry(path: &[u8], kind: Kind, st: &libc::stat) -> Entry {
    Entry {
        path: RawName::from_bytes(path),
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_ns: mtime_ns(st),
        xattrs: BTreeMap::new(),
        size: None,
        chunks: None,
        target: None,
        link_of: None,
    }
}

fn read_xattrs(fd: BorrowedFd<'_>, path: &[u8]) -> Result<BTreeMap<String, String>, RemoteError> {
    let mut out = BTreeMap::new();
    for n in super::super::xattrs::list(fd).map_err(|e| serr(path, e))? {
        // The format's own only: a host's labels and ACLs are not the volume's.
        if !n.starts_with(super::pull::XATTR_NAMESPACE.as_bytes()) {
            continue;
        }
        let name =
            String::from_utf8(n.clone()).map_err(|_| serr(path, "an xattr name is not UTF-8"))?;
        if let Some(v) = super::super::xattrs::get(fd, &n).map_err(|e| serr(path, e))? {
            out.insert(name, b64(&v));
        }
    }
    Ok(out)
}

struct Walker {
    scan: Scan,
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// Every entry under `root` (root first, parents before children, names
/// sorted) and the pieces of its regular files.
pub fn scan(root: &Path) -> Result<Scan, RemoteError> {
    let fd = Arc::new(sys::open_dir_path(root).map_err(|e| serr(b"", e))?);
    let st = sys::fstat(fd.as_fd()).map_err(|e| serr(b"", e))?;
    let mut root_entry = entry(b"", Kind::Dir, &st);
    root_entry.xattrs = read_xattrs(fd.as_fd(), b"")?;
    let mut w = Walker {
        scan: Scan {
            entries: vec![root_entry],
            pieces: Vec::new(),
            skipped: Vec::new(),
            files: 0,
            bytes: 0,
        },
        links: HashMap::new(),
    };
    w.walk(&fd, b"", st.st_dev)?;
    Ok(w.scan)
}

impl Walker {
    fn walk(&mut self, dir: &Arc<OwnedFd>, rel: &[u8], dev: u64) -> Result<(), RemoteError> {
        let mut names: Vec<Vec<u8>> = sys::list_dir(dir.as_fd())
            .map_err(|e| serr(rel, e))?
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        names.sort();
        for n in names {
            let name = OsStr::from_bytes(&n);
            let path = join(rel, &n);
            let st = sys::fstatat(dir.as_fd(), name).map_err(|e| serr(&path, e))?;
            if st.st_dev != dev {
                self.scan.skipped.push(format!(
                    "{}: on another filesystem; not stored",
                    lossy(&path)
                ));
                continue;
            }
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    let sub = Arc::new(
                        sys::openat(dir.as_fd(), name, libc::O_PATH | libc::O_DIRECTORY, 0)
                            .map_err(|e| serr(&path, e))?,
                    );
                    let mut e = entry(&path, Kind::Dir, &st);
                    e.xattrs = read_xattrs(sub.as_fd(), &path)?;
                    self.scan.entries.push(e);
                    self.walk(&sub, &path, dev)?;
                }
                libc::S_IFREG => self.file(dir, name, &path, &st)?,
                libc::S_IFLNK => {
                    let target = sys::readlinkat(dir.as_fd(), name).map_err(|e| serr(&path, e))?;
                    let mut e = entry(&path, Kind::Symlink, &st);
                    e.target = Some(RawName::from_bytes(&target));
                    self.scan.entries.push(e);
                }
                _ => self
                    .scan
                    .skipped
                    .push(format!("{}: special file; not stored", lossy(&path))),
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        dir: &Arc<OwnedFd>,
        name: &OsStr,
        path: &[u8],
        st: &libc::stat,
    ) -> Result<(), RemoteError> {
        let mut e = entry(path, Kind::File, st);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                e.link_of = Some(RawName::from_bytes(first));
                self.scan.entries.push(e);
                return Ok(());
            }
            self.links.insert((st.st_dev, st.st_ino), path.to_vec());
        }
        let fd = sys::openat(dir.as_fd(), name, libc::O_PATH, 0).map_err(|e| serr(path, e))?;
        e.xattrs = read_xattrs(fd.as_fd(), path)?;
        let size = st.st_size.max(0) as u64;
        e.size = Some(size);
        e.chunks = Some(Vec::new());
        let index = self.scan.entries.len();
        self.scan.entries.push(e);
        self.scan.files += 1;
        self.scan.bytes += size;
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(CHUNK_SIZE);
            self.scan.pieces.push(Piece {
                entry: index,
                dir: dir.clone(),
                name: name.to_owned(),
                offset,
                len,
            });
            offset += len;
        }
        Ok(())
    }
}

/// The bytes of a piece, exactly `len` of them.
pub fn read_piece(p: &Piece, path: &[u8]) -> Result<Vec<u8>, RemoteError> {
    let (fd, _) =
        sys::open_regular(p.dir.as_fd(), &p.name, libc::O_RDONLY).map_err(|e| serr(path, e))?;
    let mut buf = vec![0u8; p.len as usize];
    let n = sys::pread_exact_or_eof(fd.as_fd(), &mut buf, p.offset).map_err(|e| serr(path, e))?;
    if n != buf.len() {
        return Err(serr(path, "changed while read"));
    }
    Ok(buf)
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0)
}

/// The components of a manifest path, each a valid single name.
pub fn components(path: &[u8]) -> Option<Vec<&[u8]>> {
    if path.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    parts
        .iter()
        .all(|p| sys::check_component(OsStr::from_bytes(p)).is_ok())
        .then_some(parts)
}

/// The regular file at the manifest path `path` below `root`, opened for
/// reading without following a symlink, if it is there.
pub fn open_below(root: &Path, path: &[u8]) -> Option<OwnedFd> {
    let parts = components(path)?;
    let (name, dirs) = parts.split_last()?;
    let mut fd = sys::open_dir_path(root).ok()?;
    for d in dirs {
        fd = sys::openat(
            fd.as_fd(),
            OsStr::from_bytes(d),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .ok()?;
    }
    sys::open_regular(fd.as_fd(), OsStr::from_bytes(name), libc::O_RDONLY)
        .ok()
        .map(|(f, _)| f)
}

/// Run `work(i)` for every `i < n` on `jobs` threads; the first error stops
/// the others and is returned.
pub fn run_parallel(
    jobs: usize,
    n: usize,
    work: impl Fn(usize) -> Result<(), RemoteError> + Sync,
) -> Result<(), RemoteError> {
    let next = AtomicUsize::new(0);
    let first_err: Mutex<Option<RemoteError>> = Mutex::new(None);
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n || first_err.lock().is_some() {
            return;
        }
        if let Err(e) = work(i) {
            first_err.lock().get_or_insert(e);
            return;
        }
    };
    std::thread::scope(|s| {
        for _ in 1..jobs.clamp(1, 64) {
            s.spawn(worker);
        }
        worker();
    });
    match first_err.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
