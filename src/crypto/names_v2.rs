//! Names of write-only volumes (format 2). The backing name is a keyed hash
//! of the directory IV and the name, under the lookup key N that anyone
//! holding the recipient's public key can derive: lookups need no session.
//! The name itself is sealed under the writing session's key in the side
//! file `<backing name>.name`, so only a full mount (or the session that
//! wrote it) can list it.
//!
//! Backing name: `base64url(HMAC-SHA256(N, diriv || name))` (43 bytes, no '.').
//! Side file: `session ID | nonce | AES-GCM(HKDF(S, volume ID,
//! "envelopefs names v2"), name) | tag`, associated data `diriv || backing name`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use super::keys::{derive, hmac, SessionKey, SubKey, VolumeId};
use super::names::{
    valid_name, BackingName, DirContext, EntryKind, NameError, NameTransform, SideToSeal,
};
use super::recipient::{open_blob, seal_blob, SessionId};

/// The longest side file: session ID, nonce, a 255-byte name and the tag.
pub const MAX_SIDE_V2_LEN: usize = 16 + 12 + 255 + 16;
const SIDE_LABEL: &[u8] = b"envelopefs names v2";

/// The lookup key N = HKDF(W, volume ID, "envelopefs names v2 lookup").
pub fn lookup_key(w: &SubKey, vid: &VolumeId) -> SubKey {
    derive(w.expose(), &vid.0, &[b"envelopefs names v2 lookup"])
}

/// Keyed-hash names.
pub struct HmacNames {
    n: SubKey,
}

impl std::fmt::Debug for HmacNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacNames(<redacted>)")
    }
}

impl HmacNames {
    pub fn new(w: &SubKey, vid: &VolumeId) -> HmacNames {
        HmacNames {
            n: lookup_key(w, vid),
        }
    }

    /// The backing name of `name` in the directory of `dir`.
    pub fn backing_of(&self, dir: &DirContext, name: &OsStr) -> OsString {
        let mac = hmac(self.n.expose(), &[&dir.iv, name.as_bytes()]);
        OsString::from(B64URL.encode(mac))
    }
}

impl NameTransform for HmacNames {
    fn to_backing(&self, dir: &DirContext, name: &OsStr) -> Result<BackingName, NameError> {
        Ok(BackingName {
            name: self.backing_of(dir, name),
            side: None,
            plain_for_side: Some(SideToSeal {
                name: name.to_owned(),
                dir: *dir,
            }),
        })
    }

    fn classify(&self, _dir: &DirContext, backing: &OsStr) -> EntryKind {
        if backing.as_bytes().contains(&b'.') {
            EntryKind::Internal
        } else {
            EntryKind::Long
        }
    }

    /// A name is only in its side file, under a session key: the volume
    /// opens it (`open_side`).
    fn to_plain(&self, _dir: &DirContext, _encoded: &[u8]) -> Option<OsString> {
        None
    }

    fn uses_diriv(&self) -> bool {
        true
    }
}

fn side_aad(dir: &DirContext, backing: &OsStr) -> Vec<u8> {
    [&dir.iv[..], backing.as_bytes()].concat()
}

/// A side file for `name`, whose backing name is `backing`.
pub fn seal_side(
    s: &SessionKey,
    id: &SessionId,
    vid: &VolumeId,
    dir: &DirContext,
    backing: &OsStr,
    name: &OsStr,
) -> Vec<u8> {
    seal_blob(
        s,
        id,
        vid,
        SIDE_LABEL,
        &side_aad(dir, backing),
        name.as_bytes(),
    )
}

/// The name in a side file, if it opens under `s` and is a valid name.
pub fn open_side(
    s: &SessionKey,
    vid: &VolumeId,
    dir: &DirContext,
    backing: &OsStr,
    side: &[u8],
) -> Option<OsString> {
    if side.len() > MAX_SIDE_V2_LEN {
        return None;
    }
    let pt = open_blob(s, vid, SIDE_LABEL, &side_aad(dir, backing), side)?;
    valid_name(pt.to_vec())
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
    fn lookup_names_are_keyed_bound_and_dotless() {
        let vid = VolumeId([1; 16]);
        let w = SubKey::random();
        let n = HmacNames::new(&w, &vid);
        let a = n.to_backing(&ctx(1), OsStr::new("secret.txt")).unwrap();
        assert_eq!(a.name.len(), 43);
        assert!(!a.name.as_bytes().contains(&b'.'));
        assert_eq!(
            a.side_name().unwrap(),
            format!("{}.name", a.name.to_str().unwrap()).as_str()
        );
        assert!(!format!("{a:?}").contains("secret"));
        assert_eq!(a, n.to_backing(&ctx(1), OsStr::new("secret.txt")).unwrap());
        assert_ne!(a.name, n.backing_of(&ctx(2), OsStr::new("secret.txt")));
        assert_ne!(
            a.name,
            HmacNames::new(&SubKey::random(), &vid).backing_of(&ctx(1), OsStr::new("secret.txt"))
        );
        assert_eq!(n.classify(&ctx(1), &a.name), EntryKind::Long);
        assert_eq!(
            n.classify(&ctx(1), &a.side_name().unwrap()),
            EntryKind::Internal
        );
        // The spec: HMAC-SHA256(N, diriv || name), base64url without padding.
        let key = derive(w.expose(), &vid.0, &[b"envelopefs names v2 lookup"]);
        let mac = hmac(key.expose(), &[&[1; 16], b"secret.txt"]);
        assert_eq!(a.name, B64URL.encode(mac).as_str());
    }

    #[test]
    fn side_files_round_trip_and_bind() {
        let (s, id, vid) = (SessionKey::random(), SessionId([3; 16]), VolumeId([1; 16]));
        let name = OsStr::new(&"n".repeat(255)).to_owned();
        let side = seal_side(&s, &id, &vid, &ctx(1), OsStr::new("B"), &name);
        assert_eq!(side.len(), MAX_SIDE_V2_LEN);
        assert_eq!(SessionId::of_blob(&side), Some(id));
        assert_eq!(
            open_side(&s, &vid, &ctx(1), OsStr::new("B"), &side),
            Some(name)
        );
        assert!(open_side(&s, &vid, &ctx(2), OsStr::new("B"), &side).is_none());
        assert!(open_side(&s, &vid, &ctx(1), OsStr::new("C"), &side).is_none());
        assert!(open_side(&SessionKey::random(), &vid, &ctx(1), OsStr::new("B"), &side).is_none());
        for bad in ["", ".", "..", "a/b"] {
            let side = seal_side(&s, &id, &vid, &ctx(1), OsStr::new("B"), OsStr::new(bad));
            assert!(
                open_side(&s, &vid, &ctx(1), OsStr::new("B"), &side).is_none(),
                "{bad}"
            );
        }
    }
}
