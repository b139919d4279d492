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

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KmsError + '_ {
    move |source| KmsError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn derive_store_key(pass: &str, kdf: &KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
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
    if f.kdf.m_cost_kib > 4 * 1024 * 1024 || f.kdf.t_cost > 100 || f.kdf.p_cost > 64 {
        return Err("KDF parameters out of range".into());
    }
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
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let p = dir.join(LOCK_FILE);
    let f = crate::sys::open_parent(&p)
        .and_then(|(d, name)| {
            crate::sys::open_or_create_regular(d.as_fd(), &name, libc::O_RDWR, 0o600)
        })
        .map(|(fd, _)| File::from(fd))
        .map_err(io_err(&p))?;
    // SAFETY: flock on a valid fd.
    let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    if r != 0 {
        return Err(io_err(&p)(std::io::Error::last_os_error()));
    }
    Ok(StoreLock(f))
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

/// A key store (or its backup) is at most this long: thousands of keys with
/// their material fit; a planted endless file does not.
pub const MAX_STORE_LEN: usize = 16 << 20;

/// The bytes of a store file, never through a planted symlink or special file.
pub fn read_store(path: &Path) -> Result<Vec<u8>, KmsError> {
    crate::sys::read_regular_path(path, MAX_STORE_LEN).map_err(io_err(path))
}

/// An unlocked store file: its outer fields, the store key, the content.
pub type Unlocked = (StoreFile, Zeroizing<[u8; 32]>, Zeroizing<Vec<u8>>);

/// Read and unlock store bytes with a passphrase.
pub fn unlock(raw: &[u8], pass: &str, what: &str) -> Result<Unlocked, KmsError> {
    let corrupt = |why: String| KmsError::StoreCorrupt {
        path: what.to_owned(),
        why,
    };
    let f = parse_store_file(raw).map_err(corrupt)?;
    let key = derive_store_key(pass, &f.kdf).map_err(corrupt)?;
    let plain = unseal_store(&f, &key).map_err(|e| match e {
        None => KmsError::WrongPassphrase(what.to_owned()),
        Some(why) => corrupt(why),
    })?;
    Ok((f, key, plain))
}
