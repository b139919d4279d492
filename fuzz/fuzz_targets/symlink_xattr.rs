#![no_main]
//! Encrypted symlink targets and xattrs. Byte 0 picks the case:
//! - 0: the rest is a stored blob from the disk (unauthenticated path);
//! - 1: the rest is an xattr's plaintext (`name length u16 | name | value`)
//!   that the harness seals under the fixed file key and under the volume's
//!   directory key: the name/value split after decryption must give exactly
//!   the fields, the same through both ciphers, and refuse a short record;
//! - 2: the rest is a symlink target the harness seals: it must come back.
#[path = "common.rs"]
mod common;
use envelopefs::crypto::aead::Cipher;
use envelopefs::crypto::content::FileCrypto;
use envelopefs::crypto::keys::{DataKey, FileId};
use envelopefs::volume::Volume;
use libfuzzer_sys::fuzz_target;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

struct Ciphers {
    file: FileCrypto,
    file_xattr: Cipher,
    dir_xattr: Cipher,
    symlink: Cipher,
}

fn file_aad(f: &FileCrypto) -> Vec<u8> {
    [&b"xattr"[..], &f.file_id().0].concat()
}

fn ciphers(vol: &Volume) -> &'static Ciphers {
    static C: std::sync::OnceLock<Ciphers> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let file = FileCrypto::new(
            FileId(common::FILE_ID),
            DataKey::from_bytes(common::DATA_KEY),
        );
        let c = Ciphers {
            file_xattr: file.xattr_cipher(),
            dir_xattr: common::volume_cipher(vol.volume_id(), b"envelopefs dir xattr v1"),
            symlink: common::volume_cipher(vol.volume_id(), b"envelopefs symlink v1"),
            file,
        };
        // The harness's ciphers are the volume's: what the volume seals
        // opens under them (else every sealed input would test rejection).
        let s = vol
            .encrypt_xattr(Some(&c.file), b"n", b"v")
            .expect("a v1 volume seals");
        assert!(c.file_xattr.open_from_slice(&file_aad(&c.file), &s).is_ok());
        let s = vol
            .encrypt_xattr(None, b"n", b"v")
            .expect("a v1 volume seals");
        assert!(c.dir_xattr.open_from_slice(b"xattr", &s).is_ok());
        let s = B64URL
            .decode(vol.encrypt_symlink(b"t").expect("a v1 volume seals"))
            .expect("base64url");
        assert!(c.symlink.open_from_slice(b"symlink", &s).is_ok());
        c
    })
}

/// What the stored xattr record must split into.
fn split(plain: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u16::from_be_bytes([*plain.first()?, *plain.get(1)?]) as usize;
    let rest = &plain[2..];
    (rest.len() >= n).then(|| rest.split_at(n))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let vol = &common::volume().vol;
    let c = ciphers(vol);
    match mode {
        0 => {
            let _ = vol.decrypt_symlink(rest);
            let _ = vol.decrypt_xattr(None, rest);
            let _ = vol.decrypt_xattr(Some(&c.file), rest);
            let _ = vol.xattr_backing_name(rest);
        }
        1 => {
            let want = split(rest);
            let by_file = c.file_xattr.seal_to_vec(&file_aad(&c.file), rest);
            common::dump_seed("xattr-file-sealed", &by_file);
            let got = vol.decrypt_xattr(Some(&c.file), &by_file);
            let got = got.as_ref().map(|(n, v)| (&n[..], &v[..]));
            assert_eq!(got, want, "the file xattr record splits wrongly");
            let by_dir = c.dir_xattr.seal_to_vec(b"xattr", rest);
            let got = vol.decrypt_xattr(None, &by_dir);
            let got = got.as_ref().map(|(n, v)| (&n[..], &v[..]));
            assert_eq!(got, want, "the directory xattr record splits wrongly");
            // Bound to its cipher: neither opens as the other.
            assert!(vol.decrypt_xattr(None, &by_file).is_none());
            assert!(vol.decrypt_xattr(Some(&c.file), &by_dir).is_none());
            if let Some((name, value)) = want {
                let again = vol
                    .encrypt_xattr(Some(&c.file), name, value)
                    .expect("a v1 volume seals");
                let back = c.file_xattr.open_from_slice(&file_aad(&c.file), &again);
                assert!(back.is_ok_and(|b| b[..] == *rest), "re-encoded differently");
            }
        }
        2 => {
            let sealed = B64URL.encode(c.symlink.seal_to_vec(b"symlink", rest));
            assert_eq!(
                vol.decrypt_symlink(sealed.as_bytes()).as_deref(),
                Some(rest)
            );
            let made = vol.encrypt_symlink(rest).expect("a v1 volume seals");
            assert_eq!(vol.decrypt_symlink(&made).as_deref(), Some(rest));
        }
        _ => {}
    }
});
