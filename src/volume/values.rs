//! Symlink targets and extended attributes of a volume: sealed under a key
//! derived from the volume key (format 1) or from a write session's key
//! (format 2), file xattrs under the file's data key in both.

use base64::Engine;

use super::{writeonly, Keys, Volume, USER_XATTR_PREFIX};
use crate::crypto::aead::Cipher;
use crate::crypto::content::FileCrypto;
use crate::crypto::keys::{derive, FileId, VolumeId, VolumeKey};
use crate::error::VolumeError;

impl Volume {
    fn v1_cipher(vk: &VolumeKey, vid: &VolumeId, label: &[u8]) -> Cipher {
        Cipher::new(derive(vk.expose(), &vid.0, &[label]).expose())
    }

    /// Longest plaintext symlink target whose encrypted form fits a backing
    /// symlink (format 1; format 2's is [`Volume::max_symlink_target`]).
    pub const MAX_SYMLINK_TARGET: usize = (4095 / 4) * 3 - 28;

    /// Longest plaintext symlink target of this volume's format.
    pub fn max_symlink_target(&self) -> usize {
        match &self.keys {
            Keys::Volume(_) => Self::MAX_SYMLINK_TARGET,
            Keys::Sessions(_) => writeonly::MAX_SYMLINK_TARGET_V2,
        }
    }

    /// A symlink's target length from its backing target's length:
    /// base64url (no padding) of the sealed target, whose overhead is the
    /// nonce and tag (format 2: and the session ID before them).
    pub fn symlink_target_len(&self, backing_len: u64) -> u64 {
        let overhead = match &self.keys {
            Keys::Volume(_) => 28,
            Keys::Sessions(_) => 28 + 16,
        };
        (backing_len * 3 / 4).saturating_sub(overhead)
    }

