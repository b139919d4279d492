//! The embedded local key service, with AWS KMS semantics: key states and
//! their effect on every operation, rotation that keeps old material for
//! decryption, scheduled deletion, imported key material, aliases, and an
//! audit line for every key operation.
//!
//! Each wrap derives a fresh key from the key material (a random salt in the
//! blob), so no nonce budget per master key limits how much can be wrapped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::audit::{self, AuditRecord};
use super::passphrase::PassphraseSource;
use super::store::{self, KdfParams};
use super::{DecryptedKey, EncryptionContext, GeneratedDataKey, KeyService, KmsError};
use crate::crypto::aead::Cipher;
use crate::crypto::keys::derive;

pub use super::store::{parse_store_file, KdfCost, STORE_FILE};

pub const DEFAULT_ALIAS: &str = "alias/envelopefs/default";
const BLOB_MAGIC: &[u8; 4] = b"EFK1";
const BLOB_PREFIX: usize = 4 + 16 + 16 + 16; // magic, key id, material id, salt
pub const DAY: u64 = 86_400;
pub const MAX_ON_DEMAND_ROTATIONS: u32 = 25;
pub const IMPORT_WRAPPING_ALGORITHM: &str = "HPKE_X25519_HKDF_SHA256_AES_256_GCM";
const IMPORT_INFO: &[u8] = b"envelopefs import-key-material v1";

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
    material: Option<Zeroizing<String>>,
    /// SHA-256 of the material: re-import must bring the same bytes.
    #[serde(default)]
    pub digest: String,
    /// CREATION, AUTOMATIC, ON_DEMAND or IMPORT.
    #[serde(default)]
    pub rotation_type: String,
    #[serde(default)]
    pub valid_to: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ImportParams {
    token: String,
    private_key: Zeroizing<String>,
    valid_to: u64,
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
}

pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// An unlocked local key store.
pub struct LocalKeyService {
    dir: PathBuf,
    store_id: String,
    kdf: KdfParams,
    key: Zeroizing<[u8; 32]>,
    data: parking_lot::Mutex<StoreData>,
    clock: Clock,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    let enc = Zeroizing::new(B64.encode(&m[..]));
    KeyMaterial {
        id: uuid::Uuid::new_v4().to_string(),
        created: now,
        digest: digest(&enc),
        material: Some(enc),
        rotation_type: kind.into(),
        valid_to: None,
    }
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

impl LocalKeyService {
    pub fn store_path(dir: &Path) -> PathBuf {
        store::store_path(dir)
    }

    pub fn exists(dir: &Path) -> bool {
        Self::store_path(dir).exists()
    }

    /// Create a new, empty store. Fails if one exists.
    pub fn create(dir: &Path, pass: &str, cost: KdfCost) -> Result<Self, KmsError> {
        let store_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self::create_with(dir, pass, cost, store_id, StoreData::default())
    }

    /// Write a store that must not exist yet, with the given identity and content.
    fn create_with(
        dir: &Path,
        pass: &str,
        cost: KdfCost,
        store_id: String,
        data: StoreData,
    ) -> Result<Self, KmsError> {
        let _l = store::lock(dir)?;
        if Self::exists(dir) {
            return Err(KmsError::AlreadyExists(format!(
                "a key store already exists at {}",
                dir.display()
            )));
        }
        let kdf = cost.params();
        let key = store::derive_store_key(pass, &kdf).map_err(KmsError::Passphrase)?;
        let svc = LocalKeyService {
            dir: dir.to_owned(),
            store_id,
            kdf,
            key,
            data: parking_lot::Mutex::new(data),
            clock: Arc::new(now_secs),
        };
        svc.write(&svc.data.lock())?;
        Ok(svc)
    }

    /// Open (unlock) an existing store; due deletions, rotations and
    /// expiries are carried out now.
    pub fn open(dir: &Path, pass: &str) -> Result<Self, KmsError> {
        Self::open_with_clock(dir, pass, Arc::new(now_secs))
    }

    /// Open with a clock of the caller's (tests move time through this).
    pub fn open_with_clock(dir: &Path, pass: &str, clock: Clock) -> Result<Self, KmsError> {
        let p = Self::store_path(dir);
        if !p.exists() {
            return Err(KmsError::NoStore(dir.display().to_string()));
        }
        let raw = store::read_store(&p)?;
        let what = p.display().to_string();
        let (f, key, plain) = store::unlock(&raw, pass, &dir.display().to_string())?;
        let data = parse_store_data(&plain, &what)?;
        let svc = LocalKeyService {
            dir: dir.to_owned(),
            store_id: f.store_id,
            kdf: f.kdf,
            key,
            data: parking_lot::Mutex::new(data),
            clock,
        };
        svc.maintain()?;
        Ok(svc)
    }

