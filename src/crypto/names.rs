//! The name transform: the one place that maps a plaintext name in the mount
//! to the name of its backing entry and back.
//!
//! Encrypted names: AES-SIV (deterministic, authenticated) under a name key
//! derived from the volume key, with the directory's random IV (the file
//! `envelopefs.diriv` in each backing directory) as associated data, encoded
//! base64url without padding. Deterministic within a directory, so lookups need
//! no listing; different across directories; bound to the directory, so a name
//! moved elsewhere fails to decrypt. An encoded name longer than the volume's
//! `long_name_max` is stored as `envelopefs.longname.HASH` plus a side file
//! `envelopefs.longname.HASH.name` that holds the full encoded name.
//!
//! Backing names of the volume's own files contain a '.', which base64url
//! never does, so they can never collide with a user's entry.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::keys::{derive, VolumeId, VolumeKey};

/// Entries of the backing root that belong to the volume, never to the user.
pub const RESERVED_ROOT_NAMES: &[&str] = &["envelopefs.conf", "envelopefs.lock", DIRIV_NAME];
pub const DIRIV_NAME: &str = "envelopefs.diriv";
pub const DIRIV_LEN: usize = 16;
pub const LONGNAME_PREFIX: &str = "envelopefs.longname.";
pub const LONGNAME_SUFFIX: &str = ".name";
/// The longest side file: base64url (no padding) of a 255-byte name and its
/// 16-byte AES-SIV tag.
pub const MAX_SIDE_LEN: usize = (255 + 16) * 4 / 3 + 1;
/// Encoded names longer than this become hashed long names by default.
pub const DEFAULT_LONG_NAME_MAX: u32 = 255;
/// A hashed long name is 63 bytes; the threshold cannot go below it.
pub const MIN_LONG_NAME_MAX: u32 = 64;

/// Which directory a name lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirContext {
    pub is_root: bool,
    /// The directory's IV (encrypted names only).
    pub iv: [u8; DIRIV_LEN],
}

impl DirContext {
    pub fn plain(is_root: bool) -> DirContext {
        DirContext {
            is_root,
            iv: [0; DIRIV_LEN],
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name is reserved for the volume's own files")]
    Reserved,
}

/// A backing name, and for a long name the side file content to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingName {
    pub name: OsString,
    pub side: Option<Vec<u8>>,
    /// Format 2: every entry has a side file, sealed under the writing
    /// session's key only when the entry is made (a lookup makes no session).
    pub plain_for_side: Option<SideToSeal>,
}

impl BackingName {
    /// The side file's name, for a long name (format 1) or any name (format 2).
    pub fn side_name(&self) -> Option<OsString> {
        (self.side.is_some() || self.plain_for_side.is_some()).then(|| {
            let mut n = self.name.clone();
            n.push(LONGNAME_SUFFIX);
            n
        })
    }
}

/// A format 2 side file to seal: the plaintext name (never shown in
/// `Debug`, so never in a log) and its directory's IV.
#[derive(Clone, PartialEq, Eq)]
pub struct SideToSeal {
    pub name: OsString,
    pub dir: DirContext,
}

impl std::fmt::Debug for SideToSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SideToSeal(<redacted>)")
    }
}

/// What a backing directory entry is.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A user entry whose name decrypts directly.
    Short,
    /// A user entry whose name lives in a side file.
    Long,
    /// The volume's own file: never shown.
    Internal,
}

pub trait NameTransform: Send + Sync {
    /// Backing name for a plaintext name.
    fn to_backing(&self, dir: &DirContext, name: &OsStr) -> Result<BackingName, NameError>;
    /// Classify a backing entry.
    fn classify(&self, dir: &DirContext, backing: &OsStr) -> EntryKind;
    /// Plaintext name of a short entry, or of a long one given its side file;
    /// `None` when it does not decrypt (corrupt, or moved from another directory).
    fn to_plain(&self, dir: &DirContext, encoded: &[u8]) -> Option<OsString>;
    /// Whether directories carry an IV file.
    fn uses_diriv(&self) -> bool;
}

