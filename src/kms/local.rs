//! The embedded local key service, with AWS KMS semantics: key states and
//! their effect on every operation, rotation that keeps old material for
//! decryption, scheduled deletion, imported key material, aliases, and an
//! audit line for every key operation.
//!
//! The store key, key material and private keys live in the locked key
//! memory that is left out of core dumps (`crypto::secmem`), as does the
//! store's plaintext while it is written; copies on the heap are
//! `Zeroizing` and last one operation.
//!
//! Each wrap derives a fresh key from the key material (a random salt in the
//! blob), so no nonce budget per master key limits how much can be wrapped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::store::KdfParams;
use super::{EncryptionContext, KmsError};
use crate::crypto::secmem::{SecretText, SecretVec, Slot};

mod aliases;
pub mod asymmetric;
mod backup;
mod blobs;
mod import;
mod keys;
mod open;
mod pages;
mod policies;
mod random;
mod rotation;
mod tags;

pub use super::store::{parse_store_file, KdfCost, STORE_FILE};
pub use import::{wrap_key_material, ImportType};
pub use pages::{Page, PageRequest, Rotation};
pub use policies::{KeyGrant, POLICY_NAME};
pub use random::MAX_RANDOM_BYTES;
pub use tags::MAX_TAGS_PER_KEY;

pub const DEFAULT_ALIAS: &str = "alias/envelopefs/default";
pub const DAY: u64 = 86_400;
pub const MAX_ON_DEMAND_ROTATIONS: u32 = 25;
pub const IMPORT_WRAPPING_ALGORITHM: &str = "HPKE_X25519_HKDF_SHA256_AES_256_GCM";

pub const ENABLED: &str = "Enabled";
pub const DISABLED: &str = "Disabled";
pub const PENDING_DELETION: &str = "PendingDeletion";
pub const PENDING_IMPORT: &str = "PendingImport";

#[derive(Serialize, Deserialize, Clone)]
pub struct KeyMaterial {
    pub id: String,
    pub created: u64,
    /// None once imported material was deleted or expired.
    #[serde(default)]
    material: Option<SecretText>,
    /// SHA-256 of the material: re-import must bring the same bytes.
    #[serde(default)]
    pub digest: String,
    /// CREATION, AUTOMATIC, ON_DEMAND or IMPORT.
    #[serde(default)]
    pub rotation_type: String,
    #[serde(default)]
    pub valid_to: Option<u64>,
    /// Imported with ImportType NEW_KEY_MATERIAL, waiting for
    /// RotateKeyOnDemand to make it current (AWS's PENDING_ROTATION).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_rotation: bool,
}

#[derive(Serialize, Deserialize, Clone)]
struct ImportParams {
    token: String,
    private_key: SecretText,
    valid_to: u64,
    /// GetParametersForImport's WrappingAlgorithm, which the key pair is for.
    #[serde(default = "import::hpke_wrapping")]
    wrapping_algorithm: String,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct KeyRecord {
    pub key_id: String,
    pub description: String,
    pub creation_date: u64,
    pub key_state: String,
    pub key_manager: String,
    pub origin: String,
    pub materials: Vec<KeyMaterial>,
    pub current_material: String,
    #[serde(default)]
    pub deletion_date: Option<u64>,
    #[serde(default)]
    pub pending_window_in_days: Option<u32>,
    #[serde(default)]
    pub rotation_enabled: bool,
    #[serde(default)]
    pub rotation_period_days: u32,
    #[serde(default)]
    pub next_rotation_date: Option<u64>,
    #[serde(default)]
    pub on_demand_rotations: u32,
    #[serde(default)]
    import: Option<ImportParams>,
    /// SYMMETRIC_DEFAULT, RSA_2048, ECC_NIST_P256, ...; fixed at creation.
    #[serde(default = "symmetric_default")]
    pub key_spec: String,
    /// ENCRYPT_DECRYPT, SIGN_VERIFY or KEY_AGREEMENT; fixed at creation.
    #[serde(default = "encrypt_decrypt")]
    pub key_usage: String,
    /// Tag keys and values (TagResource).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The key policy as put (None: the default key policy, which keys of
    /// stores older than key policies have too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The key's live grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<crate::kms::policy::Grant>,
}

fn symmetric_default() -> String {
    "SYMMETRIC_DEFAULT".into()
}

fn encrypt_decrypt() -> String {
    "ENCRYPT_DECRYPT".into()
}

impl KeyRecord {
    pub fn is_managed(&self) -> bool {
        self.key_manager == "AWS"
    }

