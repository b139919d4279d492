//! The key store file: encrypted and authenticated under a key derived from a
//! passphrase with Argon2id, written atomically (temporary file, fsync,
//! rename, fsync of the directory) under a lock file.
//!
//! `keystore.json`: `{format, version, store_id, kdf{...}, sealed}` where
//! `sealed` is base64 of `nonce || AES-256-GCM(store JSON) || tag` with the
//! file's other fields as associated data.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::KmsError;
use crate::crypto::aead::Cipher;
use crate::crypto::secmem::Slot;

pub const STORE_FILE: &str = "keystore.json";
const LOCK_FILE: &str = "keystore.lock";
const FORMAT: &str = "envelopefs-keystore";

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
    pub store_id: String,
    pub kdf: KdfParams,
    sealed: String,
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

impl KdfCost {
    pub fn params(&self) -> KdfParams {
        let salt: [u8; 16] = crate::crypto::random_array();
        KdfParams {
            algorithm: "argon2id".into(),
            m_cost_kib: self.m_cost_kib,
            t_cost: self.t_cost,
            p_cost: 1,
            salt: B64.encode(salt),
        }
    }

    pub fn of(p: &KdfParams) -> KdfCost {
        KdfCost {
            m_cost_kib: p.m_cost_kib,
            t_cost: p.t_cost,
        }
    }
}

/// The Argon2id costs a store may carry, as (m_cost KiB, t_cost, p_cost).
/// They are read before the store is authenticated, so anything else (a
/// tampered store asking for 4 GiB, or for next to nothing) is refused
/// before any memory is allocated. Add a row to offer another setting.
const ALLOWED_KDF: &[(u32, u32, u32)] = &[(64 * 1024, 3, 1)];

/// The floor every row above meets (OWASP's Argon2id minimum: 19 MiB, t=2).
const MIN_KDF_M_KIB: u32 = 19 * 1024;
const MIN_KDF_T: u32 = 2;

/// The cheap cost the unit tests create stores with; release builds refuse it.
#[cfg(test)]
const TEST_KDF: (u32, u32, u32) = (64, 1, 1);

/// Salt bytes of every store.
const SALT_LEN: usize = 16;

/// Whether a store may carry this KDF setting.
fn kdf_allowed(cost: (u32, u32, u32)) -> bool {
    #[cfg(test)]
    if cost == TEST_KDF {
        return true;
    }
    let (m, t, _) = cost;
    ALLOWED_KDF.contains(&cost) && m >= MIN_KDF_M_KIB && t >= MIN_KDF_T
}

