//! Which xattr names the mount serves. Every one is stored the same way, as
//! an encrypted backing xattr under a MAC of its full name (`user.e.*`), so
//! a namespace decides only who may use it:
//! - `user.*`: anyone the file's mode allows (the kernel checks);
//! - `trusted.*`: callers with CAP_SYS_ADMIN (the kernel checks a get or a
//!   set, the daemon too, and filters listings);
//! - `security.*`: whatever the kernel's security modules allow (commoncap
//!   asks CAP_SYS_ADMIN to set one, CAP_SETFCAP for `security.capability`);
//! - `system.posix_acl_access` / `_default`: POSIX ACLs, when the kernel
//!   enforces them (FUSE_POSIX_ACL), validated and kept in step with the mode.
//!
//! Anything else (other `system.*` names, no namespace) is EOPNOTSUPP.

use fuser::Errno;

use super::acl;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    User,
    Trusted,
    Security,
    AclAccess,
    AclDefault,
}

/// The namespace of `name`; EINVAL for a bare prefix, EOPNOTSUPP for a name
/// the mount does not serve (ACL names too when ACLs are off).
pub fn classify(name: &[u8], acls: bool) -> Result<Namespace, Errno> {
    if name == acl::ACCESS || name == acl::DEFAULT {
        if !acls {
            return Err(Errno::EOPNOTSUPP);
        }
        return Ok(if name == acl::ACCESS {
            Namespace::AclAccess
        } else {
            Namespace::AclDefault
        });
    }
    for (prefix, ns) in [
        (&b"user."[..], Namespace::User),
        (b"trusted.", Namespace::Trusted),
        (b"security.", Namespace::Security),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return if rest.is_empty() {
                Err(Errno::EINVAL)
            } else {
                Ok(ns)
            };
        }
    }
    Err(Errno::EOPNOTSUPP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert_eq!(classify(b"user.a", false), Ok(Namespace::User));
        assert_eq!(
            classify(b"trusted.overlay.opaque", false),
            Ok(Namespace::Trusted)
        );
        assert_eq!(
            classify(b"security.capability", false),
            Ok(Namespace::Security)
        );
        assert_eq!(classify(acl::ACCESS, true), Ok(Namespace::AclAccess));
        assert_eq!(classify(acl::DEFAULT, true), Ok(Namespace::AclDefault));
        assert_eq!(classify(acl::ACCESS, false), Err(Errno::EOPNOTSUPP));
        assert_eq!(classify(b"user.", true), Err(Errno::EINVAL));
        assert_eq!(classify(b"trusted.", true), Err(Errno::EINVAL));
        assert_eq!(classify(b"system.nfs4_acl", true), Err(Errno::EOPNOTSUPP));
        assert_eq!(
            classify(b"system.posix_acl_accessx", true),
            Err(Errno::EOPNOTSUPP)
        );
        assert_eq!(classify(b"other", true), Err(Errno::EOPNOTSUPP));
    }
}