    pub fn current(&self) -> Option<&KeyMaterial> {
        self.materials
            .iter()
            .find(|m| m.id == self.current_material)
    }

    /// The ImportState-style summary of imported material (None for AWS_KMS keys).
    pub fn valid_to(&self) -> Option<u64> {
        self.current().and_then(|m| m.valid_to)
    }
}

#[derive(Serialize, Deserialize, Default, Clone)]
pub struct StoreData {
    pub keys: Vec<KeyRecord>,
    pub aliases: BTreeMap<String, String>,
    /// The audit log's head when the store was last written: a tail cut
    /// off the log before then shows.
    #[serde(default, rename = "auditHead", skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<crate::kms::audit::AuditHead>,
}

pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// An unlocked local key store.
pub struct LocalKeyService {
    dir: PathBuf,
    store_id: String,
    kdf: KdfParams,
    /// In the key arena: a move of the service copies only the handle.
    key: Slot,
    data: parking_lot::Mutex<StoreData>,
    clock: Clock,
}

/// Default store location: `$XDG_DATA_HOME/envelopefs`, else `~/.local/share/envelopefs`.
pub fn default_store_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("envelopefs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".local/share/envelopefs")
}

fn uuid_bytes(s: &str) -> Result<[u8; 16], KmsError> {
    uuid::Uuid::parse_str(s)
        .map(|u| *u.as_bytes())
        .map_err(|_| KmsError::Validation(format!("{s} is not a UUID")))
}

fn digest(material_b64: &str) -> String {
    B64.encode(Sha256::digest(material_b64.as_bytes()))
}

fn new_material(kind: &str, now: u64) -> KeyMaterial {
    let mut m = Zeroizing::new([0u8; 32]);
    crate::crypto::random_bytes(&mut m[..]);
    let enc = SecretText::from(Zeroizing::new(B64.encode(&m[..])));
    KeyMaterial {
        id: uuid::Uuid::new_v4().to_string(),
        created: now,
        digest: digest(&enc),
        material: Some(enc),
        rotation_type: kind.into(),
        valid_to: None,
        pending_rotation: false,
    }
}

/// The store's content as JSON, in locked memory (a growing heap `Vec`
/// would leave copies of key material in the buffers it outgrew).
fn store_json(data: &StoreData) -> Result<SecretVec, KmsError> {
    let mut out = SecretVec::with_capacity(16 * 1024);
    serde_json::to_writer(&mut out, data)
        .map_err(|e| KmsError::Validation(format!("cannot serialize store: {e}")))?;
    Ok(out)
}

fn parse_store_data(plain: &[u8], what: &str) -> Result<StoreData, KmsError> {
    serde_json::from_slice(plain).map_err(|e| KmsError::StoreCorrupt {
        path: what.to_owned(),
        why: format!("content: {e}"),
    })
}

/// What one operation touched, for its audit line.
#[derive(Default)]
struct Audit {
    key_arn: Option<String>,
    material: Option<String>,
    context: Option<EncryptionContext>,
}

/// Seconds since the epoch as an RFC 3339 UTC time.
pub fn fmt_time(t: u64) -> String {
    let days = (t / DAY) as i64;
    let secs = t % DAY;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
pub(crate) fn test_store(dir: &std::path::Path) -> LocalKeyService {
    LocalKeyService::create(
        dir,
        "test passphrase",
        KdfCost {
            m_cost_kib: 64,
            t_cost: 1,
        },
    )
    .unwrap()
}

#[cfg(test)]
mod tests;

// Opening with a raw store key exists only in the fuzz targets' build
// (cargo fuzz sets `--cfg fuzzing`), not in the release library.
#[cfg(fuzzing)]
mod fuzzing;
