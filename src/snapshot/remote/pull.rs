//! `snapshot pull`: the manifest opened and checked, the tree built in a
//! partial beside the destination (every chunk's length and hash checked
//! before it is written), then moved into place; with another key, built in
//! a staging partial and copied from there by `snapshot copy`'s engine.
//! A rerun after a kill reuses the killed run's pieces whose hash matches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::manifest::{self, unb64, ChunkRef, Entry, Kind, Manifest};
use super::rate::RateLimit;
use super::signature;
use super::store::{ObjectStore, StoreErrorKind};
use super::tree::{self, lossy};
use super::{chunk_key, manifest_key, repository, RemoteError, CHUNK_SIZE, MANIFEST_MAX};
use crate::kms::KeyService;
use crate::snapshot::interrupt::Interrupt;
use crate::snapshot::partial::{self, Partial};
use crate::snapshot::progress::Progress;
use crate::snapshot::{CopyError, Stats};
use crate::sys;

pub struct PullOptions {
    pub jobs: usize,
    pub limit_rate: Option<u64>,
    pub progress: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PullStats {
    pub name: String,
    pub url: String,
    pub destination: String,
    pub entries: u64,
    pub files: u64,
    /// Bytes of the files restored.
    pub bytes: u64,
    pub bytes_downloaded: u64,
    /// Chunk bytes taken from a killed run's partial instead of the store.
    pub bytes_reused: u64,
    pub chunks_downloaded: u64,
    pub chunks_reused: u64,
    pub seconds: f64,
}

/// The authenticated manifest of snapshot `name`, its signature checked
/// (required when `signed_by` names a key): the manifest and its signer.
pub fn open_snapshot(
    store: &dyn ObjectStore,
    ks: &dyn KeyService,
    expected_key: Option<&str>,
    signed_by: Option<&str>,
    name: &str,
) -> Result<(Manifest, Option<String>), RemoteError> {
    super::check_name(name)?;
    let repo = repository::require(store)?;
    let key = manifest_key(name);
    let bytes = store.get(&key, MANIFEST_MAX)?.ok_or_else(|| {
        RemoteError::NotFound(format!(
            "{}/{name}: no such snapshot (no {key})",
            store.url()
        ))
    })?;
    let sig_key = signature::signature_key(name);
    let sig = store.get(&sig_key, signature::MAX_SIGNATURE_OBJECT)?;
    let signer = signature::check(ks, &sig_key, &bytes, sig.as_deref(), signed_by)?;
    Ok((
        manifest::open(ks, expected_key, &repo, name, &key, &bytes)?,
        signer,
    ))
}

/// Restore snapshot `m` as a new cipher directory `dst` (same keys).
pub fn pull(
    store: &dyn ObjectStore,
    m: &Manifest,
    dst: &Path,
    opts: &PullOptions,
) -> Result<PullStats, RemoteError> {
    let t0 = Instant::now();
    super::super::refuse_existing(dst)?;
    let claimed = partial::claim_stale(dst);
    let reuse: Vec<PathBuf> = claimed.iter().map(|c| c.tree().to_owned()).collect();
    let failure: RefCell<Option<RemoteError>> = RefCell::new(None);
    let mut stats = None;
    let built = super::super::build_then_move(dst, |tmp, interrupt| {
        match restore(store, m, tmp, &reuse, opts, Some(interrupt)) {
            Ok(s) => {
                stats = Some(s);
                Ok(Stats::default())
            }
            Err(e) => {
                let line = e.to_string();
                *failure.borrow_mut() = Some(e);
                Err(CopyError::Entry(line))
            }
        }
    });
    if let Err(e) = built {
        return Err(failure.into_inner().unwrap_or(RemoteError::Copy(e)));
    }
    claimed.into_iter().for_each(partial::Claimed::remove);
    let mut s = stats.unwrap_or_default();
    s.url = store.url();
    s.destination = dst.display().to_string();
    s.seconds = t0.elapsed().as_secs_f64();
    Ok(s)
}

/// Restore snapshot `m` into a staging partial beside `dst`, then make
/// `dst` from it with `copy` (a `snapshot copy` under another key); the
/// staging copy is removed either way.
pub fn pull_copy(
    store: &dyn ObjectStore,
    m: &Manifest,
    dst: &Path,
    opts: &PullOptions,
    copy: impl FnOnce(&Path) -> Result<Stats, CopyError>,
) -> Result<(PullStats, Stats), RemoteError> {
    let t0 = Instant::now();
    super::super::refuse_existing(dst)?;
    let mut staging_name = dst
        .file_name()
        .ok_or_else(|| RemoteError::Usage(format!("{}: not a directory name", dst.display())))?
        .to_owned();
    staging_name.push(".envelopefs-restore");
    let staging = dst.with_file_name(staging_name);
    let claimed = partial::claim_stale(&staging);
    partial::remove_stale(&staging);
    let reuse: Vec<PathBuf> = claimed.iter().map(|c| c.tree().to_owned()).collect();
    let part = Partial::create(&staging)?;
    let r = restore(store, m, &part.tree(), &reuse, opts, None).and_then(|s| {
        copy(&part.tree())
            .map(|c| (s, c))
            .map_err(RemoteError::from)
    });
    let path = part.path();
    if let Err(e) = part.discard() {
        eprintln!(
            "envelopefs: cannot remove the staging copy {}: {e}",
            path.display()
        );
    }
    let (mut s, c) = r?;
    claimed.into_iter().for_each(partial::Claimed::remove);
    s.url = store.url();
    s.destination = dst.display().to_string();
    s.seconds = t0.elapsed().as_secs_f64();
    Ok((s, c))
}

/// A chunk to put in place: `len` bytes at `offset` of a restored file.
struct Task {
    dir: Arc<OwnedFd>,
    name: OsString,
    path: Vec<u8>,
    offset: u64,
    sha256: String,
    len: u64,
}

/// The tree being made: directories and first links by manifest path,
/// chunks to fetch, entries whose metadata is set at the end.
#[derive(Default)]
struct Plan {
    dirs: HashMap<Vec<u8>, Arc<OwnedFd>>,
    files: HashMap<Vec<u8>, (Arc<OwnedFd>, OsString)>,
    tasks: Vec<Task>,
    /// (entry, an O_PATH descriptor of what was made for it).
    metas: Vec<(usize, OwnedFd)>,
    stats: PullStats,
}

fn bad_manifest(m: &Manifest, what: String) -> RemoteError {
    RemoteError::Damaged {
        key: manifest_key(&m.name),
        what,
    }
}

fn local(path: &[u8], e: impl std::fmt::Display) -> RemoteError {
    RemoteError::io(format!("restored /{}", lossy(path)), e)
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file's chunk list fits its size, and each stored chunk is named by a
/// hash and no longer than a chunk (checked before any is fetched: a length
/// is how much a get may read into memory).
pub(super) fn check_chunks(m: &Manifest, e: &Entry, path: &[u8]) -> Result<(), RemoteError> {
    let chunks = e.chunks.as_deref().unwrap_or_default();
    let sum: u64 = chunks.iter().map(ChunkRef::bytes).sum();
    let ok = e.size == Some(sum)
        && chunks.iter().all(|c| {
            (1..=CHUNK_SIZE).contains(&c.bytes())
                && matches!(c, ChunkRef::Zero { .. } | ChunkRef::Data { sha256: _, .. })
                && !matches!(c, ChunkRef::Data { sha256, .. } if !is_hash(sha256))
        });
    if ok {
        Ok(())
    } else {
        Err(bad_manifest(
            m,
            format!("the chunk list of /{} does not fit", lossy(path)),
        ))
    }
}

/// The namespace of every backing xattr the format writes. Others carry
/// meaning to the host (`security.capability` grants capabilities on exec,
/// `trusted.overlay.*` steers overlayfs), so a manifest naming one is refused
/// whoever sealed it, as setuid bits are dropped.
pub const XATTR_NAMESPACE: &str = "user.";

fn set_xattrs(m: &Manifest, fd: BorrowedFd<'_>, e: &Entry, path: &[u8]) -> Result<(), RemoteError> {
    for (name, value) in &e.xattrs {
        if !name.starts_with(XATTR_NAMESPACE) {
            return Err(bad_manifest(
                m,
                format!(
                    "an xattr of /{} is outside {XATTR_NAMESPACE}* (the only backing xattrs of the format); nothing restored",
                    lossy(path)
                ),
            ));
        }
        let v = unb64(value).ok_or_else(|| {
            bad_manifest(m, format!("an xattr of /{} is not base64", lossy(path)))
        })?;
        sys::setxattr_fd(fd, name.as_bytes(), &v, 0).map_err(|err| local(path, err))?;
    }
    Ok(())
}

impl Plan {
    /// Make what entry `i` (not the root) describes, under its parent.
    fn make(&mut self, m: &Manifest, i: usize, path: &[u8]) -> Result<(), RemoteError> {
        let e = &m.entries[i];
        let (parent_path, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(k) => (&path[..k], &path[k + 1..]),
            None => (&path[..0], path),
        };
        let parent = self.dirs.get(parent_path).cloned().ok_or_else(|| {
            bad_manifest(m, format!("/{} comes before its directory", lossy(path)))
        })?;
        let name = OsStr::from_bytes(name);
        let opath = |dir: &OwnedFd, flags| sys::openat(dir.as_fd(), name, libc::O_PATH | flags, 0);
        match (e.kind, &e.link_of, &e.target) {
            (Kind::Dir, None, None) => {
                sys::mkdirat(parent.as_fd(), name, 0o700).map_err(|err| local(path, err))?;
                let fd = opath(&parent, libc::O_DIRECTORY).map_err(|err| local(path, err))?;
                set_xattrs(m, fd.as_fd(), e, path)?;
                self.dirs.insert(
                    path.to_vec(),
                    Arc::new(
                        sys::reopen(fd.as_fd(), libc::O_PATH | libc::O_DIRECTORY)
                            .map_err(|err| local(path, err))?,
                    ),
                );
                self.metas.push((i, fd));
            }
            (Kind::File, Some(first), None) => {
                let first = first.to_bytes().unwrap_or_default();
                let (fdir, fname) = self.files.get(&first).ok_or_else(|| {
                    bad_manifest(
                        m,
                        format!(
                            "/{} links to an entry before it that is not there",
                            lossy(path)
                        ),
                    )
                })?;
                let src = sys::openat(fdir.as_fd(), fname, libc::O_PATH, 0)
                    .map_err(|err| local(path, err))?;
                sys::linkat_fd(src.as_fd(), parent.as_fd(), name)
                    .map_err(|err| local(path, err))?;
            }
            (Kind::File, None, None) => self.file(m, i, path, &parent, name)?,
            (Kind::Symlink, None, Some(target)) => {
                let t = target
                    .to_bytes()
                    .ok_or_else(|| bad_manifest(m, "a symlink target is not base64".into()))?;
                sys::symlinkat(&t, parent.as_fd(), name).map_err(|err| local(path, err))?;
                let fd = opath(&parent, 0).map_err(|err| local(path, err))?;
                self.metas.push((i, fd));
            }
            _ => {
                return Err(bad_manifest(
                    m,
                    format!("/{} is not a file, directory or symlink", lossy(path)),
                ))
            }
        }
        self.stats.entries += 1;
        Ok(())
    }

    fn file(
        &mut self,
        m: &Manifest,
        i: usize,
        path: &[u8],
        parent: &Arc<OwnedFd>,
        name: &OsStr,
    ) -> Result<(), RemoteError> {
        let e = &m.entries[i];
        check_chunks(m, e, path)?;
        let size = e.size.unwrap_or(0);
        let fd = sys::create_new(parent.as_fd(), name, libc::O_RDWR, 0o600)
            .map_err(|err| local(path, err))?;
        sys::ftruncate(fd.as_fd(), size).map_err(|err| local(path, err))?;
        let opath = sys::reopen(fd.as_fd(), libc::O_PATH).map_err(|err| local(path, err))?;
        set_xattrs(m, opath.as_fd(), e, path)?;
        let mut offset = 0;
        for c in e.chunks.iter().flatten() {
            if let ChunkRef::Data { sha256, len } = c {
                self.tasks.push(Task {
                    dir: parent.clone(),
                    name: name.to_owned(),
                    path: path.to_vec(),
                    offset,
                    sha256: sha256.clone(),
                    len: *len,
                });
            }
            offset += c.bytes();
        }
        self.files
            .insert(path.to_vec(), (parent.clone(), name.to_owned()));
        self.metas.push((i, opath));
        self.stats.files += 1;
        self.stats.bytes += size;
        Ok(())
    }
}

/// Make every entry of `m` below `root` (an empty directory): the tree, then
/// the chunks, then modes, owners (as root) and times.
fn restore(
    store: &dyn ObjectStore,
    m: &Manifest,
    root: &Path,
    reuse: &[PathBuf],
    opts: &PullOptions,
    interrupt: Option<&Interrupt>,
) -> Result<PullStats, RemoteError> {
    let mut plan = Plan::default();
    let root_fd = sys::open_dir_path(root).map_err(|e| local(b"", e))?;
    match m.entries.first() {
        Some(e) if e.kind == Kind::Dir && e.path.to_bytes().is_some_and(|p| p.is_empty()) => {
            set_xattrs(m, root_fd.as_fd(), e, b"")?;
        }
        _ => {
            return Err(bad_manifest(
                m,
                "the first entry is not the root directory".into(),
            ))
        }
    }
    plan.dirs.insert(
        Vec::new(),
        Arc::new(
            sys::reopen(root_fd.as_fd(), libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| local(b"", e))?,
        ),
    );
    plan.metas.push((0, root_fd));
    plan.stats.entries = 1;
    for i in 1..m.entries.len() {
        let path = m.entries[i].path.to_bytes().unwrap_or_default();
        if path.is_empty() || tree::components(&path).is_none() {
            return Err(bad_manifest(m, format!("entry {i} has no usable path")));
        }
        if plan.files.contains_key(&path) || plan.dirs.contains_key(&path) {
            return Err(bad_manifest(m, format!("/{} appears twice", lossy(&path))));
        }
        plan.make(m, i, &path)?;
    }
    let counts = fetch_all(store, &plan, reuse, opts, interrupt)?;
    set_metadata(m, &plan)?;
    plan.stats.bytes_downloaded = counts.downloaded;
    plan.stats.bytes_reused = counts.reused;
    plan.stats.chunks_downloaded = counts.chunks_downloaded;
    plan.stats.chunks_reused = counts.chunks_reused;
    plan.stats.name = m.name.clone();
    Ok(std::mem::take(&mut plan.stats))
}

#[derive(Default)]
struct Counters {
    downloaded: AtomicU64,
    reused: AtomicU64,
    chunks_downloaded: AtomicU64,
    chunks_reused: AtomicU64,
}

/// The piece at the task's place in a killed run's partial, if its hash matches.
fn reused(reuse: &[PathBuf], t: &Task) -> Option<Vec<u8>> {
    reuse.iter().find_map(|root| {
        let fd = tree::open_below(root, &t.path)?;
        let mut buf = vec![0u8; t.len as usize];
        let n = sys::pread_exact_or_eof(fd.as_fd(), &mut buf, t.offset).ok()?;
        (n == buf.len() && tree::sha256_hex(&buf) == t.sha256).then_some(buf)
    })
}

/// The chunk from the store, checked against its length and hash.
pub fn fetch_chunk(
    store: &dyn ObjectStore,
    sha256: &str,
    len: u64,
) -> Result<Vec<u8>, RemoteError> {
    if !is_hash(sha256) || !(1..=CHUNK_SIZE).contains(&len) {
        return Err(RemoteError::Damaged {
            key: "the manifest".into(),
            what: format!(
                "names a chunk {sha256:?} of {len} bytes: not a SHA-256 and a chunk's length"
            ),
        });
    }
    let key = chunk_key(sha256);
    let damaged = |what: &str| RemoteError::Damaged {
        key: key.clone(),
        what: what.to_owned(),
    };
    let data = match store.get(&key, len) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(damaged("missing from the repository")),
        // A store refuses an object over the length asked for: its size says why.
        Err(e) if e.kind == StoreErrorKind::Other => match store.head(&key)? {
            Some(o) if o.size > len => {
                return Err(damaged(
                    "longer than the manifest says (tampered or damaged)",
                ))
            }
            _ => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    if data.len() as u64 != len || tree::sha256_hex(&data) != sha256 {
        return Err(damaged(
            "content does not match its hash (tampered or damaged)",
        ));
    }
    Ok(data)
}

fn fetch_all(
    store: &dyn ObjectStore,
    plan: &Plan,
    reuse: &[PathBuf],
    opts: &PullOptions,
    interrupt: Option<&Interrupt>,
) -> Result<Counts, RemoteError> {
    let total: u64 = plan.tasks.iter().map(|t| t.len).sum();
    let progress = Progress::new(opts.progress, total, plan.stats.files);
    let rate = RateLimit::new(opts.limit_rate);
    let c = Counters::default();
    let done = AtomicU64::new(0);
    let r = tree::run_parallel(opts.jobs, plan.tasks.len(), |i| {
        if let Some(int) = interrupt {
            int.check()?;
        }
        let t = &plan.tasks[i];
        let (data, bytes, chunks) = match reused(reuse, t) {
            Some(d) => (d, &c.reused, &c.chunks_reused),
            None => {
                RateLimit::take(rate.as_ref(), t.len);
                (
                    fetch_chunk(store, &t.sha256, t.len)?,
                    &c.downloaded,
                    &c.chunks_downloaded,
                )
            }
        };
        let fd = sys::openat(t.dir.as_fd(), &t.name, libc::O_WRONLY, 0)
            .map_err(|e| local(&t.path, e))?;
        write_sparse(fd.as_fd(), &data, t.offset).map_err(|e| local(&t.path, e))?;
        bytes.fetch_add(t.len, Ordering::Relaxed);
        chunks.fetch_add(1, Ordering::Relaxed);
        progress.update(done.fetch_add(t.len, Ordering::Relaxed) + t.len, 0);
        Ok(())
    });
    match &r {
        Ok(()) => progress.finish(total),
        Err(_) => progress.clear(),
    }
    r?;
    Ok(Counts {
        downloaded: c.downloaded.into_inner(),
        reused: c.reused.into_inner(),
        chunks_downloaded: c.chunks_downloaded.into_inner(),
        chunks_reused: c.chunks_reused.into_inner(),
    })
}

struct Counts {
    downloaded: u64,
    reused: u64,
    chunks_downloaded: u64,
    chunks_reused: u64,
}

/// Write `data` at `offset` of a file that reads as zeros there (truncated
/// to size), leaving 4 KiB runs of zeros unwritten: holes stay holes.
fn write_sparse(fd: BorrowedFd<'_>, data: &[u8], offset: u64) -> std::io::Result<()> {
    const RUN: usize = 4096;
    let mut start = None;
    for (i, run) in data.chunks(RUN).enumerate() {
        match (tree::is_zero(run), start) {
            (false, None) => start = Some(i * RUN),
            (true, Some(a)) => {
                sys::pwrite_all(fd, &data[a..i * RUN], offset + a as u64)?;
                start = None;
            }
            _ => {}
        }
    }
    if let Some(a) = start {
        sys::pwrite_all(fd, &data[a..], offset + a as u64)?;
    }
    Ok(())
}

/// Owner (as root), mode and times of every entry made; directories last,
/// deepest first, so that nothing made inside them touches their times.
fn set_metadata(m: &Manifest, plan: &Plan) -> Result<(), RemoteError> {
    let as_root = sys::geteuid() == 0;
    let (dirs, others): (Vec<_>, Vec<_>) = plan
        .metas
        .iter()
        .partition(|(i, _)| m.entries[*i].kind == Kind::Dir);
    for (i, fd) in others.into_iter().chain(dirs.into_iter().rev()) {
        let e = &m.entries[*i];
        let path = e.path.to_bytes().unwrap_or_default();
        let err = |x| local(&path, x);
        if as_root {
            sys::fchown_fd(fd.as_fd(), Some(e.uid), Some(e.gid)).map_err(err)?;
        }
        if e.kind != Kind::Symlink {
            // As `snapshot create`: setuid and setgid bits are not made on
            // the host's filesystem (a setgid directory only passes its group on).
            let mut mode = e.mode & 0o7777;
            if e.kind != Kind::Dir {
                mode &= !(libc::S_ISUID | libc::S_ISGID);
            }
            sys::fchmod_fd(fd.as_fd(), mode).map_err(err)?;
        }
        let t = libc::timespec {
            tv_sec: e.mtime_ns.div_euclid(1_000_000_000),
            tv_nsec: e.mtime_ns.rem_euclid(1_000_000_000),
        };
        sys::utimens_fd(fd.as_fd(), &[t, t]).map_err(err)?;
    }
    Ok(())
}
