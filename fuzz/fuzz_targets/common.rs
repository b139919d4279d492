#![allow(dead_code)]
// Shared set-up of the fuzz targets. The harness holds fixed test keys and
// seals each input under them itself, so the code under test authenticates
// the input and the parsing after decryption is reached; a seed sealed under
// a key the harness does not hold would only ever test the rejection.
use std::path::Path;
use std::sync::OnceLock;

use envelopefs::crypto::aead::Cipher;
use envelopefs::crypto::keys::{derive, VolumeId, VolumeKey};
use envelopefs::kms::local::{KdfCost, LocalKeyService};
use envelopefs::kms::{
    DecryptedKey, EncryptionContext, GeneratedDataKey, KeyService, KmsError, PublicKey, ReEncrypted,
};
use envelopefs::volume::{CacheOptions, InitOptions, Volume};
use zeroize::Zeroizing;

/// The volume key every fixture volume has (its key service hands out only this).
pub const VOLUME_KEY: [u8; 32] = [0x11; 32];
/// The volume ID of the name transform the names target builds.
pub const VOLUME_ID: [u8; 16] = [0x12; 16];
/// A file's data key and ID, for the per-file xattr cipher and content blocks.
pub const DATA_KEY: [u8; 32] = [0x22; 32];
pub const FILE_ID: [u8; 16] = [0x23; 16];
/// The key store's key (what Argon2id would derive from the passphrase).
pub const STORE_KEY: [u8; 32] = [0x44; 32];
/// A second key: what was sealed under the first must not open under it.
pub const OTHER_KEY: [u8; 32] = [0x55; 32];

/// A key service with one fixed key: generate and decrypt hand out
/// [`VOLUME_KEY`], so the harness knows the volume's key.
pub struct FixedKeys;

const FIXED_ARN: &str = "arn:fuzz:fixed";

impl KeyService for FixedKeys {
    fn resolve(&self, _key: &str) -> Result<String, KmsError> {
        Ok(FIXED_ARN.into())
    }
    fn generate_data_key(
        &self,
        _key: &str,
        _bytes: usize,
        _context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        Ok(GeneratedDataKey {
            plaintext: Zeroizing::new(VOLUME_KEY.to_vec()),
            ciphertext_blob: b"fixed".to_vec(),
            key_arn: FIXED_ARN.into(),
            key_material_id: "fixed".into(),
        })
    }
    fn decrypt(
        &self,
        _blob: &[u8],
        _context: &EncryptionContext,
        _key: Option<&str>,
    ) -> Result<DecryptedKey, KmsError> {
        Ok(DecryptedKey {
            plaintext: Zeroizing::new(VOLUME_KEY.to_vec()),
            key_arn: FIXED_ARN.into(),
            key_material_id: "fixed".into(),
        })
    }
    fn re_encrypt(
        &self,
        _blob: &[u8],
        _source_context: &EncryptionContext,
        _destination_key: &str,
        _destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        Err(KmsError::UnsupportedOperation("fixed keys".into()))
    }
    fn get_public_key(&self, _key: &str) -> Result<PublicKey, KmsError> {
        Err(KmsError::UnsupportedOperation("fixed keys".into()))
    }
    fn decrypt_rsa_oaep_sha256(
        &self,
        _key: &str,
        _blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        Err(KmsError::UnsupportedOperation("fixed keys".into()))
    }
    fn derive_shared_secret(
        &self,
        _key: &str,
        _peer_public_der: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        Err(KmsError::UnsupportedOperation("fixed keys".into()))
    }
    fn provider(&self) -> &'static str {
        "local"
    }
}

/// One volume per process whose volume key is [`VOLUME_KEY`].
pub struct VolumeFixture {
    _dir: tempfile::TempDir,
    pub vol: Volume,
}

pub fn volume() -> &'static VolumeFixture {
    static F: OnceLock<VolumeFixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let vdir = dir.path().join("vol");
        Volume::init(&vdir, &FixedKeys, "fixed", &InitOptions::default()).expect("init");
        let vol = Volume::open(&vdir, &FixedKeys, CacheOptions::default()).expect("open");
        VolumeFixture { _dir: dir, vol }
    })
}

/// A cipher the volume derives from its key for `purpose` (the labels of
/// src/volume/mod.rs; the targets check at start that they still match).
pub fn volume_cipher(vid: &VolumeId, purpose: &[u8]) -> Cipher {
    let vk = VolumeKey::from_bytes(VOLUME_KEY);
    Cipher::new(derive(vk.expose(), &vid.0, &[purpose]).expose())
}

/// One key store per process (kms_blob): created once, Argon2id and all.
pub struct StoreFixture {
    _dir: tempfile::TempDir,
    pub ks: LocalKeyService,
}

pub fn store() -> &'static StoreFixture {
    static F: OnceLock<StoreFixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        // Release builds accept only the table's costs (src/kms/store.rs).
        let cost = KdfCost::default();
        let ks = LocalKeyService::create(&dir.path().join("ks"), "fuzz", cost).expect("store");
        ks.default_key().expect("key");
        StoreFixture { _dir: dir, ks }
    })
}

/// With `ENVELOPEFS_FUZZ_SEEDS=DIR` a target writes the sealed form of what
/// it built to DIR/NAME (how the sealed seeds in fuzz/corpus were made).
pub fn dump_seed(name: &str, bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("ENVELOPEFS_FUZZ_SEEDS") {
        let _ = std::fs::write(Path::new(&dir).join(name), bytes);
    }
}
