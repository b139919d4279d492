//! POSIX ACLs and the mode, kept consistent as ext4 keeps them: the kernel
//! enforces ACLs (FUSE_POSIX_ACL, which also makes it leave the umask to
//! the daemon: FUSE_DONT_MASK), the daemon stores them (xattrs.rs) and does
//! what ext4's ACL code does around them (acl.rs has the arithmetic):
//! - setting an access ACL sets the mode's permission bits, drops setgid for
//!   a caller outside the file's group without CAP_FSETID, and an ACL that
//!   says no more than a mode is not stored (posix_acl_update_mode);
//! - a chmod sets the access ACL's owner, mask (or group) and other entries;
//! - a new entry takes its directory's default ACL (masked by the create
//!   mode), and a new directory the default ACL itself; without one the
//!   umask applies (posix_acl_create).
//!
//! Fifos, sockets and device nodes cannot carry the backing xattrs: one
//! created under a default ACL gets the mode the ACL allows the owning group
//! (never more), and setting an ACL on one is EOPNOTSUPP.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use fuser::{Errno, FileType, InitFlags, KernelConfig};

use super::{acl, io, killpriv, EnvelopeFs, Node, Res};
use crate::sys;

/// What kind of entry a create makes, for its inherited ACLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewKind {
    File,
    Dir,
    /// Fifo, socket or device node: no xattrs.
    Special,
}

/// The mode a new entry is created with, and the ACLs it then takes.
pub struct Inherited {
    pub mode: u32,
    access: Option<Vec<u8>>,
    default: Option<Vec<u8>>,
}

impl EnvelopeFs {
    /// Ask the kernel to enforce ACLs, and to leave the umask to the daemon.
    pub(super) fn enable_acls(&self, config: &mut KernelConfig) {
        let flags = InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK;
        if config.add_capabilities(flags).is_ok() {
            self.acls.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn acls_enabled(&self) -> bool {
        self.acls.load(Ordering::Relaxed)
    }

    pub(super) fn set_access_acl(
        &self,
        caller: killpriv::Caller,
        node: &Node,
        value: &[u8],
    ) -> Res<()> {
        if !matches!(node.kind, FileType::Directory | FileType::RegularFile) {
            return Err(Errno::EOPNOTSUPP);
        }
        let parsed = acl::Acl::parse(value)?;
        let fd = node.fd().map_err(io)?;
        let st = sys::fstat(fd.as_fd()).map_err(io)?;
        let old = st.st_mode & 0o7777;
        let (mut mode, extended) = parsed.apply_to_mode(old);
        if mode & libc::S_ISGID != 0 && !killpriv::may_keep_setgid(caller, st.st_gid) {
            mode &= !libc::S_ISGID;
        }
        if extended {
            self.write_xattr(node, acl::ACCESS, &parsed.to_xattr(), 0)?;
        } else {
            match self.delete_xattr(node, acl::ACCESS) {
                Err(e) if e != Errno::NO_XATTR => return Err(e),
                _ => {}
            }
        }
        if mode != old {
            sys::fchmod_fd(fd.as_fd(), mode).map_err(io)?;
        }
        Ok(())
    }

    pub(super) fn set_default_acl(&self, node: &Node, value: &[u8], flags: i32) -> Res<()> {
        match node.kind {
            FileType::Directory => {}
            FileType::RegularFile => return Err(Errno::EACCES),
            _ => return Err(Errno::EOPNOTSUPP),
        }
        let parsed = acl::Acl::parse(value)?;
        self.write_xattr(node, acl::DEFAULT, &parsed.to_xattr(), flags)
    }

    /// After a chmod to `mode`: the access ACL follows (posix_acl_chmod).
    pub(super) fn acl_after_chmod(&self, node: &Node, mode: u32) -> Res<()> {
        if !self.acls_enabled() || !matches!(node.kind, FileType::Directory | FileType::RegularFile)
        {
            return Ok(());
        }
        let Some(mut access) = self.stored_acl(node, acl::ACCESS)? else {
            return Ok(());
        };
        access.chmod(mode);
        self.write_xattr(node, acl::ACCESS, &access.to_xattr(), 0)
    }

    /// The mode and ACLs of a new entry in `dir` asked for with `mode` by a
    /// caller with `umask`.
    pub(super) fn inherit(
        &self,
        dir: &Node,
        mode: u32,
        umask: u32,
        kind: NewKind,
    ) -> Res<Inherited> {
        let plain = |mode| Inherited {
            mode,
            access: None,
            default: None,
        };
        if !self.acls_enabled() {
            return Ok(plain(mode));
        }
        let Some(default) = self.stored_acl(dir, acl::DEFAULT)? else {
            return Ok(plain(mode & !umask));
        };
        let (mut mode, access) = default.create_masq(mode);
        let access = match (kind, access) {
            (NewKind::Special, Some(a)) => {
                // No ACL to hold the mask: the owning group gets what the
                // ACL gives it, its entry under the mask.
                let group = a
                    .entries()
                    .iter()
                    .find(|e| e.tag == acl::GROUP_OBJ)
                    .map_or(0, |e| u32::from(e.perm));
                mode &= (group << 3) | !0o070;
                None
            }
            (_, a) => a.map(|a| a.to_xattr()),
        };
        Ok(Inherited {
            mode,
            access,
            default: (kind == NewKind::Dir).then(|| default.to_xattr()),
        })
    }

    /// Give a new entry the ACLs it inherited.
    pub(super) fn store_inherited(&self, node: &Node, inh: &Inherited) -> Res<()> {
        if let Some(a) = &inh.access {
            self.write_xattr(node, acl::ACCESS, a, 0)?;
        }
        if let Some(d) = &inh.default {
            self.write_xattr(node, acl::DEFAULT, d, 0)?;
        }
        Ok(())
    }
}