#[derive(Debug, Default)]
pub struct PlaintextNames;

fn reserved(dir: &DirContext, name: &OsStr) -> bool {
    dir.is_root && RESERVED_ROOT_NAMES.iter().any(|r| OsStr::new(r) == name)
}

impl NameTransform for PlaintextNames {
    fn to_backing(&self, dir: &DirContext, name: &OsStr) -> Result<BackingName, NameError> {
        if reserved(dir, name) {
            return Err(NameError::Reserved);
        }
        Ok(BackingName {
            name: name.to_owned(),
            side: None,
            plain_for_side: None,
        })
    }

    fn classify(&self, dir: &DirContext, backing: &OsStr) -> EntryKind {
        if reserved(dir, backing) {
            EntryKind::Internal
        } else {
            EntryKind::Short
        }
    }

    fn to_plain(&self, _dir: &DirContext, encoded: &[u8]) -> Option<OsString> {
        Some(OsString::from_vec(encoded.to_vec()))
    }

    fn uses_diriv(&self) -> bool {
        false
    }
}

/// AES-SIV encrypted names.
pub struct EncryptedNames {
    key: zeroize::Zeroizing<[u8; 64]>,
    long_name_max: usize,
}

impl std::fmt::Debug for EncryptedNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedNames")
            .field("long_name_max", &self.long_name_max)
            .finish_non_exhaustive()
    }
}

impl EncryptedNames {
    pub fn new(vk: &VolumeKey, vid: &VolumeId, long_name_max: u32) -> EncryptedNames {
        let mut key = zeroize::Zeroizing::new([0u8; 64]);
        key[..32]
            .copy_from_slice(derive(vk.expose(), &vid.0, &[b"envelopefs names v1 mac"]).expose());
        key[32..]
            .copy_from_slice(derive(vk.expose(), &vid.0, &[b"envelopefs names v1 ctr"]).expose());
        EncryptedNames {
            key,
            long_name_max: long_name_max.max(MIN_LONG_NAME_MAX) as usize,
        }
    }

    fn siv(&self) -> aes_siv::siv::Aes256Siv {
        use aes_siv::KeyInit;
        aes_siv::siv::Aes256Siv::new((&*self.key).into())
    }

    /// The encoded (base64url) encrypted name.
    pub fn encode(&self, dir: &DirContext, name: &OsStr) -> Vec<u8> {
        let ct = self
            .siv()
            .encrypt([&dir.iv[..]], name.as_bytes())
            .expect("AES-SIV input within length limits");
        B64URL.encode(ct).into_bytes()
    }

    fn long_name(encoded: &[u8]) -> OsString {
        let h = Sha256::digest(encoded);
        OsString::from(format!("{LONGNAME_PREFIX}{}", B64URL.encode(h)))
    }
}

impl NameTransform for EncryptedNames {
    fn to_backing(&self, dir: &DirContext, name: &OsStr) -> Result<BackingName, NameError> {
        let enc = self.encode(dir, name);
        if enc.len() <= self.long_name_max {
            Ok(BackingName {
                name: OsString::from_vec(enc),
                side: None,
                plain_for_side: None,
            })
        } else {
            Ok(BackingName {
                name: Self::long_name(&enc),
                side: Some(enc),
                plain_for_side: None,
            })
        }
    }

    fn classify(&self, _dir: &DirContext, backing: &OsStr) -> EntryKind {
        let b = backing.as_bytes();
        if !b.contains(&b'.') {
            EntryKind::Short
        } else if b.starts_with(LONGNAME_PREFIX.as_bytes())
            && !b.ends_with(LONGNAME_SUFFIX.as_bytes())
        {
            EntryKind::Long
        } else {
            EntryKind::Internal
        }
    }

    fn to_plain(&self, dir: &DirContext, encoded: &[u8]) -> Option<OsString> {
        let ct = B64URL.decode(encoded).ok()?;
        let pt = self.siv().decrypt([&dir.iv[..]], &ct).ok()?;
        valid_name(pt)
    }