    /// Open the store, creating it (with a new passphrase) if there is none.
    pub fn open_or_create(dir: &Path, src: &PassphraseSource) -> Result<(Self, bool), KmsError> {
        if Self::exists(dir) {
            let pass = src.existing()?;
            return Ok((Self::open(dir, &pass)?, false));
        }
        let pass = src.new_passphrase()?;
        Ok((Self::create(dir, &pass, KdfCost::default())?, true))
    }

    /// Replace the clock (tests only need this through the library).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    fn write(&self, data: &StoreData) -> Result<(), KmsError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(data)
                .map_err(|e| KmsError::Validation(format!("cannot serialize store: {e}")))?,
        );
        let out = store::seal_store(&self.store_id, &self.kdf, &self.key, &plain)?;
        store::write_atomic(&Self::store_path(&self.dir), &out)
    }

    fn reload(&self) -> Result<StoreData, KmsError> {
        let p = Self::store_path(&self.dir);
        let raw = store::read_store(&p)?;
        let what = p.display().to_string();
        let f = parse_store_file(&raw).map_err(|why| KmsError::StoreCorrupt {
            path: what.clone(),
            why,
        })?;
        let plain = store::unseal_store(&f, &self.key).map_err(|e| KmsError::StoreCorrupt {
            path: what.clone(),
            why: e.unwrap_or_else(|| "authentication failed".into()),
        })?;
        parse_store_data(&plain, &what)
    }

    /// Apply a change under the store lock, on the newest copy of the store.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut StoreData) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let _l = store::lock(&self.dir)?;
        let fresh = self.reload()?;
        let mut data = self.data.lock();
        *data = fresh;
        let mut work = data.clone();
        let r = f(&mut work)?;
        self.write(&work)?;
        *data = work;
        Ok(r)
    }

    fn audit(&self, op: &str, a: Audit, outcome: &Result<(), &KmsError>) {
        let uid = crate::sys::getuid();
        audit::append(
            &self.dir,
            &AuditRecord {
                time: self.now(),
                operation: op.to_owned(),
                key_arn: a.key_arn,
                key_material_id: a.material,
                encryption_context: a.context,
                uid,
                pid: std::process::id(),
                outcome: match outcome {
                    Ok(()) => "ok".into(),
                    Err(e) => e.name().to_owned(),
                },
            },
        );
    }

    /// Run an operation and write its audit line.
    fn audited<T>(
        &self,
        op: &str,
        key_hint: Option<&str>,
        f: impl FnOnce(&mut Audit) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let mut a = Audit::default();
        if let Some(k) = key_hint {
            a.key_arn = self.key_id_of(k).ok().map(|id| self.arn(&id));
        }
        let r = f(&mut a);
        self.audit(op, a, &r.as_ref().map(|_| ()));
        r
    }

    /// Carry out what is due: deletions after their window, expiries of
    /// imported material, automatic rotations.
    fn maintain(&self) -> Result<(), KmsError> {
        let now = self.now();
        let due = {
            let d = self.data.lock();
            d.keys.iter().any(|k| {
                (k.key_state == PENDING_DELETION && k.deletion_date.is_some_and(|t| t <= now))
                    || k.materials
                        .iter()
                        .any(|m| m.material.is_some() && m.valid_to.is_some_and(|t| t <= now))
                    || (k.key_state == ENABLED
                        && k.rotation_enabled
                        && k.next_rotation_date.is_some_and(|t| t <= now))
            })
        };
        if !due {
            return Ok(());
        }
        let mut events = Vec::new();
        self.update(|d| {
            let mut gone = Vec::new();
            d.keys.retain(|k| {
                let del =
                    k.key_state == PENDING_DELETION && k.deletion_date.is_some_and(|t| t <= now);
                if del {
                    gone.push(k.key_id.clone());
                }
                !del
            });
            d.aliases.retain(|_, v| !gone.contains(v));
            for id in gone {
                events.push(("DeleteKey", id, None));
            }
            for k in d.keys.iter_mut() {
                let mut expired = false;
                for m in k.materials.iter_mut() {
                    if m.material.is_some() && m.valid_to.is_some_and(|t| t <= now) {
                        m.material = None;
                        expired = true;
                        events.push(("ExpireKeyMaterial", k.key_id.clone(), Some(m.id.clone())));
                    }
                }
                if expired && k.key_state != PENDING_DELETION {
                    k.key_state = PENDING_IMPORT.into();
                }
                if k.key_state == ENABLED
                    && k.rotation_enabled
                    && k.next_rotation_date.is_some_and(|t| t <= now)
                {
                    let m = new_material("AUTOMATIC", now);
                    events.push(("RotateKey", k.key_id.clone(), Some(m.id.clone())));
                    k.current_material = m.id.clone();
                    k.materials.push(m);
                    k.next_rotation_date = Some(now + k.rotation_period_days as u64 * DAY);
                }
            }
            Ok(())
        })?;
        for (op, id, mat) in events {
            self.audit(
                op,
                Audit {
                    key_arn: Some(self.arn(&id)),
                    material: mat,
                    context: None,
                },
                &Ok(()),
            );
        }
        Ok(())
    }

    pub fn arn(&self, key_id: &str) -> String {
        format!("arn:envelopefs:kms:local:{}:key/{}", self.store_id, key_id)
    }

    pub fn alias_arn(&self, alias: &str) -> String {
        format!("arn:envelopefs:kms:local:{}:{}", self.store_id, alias)
    }

    fn alias_arn_prefix(&self) -> String {
        format!("arn:envelopefs:kms:local:{}:", self.store_id)
    }

    /// Key ID of a key ID, key ARN, alias name or alias ARN.
    pub fn key_id_of(&self, key: &str) -> Result<String, KmsError> {
        let d = self.data.lock();
        Self::resolve_in(&d, &self.alias_arn_prefix(), key)
    }

    fn resolve_in(d: &StoreData, arn_prefix: &str, key: &str) -> Result<String, KmsError> {
        let k = key.strip_prefix(arn_prefix).unwrap_or(key);
        let id = if let Some(id) = k.strip_prefix("key/") {
            id.to_owned()
        } else if k.starts_with("alias/") {
            d.aliases
                .get(k)
                .cloned()
                .ok_or_else(|| KmsError::NotFound(format!("Alias {key} is not found.")))?
        } else if key.starts_with("arn:") {
            return Err(KmsError::NotFound(format!("Key '{key}' does not exist")));
        } else {
            k.to_owned()
        };
        if d.keys.iter().any(|r| r.key_id == id) {
            Ok(id)
        } else {
            Err(KmsError::NotFound(format!("Key '{key}' does not exist")))
        }
    }

    /// Management operations take a key ID or key ARN only.
    fn mgmt_id(&self, d: &StoreData, key: &str) -> Result<String, KmsError> {
        let k = key.strip_prefix(&self.alias_arn_prefix()).unwrap_or(key);
        if k.starts_with("alias/") {
            return Err(KmsError::Validation(format!(
                "{key}: this operation takes a key ID or key ARN, not an alias"
            )));
        }
        Self::resolve_in(d, &self.alias_arn_prefix(), key)
    }

    fn rec<'a>(d: &'a mut StoreData, id: &str) -> Result<&'a mut KeyRecord, KmsError> {
        d.keys
            .iter_mut()
            .find(|r| r.key_id == id)
            .ok_or_else(|| KmsError::NotFound(format!("Key '{id}' does not exist")))
    }

    /// Imported-material operations need a key created with Origin EXTERNAL.
    fn require_external(&self, rec: &KeyRecord) -> Result<(), KmsError> {
        if rec.origin == "EXTERNAL" {
            return Ok(());
        }
        Err(KmsError::UnsupportedOperation(format!(
            "{} was not created with Origin EXTERNAL",
            self.arn(&rec.key_id)
        )))
    }

    fn state_err(&self, rec: &KeyRecord) -> KmsError {
        let arn = self.arn(&rec.key_id);
        match rec.key_state.as_str() {
            DISABLED => KmsError::Disabled(format!("{arn} is disabled.")),
            PENDING_IMPORT => KmsError::InvalidState(format!("{arn} is pending import.")),
            PENDING_DELETION => KmsError::InvalidState(format!(
                "{arn} is pending deletion (deletion date {}).",
                rec.deletion_date.map(fmt_time).unwrap_or_default()
            )),
            s => KmsError::InvalidState(format!("{arn} is {s}.")),
        }
    }

    fn usable(&self, rec: &KeyRecord) -> Result<(), KmsError> {
        if rec.key_state == ENABLED {
            Ok(())
        } else {
            Err(self.state_err(rec))
        }
    }

    // ---- keys ----

    /// Create a symmetric key (`origin` AWS_KMS or EXTERNAL).
    pub fn create_key(&self, description: &str, origin: &str) -> Result<KeyRecord, KmsError> {
        self.audited("CreateKey", None, |a| {
            if origin != "AWS_KMS" && origin != "EXTERNAL" {
                return Err(KmsError::Validation(format!(
                    "Origin must be AWS_KMS or EXTERNAL, not {origin}"
                )));
            }
            let now = self.now();
            let rec = self.update(|d| Ok(Self::new_key(d, description, false, origin, now)))?;
            a.key_arn = Some(self.arn(&rec.key_id));
            a.material = Some(rec.current_material.clone()).filter(|m| !m.is_empty());
            Ok(rec)
        })
    }

    fn new_key(
        d: &mut StoreData,
        description: &str,
        managed: bool,
        origin: &str,
        now: u64,
    ) -> KeyRecord {
        let external = origin == "EXTERNAL";
        let mats = if external {
            vec![]
        } else {
            vec![new_material("CREATION", now)]
        };
        let rec = KeyRecord {
            key_id: uuid::Uuid::new_v4().to_string(),
            description: description.to_owned(),
            creation_date: now,
            key_state: if external { PENDING_IMPORT } else { ENABLED }.into(),
            key_manager: if managed { "AWS" } else { "CUSTOMER" }.into(),
            origin: origin.into(),
            current_material: mats.first().map(|m| m.id.clone()).unwrap_or_default(),
            materials: mats,
            deletion_date: None,
            pending_window_in_days: None,
            // Managed keys rotate yearly, always.
            rotation_enabled: managed,
            rotation_period_days: 365,
            next_rotation_date: managed.then_some(now + 365 * DAY),
            on_demand_rotations: 0,
            import: None,
        };
        d.keys.push(rec.clone());
        rec
    }

    /// The managed default key, created on first use.
    pub fn default_key(&self) -> Result<String, KmsError> {
        if let Ok(id) = self.key_id_of(DEFAULT_ALIAS) {
            return Ok(id);
        }
        let now = self.now();
        let id = self.update(|d| {
            if let Some(id) = d.aliases.get(DEFAULT_ALIAS) {
                return Ok(id.clone());
            }
            let rec = Self::new_key(
                d,
                "Default key that protects envelopefs volumes",
                true,
                "AWS_KMS",
                now,
            );
            d.aliases.insert(DEFAULT_ALIAS.into(), rec.key_id.clone());
            Ok(rec.key_id)
        })?;
        self.audit(
            "CreateKey",
            Audit {
                key_arn: Some(self.arn(&id)),
                ..Audit::default()
            },
            &Ok(()),
        );
        Ok(id)
    }

    pub fn list_keys(&self) -> Vec<KeyRecord> {
        self.data.lock().keys.clone()
    }

    pub fn list_aliases(&self) -> BTreeMap<String, String> {
        self.data.lock().aliases.clone()
    }

    pub fn describe(&self, key: &str) -> Result<KeyRecord, KmsError> {
        let id = self.key_id_of(key)?;
        let d = self.data.lock();
        d.keys
            .iter()
            .find(|r| r.key_id == id)
            .cloned()
            .ok_or_else(|| KmsError::NotFound(key.to_owned()))
    }

    /// A management operation on one key, under the lock, audited.
    fn manage<T>(
        &self,
        op: &str,
        key: &str,
        f: impl FnOnce(&mut KeyRecord, u64) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        self.audited(op, Some(key), |_| {
            let now = self.now();
            self.update(|d| {
                let id = self.mgmt_id(d, key)?;
                let rec = Self::rec(d, &id)?;
                f(rec, now)
            })
        })
    }

    fn unsupported_for_managed(&self, rec: &KeyRecord, what: &str) -> Result<(), KmsError> {
        if rec.is_managed() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is a managed key: {what} is not allowed",
                self.arn(&rec.key_id)
            )));
        }
        Ok(())
    }

    pub fn enable_key(&self, key: &str) -> Result<(), KmsError> {
        self.manage("EnableKey", key, |r, now| {
            match r.key_state.as_str() {
                ENABLED | DISABLED => {}
                _ => return Err(self.state_err(r)),
            }
            let was_disabled = r.key_state == DISABLED;
            r.key_state = ENABLED.into();
            // A key re-enabled after missing its rotation rotates now.
            if was_disabled && r.rotation_enabled && r.next_rotation_date.is_some_and(|t| t <= now)
            {
                let m = new_material("AUTOMATIC", now);
                r.current_material = m.id.clone();
                r.materials.push(m);
                r.next_rotation_date = Some(now + r.rotation_period_days as u64 * DAY);
            }
            Ok(())
        })
    }

    pub fn disable_key(&self, key: &str) -> Result<(), KmsError> {
        self.manage("DisableKey", key, |r, _| {
            self.unsupported_for_managed(r, "disabling it")?;
            match r.key_state.as_str() {
                ENABLED | DISABLED => {
                    r.key_state = DISABLED.into();
                    Ok(())
                }
                _ => Err(self.state_err(r)),
            }
        })
    }

    /// Returns (deletion date, window).
    pub fn schedule_key_deletion(
        &self,
        key: &str,
        days: Option<u32>,
    ) -> Result<(u64, u32), KmsError> {
        let days = days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(KmsError::Validation(format!(
                "PendingWindowInDays must be between 7 and 30, not {days}"
            )));
        }
        self.manage("ScheduleKeyDeletion", key, |r, now| {
            self.unsupported_for_managed(r, "scheduling its deletion")?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            let when = now + days as u64 * DAY;
            r.key_state = PENDING_DELETION.into();
            r.deletion_date = Some(when);
            r.pending_window_in_days = Some(days);
            Ok((when, days))
        })
    }

    pub fn cancel_key_deletion(&self, key: &str) -> Result<(), KmsError> {
        self.manage("CancelKeyDeletion", key, |r, _| {
            if r.key_state != PENDING_DELETION {
                return Err(KmsError::InvalidState(format!(
                    "{} is not pending deletion.",
                    self.arn(&r.key_id)
                )));
            }
            r.key_state = DISABLED.into();
            r.deletion_date = None;
            r.pending_window_in_days = None;
            Ok(())
        })
    }

    fn rotation_state_check(&self, r: &KeyRecord) -> Result<(), KmsError> {
        match r.key_state.as_str() {
            ENABLED if r.origin == "EXTERNAL" => Err(KmsError::UnsupportedOperation(format!(
                "{} has imported key material: automatic rotation is not supported",
                self.arn(&r.key_id)
            ))),
            ENABLED => Ok(()),
            DISABLED => Err(self.state_err(r)),
            PENDING_IMPORT => Err(KmsError::UnsupportedOperation(format!(
                "{} has imported key material: automatic rotation is not supported",
                self.arn(&r.key_id)
            ))),
            _ => Err(self.state_err(r)),
        }
    }

    pub fn enable_key_rotation(&self, key: &str, period_days: Option<u32>) -> Result<(), KmsError> {
        let days = period_days.unwrap_or(365);
        if !(90..=2560).contains(&days) {
            return Err(KmsError::Validation(format!(
                "RotationPeriodInDays must be between 90 and 2560, not {days}"
            )));
        }
        self.manage("EnableKeyRotation", key, |r, now| {
            self.rotation_state_check(r)?;
            if r.is_managed() && days != 365 {
                return Err(KmsError::UnsupportedOperation(
                    "a managed key rotates every 365 days".into(),
                ));
            }
            r.rotation_enabled = true;
            r.rotation_period_days = days;
            r.next_rotation_date = Some(now + days as u64 * DAY);
            Ok(())
        })
    }

    pub fn disable_key_rotation(&self, key: &str) -> Result<(), KmsError> {
        self.manage("DisableKeyRotation", key, |r, _| {
            self.unsupported_for_managed(r, "turning off its rotation")?;
            self.rotation_state_check(r)?;
            r.rotation_enabled = false;
            r.next_rotation_date = None;
            Ok(())
        })
    }

    /// (enabled, period, next rotation date).
    pub fn get_key_rotation_status(&self, key: &str) -> Result<(bool, u32, Option<u64>), KmsError> {
        let r = self.describe(key)?;
        let enabled = r.rotation_enabled && r.key_state != PENDING_DELETION;
        Ok((
            enabled,
            r.rotation_period_days,
            if enabled { r.next_rotation_date } else { None },
        ))
    }

    /// Returns the new key material ID.
    pub fn rotate_key_on_demand(&self, key: &str) -> Result<String, KmsError> {
        self.manage("RotateKeyOnDemand", key, |r, now| {
            self.usable(r)?;
            if r.origin == "EXTERNAL" {
                return Err(KmsError::UnsupportedOperation(format!(
                    "{} has imported key material: import new material to rotate it",
                    self.arn(&r.key_id)
                )));
            }
            if r.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
                return Err(KmsError::LimitExceeded(format!(
                    "{} has had its {MAX_ON_DEMAND_ROTATIONS} on-demand rotations",
                    self.arn(&r.key_id)
                )));
            }
            let m = new_material("ON_DEMAND", now);
            let id = m.id.clone();
            r.current_material = id.clone();
            r.materials.push(m);
            r.on_demand_rotations += 1;
            Ok(id)
        })
    }

    // ---- aliases ----

    pub fn validate_alias(name: &str, user: bool) -> Result<(), KmsError> {
        let body = name.strip_prefix("alias/").ok_or_else(|| {
            KmsError::Validation(format!("alias {name:?} must begin with alias/"))
        })?;
        if body.is_empty()
            || name.len() > 256
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'))
        {
            return Err(KmsError::Validation(format!(
                "alias {name:?} must match ^alias/[a-zA-Z0-9:/_-]+$"
            )));
        }
        if user && (name.starts_with("alias/envelopefs/") || name.starts_with("alias/aws/")) {
            return Err(KmsError::Validation(format!(
                "alias {name:?} uses a reserved prefix"
            )));
        }
        Ok(())
    }

    pub fn create_alias(&self, alias: &str, target: &str) -> Result<(), KmsError> {
        self.audited("CreateAlias", Some(target), |_| {
            Self::validate_alias(alias, true)?;
            self.update(|d| {
                let id = self.mgmt_id(d, target)?;
                if d.aliases.contains_key(alias) {
                    return Err(KmsError::AlreadyExists(format!(
                        "An alias with the name {alias} already exists"
                    )));
                }
                let r = Self::rec(d, &id)?;
                if r.key_state == PENDING_DELETION {
                    return Err(self.state_err(r));
                }
                d.aliases.insert(alias.to_owned(), id);
                Ok(())
            })
        })
    }

    pub fn update_alias(&self, alias: &str, target: &str) -> Result<(), KmsError> {
        self.audited("UpdateAlias", Some(target), |_| {
            Self::validate_alias(alias, true)?;
            self.update(|d| {
                if !d.aliases.contains_key(alias) {
                    return Err(KmsError::NotFound(format!("Alias {alias} is not found.")));
                }
                let id = self.mgmt_id(d, target)?;
                let r = Self::rec(d, &id)?;
                if r.key_state == PENDING_DELETION {
                    return Err(self.state_err(r));
                }
                d.aliases.insert(alias.to_owned(), id);
                Ok(())
            })
        })
    }

    pub fn delete_alias(&self, alias: &str) -> Result<(), KmsError> {
        self.audited("DeleteAlias", Some(alias), |_| {
            Self::validate_alias(alias, true)?;
            self.update(|d| {
                d.aliases
                    .remove(alias)
                    .map(|_| ())
                    .ok_or_else(|| KmsError::NotFound(format!("Alias {alias} is not found.")))
            })
        })
    }

    // ---- imported key material ----

    /// (import token, public key, valid to).
    pub fn get_parameters_for_import(&self, key: &str) -> Result<(String, Vec<u8>, u64), KmsError> {
        use hpke::{Kem as _, Serializable};
        self.manage("GetParametersForImport", key, |r, now| {
            self.require_external(r)?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            let (sk, pk) = hpke::kem::X25519HkdfSha256::gen_keypair();
            let token = B64.encode(crate::crypto::random_array::<32>());
            let valid_to = now + DAY;
            r.import = Some(ImportParams {
                token: token.clone(),
                private_key: Zeroizing::new(B64.encode(sk.to_bytes())),
                valid_to,
            });
            Ok((token, pk.to_bytes().to_vec(), valid_to))
        })
    }

    /// Returns the key material ID.
    pub fn import_key_material(
        &self,
        key: &str,
        import_token: &str,
        encrypted_material: &[u8],
        valid_to: Option<u64>,
    ) -> Result<String, KmsError> {
        use hpke::{Deserializable, OpModeR};
        self.manage("ImportKeyMaterial", key, |r, now| {
            self.require_external(r)?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            if let Some(t) = valid_to {
                if t <= now || t > now + 365 * DAY {
                    return Err(KmsError::Validation(
                        "ValidTo must be in the next 365 days".into(),
                    ));
                }
            }
            let p = r
                .import
                .as_ref()
                .filter(|p| p.token == import_token)
                .ok_or_else(|| {
                    KmsError::InvalidImportToken(
                        "the import token is not valid for this key".into(),
                    )
                })?;
            if p.valid_to <= now {
                return Err(KmsError::ExpiredImportToken(
                    "the import token has expired".into(),
                ));
            }
            let skb = Zeroizing::new(
                B64.decode(p.private_key.as_bytes())
                    .map_err(|_| KmsError::InvalidCiphertext)?,
            );
            let sk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(&skb)
                .map_err(|_| KmsError::InvalidCiphertext)?;
            if encrypted_material.len() < 32 {
                return Err(KmsError::InvalidCiphertext);
            }
            let (enc, ct) = encrypted_material.split_at(32);
            let enc = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
                .map_err(|_| KmsError::InvalidCiphertext)?;
            let material = Zeroizing::new(
                hpke::single_shot_open::<
                    hpke::aead::AesGcm256,
                    hpke::kdf::HkdfSha256,
                    hpke::kem::X25519HkdfSha256,
                >(
                    &OpModeR::Base,
                    &sk,
                    &enc,
                    IMPORT_INFO,
                    ct,
                    r.key_id.as_bytes(),
                )
                .map_err(|_| KmsError::InvalidCiphertext)?,
            );
            if material.len() != 32 {
                return Err(KmsError::Validation("key material must be 32 bytes".into()));
            }
            let encm = Zeroizing::new(B64.encode(&material[..]));
            let dg = digest(&encm);
            let id = match r.materials.first() {
                Some(m) if m.digest != dg => {
                    return Err(KmsError::IncorrectKeyMaterial(
                        "the key material differs from the material imported before".into(),
                    ))
                }
                Some(_) => {
                    let m = &mut r.materials[0];
                    m.material = Some(encm);
                    m.valid_to = valid_to;
                    m.id.clone()
                }
                None => {
                    let m = KeyMaterial {
                        id: uuid::Uuid::new_v4().to_string(),
                        created: now,
                        material: Some(encm),
                        digest: dg,
                        rotation_type: "IMPORT".into(),
                        valid_to,
                    };
                    let id = m.id.clone();
                    r.materials.push(m);
                    id
                }
            };
            r.current_material = id.clone();
            r.import = None;
            if r.key_state == PENDING_IMPORT {
                r.key_state = ENABLED.into();
            }
            Ok(id)
        })
    }

    pub fn delete_imported_key_material(&self, key: &str) -> Result<(), KmsError> {
        self.manage("DeleteImportedKeyMaterial", key, |r, _| {
            self.require_external(r)?;
            for m in r.materials.iter_mut() {
                m.material = None;
            }
            if r.key_state != PENDING_DELETION {
                r.key_state = PENDING_IMPORT.into();
            }
            Ok(())
        })
    }

    // ---- cryptographic operations ----

    fn wrapping_cipher(material: &str, salt: &[u8]) -> Result<Cipher, KmsError> {
        let m = Zeroizing::new(
            B64.decode(material)
                .map_err(|_| KmsError::Validation("key material is not base64".into()))?,
        );
        let m: &[u8; 32] = m[..]
            .try_into()
            .map_err(|_| KmsError::Validation("key material has a bad length".into()))?;
        let k = derive(m, salt, &[b"envelopefs kms wrap v1"]);
        Ok(Cipher::new(k.expose()))
    }

    /// Encrypt under the key's current material; (blob, key ARN, material ID).
    fn encrypt_inner(
        &self,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        if plaintext.is_empty() || plaintext.len() > 4096 {
            return Err(KmsError::Validation(
                "Plaintext must be 1 to 4096 bytes".into(),
            ));
        }
        let id = self.key_id_of(key)?;
        let d = self.data.lock();
        let rec = d
            .keys
            .iter()
            .find(|r| r.key_id == id)
            .ok_or_else(|| KmsError::NotFound(key.to_owned()))?;
        self.usable(rec)?;
        let mat = rec
            .current()
            .and_then(|m| m.material.as_ref().map(|x| (m, x)))
            .ok_or_else(|| self.state_err(rec))?;
        let salt: [u8; 16] = crate::crypto::random_array();
        let mut blob = Vec::new();
        blob.extend_from_slice(BLOB_MAGIC);
        blob.extend_from_slice(&uuid_bytes(&rec.key_id)?);
        blob.extend_from_slice(&uuid_bytes(&mat.0.id)?);
        blob.extend_from_slice(&salt);
        let mut aad = blob.clone();
        aad.extend_from_slice(&context.canonical_bytes());
        let sealed = Self::wrapping_cipher(mat.1, &salt)?.seal_to_vec(&aad, plaintext);
        blob.extend_from_slice(&sealed);
        Ok((blob, self.arn(&rec.key_id), mat.0.id.clone()))
    }

    fn decrypt_inner(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key: Option<&str>,
    ) -> Result<DecryptedKey, KmsError> {
        if blob.len() < BLOB_PREFIX || &blob[..4] != BLOB_MAGIC {
            return Err(KmsError::InvalidCiphertext);
        }
        let key_id = uuid::Uuid::from_slice(&blob[4..20])
            .map_err(|_| KmsError::InvalidCiphertext)?
            .to_string();
        let mat_id = uuid::Uuid::from_slice(&blob[20..36])
            .map_err(|_| KmsError::InvalidCiphertext)?
            .to_string();
        if let Some(k) = key {
            if self.key_id_of(k)? != key_id {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify a KMS key that can perform this operation.".into(),
                ));
            }
        }
        let d = self.data.lock();
        let Some(rec) = d.keys.iter().find(|r| r.key_id == key_id) else {
            // As KMS: a deleted key's ciphertext is simply undecryptable.
            return Err(KmsError::AccessDenied(format!(
                "the key {} that encrypted this ciphertext does not exist (deleted?)",
                self.arn(&key_id)
            )));
        };
        self.usable(rec)?;
        let mat = rec
            .materials
            .iter()
            .find(|m| m.id == mat_id)
            .ok_or(KmsError::InvalidCiphertext)?;
        let material = mat.material.as_ref().ok_or_else(|| self.state_err(rec))?;
        let mut aad = blob[..BLOB_PREFIX].to_vec();
        aad.extend_from_slice(&context.canonical_bytes());
        let plaintext = Self::wrapping_cipher(material, &blob[36..52])?
            .open_from_slice(&aad, &blob[BLOB_PREFIX..])
            .map_err(|_| KmsError::InvalidCiphertext)?;
        Ok(DecryptedKey {
            plaintext,
            key_arn: self.arn(&rec.key_id),
            key_material_id: mat.id.clone(),
        })
    }

    pub fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        self.audited("Encrypt", Some(key), |a| {
            a.context = Some(context.clone());
            let r = self.encrypt_inner(key, plaintext, context)?;
            a.material = Some(r.2.clone());
            Ok(r)
        })
    }

    /// ReEncrypt: decrypt under the source context, encrypt under the
    /// destination key's current material. Returns (blob, source ARN, dest ARN, dest material).
    pub fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        destination_key: &str,
        destination_context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String, String), KmsError> {
        self.audited("ReEncrypt", Some(destination_key), |a| {
            a.context = Some(destination_context.clone());
            let d = self.decrypt_inner(blob, source_context, None)?;
            let (nb, arn, mat) =
                self.encrypt_inner(destination_key, &d.plaintext, destination_context)?;
            a.material = Some(mat.clone());
            Ok((nb, d.key_arn, arn, mat))
        })
    }

    // ---- the store as a whole ----

    /// Write the store, re-sealed under a backup passphrase, to `file`.
    pub fn export_backup(&self, file: &Path, backup_pass: &str) -> Result<(), KmsError> {
        let kdf = KdfCost::of(&self.kdf).params();
        let key = store::derive_store_key(backup_pass, &kdf).map_err(KmsError::Passphrase)?;
        let plain = Zeroizing::new(
            serde_json::to_vec(&*self.data.lock())
                .map_err(|e| KmsError::Validation(e.to_string()))?,
        );
        let out = store::seal_store(&self.store_id, &kdf, &key, &plain)?;
        store::write_atomic(file, &out)?;
        self.audit("ExportBackup", Audit::default(), &Ok(()));
        Ok(())
    }

    /// Create a store at `dir` (which must hold none) from a backup file.
    pub fn import_backup(
        dir: &Path,
        file: &Path,
        backup_pass: &str,
        new_pass: &str,
        cost: KdfCost,
    ) -> Result<LocalKeyService, KmsError> {
        let raw = store::read_store(file)?;
        let (f, _, plain) = store::unlock(&raw, backup_pass, &file.display().to_string())?;
        let data = parse_store_data(&plain, &file.display().to_string())?;
        let svc = Self::create_with(dir, new_pass, cost, f.store_id, data)?;
        svc.audit("ImportBackup", Audit::default(), &Ok(()));
        Ok(svc)
    }

    /// Re-seal the store under a new passphrase; no key changes.
    pub fn change_passphrase(&mut self, new_pass: &str) -> Result<(), KmsError> {
        let _l = store::lock(&self.dir)?;
        let data = self.reload()?;
        let kdf = KdfCost::of(&self.kdf).params();
        let key = store::derive_store_key(new_pass, &kdf).map_err(KmsError::Passphrase)?;
        self.kdf = kdf;
        self.key = key;
        self.write(&data)?;
        *self.data.lock() = data;
        self.audit("ChangePassphrase", Audit::default(), &Ok(()));
        Ok(())
    }
}

