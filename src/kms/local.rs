//! The embedded local key service: master keys in one file, encrypted and
//! authenticated under a key derived from a passphrase with Argon2id.
//!
//! Store file `keystore.json`: `{format, version, store_id, kdf{...}, sealed}`
//! where `sealed` is base64 of `nonce || AES-256-GCM(store JSON) || tag` with
//! the file's own header fields as associated data. Writes are atomic
//! (temporary file, fsync, rename, fsync of the directory) under a lock file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::passphrase::PassphraseSource;
use super::{DecryptedKey, EncryptionContext, GeneratedDataKey, KeyService, KmsError};
use crate::crypto::aead::Cipher;
use crate::crypto::keys::derive;

pub const STORE_FILE: &str = "keystore.json";
const LOCK_FILE: &str = "keystore.lock";
pub const DEFAULT_ALIAS: &str = "alias/envelopefs/default";
const BLOB_MAGIC: &[u8; 4] = b"EFK1";
const BLOB_PREFIX: usize = 4 + 16 + 16 + 16; // magic, key id, material id, salt

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct KdfParams {
    pub algorithm: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    format: String,
    version: u32,
    store_id: String,
    kdf: KdfParams,
    sealed: String,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct KeyMaterial {
    pub id: String,
    pub created: u64,
    material: Zeroizing<String>,
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
}

#[derive(Serialize, Deserialize, Default, Clone)]
pub struct StoreData {
    pub keys: Vec<KeyRecord>,
    pub aliases: BTreeMap<String, String>,
}

/// An unlocked local key store.
pub struct LocalKeyService {
    dir: PathBuf,
    store_id: String,
    kdf: KdfParams,
    key: Zeroizing<[u8; 32]>,
    data: parking_lot::Mutex<StoreData>,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Default store location: `$ENVELOPEFS_KEYSTORE`, else `$XDG_DATA_HOME/envelopefs`,
/// else `~/.local/share/envelopefs`.
pub fn default_store_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("envelopefs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".local/share/envelopefs")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KmsError + '_ {
    move |source| KmsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn derive_store_key(pass: &str, kdf: &KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
    if kdf.algorithm != "argon2id" {
        return Err(format!("unknown KDF {}", kdf.algorithm));
    }
    let salt = B64.decode(&kdf.salt).map_err(|e| e.to_string())?;
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| e.to_string())?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass.as_bytes(), &salt, &mut out[..])
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Parse the outer store file (untrusted bytes) and check its parameters.
pub fn parse_store_file(raw: &[u8]) -> Result<StoreFile, String> {
    let f: StoreFile = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    if f.format != "envelopefs-keystore" || f.version != 1 {
        return Err("unknown format or version".into());
    }
    if f.kdf.m_cost_kib > 4 * 1024 * 1024 || f.kdf.t_cost > 100 || f.kdf.p_cost > 64 {
        return Err("KDF parameters out of range".into());
    }
    Ok(f)
}

/// Decrypt and parse the sealed content; `Err(None)` means authentication failed.
pub fn unseal_store(f: &StoreFile, key: &[u8; 32]) -> Result<StoreData, Option<String>> {
    let sealed = B64.decode(&f.sealed).map_err(|e| Some(e.to_string()))?;
    let plain = Cipher::new(key)
        .open_from_slice(&header_aad(f), &sealed)
        .map_err(|_| None)?;
    serde_json::from_slice(&plain).map_err(|e| Some(format!("content: {e}")))
}

fn header_aad(f: &StoreFile) -> Vec<u8> {
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        f.format,
        f.version,
        f.store_id,
        f.kdf.algorithm,
        f.kdf.m_cost_kib,
        f.kdf.t_cost,
        f.kdf.p_cost,
        f.kdf.salt
    )
    .into_bytes()
}

/// Argon2id cost of a new store; tests may lower it through the library only.
#[derive(Clone, Copy, Debug)]
pub struct KdfCost {
    pub m_cost_kib: u32,
    pub t_cost: u32,
}

impl Default for KdfCost {
    fn default() -> Self {
        KdfCost {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
        }
    }
}

pub struct StoreLock(#[allow(dead_code)] File);

impl LocalKeyService {
    pub fn store_path(dir: &Path) -> PathBuf {
        dir.join(STORE_FILE)
    }

    pub fn exists(dir: &Path) -> bool {
        Self::store_path(dir).exists()
    }

    fn lock(dir: &Path) -> Result<StoreLock, KmsError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let p = dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(io_err(&p))?;
        // SAFETY: flock on a valid fd; blocking is what we want for a store update.
        let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
        if r != 0 {
            return Err(io_err(&p)(std::io::Error::last_os_error()));
        }
        Ok(StoreLock(f))
    }

    /// Create a new, empty store. Fails if one exists.
    pub fn create(dir: &Path, pass: &str, cost: KdfCost) -> Result<Self, KmsError> {
        let _l = Self::lock(dir)?;
        if Self::exists(dir) {
            return Err(KmsError::AlreadyExists(format!(
                "a key store already exists at {}",
                dir.display()
            )));
        }
        let salt: [u8; 16] = crate::crypto::random_array();
        let kdf = KdfParams {
            algorithm: "argon2id".into(),
            m_cost_kib: cost.m_cost_kib,
            t_cost: cost.t_cost,
            p_cost: 1,
            salt: B64.encode(salt),
        };
        let key = derive_store_key(pass, &kdf).map_err(KmsError::Passphrase)?;
        let svc = LocalKeyService {
            dir: dir.to_owned(),
            store_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            kdf,
            key,
            data: parking_lot::Mutex::new(StoreData::default()),
        };
        svc.write(&svc.data.lock())?;
        Ok(svc)
    }

    /// Open (unlock) an existing store.
    pub fn open(dir: &Path, pass: &str) -> Result<Self, KmsError> {
        let p = Self::store_path(dir);
        if !p.exists() {
            return Err(KmsError::NoStore(dir.display().to_string()));
        }
        let raw = std::fs::read(&p).map_err(io_err(&p))?;
        let corrupt = |why: String| KmsError::StoreCorrupt {
            path: p.display().to_string(),
            why,
        };
        let f: StoreFile = serde_json::from_slice(&raw).map_err(|e| corrupt(e.to_string()))?;
        if f.format != "envelopefs-keystore" || f.version != 1 {
            return Err(corrupt("unknown format or version".into()));
        }
        if f.kdf.m_cost_kib > 4 * 1024 * 1024 || f.kdf.t_cost > 100 || f.kdf.p_cost > 64 {
            return Err(corrupt("KDF parameters out of range".into()));
        }
        let key = derive_store_key(pass, &f.kdf).map_err(corrupt)?;
        let sealed = B64.decode(&f.sealed).map_err(|e| corrupt(e.to_string()))?;
        let plain = Cipher::new(&key)
            .open_from_slice(&header_aad(&f), &sealed)
            .map_err(|_| KmsError::WrongPassphrase(dir.display().to_string()))?;
        let data: StoreData =
            serde_json::from_slice(&plain).map_err(|e| corrupt(format!("content: {e}")))?;
        Ok(LocalKeyService {
            dir: dir.to_owned(),
            store_id: f.store_id,
            kdf: f.kdf,
            key,
            data: parking_lot::Mutex::new(data),
        })
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, data: &StoreData) -> Result<(), KmsError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(data)
                .map_err(|e| KmsError::Validation(format!("cannot serialize store: {e}")))?,
        );
        let mut f = StoreFile {
            format: "envelopefs-keystore".into(),
            version: 1,
            store_id: self.store_id.clone(),
            kdf: self.kdf.clone(),
            sealed: String::new(),
        };
        f.sealed = B64.encode(Cipher::new(&self.key).seal_to_vec(&header_aad(&f), &plain));
        let out = serde_json::to_vec_pretty(&f)
            .map_err(|e| KmsError::Validation(format!("cannot serialize store: {e}")))?;
        let path = Self::store_path(&self.dir);
        let tmp = self
            .dir
            .join(format!(".{STORE_FILE}.tmp.{}", std::process::id()));
        {
            let mut t = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err(&tmp))?;
            t.write_all(&out).map_err(io_err(&tmp))?;
            t.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        let d = File::open(&self.dir).map_err(io_err(&self.dir))?;
        crate::sys::fsync(d.as_fd(), false).map_err(io_err(&self.dir))?;
        Ok(())
    }

    /// Apply a change under the store lock, on the newest copy of the store.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut StoreData) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let _l = Self::lock(&self.dir)?;
        let pass_key = self.key.clone();
        // Re-read: another process may have changed the store since we opened it.
        let fresh = Self::reload(&self.dir, &pass_key)?;
        let mut data = self.data.lock();
        *data = fresh;
        let r = f(&mut data)?;
        self.write(&data)?;
        Ok(r)
    }

    fn reload(dir: &Path, key: &Zeroizing<[u8; 32]>) -> Result<StoreData, KmsError> {
        let p = Self::store_path(dir);
        let raw = std::fs::read(&p).map_err(io_err(&p))?;
        let corrupt = |why: String| KmsError::StoreCorrupt {
            path: p.display().to_string(),
            why,
        };
        let f = parse_store_file(&raw).map_err(corrupt)?;
        unseal_store(&f, key)
            .map_err(|e| corrupt(e.unwrap_or_else(|| "authentication failed".into())))
    }

    pub fn arn(&self, key_id: &str) -> String {
        format!("arn:envelopefs:kms:local:{}:key/{}", self.store_id, key_id)
    }

    fn alias_arn_prefix(&self) -> String {
        format!("arn:envelopefs:kms:local:{}:", self.store_id)
    }

    /// Create a symmetric key; returns its record.
    pub fn create_key(&self, description: &str, managed: bool) -> Result<KeyRecord, KmsError> {
        self.update(|d| Ok(Self::new_key(d, description, managed)))
    }

    fn new_key(d: &mut StoreData, description: &str, managed: bool) -> KeyRecord {
        let mut m = Zeroizing::new([0u8; 32]);
        crate::crypto::random_bytes(&mut m[..]);
        let mat = KeyMaterial {
            id: uuid::Uuid::new_v4().to_string(),
            created: now_secs(),
            material: Zeroizing::new(B64.encode(&m[..])),
        };
        let rec = KeyRecord {
            key_id: uuid::Uuid::new_v4().to_string(),
            description: description.to_owned(),
            creation_date: now_secs(),
            key_state: "Enabled".into(),
            key_manager: if managed { "AWS" } else { "CUSTOMER" }.into(),
            origin: "AWS_KMS".into(),
            current_material: mat.id.clone(),
            materials: vec![mat],
        };
        d.keys.push(rec.clone());
        rec
    }

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
        Self::validate_alias(alias, true)?;
        let key_id = self.key_id_of(target)?;
        self.update(|d| {
            if d.aliases.contains_key(alias) {
                return Err(KmsError::AlreadyExists(format!("alias {alias} exists")));
            }
            d.aliases.insert(alias.to_owned(), key_id);
            Ok(())
        })
    }

    pub fn list_keys(&self) -> Vec<KeyRecord> {
        self.data.lock().keys.clone()
    }

    pub fn list_aliases(&self) -> BTreeMap<String, String> {
        self.data.lock().aliases.clone()
    }

    /// Key ID of a key ID, key ARN, alias name or alias ARN.
    pub fn key_id_of(&self, key: &str) -> Result<String, KmsError> {
        let d = self.data.lock();
        let prefix = self.alias_arn_prefix();
        let k = key.strip_prefix(&prefix).unwrap_or(key);
        let id = if let Some(id) = k.strip_prefix("key/") {
            id.to_owned()
        } else if k.starts_with("alias/") {
            d.aliases
                .get(k)
                .cloned()
                .ok_or_else(|| KmsError::NotFound(format!("alias {k} is not found")))?
        } else if key.starts_with("arn:") {
            return Err(KmsError::NotFound(format!(
                "{key} is not a key of this store"
            )));
        } else {
            k.to_owned()
        };
        if d.keys.iter().any(|r| r.key_id == id) {
            Ok(id)
        } else {
            Err(KmsError::NotFound(format!("key {key} does not exist")))
        }
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

    /// The managed default key, created on first use.
    pub fn default_key(&self) -> Result<String, KmsError> {
        if let Ok(id) = self.key_id_of(DEFAULT_ALIAS) {
            return Ok(id);
        }
        self.update(|d| {
            if let Some(id) = d.aliases.get(DEFAULT_ALIAS) {
                return Ok(id.clone());
            }
            let rec = Self::new_key(d, "Default key that protects envelopefs volumes", true);
            d.aliases.insert(DEFAULT_ALIAS.into(), rec.key_id.clone());
            Ok(rec.key_id)
        })
    }

    fn usable(rec: &KeyRecord) -> Result<(), KmsError> {
        match rec.key_state.as_str() {
            "Enabled" => Ok(()),
            "Disabled" => Err(KmsError::Disabled(format!(
                "key {} is disabled",
                rec.key_id
            ))),
            s => Err(KmsError::InvalidState(format!("key {} is {s}", rec.key_id))),
        }
    }

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

    /// Encrypt under the key's current material; a fresh derived key per call.
    pub fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let id = self.key_id_of(key)?;
        let d = self.data.lock();
        let rec = d
            .keys
            .iter()
            .find(|r| r.key_id == id)
            .ok_or_else(|| KmsError::NotFound(key.to_owned()))?;
        Self::usable(rec)?;
        let mat = rec
            .materials
            .iter()
            .find(|m| m.id == rec.current_material)
            .ok_or_else(|| KmsError::InvalidState(format!("key {id} has no current material")))?;
        let salt: [u8; 16] = crate::crypto::random_array();
        let mut blob = Vec::new();
        blob.extend_from_slice(BLOB_MAGIC);
        blob.extend_from_slice(uuid_bytes(&rec.key_id)?.as_slice());
        blob.extend_from_slice(uuid_bytes(&mat.id)?.as_slice());
        blob.extend_from_slice(&salt);
        let mut aad = blob.clone();
        aad.extend_from_slice(&context.canonical_bytes());
        let sealed = Self::wrapping_cipher(&mat.material, &salt)?.seal_to_vec(&aad, plaintext);
        blob.extend_from_slice(&sealed);
        Ok((blob, self.arn(&rec.key_id), mat.id.clone()))
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
                return Err(KmsError::Validation(
                    "IncorrectKeyException: the ciphertext was not encrypted under that key".into(),
                ));
            }
        }
        let d = self.data.lock();
        let rec = d
            .keys
            .iter()
            .find(|r| r.key_id == key_id)
            .ok_or(KmsError::InvalidCiphertext)?;
        Self::usable(rec)?;
        let mat = rec
            .materials
            .iter()
            .find(|m| m.id == mat_id)
            .ok_or(KmsError::InvalidCiphertext)?;
        let mut aad = blob[..BLOB_PREFIX].to_vec();
        aad.extend_from_slice(&context.canonical_bytes());
        let plaintext = Self::wrapping_cipher(&mat.material, &blob[36..52])?
            .open_from_slice(&aad, &blob[BLOB_PREFIX..])
            .map_err(|_| KmsError::InvalidCiphertext)?;
        Ok(DecryptedKey {
            plaintext,
            key_arn: self.arn(&rec.key_id),
            key_material_id: mat.id.clone(),
        })
    }
}