    fn uses_diriv(&self) -> bool {
        true
    }
}

/// A decrypted name, if it is one a directory can hold.
pub(crate) fn valid_name(pt: Vec<u8>) -> Option<OsString> {
    if pt.is_empty()
        || pt.len() > 255
        || pt.contains(&b'/')
        || pt.contains(&0)
        || pt == b"."
        || (pt == b".." && !crate::fault::planted("fuzz-names-dotdot"))
    {
        return None;
    }
    Some(OsString::from_vec(pt))
}

/// Check a side file's content belongs to the long name it sits beside.
pub fn side_matches(long_name: &OsStr, encoded: &[u8]) -> bool {
    EncryptedNames::long_name(encoded) == long_name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(iv: u8) -> DirContext {
        DirContext {
            is_root: false,
            iv: [iv; 16],
        }
    }

    #[test]
    fn reserved_names_hidden_only_in_root() {
        let t = PlaintextNames;
        let root = DirContext::plain(true);
        let sub = DirContext::plain(false);
        assert_eq!(
            t.to_backing(&root, OsStr::new("envelopefs.conf")),
            Err(NameError::Reserved)
        );
        assert_eq!(
            t.classify(&root, OsStr::new("envelopefs.lock")),
            EntryKind::Internal
        );
        assert_eq!(
            t.classify(&sub, OsStr::new("envelopefs.conf")),
            EntryKind::Short
        );
        assert_eq!(t.to_backing(&root, OsStr::new("a b")).unwrap().name, "a b");
    }

    #[test]
    fn encrypted_names_are_deterministic_bound_and_safe() {
        let n = EncryptedNames::new(&VolumeKey::random(), &VolumeId([1; 16]), 255);
        let a = n.to_backing(&ctx(1), OsStr::new("secret.txt")).unwrap();
        assert_eq!(a, n.to_backing(&ctx(1), OsStr::new("secret.txt")).unwrap());
        let b = n.to_backing(&ctx(2), OsStr::new("secret.txt")).unwrap();
        assert_ne!(a.name, b.name, "equal names in two directories differ");
        let enc = a.name.as_bytes();
        assert!(enc
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'));
        assert_eq!(n.to_plain(&ctx(1), enc).unwrap(), "secret.txt");
        assert!(
            n.to_plain(&ctx(2), enc).is_none(),
            "moved to another directory"
        );
        let mut bad = enc.to_vec();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        assert!(n.to_plain(&ctx(1), &bad).is_none());
        assert_eq!(n.classify(&ctx(1), &a.name), EntryKind::Short);
        assert_eq!(
            n.classify(&ctx(1), OsStr::new(DIRIV_NAME)),
            EntryKind::Internal
        );
    }

    #[test]
    fn long_names_use_hash_and_side_file() {
        let n = EncryptedNames::new(&VolumeKey::random(), &VolumeId([1; 16]), 255);
        let long = "x".repeat(255);
        let b = n.to_backing(&ctx(1), OsStr::new(&long)).unwrap();
        assert!(b.name.len() <= 63);
        let side = b.side.clone().unwrap();
        assert!(side_matches(&b.name, &side));
        assert_eq!(n.classify(&ctx(1), &b.name), EntryKind::Long);
        assert_eq!(
            n.classify(&ctx(1), &b.side_name().unwrap()),
            EntryKind::Internal
        );
        assert_eq!(n.to_plain(&ctx(1), &side).unwrap(), OsStr::new(&long));
        // The threshold is a setting: a small one makes short names long too.
        let small = EncryptedNames::new(&VolumeKey::random(), &VolumeId([1; 16]), 64);
        assert!(small
            .to_backing(&ctx(1), OsStr::new(&"y".repeat(40)))
            .unwrap()
            .side
            .is_some());
        assert!(small
            .to_backing(&ctx(1), OsStr::new("short"))
            .unwrap()
            .side
            .is_none());
    }
}