/// Refuse a KDF setting that is not in the table (one line, no allocation).
fn check_kdf(kdf: &KdfParams) -> Result<(), String> {
    if kdf.algorithm != "argon2id" {
        return Err(format!("unknown KDF {:?}", kdf.algorithm));
    }
    let cost = (kdf.m_cost_kib, kdf.t_cost, kdf.p_cost);
    if !kdf_allowed(cost) {
        let allowed: Vec<String> = ALLOWED_KDF
            .iter()
            .map(|(m, t, p)| format!("m={m} KiB, t={t}, p={p}"))
            .collect();
        return Err(format!(
            "Argon2id cost m={} KiB, t={}, p={} is not an allowed setting (allowed: {})",
            cost.0,
            cost.1,
            cost.2,
            allowed.join("; ")
        ));
    }
    Ok(())
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KmsError + '_ {
    move |source| KmsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The store key, derived straight into the locked, undumped key arena.
pub fn derive_store_key(pass: &str, kdf: &KdfParams) -> Result<Slot, String> {
    check_kdf(kdf)?;
    let salt = B64.decode(&kdf.salt).map_err(|e| e.to_string())?;
    if salt.len() != SALT_LEN {
        return Err(format!("KDF salt of {} bytes, not {SALT_LEN}", salt.len()));
    }
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| e.to_string())?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Slot::new();
    a.hash_password_into(pass.as_bytes(), &salt, out.bytes_mut())
        .map_err(|e| e.to_string())?;
    Ok(out)
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

/// Parse the outer store file (untrusted bytes) and check its parameters.
pub fn parse_store_file(raw: &[u8]) -> Result<StoreFile, String> {
    let f: StoreFile = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    if f.format != FORMAT || f.version != 1 {
        return Err("unknown format or version".into());
    }
    check_kdf(&f.kdf)?;
    Ok(f)
}

/// Decrypt the sealed content; `Err(None)` means authentication failed.
pub fn unseal_store(f: &StoreFile, key: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, Option<String>> {
    let sealed = B64.decode(&f.sealed).map_err(|e| Some(e.to_string()))?;
    Cipher::new(key)
        .open_from_slice(&header_aad(f), &sealed)
        .map_err(|_| None)
}

/// Seal content into store-file bytes.
pub fn seal_store(
    store_id: &str,
    kdf: &KdfParams,
    key: &[u8; 32],
    plain: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let mut f = StoreFile {
        format: FORMAT.into(),
        version: 1,
        store_id: store_id.to_owned(),
        kdf: kdf.clone(),
        sealed: String::new(),
    };
    f.sealed = B64.encode(Cipher::new(key).seal_to_vec(&header_aad(&f), plain));
    serde_json::to_vec_pretty(&f)
        .map_err(|e| KmsError::Validation(format!("cannot serialize store: {e}")))
}

pub struct StoreLock(#[allow(dead_code)] File);

pub fn store_path(dir: &Path) -> PathBuf {
    dir.join(STORE_FILE)
}

/// Take the store's exclusive lock (blocking: updates are short).
pub fn lock(dir: &Path) -> Result<StoreLock, KmsError> {
    create_store_dir(dir)?;
    let p = dir.join(LOCK_FILE);
    let f = crate::sys::open_parent(&p)
        .and_then(|(d, name)| {
            crate::sys::open_or_create_regular(d.as_fd(), &name, libc::O_RDWR, 0o600)
        })
        .and_then(|(fd, st)| {
            // A lock someone else owns could be held by them forever.
            crate::sys::check_private(&st)?;
            Ok(File::from(fd))
        })
        .map_err(io_err(&p))?;
    crate::sys::flock_wait(f.as_fd()).map_err(io_err(&p))?;
    Ok(StoreLock(f))
}

/// Create the store directory 0700 (its parents with the usual mode). An
/// existing directory keeps its mode: it may be one its owner chose or
/// shares on purpose, and every file in it is 0600 and sealed anyway.
fn create_store_dir(dir: &Path) -> Result<(), KmsError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io_err(dir)(e)),
        _ => Ok(()),
    }
}

/// Atomically replace `path` with `bytes` (mode 0600), through the one
/// helper that never follows a planted symlink or name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KmsError> {
    crate::sys::open_parent(path)
        .and_then(|(dir, name)| {
            crate::sys::write_new_file(
                dir.as_fd(),
                &name,
                bytes,
                0o600,
                crate::sys::Placement::Replace,
            )
        })
        .map_err(io_err(path))
}

/// A key store (or its backup) is at most this long: far above any real
/// store; a planted endless file does not fit.
pub const MAX_STORE_LEN: usize = 64 << 20;

/// The bytes of a store or backup file: a regular file (a fifo must not block
/// the command, a device must not be read, a symlink is not followed), at
/// most [`MAX_STORE_LEN`] bytes.
pub fn read_store(path: &Path) -> Result<Vec<u8>, KmsError> {
    crate::sys::read_regular_path(path, MAX_STORE_LEN).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            KmsError::StoreCorrupt {
                path: path.display().to_string(),
                why: e.to_string(),
            }
        } else {
            io_err(path)(e)
        }
    })
}

/// An unlocked store file: its outer fields, the store key, the content.
pub type Unlocked = (StoreFile, Slot, Zeroizing<Vec<u8>>);

/// Read and unlock store bytes with a passphrase.
pub fn unlock(raw: &[u8], pass: &str, what: &str) -> Result<Unlocked, KmsError> {
    let corrupt = |why: String| KmsError::StoreCorrupt {
        path: what.to_owned(),
        why,
    };
    let f = parse_store_file(raw).map_err(corrupt)?;
    let key = derive_store_key(pass, &f.kdf).map_err(corrupt)?;
    let plain = unseal_store(&f, key.bytes()).map_err(|e| match e {
        None => KmsError::WrongPassphrase(what.to_owned()),
        Some(why) => corrupt(why),
    })?;
    Ok((f, key, plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cost_is_allowed_and_strong() {
        let d = KdfCost::default();
        assert!(kdf_allowed((d.m_cost_kib, d.t_cost, 1)));
        for &(m, t, p) in ALLOWED_KDF {
            assert!(
                m >= MIN_KDF_M_KIB && t >= MIN_KDF_T && p >= 1,
                "{m} {t} {p}"
            );
        }
        assert!(!kdf_allowed((4 << 20, 3, 1)));
        assert!(!kdf_allowed((8, 3, 1)));
        assert!(!kdf_allowed((64 * 1024, 3, 2)));
    }
}
