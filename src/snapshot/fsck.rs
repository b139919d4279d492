//! `fsck`: verify a volume offline — config, every directory IV and name,
//! every header and block, symlink targets and xattrs — and name each problem
//! by its plaintext path where it can be recovered, else its backing path.
//! A write-only volume (format 2) is checked fully through the key service,
//! or with the recipient's public key alone as far as that allows
//! ([`super::fsck_public`]).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use serde::Serialize;

use crate::kms::KeyService;
use crate::sys;
use crate::volume::content::TailCopy;
use crate::volume::{CacheOptions, FileContent, Recipient, Volume, USER_XATTR_PREFIX};

// PascalCase, as every JSON result of the command line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Problem {
    /// The plaintext path, where known.
    pub path: Option<String>,
    /// The backing path, relative to the cipher directory.
    pub backing_path: String,
    pub problem: String,
}

/// How much a check could see.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Scope {
    /// Every name, header, block, target and xattr authenticated.
    #[default]
    Full,
    /// A write-only volume checked with the recipient's public key only:
    /// config, write sessions, structure, headers, sizes and which session
    /// sealed each object, but no content, name, target or xattr opened.
    PublicKey,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub clean: bool,
    pub scope: Scope,
    /// Write sessions (format 2).
    pub sessions: u64,
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
    /// Not damage, but power a writer of the backing directory may have
    /// planted: device nodes and setuid/setgid bits (they act only through a
    /// `--dev` or `--suid` mount).
    pub warnings: Vec<Problem>,
}

struct Walker<'a> {
    vol: &'a Volume,
    r: Report,
}

/// Check the volume at `dir`: fully through `ks`, or, given the recipient
/// of a write-only volume, with its public key alone (`ks` only fetches it).
pub fn fsck(
    dir: &Path,
    ks: Option<&dyn KeyService>,
    recipient: Option<&Recipient>,
) -> Result<Report, crate::error::VolumeError> {
    // Config: parse, unwrap and MAC check all happen in open.
    let vol = match (recipient, ks) {
        (Some(r), _) => Volume::open_write_only(dir, ks, r, CacheOptions::default())?,
        (None, Some(ks)) => Volume::open(dir, ks, CacheOptions::default())?,
        (None, None) => {
            return Err(crate::error::VolumeError::BadOption(
                "fsck needs the key service, or a write-only volume's recipient key".into(),
            ))
        }
    };
    let root = sys::open_dir_path(dir).map_err(|e| crate::error::VolumeError::io(dir, e))?;
    let mut r = Report::default();
    let good = r.sessions(&vol)?;
    if vol.is_write_only() {
        r.scope = Scope::PublicKey;
        super::fsck_public::check(&vol, root.as_fd(), good, &mut r);
    } else {
        let mut w = Walker { vol: &vol, r };
        w.dir(root.as_fd(), true, Path::new(""), Path::new(""));
        r = w.r;
    }
    r.clean = r.problems.is_empty();
    Ok(r)
}

impl Report {
    pub(super) fn problem(&mut self, path: Option<&Path>, backing: &Path, what: impl Into<String>) {
        self.problems.push(Problem {
            path: path.map(|p| format!("/{}", p.display())),
            backing_path: backing.display().to_string(),
            problem: what.into(),
        });
    }

    /// Format 2: each write session's file checked (a broken one is a
    /// problem: what it sealed cannot be read); the sound ones' names.
    fn sessions(
        &mut self,
        vol: &Volume,
    ) -> Result<std::collections::HashSet<String>, crate::error::VolumeError> {
        let mut good = std::collections::HashSet::new();
        for s in vol.check_sessions()? {
            self.sessions += 1;
            match s.problem {
                Some(p) => self.problem(
                    None,
                    Path::new(&s.file_name),
                    format!("write session: {p}; what it sealed cannot be read"),
                ),
                None => {
                    good.insert(s.file_name);
                }
            }
        }
        Ok(good)
    }

    /// Device nodes and setuid/setgid bits; `plain` is None where the
    /// plaintext path is not known (a public-key check).
    pub(super) fn privilege_warnings(
        &mut self,
        plain: Option<&Path>,
        backing: &Path,
        st: &libc::stat,
    ) {
        let kind = st.st_mode & libc::S_IFMT;
        let mut warn = |what: String| {
            self.warnings.push(Problem {
                path: plain.map(|p| format!("/{}", p.display())),
                backing_path: backing.display().to_string(),
                problem: what,
            })
        };
        // A 0:0 character device is a whiteout (overlayfs), no device.
        let whiteout = kind == libc::S_IFCHR && st.st_rdev == 0;
        if (kind == libc::S_IFCHR || kind == libc::S_IFBLK) && !whiteout {
            warn(format!(
                "{} device node {}:{} (opens that device through a --dev mount)",
                if kind == libc::S_IFCHR {
                    "character"
                } else {
                    "block"
                },
                sys::device_major(st.st_rdev),
                sys::device_minor(st.st_rdev)
            ));
        }
        // A setgid directory only passes its group on; on anything else the
        // bits raise privilege through a --suid mount.
        if kind != libc::S_IFDIR && st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            warn(format!(
                "{} bit set (mode {:o}; runs as the file's owner through a --suid mount)",
                match (
                    st.st_mode & libc::S_ISUID != 0,
                    st.st_mode & libc::S_ISGID != 0
                ) {
                    (true, true) => "setuid and setgid",
                    (true, false) => "setuid",
                    _ => "setgid",
                },
                st.st_mode & 0o7777
            ));
        }
    }
}

