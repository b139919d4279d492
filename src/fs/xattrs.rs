//! Extended attributes through the mount: every served name (xattr_names.rs)
//! is stored as one backing xattr `user.e.<MAC of the name>` whose value is
//! the name and value sealed together, under the file's data key for
//! regular files and a volume-derived key for directories. A stored value is
//! used only after it decrypts (which authenticates it) to the expected name.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fuser::{Errno, FileType, INodeNo};
use log::{error, warn};

use super::xattr_names::{self, Namespace};
use super::{acl, content_err, io, killpriv, EnvelopeFs, Node, Res};
use crate::error::VolumeError;
use crate::sys;
use crate::volume::USER_XATTR_PREFIX;

/// The kernel asks for this one before every write (FUSE clears SB_NOSEC),
/// and the daemon for a directory's default ACL at every create in it, so
/// their absence is remembered per node.
const FCAPS: &[u8] = b"security.capability";

fn absence_of<'a>(node: &'a Node, name: &[u8]) -> Option<&'a KnownAbsent> {
    if name == FCAPS {
        Some(&node.no_fcaps)
    } else if name == acl::DEFAULT {
        Some(&node.no_default_acl)
    } else {
        None
    }
}

/// An xattr known to be absent from a node, until the daemon next sets or
/// removes it: an even count is "unknown", odd "absent". A read that found
/// nothing marks it absent only if no change came in between (the count it
/// started from is still there); a change moves the count on after its
/// backing write, so a read racing it can never leave "absent" behind.
#[derive(Default)]
pub struct KnownAbsent(AtomicU64);

impl KnownAbsent {
    fn is_absent(&self) -> bool {
        self.0.load(Ordering::Acquire) & 1 == 1
    }