/// Seal 32 bytes of key material for `import-key-material` with the public
/// key from `get-parameters-for-import` (HPKE base mode, RFC 9180).
pub fn wrap_key_material(
    public_key: &[u8],
    key_id: &str,
    material: &[u8],
) -> Result<Vec<u8>, KmsError> {
    use hpke::{Deserializable, OpModeS, Serializable};
    let pk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(public_key)
        .map_err(|_| KmsError::Validation("the public key is not an X25519 key".into()))?;
    let (enc, ct) = hpke::single_shot_seal::<
        hpke::aead::AesGcm256,
        hpke::kdf::HkdfSha256,
        hpke::kem::X25519HkdfSha256,
    >(
        &OpModeS::Base,
        &pk,
        IMPORT_INFO,
        material,
        key_id.as_bytes(),
    )
    .map_err(|_| KmsError::Validation("HPKE seal failed".into()))?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
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

impl KeyService for LocalKeyService {
    fn resolve(&self, key: &str) -> Result<String, KmsError> {
        Ok(self.arn(&self.key_id_of(key)?))
    }

    fn generate_data_key(
        &self,
        key: &str,
        bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        self.audited("GenerateDataKey", Some(key), |a| {
            a.context = Some(context.clone());
            if bytes == 0 || bytes > 1024 {
                return Err(KmsError::Validation("NumberOfBytes must be 1..1024".into()));
            }
            let mut pt = Zeroizing::new(vec![0u8; bytes]);
            crate::crypto::random_bytes(&mut pt);
            let (blob, arn, mat) = self.encrypt_inner(key, &pt, context)?;
            a.material = Some(mat.clone());
            Ok(GeneratedDataKey {
                plaintext: pt,
                ciphertext_blob: blob,
                key_arn: arn,
                key_material_id: mat,
            })
        })
    }

    fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key: Option<&str>,
    ) -> Result<DecryptedKey, KmsError> {
        let mut a = Audit {
            context: Some(context.clone()),
            ..Audit::default()
        };
        if blob.len() >= 20 {
            if let Ok(u) = uuid::Uuid::from_slice(&blob[4..20]) {
                a.key_arn = Some(self.arn(&u.to_string()));
            }
        }
        let r = self.decrypt_inner(blob, context, key);
        if let Ok(d) = &r {
            a.material = Some(d.key_material_id.clone());
        }
        self.audit("Decrypt", a, &r.as_ref().map(|_| ()));
        r
    }

    fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        destination_key: &str,
        destination_context: &EncryptionContext,
    ) -> Result<super::ReEncrypted, KmsError> {
        let (b, src, dst, mat) = LocalKeyService::re_encrypt(
            self,
            blob,
            source_context,
            destination_key,
            destination_context,
        )?;
        Ok(super::ReEncrypted {
            ciphertext_blob: b,
            source_key_arn: src,
            key_arn: dst,
            key_material_id: mat,
        })
    }

    fn provider(&self) -> &'static str {
        "local"
    }
}

#[cfg(test)]
pub(crate) fn test_store(dir: &Path) -> LocalKeyService {
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

mod fuzzing;
