//! The copy engine behind `snapshot create` (raw bytes, same keys),
//! `snapshot copy --mode rekey|reencrypt` and `import`. It walks the source
//! with directory descriptors, creates directories, links and special files
//! as it goes, and copies regular files on every core.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::interrupt::Interrupt;
use super::{CopyError, Mode, Stats};
use crate::sys;
use crate::volume::reencrypt::NEW_FILE_PIECE;
use crate::volume::{BackingName, FileContent, Volume, LOCK_FILE_NAME, USER_XATTR_PREFIX};

mod jobs;

/// Where entries come from.
pub enum Source<'a> {
    /// A volume's backing tree, copied byte for byte (same keys).
    Raw,
    /// A volume, decrypted and written into another.
    Volume(&'a Volume, Mode),
    /// A plain directory tree, encrypted into a volume.
    Plain,
}

/// (device, inode) of a source file with several links.
type InodeKey = (u64, u64);
/// Where its first link was made in the destination: (directory, name).
type FirstLink = (Arc<OwnedFd>, OsString);

struct Job {
    src_dir: Arc<OwnedFd>,
    src_name: OsString,
    dst_dir: Arc<OwnedFd>,
    dst_name: OsString,
    st: libc::stat,
    path: PathBuf,
    /// Bytes the progress bar counts for it (plaintext bytes when they are
    /// re-encrypted, backing bytes when carried over).
    work: u64,
}

pub struct Copier<'a> {
    src: Source<'a>,
    dst: Option<&'a Volume>,
    as_root: bool,
    links: Mutex<HashMap<InodeKey, FirstLink>>,
    jobs: Mutex<Vec<Job>>,
    dir_meta: Mutex<Vec<(Arc<OwnedFd>, libc::stat)>>,
    files: AtomicU64,
    bytes: AtomicU64,
    /// Progress: bytes of work in all jobs, done so far, and files done.
    total_work: AtomicU64,
    done_bytes: AtomicU64,
    files_done: AtomicU64,
    entries: AtomicU64,
    skipped: Mutex<Vec<String>>,
    progress: bool,
    failed: AtomicBool,
    /// Raised when the copy is no longer wanted (a snapshot lost its hold).
    cancel: Option<Arc<AtomicBool>>,
    /// SIGINT or SIGTERM: stop at the next check.
    interrupt: Option<&'a Interrupt>,
}

fn cerr(path: &Path, e: impl std::fmt::Display) -> CopyError {
    CopyError::Entry(format!("{}: {e}", path.display()))
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0)
}