    fn before_read(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn found_none(&self, seen: u64) {
        if seen & 1 == 0 {
            let _ = self
                .0
                .compare_exchange(seen, seen | 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn changed(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some((s | 1) + 1));
    }
}

/// Only directories and regular files carry xattrs: the backing ones are
/// `user.*`, which Linux allows on nothing else.
fn carries_xattrs(node: &Node) -> bool {
    matches!(node.kind, FileType::Directory | FileType::RegularFile)
}

impl EnvelopeFs {
    fn namespace(&self, name: &[u8]) -> Res<Namespace> {
        xattr_names::classify(name, self.acls_enabled())
    }

    /// The crypto state a node's xattr values are sealed under (None: volume-derived).
    fn xattr_crypto(
        &self,
        node: &Node,
        create: bool,
    ) -> Res<Option<Arc<crate::volume::FileCrypto>>> {
        match node.kind {
            FileType::Directory => Ok(None),
            FileType::RegularFile => {
                let fd = self.content_fd(node, create)?;
                if create {
                    node.content
                        .crypto(&self.vol, fd.as_fd())
                        .map(Some)
                        .map_err(content_err)
                } else {
                    node.content
                        .crypto_if_any(&self.vol, fd.as_fd())
                        .map_err(content_err)
                }
            }
            _ => Err(Errno::EPERM),
        }
    }

    /// The authenticated value of `name` on `node`; ENODATA if it has none.
    pub(super) fn read_xattr(&self, node: &Node, name: &[u8]) -> Res<Vec<u8>> {
        let Some(absence) = absence_of(node, name) else {
            return self.read_stored(node, name);
        };
        if absence.is_absent() {
            return Err(Errno::NO_XATTR);
        }
        let seen = absence.before_read();
        let result = self.read_stored(node, name);
        if result == Err(Errno::NO_XATTR) {
            absence.found_none(seen);
        }
        result
    }

    fn read_stored(&self, node: &Node, name: &[u8]) -> Res<Vec<u8>> {
        if !carries_xattrs(node) {
            return Err(Errno::NO_XATTR);
        }
        // A file's key first: on a write-only mount an earlier session's
        // file is refused whether or not it has the xattr.
        let file_crypto = self.xattr_crypto(node, false)?;
        let backing_name = self.vol.xattr_backing_name(name);
        let blob = sys::getxattr_fd(node.fd().map_err(io)?.as_fd(), &backing_name).map_err(io)?;
        if node.kind == FileType::RegularFile && file_crypto.is_none() {
            return Err(Errno::EIO);
        }
        match self.vol.open_xattr(file_crypto.as_deref(), &blob) {
            Ok((sealed_name, value)) if sealed_name == name => Ok(value),
            Err(VolumeError::WriteOnly(_)) => {
                let path = node.backing_path();
                super::refusals::warn_once(
                    &path,
                    format_args!(
                        "{path}: xattrs of an earlier session: not read by a write-only mount"
                    ),
                );
                Err(Errno::EACCES)
            }
            _ => {
                // The backing names only: the plaintext name is a secret.
                error!(
                    "{}: xattr {} failed authentication",
                    node.backing_path(),
                    String::from_utf8_lossy(&backing_name)
                );
                Err(Errno::EIO)
            }
        }
    }

    /// Like [`read_xattr`](Self::read_xattr), None for no such xattr.
    pub(super) fn read_xattr_if_any(&self, node: &Node, name: &[u8]) -> Res<Option<Vec<u8>>> {
        match self.read_xattr(node, name) {
            Ok(value) => Ok(Some(value)),
            Err(err) if err == Errno::NO_XATTR => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Seal and store `name` = `value` on `node` (setxattr `flags`).
    pub(super) fn write_xattr(
        &self,
        node: &Node,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Res<()> {
        let backing_name = self.vol.xattr_backing_name(name);
        let file_crypto = self.xattr_crypto(node, true)?;
        let blob = self
            .vol
            .encrypt_xattr(file_crypto.as_deref(), name, value)
            .map_err(|e| Errno::from_i32(crate::error::volume_errno(&e)))?;
        let node_fd = node.fd().map_err(io)?;
        let mut result = sys::setxattr_fd(node_fd.as_fd(), &backing_name, &blob, flags);
        let no_room = |r: &std::io::Result<()>| matches!(r, Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::E2BIG)));
        // The file's tail copy may hold the room the backing filesystem has
        // for an inode's xattrs: it gives way.
        if no_room(&result)
            && node.kind == FileType::RegularFile
            && crate::volume::content::give_up_tail_copy(node_fd.as_fd()).unwrap_or(false)
        {
            result = sys::setxattr_fd(node_fd.as_fd(), &backing_name, &blob, flags);
        }
        if let Some(absence) = absence_of(node, name) {
            absence.changed();
        }
        result.map_err(io)
    }

    pub(super) fn delete_xattr(&self, node: &Node, name: &[u8]) -> Res<()> {
        if !carries_xattrs(node) {
            return Err(Errno::NO_XATTR);
        }
        let backing_name = self.vol.xattr_backing_name(name);
        let result = sys::removexattr_fd(node.fd().map_err(io)?.as_fd(), &backing_name);
        if let Some(absence) = absence_of(node, name) {
            absence.changed();
        }
        result.map_err(io)
    }

    pub(super) fn get_xattr(
        &self,
        caller: killpriv::Caller,
        ino: INodeNo,
        name: &OsStr,
    ) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        self.existing_namespace(caller, name, Errno::NO_XATTR)?;
        self.read_xattr(&node, name.as_bytes())
    }

    /// The namespace of an xattr to read or remove: an unsupported one
    /// holds no such xattr, and `trusted.*` is `denied` to a caller without
    /// CAP_SYS_ADMIN.
    fn existing_namespace(
        &self,
        caller: killpriv::Caller,
        name: &OsStr,
        denied: Errno,
    ) -> Res<Namespace> {
        let ns = match self.namespace(name.as_bytes()) {
            Ok(ns) => ns,
            Err(e) if e == Errno::EOPNOTSUPP => return Err(Errno::NO_XATTR),
            Err(e) => return Err(e),
        };
        if ns == Namespace::Trusted && !killpriv::has_sys_admin(caller) {
            return Err(denied);
        }
        Ok(ns)
    }

    pub(super) fn set_xattr(
        &self,
        caller: killpriv::Caller,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Res<()> {
        let _hold = self.writable()?;
        let node = self.node(ino)?;
        let name = name.as_bytes();
        match self.namespace(name)? {
            Namespace::Trusted if !killpriv::has_sys_admin(caller) => Err(Errno::EPERM),
            Namespace::AclAccess => self.set_access_acl(caller, &node, value),
            Namespace::AclDefault => self.set_default_acl(&node, value, flags),
            _ => self.write_xattr(&node, name, value, flags),
        }
    }

    pub(super) fn remove_xattr(
        &self,
        caller: killpriv::Caller,
        ino: INodeNo,
        name: &OsStr,
    ) -> Res<()> {
        let _hold = self.writable()?;
        let node = self.node(ino)?;
        self.existing_namespace(caller, name, Errno::EPERM)?;
        self.delete_xattr(&node, name.as_bytes())
    }

    /// The names of a node's xattrs, NUL-terminated; trusted.* only for a
    /// caller with CAP_SYS_ADMIN (as ext4 lists them).
    pub(super) fn list_xattrs(&self, caller: killpriv::Caller, ino: INodeNo) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        if !carries_xattrs(&node) {
            return Ok(Vec::new());
        }
        let names: Vec<Vec<u8>> = sys::listxattr_fd(node.fd().map_err(io)?.as_fd())
            .map_err(io)?
            .into_iter()
            .filter(|n| n.starts_with(USER_XATTR_PREFIX))
            .collect();
        let mut out = Vec::new();
        if names.is_empty() {
            return Ok(out);
        }
        let fc = self.xattr_crypto(&node, false)?;
        let mut sys_admin = None;
        for n in names {
            let Ok(blob) = sys::getxattr_fd(node.fd().map_err(io)?.as_fd(), &n) else {
                continue;
            };
            match self.vol.open_xattr(fc.as_deref(), &blob) {
                Err(VolumeError::WriteOnly(_)) => {
                    let path = node.backing_path();
                    super::refusals::warn_once(
                        &path,
                        format_args!(
                            "{path}: xattrs of an earlier session: not listed by a write-only mount"
                        ),
                    );
                    return Err(Errno::EACCES);
                }
                Ok((name, _)) if self.vol.xattr_backing_name(&name) == n => {
                    let shown = match self.namespace(&name) {
                        Ok(Namespace::Trusted) => {
                            *sys_admin.get_or_insert_with(|| killpriv::has_sys_admin(caller))
                        }
                        Ok(_) => true,
                        Err(_) => false,
                    };
                    if shown {
                        out.extend_from_slice(&name);
                        out.push(0);
                    }
                }
                _ => warn!(
                    "{}: xattr {} fails authentication; not listed",
                    node.backing_path(),
                    String::from_utf8_lossy(&n)
                ),
            }
        }
        Ok(out)
    }

    /// A stored ACL, authenticated and then parsed; EIO if it does not parse
    /// (only a value the daemon validated can have been sealed).
    pub(super) fn stored_acl(&self, node: &Node, name: &[u8]) -> Res<Option<acl::Acl>> {
        let Some(v) = self.read_xattr_if_any(node, name)? else {
            return Ok(None);
        };
        acl::Acl::parse(&v).map(Some).map_err(|_| {
            error!("{}: a stored ACL does not parse", node.backing_path());
            Errno::EIO
        })
    }
}

#[cfg(test)]
mod tests {
    use super::KnownAbsent;

    #[test]
    fn a_change_during_a_read_leaves_it_unknown() {
        let a = KnownAbsent::default();
        let seen = a.before_read();
        a.found_none(seen);
        assert!(a.is_absent());
        a.changed();
        assert!(!a.is_absent());
        // A read that began before a change cannot mark it absent after it.
        let seen = a.before_read();
        a.changed();
        a.found_none(seen);
        assert!(!a.is_absent());
        let seen = a.before_read();
        a.found_none(seen);
        assert!(a.is_absent());
    }
}
