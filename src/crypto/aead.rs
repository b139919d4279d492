//! AES-256-GCM with a choice of backend: `ring` by default (the faster one, see
//! README's performance section), or RustCrypto's `aes-gcm` (feature
//! `rustcrypto`). Both produce the same ciphertext.
//!
//! ring's key schedule cannot be zeroized, so callers keep raw keys in
//! `Zeroizing` and build the cipher per request (`Cipher::new` is cheap).

use super::keys::KEY_LEN;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Ring,
    RustCrypto,
}

#[cfg(not(feature = "rustcrypto"))]
pub const DEFAULT_BACKEND: Backend = Backend::Ring;
#[cfg(feature = "rustcrypto")]
pub const DEFAULT_BACKEND: Backend = Backend::RustCrypto;

// Built per request on the stack; boxing ring's key would add an allocation per call.
#[allow(clippy::large_enum_variant)]
pub enum Cipher {
    Ring(ring::aead::LessSafeKey),
    RustCrypto(Box<aes_gcm::Aes256Gcm>),
}

impl Cipher {
    pub fn new(key: &[u8; KEY_LEN]) -> Cipher {
        Self::with_backend(key, DEFAULT_BACKEND)
    }

    pub fn with_backend(key: &[u8; KEY_LEN], backend: Backend) -> Cipher {
        match backend {
            Backend::Ring => {
                // A 32-byte key is always valid for AES-256-GCM.
                let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key)
                    .expect("32-byte AES-256 key");
                Cipher::Ring(ring::aead::LessSafeKey::new(unbound))
            }
            Backend::RustCrypto => {
                use aes_gcm::KeyInit;
                Cipher::RustCrypto(Box::new(aes_gcm::Aes256Gcm::new(key.into())))
            }
        }
    }

    /// Encrypt `buf` in place and return the tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        match self {
            Cipher::Ring(k) => {
                let n = ring::aead::Nonce::assume_unique_for_key(*nonce);
                let tag = k
                    .seal_in_place_separate_tag(n, ring::aead::Aad::from(aad), buf)
                    .expect("AES-GCM input within length limits");
                let mut t = [0u8; TAG_LEN];
                t.copy_from_slice(tag.as_ref());
                t
            }
            Cipher::RustCrypto(c) => {
                use aes_gcm::AeadInPlace;
                let tag = c
                    .encrypt_in_place_detached(nonce.into(), aad, buf)
                    .expect("AES-GCM input within length limits");
                tag.into()
            }
        }
    }

    /// Decrypt `buf` in place after checking `tag`. On failure `buf` holds no plaintext.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthError> {
        let r = match self {
            Cipher::Ring(k) => {
                let n = ring::aead::Nonce::assume_unique_for_key(*nonce);
                let t = ring::aead::Tag::from(*tag);
                k.open_in_place_separate_tag(n, ring::aead::Aad::from(aad), t, buf, 0..)
                    .map(|_| ())
                    .map_err(|_| AuthError)
            }
            Cipher::RustCrypto(c) => {
                use aes_gcm::AeadInPlace;
                c.decrypt_in_place_detached(nonce.into(), aad, buf, tag.into())
                    .map_err(|_| AuthError)
            }
        };
        if r.is_err() {
            buf.iter_mut().for_each(|b| *b = 0);
        }
        r
    }

    /// Decrypt `in_out[src..]` (ciphertext followed by its tag) and leave the
    /// plaintext at the front of `in_out`; returns its length. Saves the copy
    /// a separate output buffer would need. On failure `in_out` holds no
    /// plaintext.
    pub fn open_within(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        src: usize,
    ) -> Result<usize, AuthError> {
        let Some(len) = in_out.len().checked_sub(src + TAG_LEN) else {
            return Err(AuthError);
        };
        let r = match self {
            Cipher::Ring(k) => {
                let n = ring::aead::Nonce::assume_unique_for_key(*nonce);
                k.open_within(n, ring::aead::Aad::from(aad), in_out, src..)
                    .map(|_| ())
                    .map_err(|_| AuthError)
            }
            Cipher::RustCrypto(c) => {
                use aes_gcm::AeadInPlace;
                let (body, tag) = in_out[src..].split_at_mut(len);
                let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AuthError)?;
                c.decrypt_in_place_detached(nonce.into(), aad, body, (&tag).into())
                    .map(|()| in_out.copy_within(src..src + len, 0))
                    .map_err(|_| AuthError)
            }
        };
        if r.is_err() {
            in_out.iter_mut().for_each(|b| *b = 0);
        }
        r.map(|()| len)
    }

    /// Seal into a fresh `nonce || ciphertext || tag` vector with a random nonce.
    pub fn seal_to_vec(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = super::random_array();
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self.seal(&nonce, aad, &mut out[NONCE_LEN..]);
        out.extend_from_slice(&tag);
        out
    }

    /// Open a `nonce || ciphertext || tag` blob made by `seal_to_vec`.
    pub fn open_from_slice(
        &self,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, AuthError> {
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(AuthError);
        }
        let (nonce, rest) = blob.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = zeroize::Zeroizing::new(ct.to_vec());
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| AuthError)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| AuthError)?;
        self.open(&nonce, aad, &mut buf, &tag)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_agree_and_detect_tampering() {
        let key = [7u8; 32];
        let nonce = [1u8; 12];
        let mut a = b"hello block".to_vec();
        let mut b = a.clone();
        let ta = Cipher::with_backend(&key, Backend::Ring).seal(&nonce, b"aad", &mut a);
        let tb = Cipher::with_backend(&key, Backend::RustCrypto).seal(&nonce, b"aad", &mut b);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        for backend in [Backend::Ring, Backend::RustCrypto] {
            let c = Cipher::with_backend(&key, backend);
            let mut x = a.clone();
            c.open(&nonce, b"aad", &mut x, &ta).unwrap();
            assert_eq!(&x, b"hello block");
            let mut y = a.clone();
            assert!(c.open(&nonce, b"aaD", &mut y, &ta).is_err());
            assert!(y.iter().all(|b| *b == 0));
            let mut z = a.clone();
            z[0] ^= 1;
            assert!(c.open(&nonce, b"aad", &mut z, &ta).is_err());
        }
    }

    #[test]
    fn seal_to_vec_round_trip() {
        let c = Cipher::new(&[3u8; 32]);
        let blob = c.seal_to_vec(b"ctx", b"secret");
        assert_eq!(&c.open_from_slice(b"ctx", &blob).unwrap()[..], b"secret");
        assert!(c.open_from_slice(b"other", &blob).is_err());
        assert!(c.open_from_slice(b"ctx", &blob[..10]).is_err());
    }
}
