//! Small key types: a secret never appears in `Debug`, lives in the key
//! arena (`secmem`: locked, out of core dumps) and is zeroized on drop.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

use super::secmem::{scrub_stack, Slot};

pub const KEY_LEN: usize = 32;

macro_rules! secret_key {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// Its bytes live in the locked, undumped key arena (`secmem`);
        /// the value itself is only a handle.
        pub struct $name(Slot);

        impl $name {
            /// A copy of `b`, which is zeroized (fixed keys in tests and
            /// fuzz targets; real keys are made in place).
            pub fn from_bytes(mut b: [u8; KEY_LEN]) -> Self {
                let mut k = Self::zeroed();
                k.0.bytes_mut().copy_from_slice(&b);
                b.zeroize();
                k
            }
            /// A copy of `b` (which the caller zeroizes).
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                if b.len() != KEY_LEN {
                    return None;
                }
                let mut k = Self::zeroed();
                k.0.bytes_mut().copy_from_slice(b);
                Some(k)
            }
            pub fn random() -> Self {
                let mut k = Self::zeroed();
                super::random_bytes(k.0.bytes_mut());
                k
            }
            /// An all-zero key to be filled in place (so its bytes are
            /// written straight into the arena, never to the stack).
            pub(crate) fn zeroed() -> Self {
                Self(Slot::new())
            }
            #[allow(dead_code)] // not every key type is filled in place
            pub(crate) fn expose_mut(&mut self) -> &mut [u8; KEY_LEN] {
                self.0.bytes_mut()
            }
            pub fn expose(&self) -> &[u8; KEY_LEN] {
                self.0.bytes()
            }
        }

        impl Clone for $name {
            fn clone(&self) -> Self {
                let mut k = Self::zeroed();
                k.0.bytes_mut().copy_from_slice(self.0.bytes());
                k
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_key!(
    VolumeKey,
    "The per-volume key; wraps data keys, keys names and the config MAC."
);
secret_key!(DataKey, "A file's own random 256-bit data key.");
secret_key!(SubKey, "A key derived from another key for one purpose.");
secret_key!(
    SessionKey,
    "A write session's key (format 2): wraps the data keys, names, symlink targets and directory xattrs of one session."
);

/// HKDF-SHA256 expand of `ikm` with `salt` and `info` into a 32-byte subkey.
pub fn derive(ikm: &[u8; KEY_LEN], salt: &[u8], info: &[&[u8]]) -> SubKey {
    let k = derive_unscrubbed(ikm, salt, info);
    // The HMAC states held `ikm` and the output on the stack.
    scrub_stack();
    k
}

#[inline(never)]
fn derive_unscrubbed(ikm: &[u8; KEY_LEN], salt: &[u8], info: &[&[u8]]) -> SubKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = SubKey::zeroed();
    let info: Vec<u8> = info.concat();
    // 32 bytes is always a valid HKDF-SHA256 output length.
    hk.expand(&info, out.expose_mut())
        .expect("32 bytes is a valid HKDF output length");
    out
}

/// HKDF-SHA256 of an input key of any length (an ECDH secret, a public
/// key's fingerprint) into a 32-byte subkey.
pub fn derive_from_slice(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> SubKey {
    let k = derive_from_slice_unscrubbed(ikm, salt, info);
    scrub_stack();
    k
}

#[inline(never)]
fn derive_from_slice_unscrubbed(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> SubKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = SubKey::zeroed();
    hk.expand(&info.concat(), out.expose_mut())
        .expect("32 bytes is a valid HKDF output length");
    out
}

/// HMAC-SHA256 of the concatenated `parts` under `key` (HKDF's extract step
/// is exactly that HMAC, with the key as its salt).
pub fn hmac(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; 32] {
    let (mac, _) = Hkdf::<Sha256>::extract(Some(key), &parts.concat());
    mac.into()
}

/// A file's random 128-bit identity, bound into its header and every block.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FileId(pub [u8; 16]);

impl FileId {
    pub fn random() -> Self {
        FileId(super::random_array())
    }
}

/// The volume's random 128-bit identity (its UUID), bound into every header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VolumeId(pub [u8; 16]);