impl<'a> Copier<'a> {
    pub fn new(src: Source<'a>, dst: Option<&'a Volume>, progress: bool) -> Copier<'a> {
        Copier {
            src,
            dst,
            as_root: sys::geteuid() == 0,
            links: Mutex::new(HashMap::new()),
            jobs: Mutex::new(Vec::new()),
            dir_meta: Mutex::new(Vec::new()),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total_work: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            skipped: Mutex::new(Vec::new()),
            progress,
            failed: AtomicBool::new(false),
            cancel: None,
            interrupt: None,
        }
    }

    /// Stops the copy (with `CopyError::Interrupted`) once a signal came.
    pub fn interrupted_by(mut self, interrupt: &'a Interrupt) -> Copier<'a> {
        self.interrupt = Some(interrupt);
        self
    }

    /// Stops the copy (with an error) once `flag` is raised.
    pub fn cancelled_by(mut self, flag: Option<Arc<AtomicBool>>) -> Copier<'a> {
        self.cancel = flag;
        self
    }

    fn check_cancel(&self) -> Result<(), CopyError> {
        if let Some(i) = self.interrupt {
            i.check()?;
        }
        match &self.cancel {
            Some(f) if f.load(Ordering::Relaxed) => {
                Err(CopyError::HoldLost("the copy was cancelled".into()))
            }
            _ => Ok(()),
        }
    }

    /// Copy the tree under `src_root` into the (already initialized, for
    /// volume destinations) directory `dst_root`.
    pub fn run(&self, src_root: &Path, dst_root: &Path) -> Result<Stats, CopyError> {
        let t0 = Instant::now();
        let s = Arc::new(sys::open_dir_path(src_root).map_err(|e| cerr(src_root, e))?);
        let d = Arc::new(sys::open_dir_path(dst_root).map_err(|e| cerr(dst_root, e))?);
        let st = sys::fstat(s.as_fd()).map_err(|e| cerr(src_root, e))?;
        self.walk(&s, true, &d, true, Path::new(""))?;
        self.run_jobs()?;
        // Directory metadata last, deepest first, so entries made inside do not touch it.
        let mut metas = std::mem::take(&mut *self.dir_meta.lock());
        metas.push((d, st));
        for (fd, st) in metas {
            self.set_meta(fd.as_fd(), &st, false)
                .map_err(|e| cerr(Path::new("<directory>"), e))?;
        }
        Ok(Stats {
            files: self.files.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            seconds: t0.elapsed().as_secs_f64(),
            skipped: std::mem::take(&mut *self.skipped.lock()),
        })
    }

    /// Noted in the result (which names plaintext paths), not logged.
    fn skip(&self, what: String) {
        self.skipped.lock().push(what);
    }

    /// (plaintext or raw name, source backing name) of a source directory.
    fn entries(
        &self,
        dir: BorrowedFd<'_>,
        is_root: bool,
        rel: &Path,
    ) -> Result<Vec<(OsString, OsString)>, CopyError> {
        match &self.src {
            Source::Volume(v, _) => {
                let ctx = v
                    .dir_ctx(dir, is_root)
                    .map_err(|e| cerr(rel, format!("directory IV: {e}")))?;
                let (good, bad) = v.list_dir(dir, &ctx).map_err(|e| cerr(rel, e))?;
                for b in bad {
                    self.skip(format!(
                        "{}: backing entry {:?} has a name that does not decrypt; not copied",
                        rel.display(),
                        b.backing
                    ));
                }
                Ok(good.into_iter().map(|e| (e.plain, e.backing)).collect())
            }
            Source::Raw | Source::Plain => {
                let raw = sys::list_dir(dir).map_err(|e| cerr(rel, e))?;
                Ok(raw
                    .into_iter()
                    .map(|(n, _, _)| OsString::from(OsStr::from_bytes(&n)))
                    .filter(|n| {
                        !(matches!(self.src, Source::Raw) && is_root && n == LOCK_FILE_NAME)
                    })
                    .map(|n| (n.clone(), n))
                    .collect())
            }
        }
    }

    /// The destination backing name (and side file) of a plaintext name.
    fn dst_name(
        &self,
        dst_dir: BorrowedFd<'_>,
        is_root: bool,
        plain: &OsStr,
        rel: &Path,
    ) -> Result<OsString, CopyError> {
        match (&self.src, self.dst) {
            (Source::Raw, _) | (_, None) => Ok(plain.to_owned()),
            (_, Some(dv)) => {
                let ctx = dv.dir_ctx(dst_dir, is_root).map_err(|e| cerr(rel, e))?;
                let b: BackingName = dv
                    .names()
                    .to_backing(&ctx, plain)
                    .map_err(|e| cerr(rel, format!("name {plain:?}: {e}")))?;
                dv.write_side(dst_dir, &b).map_err(|e| cerr(rel, e))?;
                Ok(b.name)
            }
        }
    }

    fn walk(
        &self,
        sdir: &Arc<OwnedFd>,
        s_root: bool,
        ddir: &Arc<OwnedFd>,
        d_root: bool,
        rel: &Path,
    ) -> Result<(), CopyError> {
        let dev = sys::fstat(sdir.as_fd()).map_err(|e| cerr(rel, e))?.st_dev;
        for (plain, sname) in self.entries(sdir.as_fd(), s_root, rel)? {
            self.check_cancel()?;
            let path = rel.join(&plain);
            let st = sys::fstatat(sdir.as_fd(), &sname).map_err(|e| cerr(&path, e))?;
            if st.st_dev != dev {
                self.skip(format!(
                    "{}: on another filesystem; not copied",
                    path.display()
                ));
                continue;
            }
            self.entries.fetch_add(1, Ordering::Relaxed);
            let dname = self.dst_name(ddir.as_fd(), d_root, &plain, &path)?;
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => self.copy_dir(sdir, &sname, ddir, &dname, st, &path)?,
                libc::S_IFREG => self.queue_file(sdir, sname, ddir, dname, st, path)?,
                libc::S_IFLNK => self.copy_symlink(sdir, &sname, ddir, &dname, &st, &path)?,
                // Device nodes are inert behind a nodev mount, not in a
                // snapshot on the host's filesystem: never re-created. A
                // whiteout (0:0, overlayfs) is no device, and is copied.
                libc::S_IFCHR | libc::S_IFBLK
                    if st.st_rdev != 0 || st.st_mode & libc::S_IFMT == libc::S_IFBLK =>
                {
                    self.skip(format!("{}: device node not copied", path.display()))
                }
                _ => {
                    sys::mknodat(ddir.as_fd(), &dname, st.st_mode, st.st_rdev)
                        .map_err(|e| cerr(&path, e))?;
                    let fd = sys::openat(ddir.as_fd(), &dname, libc::O_PATH, 0)
                        .map_err(|e| cerr(&path, e))?;
                    self.set_meta(fd.as_fd(), &st, false)
                        .map_err(|e| cerr(&path, e))?;
                }
            }
        }
        Ok(())
    }

    /// A directory: made, its IV written, its xattrs copied, then walked.
    fn copy_dir(
        &self,
        sdir: &Arc<OwnedFd>,
        sname: &OsStr,
        ddir: &Arc<OwnedFd>,
        dname: &OsStr,
        st: libc::stat,
        path: &Path,
    ) -> Result<(), CopyError> {
        sys::mkdirat(ddir.as_fd(), dname, 0o700).map_err(|e| cerr(path, e))?;
        let dchild = Arc::new(
            sys::openat(ddir.as_fd(), dname, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| cerr(path, e))?,
        );
        if let (false, Some(dv)) = (matches!(self.src, Source::Raw), self.dst) {
            if dv.names().uses_diriv() {
                crate::volume::write_diriv_at(dchild.as_fd()).map_err(|e| cerr(path, e))?;
            }
        }
        let schild = Arc::new(
            sys::openat(sdir.as_fd(), sname, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| cerr(path, e))?,
        );
        self.copy_xattrs(schild.as_fd(), dchild.as_fd(), None, None, true, path)?;
        self.walk(&schild, false, &dchild, false, path)?;
        self.dir_meta.lock().push((dchild, st));
        Ok(())
    }

    /// A regular file: a further hard link of one already copied is linked;
    /// otherwise an empty file is made now and its content queued as a job.
    fn queue_file(
        &self,
        sdir: &Arc<OwnedFd>,
        sname: OsString,
        ddir: &Arc<OwnedFd>,
        dname: OsString,
        st: libc::stat,
        path: PathBuf,
    ) -> Result<(), CopyError> {
        if st.st_nlink > 1 {
            let mut links = self.links.lock();
            if let Some((fdir, fname)) = links.get(&(st.st_dev, st.st_ino)) {
                let first = sys::openat(fdir.as_fd(), fname, libc::O_PATH, 0)
                    .map_err(|e| cerr(&path, e))?;
                sys::linkat_fd(first.as_fd(), ddir.as_fd(), &dname).map_err(|e| cerr(&path, e))?;
                return Ok(());
            }
            links.insert((st.st_dev, st.st_ino), (ddir.clone(), dname.clone()));
        }
        drop(
            sys::create_new(ddir.as_fd(), &dname, libc::O_RDWR, 0o600)
                .map_err(|e| cerr(&path, e))?,
        );
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(st.st_size as u64, Ordering::Relaxed);
        let work = match &self.src {
            Source::Volume(sv, Mode::Reencrypt) => sv.plain_size(st.st_size as u64),
            _ => st.st_size as u64,
        };
        self.total_work.fetch_add(work, Ordering::Relaxed);
        self.jobs.lock().push(Job {
            src_dir: sdir.clone(),
            src_name: sname,
            dst_dir: ddir.clone(),
            dst_name: dname,
            st,
            path,
            work,
        });
        Ok(())
    }

    /// A symlink: its target decrypted and encrypted anew as the copy needs;
    /// one that does not decrypt or is too long to encrypt is skipped, said.
    fn copy_symlink(
        &self,
        sdir: &Arc<OwnedFd>,
        sname: &OsStr,
        ddir: &Arc<OwnedFd>,
        dname: &OsStr,
        st: &libc::stat,
        path: &Path,
    ) -> Result<(), CopyError> {
        let raw = sys::readlinkat(sdir.as_fd(), sname).map_err(|e| cerr(path, e))?;
        let target = match &self.src {
            Source::Volume(v, _) => match v.decrypt_symlink(&raw) {
                Some(t) => t,
                None => {
                    self.skip(format!(
                        "{}: symlink target does not decrypt; not copied",
                        path.display()
                    ));
                    return Ok(());
                }
            },
            _ => raw,
        };
        let stored = match (&self.src, self.dst) {
            (Source::Raw, _) | (_, None) => target,
            (_, Some(dv)) => {
                if target.len() > dv.max_symlink_target() {
                    self.skip(format!(
                        "{}: symlink target too long to encrypt; not copied",
                        path.display()
                    ));
                    return Ok(());
                }
                dv.encrypt_symlink(&target).map_err(|e| cerr(path, e))?
            }
        };
        sys::symlinkat(&stored, ddir.as_fd(), dname).map_err(|e| cerr(path, e))?;
        let fd = sys::openat(ddir.as_fd(), dname, libc::O_PATH, 0).map_err(|e| cerr(path, e))?;
        self.set_meta(fd.as_fd(), st, true)
            .map_err(|e| cerr(path, e))
    }

    /// Owner (as root), mode and times, onto an O_PATH descriptor.
    fn set_meta(&self, fd: BorrowedFd<'_>, st: &libc::stat, symlink: bool) -> std::io::Result<()> {
        if self.as_root {
            sys::fchown_fd(fd, Some(st.st_uid), Some(st.st_gid))?;
        }
        if !symlink {
            // Setuid and setgid bits are inert behind a nosuid mount; a copy
            // on the host's filesystem would make them act (a setuid-root
            // program of whoever wrote the backing file). A setgid
            // directory only passes its group on: kept.
            let mut mode = st.st_mode & 0o7777;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                mode &= !(libc::S_ISUID | libc::S_ISGID);
            }
            sys::fchmod_fd(fd, mode)?;
        }
        let ts = [
            libc::timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec,
            },
            libc::timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec,
            },
        ];
        sys::utimens_fd(fd, &ts)
    }

    /// Copy xattrs: raw copies all; volume and plain sources go through the
    /// destination's encryption (`scrypto`/`dcrypto`: the files' content keys).
    fn copy_xattrs(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        scrypto: Option<&crate::volume::FileCrypto>,
        dcrypto: Option<&crate::volume::FileCrypto>,
        is_dir: bool,
        path: &Path,
    ) -> Result<(), CopyError> {
        let names =
            super::xattrs::list(src).map_err(|e| cerr(path, format!("cannot list xattrs: {e}")))?;
        for n in names {
            // Raw copies carry every xattr; the others only the user's.
            let wanted = match &self.src {
                Source::Raw => true,
                Source::Plain => n.starts_with(b"user."),
                Source::Volume(..) => n.starts_with(USER_XATTR_PREFIX),
            };
            if !wanted {
                continue;
            }
            let v = match super::xattrs::get(src, &n) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => return Err(cerr(path, format!("cannot read an xattr: {e}"))),
            };
            let (name, value) = match &self.src {
                Source::Raw => {
                    sys::setxattr_fd(dst, &n, &v, 0).map_err(|e| cerr(path, e))?;
                    continue;
                }
                Source::Plain => (n, v),
                Source::Volume(sv, _) => {
                    match sv.decrypt_xattr(if is_dir { None } else { scrypto }, &v) {
                        Some(x) => x,
                        None => {
                            self.skip(format!(
                                "{}: an xattr does not decrypt; not copied",
                                path.display()
                            ));
                            continue;
                        }
                    }
                }
            };
            if let Some(dv) = self.dst {
                let blob = dv
                    .encrypt_xattr(if is_dir { None } else { dcrypto }, &name, &value)
                    .map_err(|e| cerr(path, e))?;
                sys::setxattr_fd(dst, &dv.xattr_backing_name(&name), &blob, 0)
                    .map_err(|e| cerr(path, e))?;
            }
        }
        Ok(())
    }

    /// Write a file's content into a fresh destination file, a piece
    /// (`NEW_FILE_PIECE`) at a time: in parallel across the pieces of a large
    /// file, all-zero pieces left as holes.
    fn reencrypt_body(
        &self,
        dv: &Volume,
        dc: &FileContent,
        dfd: BorrowedFd<'_>,
        plain_size: u64,
        read_src: impl Fn(u64, usize) -> Result<Vec<u8>, CopyError> + Sync,
        p: &Path,
    ) -> Result<(), CopyError> {
        let pieces = plain_size.div_ceil(NEW_FILE_PIECE);
        let threads = if plain_size >= 32 * NEW_FILE_PIECE {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(8)
        } else {
            1
        };
        let next = AtomicU64::new(0);
        let first_err: Mutex<Option<CopyError>> = Mutex::new(None);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= pieces || first_err.lock().is_some() {
                return;
            }
            let off = i * NEW_FILE_PIECE;
            let n = (plain_size - off).min(NEW_FILE_PIECE) as usize;
            let r = self
                .check_cancel()
                .and_then(|()| read_src(off, n))
                .and_then(|data| {
                    if data.len() != n {
                        return Err(cerr(p, "changed during the copy"));
                    }
                    if !all_zero(&data) {
                        dc.write_new_piece(dv, dfd, plain_size, off, &data)
                            .map_err(|e| cerr(p, e))?;
                    }
                    self.done_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    Ok(())
                });
            if let Err(e) = r {
                first_err.lock().get_or_insert(e);
                return;
            }
        };
        std::thread::scope(|sc| {
            for _ in 1..threads {
                sc.spawn(work);
            }
            work();
        });
        if let Some(e) = first_err.into_inner() {
            return Err(e);
        }
        // All-zero pieces at the end become a hole of the right length.
        dc.finish_new(dv, dfd, plain_size).map_err(|e| cerr(p, e))
    }

    /// A regular file's xattrs, from its source content keys to the destination's.
    fn copy_file_xattrs(
        &self,
        src: Option<(&Volume, &FileContent)>,
        dv: &Volume,
        dc: &FileContent,
        sfd: BorrowedFd<'_>,
        dfd: BorrowedFd<'_>,
        p: &Path,
    ) -> Result<(), CopyError> {
        let scrypto = match src {
            Some((sv, sc)) => sc.crypto_if_any(sv, sfd).map_err(|e| cerr(p, e))?,
            None => None,
        };
        let dcrypto = dc.crypto(dv, dfd).map_err(|e| cerr(p, e))?;
        let spath = sys::reopen(sfd, libc::O_PATH).map_err(|e| cerr(p, e))?;
        let dpath = sys::reopen(dfd, libc::O_PATH).map_err(|e| cerr(p, e))?;
        self.copy_xattrs(
            spath.as_fd(),
            dpath.as_fd(),
            scrypto.as_deref(),
            Some(&dcrypto),
            false,
            p,
        )
    }

    fn copy_file(&self, j: &Job) -> Result<(), CopyError> {
        let p = &j.path;
        let (sfd, _) = sys::open_regular(j.src_dir.as_fd(), &j.src_name, libc::O_RDONLY)
            .map_err(|e| cerr(p, e))?;
        let sst = sys::fstat(sfd.as_fd()).map_err(|e| cerr(p, e))?;
        if sst.st_mode & libc::S_IFMT != libc::S_IFREG || sst.st_ino != j.st.st_ino {
            return Err(cerr(p, "changed during the copy"));
        }
        let dfd =
            sys::openat(j.dst_dir.as_fd(), &j.dst_name, libc::O_RDWR, 0).map_err(|e| cerr(p, e))?;
        let size = sst.st_size as u64;
        // Bytes of this file counted as progress so far; the rest (holes,
        // clones, headers) is counted at the end.
        let mut counted = 0;
        match (&self.src, self.dst) {
            (Source::Raw, _) | (_, None) => {
                if sys::ficlone(dfd.as_fd(), sfd.as_fd()).is_err() {
                    sys::ftruncate(dfd.as_fd(), size).map_err(|e| cerr(p, e))?;
                    for (a, b) in
                        sys::data_segments(sfd.as_fd(), 0, size).map_err(|e| cerr(p, e))?
                    {
                        counted += self.copy_data((sfd.as_fd(), a), (dfd.as_fd(), a), b - a, p)?;
                    }
                }
                let pfd = sys::reopen(sfd.as_fd(), libc::O_PATH).map_err(|e| cerr(p, e))?;
                let dpfd = sys::reopen(dfd.as_fd(), libc::O_PATH).map_err(|e| cerr(p, e))?;
                self.copy_xattrs(pfd.as_fd(), dpfd.as_fd(), None, None, false, p)?;
            }
            (Source::Volume(sv, Mode::Rekey), Some(dv)) => {
                let dc = FileContent::new();
                let body = dc
                    .rekey_from(dv, dfd.as_fd(), sv, sfd.as_fd())
                    .map_err(|e| cerr(p, e))?;
                if let Some(body) = body {
                    let end = body.src + body.len;
                    for (a, b) in
                        sys::data_segments(sfd.as_fd(), body.src, end).map_err(|e| cerr(p, e))?
                    {
                        let a = a.max(body.src);
                        counted += self.copy_data(
                            (sfd.as_fd(), a),
                            (dfd.as_fd(), a - body.src + body.dst),
                            b - a,
                            p,
                        )?;
                    }
                }
                let sc = FileContent::new();
                self.copy_file_xattrs(Some((sv, &sc)), dv, &dc, sfd.as_fd(), dfd.as_fd(), p)?;
            }
            (src, Some(dv)) => {
                // Reencrypt or import: fresh file ID and data key, every block encrypted anew.
                let dc = FileContent::new();
                dc.create(dv, dfd.as_fd()).map_err(|e| cerr(p, e))?;
                let sc = FileContent::new();
                let plain_size = match src {
                    Source::Volume(sv, _) => sv.plain_size(size),
                    _ => size,
                };
                let read_src = |off: u64, n: usize| -> Result<Vec<u8>, CopyError> {
                    match src {
                        Source::Volume(sv, _) => sc
                            .read(sv, sfd.as_fd(), off, n as u32)
                            .map_err(|e| cerr(p, e)),
                        _ => {
                            let mut b = vec![0u8; n];
                            let got = sys::pread_exact_or_eof(sfd.as_fd(), &mut b, off)
                                .map_err(|e| cerr(p, e))?;
                            b.truncate(got);
                            Ok(b)
                        }
                    }
                };
                self.reencrypt_body(dv, &dc, dfd.as_fd(), plain_size, read_src, p)?;
                counted = plain_size;
                let from = match src {
                    Source::Volume(sv, _) => Some((*sv, &sc)),
                    _ => None,
                };
                self.copy_file_xattrs(from, dv, &dc, sfd.as_fd(), dfd.as_fd(), p)?;
            }
        }
        let dpath = sys::reopen(dfd.as_fd(), libc::O_PATH).map_err(|e| cerr(p, e))?;
        self.set_meta(dpath.as_fd(), &j.st, false)
            .map_err(|e| cerr(p, e))?;
        self.done_bytes
            .fetch_add(j.work.saturating_sub(counted), Ordering::Relaxed);
        Ok(())
    }
}