fn uuid_bytes(s: &str) -> Result<[u8; 16], KmsError> {
    uuid::Uuid::parse_str(s)
        .map(|u| *u.as_bytes())
        .map_err(|_| KmsError::Validation(format!("{s} is not a UUID")))
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
        if bytes == 0 || bytes > 1024 {
            return Err(KmsError::Validation("NumberOfBytes must be 1..1024".into()));
        }
        let mut pt = Zeroizing::new(vec![0u8; bytes]);
        crate::crypto::random_bytes(&mut pt);
        let (blob, arn, mat) = self.encrypt(key, &pt, context)?;
        Ok(GeneratedDataKey {
            plaintext: pt,
            ciphertext_blob: blob,
            key_arn: arn,
            key_material_id: mat,
        })
    }

    fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key: Option<&str>,
    ) -> Result<DecryptedKey, KmsError> {
        self.decrypt_inner(blob, context, key)
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
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_context() {
        let t = tempfile::tempdir().unwrap();
        let s = test_store(t.path());
        let k = s.create_key("k", false).unwrap();
        let ctx = EncryptionContext::new().with("volume", "v1");
        let g = s.generate_data_key(&k.key_id, 32, &ctx).unwrap();
        let d = s.decrypt(&g.ciphertext_blob, &ctx, None).unwrap();
        assert_eq!(*d.plaintext, *g.plaintext);
        assert!(matches!(
            s.decrypt(&g.ciphertext_blob, &EncryptionContext::new(), None),
            Err(KmsError::InvalidCiphertext)
        ));
        let mut bad = g.ciphertext_blob.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            s.decrypt(&bad, &ctx, None),
            Err(KmsError::InvalidCiphertext)
        ));
        // Reopen with the passphrase; a wrong one is refused.
        let s2 = LocalKeyService::open(t.path(), "test passphrase").unwrap();
        assert_eq!(
            *s2.decrypt(&g.ciphertext_blob, &ctx, None)
                .unwrap()
                .plaintext,
            *g.plaintext
        );
        assert!(matches!(
            LocalKeyService::open(t.path(), "wrong"),
            Err(KmsError::WrongPassphrase(_))
        ));
    }

    #[test]
    fn aliases_and_default_key() {
        let t = tempfile::tempdir().unwrap();
        let s = test_store(t.path());
        let d1 = s.default_key().unwrap();
        assert_eq!(s.default_key().unwrap(), d1);
        assert_eq!(s.describe(DEFAULT_ALIAS).unwrap().key_manager, "AWS");
        let k = s.create_key("mine", false).unwrap();
        s.create_alias("alias/mine", &k.key_id).unwrap();
        assert_eq!(s.key_id_of("alias/mine").unwrap(), k.key_id);
        assert_eq!(s.key_id_of(&s.arn(&k.key_id)).unwrap(), k.key_id);
        assert!(s.create_alias("alias/envelopefs/x", &k.key_id).is_err());
        assert!(s.create_alias("alias/bad name", &k.key_id).is_err());
        assert!(s.create_alias("alias/mine", &k.key_id).is_err());
        assert!(matches!(
            s.key_id_of("alias/none"),
            Err(KmsError::NotFound(_))
        ));
    }

    #[test]
    fn corrupt_store_refused() {
        let t = tempfile::tempdir().unwrap();
        let _ = test_store(t.path());
        let p = LocalKeyService::store_path(t.path());
        let raw = std::fs::read(&p).unwrap();
        std::fs::write(&p, &raw[..raw.len() / 2]).unwrap();
        assert!(matches!(
            LocalKeyService::open(t.path(), "test passphrase"),
            Err(KmsError::StoreCorrupt { .. })
        ));
    }
}