    /// Encrypt a symlink target into the backing symlink's target (format 2:
    /// under this mount's write session, made on first use).
    pub fn encrypt_symlink(&self, target: &[u8]) -> Result<Vec<u8>, VolumeError> {
        let blob = match &self.keys {
            Keys::Volume(vk) => Self::v1_cipher(vk, &self.vid, b"envelopefs symlink v1")
                .seal_to_vec(b"symlink", target),
            Keys::Sessions(s) => writeonly::seal(s, &self.vid, writeonly::SYMLINK, target)?,
        };
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(blob)
            .into_bytes())
    }

    /// The target of a backing symlink, None when it cannot be read
    /// ([`Volume::open_symlink`] says why).
    pub fn decrypt_symlink(&self, backing: &[u8]) -> Option<Vec<u8>> {
        self.open_symlink(backing).ok()
    }

    /// The target of a backing symlink: `Corrupt` when it does not decrypt,
    /// `WriteOnly` for another session's symlink on a write-only mount.
    pub fn open_symlink(&self, backing: &[u8]) -> Result<Vec<u8>, VolumeError> {
        let bad = || VolumeError::Corrupt("the symlink target does not decrypt".into());
        let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(backing)
            .map_err(|_| bad())?;
        match &self.keys {
            Keys::Volume(vk) => Self::v1_cipher(vk, &self.vid, b"envelopefs symlink v1")
                .open_from_slice(b"symlink", &blob)
                .map(|p| p.to_vec())
                .map_err(|_| bad()),
            Keys::Sessions(s) => {
                writeonly::open(s, &self.vid, writeonly::SYMLINK, &blob).map(|p| p.to_vec())
            }
        }
    }

    fn xattr_aad(owner: Option<FileId>) -> Vec<u8> {
        let mut a = b"xattr".to_vec();
        if let Some(f) = owner {
            a.extend_from_slice(&f.0);
        }
        a
    }

    /// The backing xattr name of a user xattr: a keyed hash of the name, so
    /// names stay hidden and any name up to the kernel's 255 bytes fits.
    pub fn xattr_backing_name(&self, name: &[u8]) -> Vec<u8> {
        let key = match &self.keys {
            Keys::Volume(vk) => derive(vk.expose(), &self.vid.0, &[b"envelopefs xattr name v1"]),
            Keys::Sessions(s) => derive(
                s.writer_key().expose(),
                &self.vid.0,
                &[b"envelopefs xattr name v2"],
            ),
        };
        let (mac, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(key.expose()), name);
        let mut v = USER_XATTR_PREFIX.to_vec();
        v.extend_from_slice(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(mac)
                .as_bytes(),
        );
        v
    }

    /// Encrypt an xattr's name and value together: under the file's data key
    /// for regular files (`file` given), else under a key derived from the
    /// volume key (format 2: from this mount's write session).
    pub fn encrypt_xattr(
        &self,
        file: Option<&FileCrypto>,
        name: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, VolumeError> {
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(2 + name.len() + value.len()));
        plain.extend_from_slice(&(name.len() as u16).to_be_bytes());
        plain.extend_from_slice(name);
        plain.extend_from_slice(value);
        Ok(match (file, &self.keys) {
            (Some(fc), _) => fc
                .xattr_cipher()
                .seal_to_vec(&Self::xattr_aad(Some(fc.file_id())), &plain),
            (None, Keys::Volume(vk)) => Self::v1_cipher(vk, &self.vid, b"envelopefs dir xattr v1")
                .seal_to_vec(&Self::xattr_aad(None), &plain),
            (None, Keys::Sessions(s)) => {
                writeonly::seal(s, &self.vid, writeonly::DIR_XATTR, &plain)?
            }
        })
    }

    /// Decrypt a stored xattr into (name, value); None when it cannot be
    /// read ([`Volume::open_xattr`] says why).
    pub fn decrypt_xattr(
        &self,
        file: Option<&FileCrypto>,
        blob: &[u8],
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        self.open_xattr(file, blob).ok()
    }

    /// Decrypt a stored xattr into (name, value): `Corrupt` if it fails
    /// authentication, `WriteOnly` for another session's directory xattr on
    /// a write-only mount.
    pub fn open_xattr(
        &self,
        file: Option<&FileCrypto>,
        blob: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), VolumeError> {
        let bad = || VolumeError::Corrupt("the xattr does not decrypt".into());
        let plain = match (file, &self.keys) {
            (Some(fc), _) => fc
                .xattr_cipher()
                .open_from_slice(&Self::xattr_aad(Some(fc.file_id())), blob)
                .map_err(|_| bad())?,
            (None, Keys::Volume(vk)) => Self::v1_cipher(vk, &self.vid, b"envelopefs dir xattr v1")
                .open_from_slice(&Self::xattr_aad(None), blob)
                .map_err(|_| bad())?,
            (None, Keys::Sessions(s)) => writeonly::open(s, &self.vid, writeonly::DIR_XATTR, blob)?,
        };
        if plain.len() < 2 {
            return Err(bad());
        }
        let n = u16::from_be_bytes([plain[0], plain[1]]) as usize;
        if plain.len() < 2 + n {
            return Err(bad());
        }
        Ok((plain[2..2 + n].to_vec(), plain[2 + n..].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::volume;
    use super::super::{CacheOptions, InitOptions, Volume};

    /// The length a stat shows for a symlink is its target's, in both formats.
    #[test]
    fn symlink_target_len_inverts_the_sealing() {
        let v1 = volume(InitOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let ks = crate::kms::local::test_store(&dir.path().join("ks"));
        let r = ks
            .create_key_with_spec("r", "AWS_KMS", "ECC_NIST_P256", "KEY_AGREEMENT")
            .unwrap();
        let opts = InitOptions {
            recipient_key: Some(r.key_id),
            ..InitOptions::default()
        };
        let vdir = dir.path().join("v2");
        Volume::init(&vdir, &ks, "unused", &opts).unwrap();
        let v2 = Volume::open(&vdir, &ks, CacheOptions::default()).unwrap();
        for vol in [&v1.vol, &v2] {
            let max = vol.max_symlink_target();
            for len in [0, 1, 2, 3, 7, 100, max - 1, max] {
                let sealed = vol.encrypt_symlink(&vec![b't'; len]).unwrap();
                assert!(sealed.len() <= 4095, "{len}");
                assert_eq!(vol.symlink_target_len(sealed.len() as u64), len as u64);
            }
        }
    }
}