impl Walker<'_> {
    fn report(&mut self, path: Option<&Path>, backing: &Path, problem: impl Into<String>) {
        self.r.problem(path, backing, problem);
    }

    fn dir(&mut self, fd: BorrowedFd<'_>, is_root: bool, plain: &Path, backing: &Path) {
        self.r.directories += 1;
        let ctx = match self.vol.dir_ctx(fd, is_root) {
            Ok(c) => c,
            Err(e) => {
                self.report(
                    Some(plain),
                    backing,
                    format!("directory IV unreadable: {e}; names here cannot be decrypted"),
                );
                return;
            }
        };
        let (good, bad) = match self.vol.list_dir(fd, &ctx) {
            Ok(x) => x,
            Err(e) => {
                self.report(Some(plain), backing, format!("cannot list: {e}"));
                return;
            }
        };
        for b in bad {
            self.report(
                None,
                &backing.join(&b.backing),
                "name does not decrypt (corrupt, or moved from another directory)",
            );
        }
        self.xattrs(fd, None, plain, backing, true);
        for e in good {
            let (p, b) = (plain.join(&e.plain), backing.join(&e.backing));
            let st = match sys::fstatat(fd, &e.backing) {
                Ok(s) => s,
                Err(err) => {
                    self.report(Some(&p), &b, format!("stat: {err}"));
                    continue;
                }
            };
            self.r.privilege_warnings(Some(&p), &b, &st);
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    match sys::openat(fd, &e.backing, libc::O_PATH | libc::O_DIRECTORY, 0) {
                        Ok(c) => self.dir(c.as_fd(), false, &p, &b),
                        Err(err) => self.report(Some(&p), &b, format!("open: {err}")),
                    }
                }
                libc::S_IFREG => self.file(fd, &e.backing, &p, &b, st.st_size as u64),
                libc::S_IFLNK => {
                    self.r.symlinks += 1;
                    match sys::readlinkat(fd, &e.backing) {
                        Ok(t) if self.vol.decrypt_symlink(&t).is_some() => {}
                        Ok(_) => self.report(Some(&p), &b, "symlink target fails authentication"),
                        Err(err) => self.report(Some(&p), &b, format!("readlink: {err}")),
                    }
                }
                _ => {}
            }
        }
    }

    fn file(&mut self, dir: BorrowedFd<'_>, name: &std::ffi::OsStr, p: &Path, b: &Path, size: u64) {
        self.r.files += 1;
        let fd = match sys::open_regular(dir, name, libc::O_RDONLY) {
            Ok((f, _)) => f,
            Err(e) => return self.report(Some(p), b, format!("open: {e}")),
        };
        if let Some(intact) = self.vol.torn_tail(size) {
            self.report(
                Some(p),
                b,
                format!(
                    "torn tail: backing size {size} ends mid-block after {intact} intact bytes"
                ),
            );
        }
        let c = FileContent::new();
        let crypto = match c.crypto_if_any(self.vol, fd.as_fd()) {
            Ok(c) => c,
            Err(e) => return self.report(Some(p), b, format!("header: {e}")),
        };
        if crypto.is_none() && size > 0 {
            return self.report(Some(p), b, "missing header");
        }
        let plain = self.vol.plain_size(size);
        let bs = u64::from(self.vol.config().block_size);
        let mut off = 0;
        while off < plain {
            let n = (plain - off).min(bs * 256);
            if c.read(self.vol, fd.as_fd(), off, n as u32).is_err() {
                // Narrow it down to the first bad block.
                let mut o = off;
                while o < off + n {
                    if c.read(self.vol, fd.as_fd(), o, bs as u32).is_err() {
                        self.report(Some(p), b, format!("block {} fails authentication", o / bs));
                        break;
                    }
                    o += bs;
                }
                break;
            }
            off += n;
        }
        // A last block a crash tore, which its fsync'd copy restores.
        match c.tail_copy(self.vol, fd.as_fd()) {
            Ok(TailCopy::Restores { block }) => self.report(
                Some(p),
                b,
                format!(
                    "block {block} torn by a crash: a read-write mount restores it \
                     as it was at the last fsync"
                ),
            ),
            Ok(_) => {}
            Err(e) => self.report(Some(p), b, format!("tail copy unreadable: {e}")),
        }
        self.r.bytes += plain;
        match sys::reopen(fd.as_fd(), libc::O_PATH) {
            Ok(pf) => self.xattrs(pf.as_fd(), crypto.as_deref(), p, b, false),
            Err(e) => self.report(Some(p), b, format!("xattrs not checked: {e}")),
        }
    }

    fn xattrs(
        &mut self,
        fd: BorrowedFd<'_>,
        fc: Option<&crate::volume::FileCrypto>,
        p: &Path,
        b: &Path,
        is_dir: bool,
    ) {
        let names = match super::xattrs::list(fd) {
            Ok(n) => n,
            Err(e) => return self.report(Some(p), b, format!("cannot list xattrs: {e}")),
        };
        for n in names {
            if !n.starts_with(USER_XATTR_PREFIX) {
                continue;
            }
            let shown = String::from_utf8_lossy(&n);
            let v = match super::xattrs::get(fd, &n) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    self.report(Some(p), b, format!("xattr {shown} unreadable: {e}"));
                    continue;
                }
            };
            let ok = self
                .vol
                .decrypt_xattr(if is_dir { None } else { fc }, &v)
                .is_some_and(|(name, _)| self.vol.xattr_backing_name(&name) == n);
            if !ok {
                self.report(Some(p), b, format!("xattr {shown} fails authentication"));
            }
        }
    }
}
