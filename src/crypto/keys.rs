//! Small key types: a secret never appears in `Debug`, and is zeroized on drop.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

pub const KEY_LEN: usize = 32;

macro_rules! secret_key {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone)]
        pub struct $name(Zeroizing<[u8; KEY_LEN]>);

        impl $name {
            pub fn from_bytes(b: [u8; KEY_LEN]) -> Self {
                let mut b = b;
                let k = Self(Zeroizing::new(b));
                b.zeroize();
                k
            }
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                let arr: [u8; KEY_LEN] = b.try_into().ok()?;
                Some(Self::from_bytes(arr))
            }
            pub fn random() -> Self {
                let mut k = Zeroizing::new([0u8; KEY_LEN]);
                super::random_bytes(&mut k[..]);
                Self(k)
            }
            pub fn expose(&self) -> &[u8; KEY_LEN] {
                &self.0
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

/// HKDF-SHA256 expand of `ikm` with `salt` and `info` into a 32-byte subkey.
pub fn derive(ikm: &[u8; KEY_LEN], salt: &[u8], info: &[&[u8]]) -> SubKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let info: Vec<u8> = info.concat();
    // 32 bytes is always a valid HKDF-SHA256 output length.
    hk.expand(&info, &mut out[..])
        .expect("32 bytes is a valid HKDF output length");
    SubKey(out)
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
