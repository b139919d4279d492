#![no_main]
//! The encrypted-name decoder. Byte 0 picks the case:
//! - even: the rest is an encoded (backing) name from the disk. Whatever it
//!   decodes to must be a valid name that encodes back to exactly these
//!   bytes (base64url has one spelling, AES-SIV one ciphertext per name), and
//!   must not decode in another directory.
//! - odd: the rest is a plaintext name the harness encrypts under the fixed
//!   name key (without the name checks), so the checks after decryption get
//!   any bytes: they must accept exactly the valid names, unchanged.
#[path = "common.rs"]
mod common;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use envelopefs::crypto::keys::{VolumeId, VolumeKey};
use envelopefs::crypto::names::{
    side_matches, DirContext, EncryptedNames, EntryKind, NameTransform, LONGNAME_PREFIX,
};
use libfuzzer_sys::fuzz_target;

fn names() -> &'static EncryptedNames {
    static N: std::sync::OnceLock<EncryptedNames> = std::sync::OnceLock::new();
    N.get_or_init(|| {
        let vk = VolumeKey::from_bytes(common::VOLUME_KEY);
        EncryptedNames::new(&vk, &VolumeId(common::VOLUME_ID), 255)
    })
}

fn dir(iv: u8) -> DirContext {
    DirContext {
        is_root: false,
        iv: [iv; 16],
    }
}

fn valid_name(n: &[u8]) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && !n.contains(&b'/')
        && !n.contains(&0)
        && n != b"."
        && n != b".."
}

/// A name that decoded: it is valid and its backing form is `encoded`, as a
/// short name or as a long name's side file.
fn check_decoded(n: &EncryptedNames, d: &DirContext, encoded: &[u8], plain: &OsStr) {
    assert!(valid_name(plain.as_bytes()), "decoded to an invalid name");
    let b = n
        .to_backing(d, plain)
        .expect("a valid name has a backing name");
    match &b.side {
        None => {
            assert_eq!(b.name.as_bytes(), encoded, "a second spelling decodes");
            assert_eq!(n.classify(d, &b.name), EntryKind::Short);
        }
        Some(side) => {
            assert_eq!(&side[..], encoded, "a second spelling decodes");
            assert!(b.name.as_bytes().starts_with(LONGNAME_PREFIX.as_bytes()));
            assert!(side_matches(&b.name, side));
            assert_eq!(n.classify(d, &b.name), EntryKind::Long);
        }
    }
    // Bound to its directory.
    assert!(n.to_plain(&dir(d.iv[0] ^ 1), encoded).is_none());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let n = names();
    let d = dir(mode >> 1);
    if mode & 1 == 0 {
        if let Some(plain) = n.to_plain(&d, rest) {
            check_decoded(n, &d, rest, &plain);
        }
        // What the directory listing does with the entry: never panics, and
        // a name of the volume's own files is never a user's entry.
        let kind = n.classify(&d, OsStr::from_bytes(rest));
        if rest.contains(&b'.') {
            assert_ne!(kind, EntryKind::Short);
        }
    } else {
        let encoded = n.encode(&d, OsStr::from_bytes(rest));
        common::dump_seed("names-encoded", &[&[mode & !1][..], &encoded].concat());
        match n.to_plain(&d, &encoded) {
            Some(plain) => {
                assert_eq!(plain.as_bytes(), rest, "decoded to another name");
                check_decoded(n, &d, &encoded, &plain);
            }
            None => assert!(!valid_name(rest), "a valid name was refused"),
        }
    }
});
