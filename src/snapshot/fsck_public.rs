//! `fsck --recipient-key|--recipient-file`: a write-only volume checked with
//! the recipient's public key alone. No name, header, block, target or xattr
//! can be opened without the private key, so this checks what the public
//! key does allow: the config's MAC (at open), every write session's file,
//! that each entry has the form of a lookup name and a side file, that each
//! sealed object names a sound session, headers, sizes and privilege bits.
//! Problems are named by backing path only.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::fsck::Report;
use crate::sys;
use crate::volume::check::SealedObject;
use crate::volume::{Volume, LONGNAME_SUFFIX, USER_XATTR_PREFIX};

struct PublicWalker<'a> {
    vol: &'a Volume,
    /// The write sessions whose files are sound.
    sessions: HashSet<String>,
    r: &'a mut Report,
}

/// Walk the tree under `root`, adding to `r`.
pub(super) fn check(vol: &Volume, root: BorrowedFd<'_>, sessions: HashSet<String>, r: &mut Report) {
    let mut w = PublicWalker { vol, sessions, r };
    w.dir(root, true, Path::new(""));
}

impl PublicWalker<'_> {
    /// What `obj` (at `backing`, a `what`) names must be a sound session.
    fn sealed(&mut self, obj: SealedObject<'_>, backing: &Path, what: &str) {
        let problem = match self.vol.sealed_session(obj) {
            Ok(s) if self.sessions.contains(&s) => return,
            Ok(s) => {
                format!("{what} sealed under the write session {s}, which is missing or damaged")
            }
            Err(e) => format!("{what}: {e}"),
        };
        self.r.problem(None, backing, problem);
    }

    fn dir(&mut self, fd: BorrowedFd<'_>, is_root: bool, backing: &Path) {
        self.r.directories += 1;
        if let Err(e) = self.vol.dir_ctx(fd, is_root) {
            self.r
                .problem(None, backing, format!("directory IV unreadable: {e}"));
        }
        let list = match sys::list_dir(fd) {
            Ok(l) => l,
            Err(e) => return self.r.problem(None, backing, format!("cannot list: {e}")),
        };
        self.dir_xattrs(fd, backing);
        let names: HashSet<OsString> = list
            .iter()
            .map(|(n, _, _)| OsString::from_vec(n.clone()))
            .collect();
        for name in &names {
            let b = backing.join(name);
            if name.as_bytes().contains(&b'.') {
                // The config, lock, IV and session files, and side files.
                let orphan = name
                    .as_bytes()
                    .strip_suffix(LONGNAME_SUFFIX.as_bytes())
                    .is_some_and(|stem| !names.contains(OsStr::from_bytes(stem)));
                if orphan {
                    self.r
                        .problem(None, &b, "side file without its entry (a leftover)");
                }
                continue;
            }
            if !self.vol.is_lookup_name(name) {
                self.r
                    .problem(None, &b, "not a name this volume makes (planted?)");
                continue;
            }
            match self.vol.read_side(fd, name) {
                Some(side) => self.sealed(SealedObject::SideFile(&side), &b, "name"),
                None => self.r.problem(None, &b, "no side file: its name is lost"),
            }
            self.entry(fd, name, &b);
        }
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, name: &OsStr, b: &Path) {
        let st = match sys::fstatat(dir, name) {
            Ok(s) => s,
            Err(e) => return self.r.problem(None, b, format!("stat: {e}")),
        };
        self.r.privilege_warnings(None, b, &st);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => match sys::openat(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0) {
                Ok(c) => self.dir(c.as_fd(), false, b),
                Err(e) => self.r.problem(None, b, format!("open: {e}")),
            },
            libc::S_IFREG => self.file(dir, name, b, st.st_size as u64),
            libc::S_IFLNK => {
                self.r.symlinks += 1;
                match sys::readlinkat(dir, name) {
                    Ok(t) => self.sealed(SealedObject::SymlinkTarget(&t), b, "symlink target"),
                    Err(e) => self.r.problem(None, b, format!("readlink: {e}")),
                }
            }
            _ => {}
        }
    }

    fn file(&mut self, dir: BorrowedFd<'_>, name: &OsStr, b: &Path, size: u64) {
        self.r.files += 1;
        let fd = match sys::open_regular(dir, name, libc::O_RDONLY) {
            Ok((f, _)) => f,
            Err(e) => return self.r.problem(None, b, format!("open: {e}")),
        };
        if let Some(intact) = self.vol.torn_tail(size) {
            self.r.problem(
                None,
                b,
                format!(
                    "torn tail: backing size {size} ends mid-block after {intact} intact bytes"
                ),
            );
        }
        match self.vol.header_session(fd.as_fd()) {
            Ok(Some(s)) if self.sessions.contains(&s) => {}
            Ok(Some(s)) => self.r.problem(
                None,
                b,
                format!("header sealed under the write session {s}, which is missing or damaged"),
            ),
            Ok(None) if size > 0 => self.r.problem(None, b, "missing header"),
            Ok(None) => {}
            Err(e) => self.r.problem(None, b, format!("header: {e}")),
        }
        self.r.bytes += self.vol.plain_size(size);
    }

    /// A directory's xattrs are sealed under a session (a file's are under
    /// its data key, which the public key cannot reach).
    fn dir_xattrs(&mut self, fd: BorrowedFd<'_>, backing: &Path) {
        let names = match super::xattrs::list(fd) {
            Ok(n) => n,
            Err(e) => {
                return self
                    .r
                    .problem(None, backing, format!("cannot list xattrs: {e}"))
            }
        };
        for n in names.iter().filter(|n| n.starts_with(USER_XATTR_PREFIX)) {
            let shown = String::from_utf8_lossy(n).into_owned();
            match super::xattrs::get(fd, n) {
                Ok(Some(v)) => self.sealed(
                    SealedObject::DirXattr(&v),
                    backing,
                    &format!("xattr {shown}"),
                ),
                Ok(None) => {}
                Err(e) => self
                    .r
                    .problem(None, backing, format!("xattr {shown} unreadable: {e}")),
            }
        }
    }
}
