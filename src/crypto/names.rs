//! The name transform: the one place that maps a plaintext name in the mount
//! to the name of its backing entry and back. This version keeps names in the
//! clear; encrypted names plug in here without touching the FUSE layer.

use std::ffi::{OsStr, OsString};

/// Entries of the backing root that belong to the volume, never to the user.
pub const RESERVED_ROOT_NAMES: &[&str] = &["envelopefs.conf", "envelopefs.lock"];

/// Which directory a name lives in (more context comes with encrypted names).
#[derive(Clone, Copy, Debug)]
pub struct DirContext {
    pub is_root: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name is reserved for the volume's own files")]
    Reserved,
}

pub trait NameTransform: Send + Sync {
    /// Backing name for a plaintext name.
    fn to_backing(&self, dir: DirContext, name: &OsStr) -> Result<OsString, NameError>;
    /// Plaintext name of a backing entry, or `None` when it is not shown.
    fn to_plain(&self, dir: DirContext, backing: &OsStr) -> Option<OsString>;
}

#[derive(Debug, Default)]
pub struct PlaintextNames;

fn reserved(dir: DirContext, name: &OsStr) -> bool {
    dir.is_root && RESERVED_ROOT_NAMES.iter().any(|r| OsStr::new(r) == name)
}

impl NameTransform for PlaintextNames {
    fn to_backing(&self, dir: DirContext, name: &OsStr) -> Result<OsString, NameError> {
        if reserved(dir, name) {
            return Err(NameError::Reserved);
        }
        Ok(name.to_owned())
    }

    fn to_plain(&self, dir: DirContext, backing: &OsStr) -> Option<OsString> {
        if reserved(dir, backing) {
            return None;
        }
        Some(backing.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_hidden_only_in_root() {
        let t = PlaintextNames;
        let root = DirContext { is_root: true };
        let sub = DirContext { is_root: false };
        assert_eq!(
            t.to_backing(root, OsStr::new("envelopefs.conf")),
            Err(NameError::Reserved)
        );
        assert!(t.to_plain(root, OsStr::new("envelopefs.lock")).is_none());
        assert!(t.to_plain(sub, OsStr::new("envelopefs.conf")).is_some());
        assert_eq!(t.to_backing(root, OsStr::new("a b")).unwrap(), "a b");
    }
}
