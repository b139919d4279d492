//! The manifest of a remote snapshot: the backing tree's entries and chunk
//! lists as JSON, sealed in an envelope whose data key the key service wraps
//! under an encryption context naming the repository and the snapshot:
//!
//! `EFSM | u8 version (1) | u32 BE length | wrapped data key | nonce |
//! AES-256-GCM(JSON) | tag`, AAD = every byte before the nonce.
//!
//! A manifest moved to another name or into another repository does not
//! open: the key service refuses the context, and the JSON names both too.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::RemoteError;
use crate::crypto::aead::Cipher;
use crate::kms::{EncryptionContext, KeyService, KmsError};

pub const MAGIC: &[u8; 4] = b"EFSM";
pub const ENVELOPE_VERSION: u8 = 1;
pub const MANIFEST_VERSION: u32 = 1;
pub const CONTEXT_REPOSITORY: &str = "envelopefs:snapshot-repository";
pub const CONTEXT_SNAPSHOT: &str = "envelopefs:snapshot";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

/// A name of the backing tree: a JSON string when it is UTF-8 (encrypted
/// names always are), else `{"b64": ...}` (plaintext names may be any bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawName {
    Text(String),
    Bytes { b64: String },
}

impl RawName {
    pub fn from_bytes(b: &[u8]) -> RawName {
        match std::str::from_utf8(b) {
            Ok(s) => RawName::Text(s.to_owned()),
            Err(_) => RawName::Bytes { b64: b64(b) },
        }
    }

    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            RawName::Text(s) => Some(s.as_bytes().to_vec()),
            RawName::Bytes { b64 } => unb64(b64),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// A piece of a file: a stored chunk, or all zero bytes (a hole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChunkRef {
    Data { sha256: String, len: u64 },
    Zero { zero: u64 },
}

impl ChunkRef {
    pub fn bytes(&self) -> u64 {
        match self {
            ChunkRef::Data { len, .. } => *len,
            ChunkRef::Zero { zero } => *zero,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the cipher directory, `/`-separated; "" is the root.
    pub path: RawName,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Backing xattrs: name → base64 value.
    #[serde(default)]
    pub xattrs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<ChunkRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawName>,
    /// A further hard link of the file entry at this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_of: Option<RawName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub repository_id: String,
    pub name: String,
    pub created: String,
    /// The volume's config file, base64.
    pub config: String,
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Every stored chunk it refers to: (sha256 hex, length).
    pub fn chunks(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries
            .iter()
            .filter_map(|e| e.chunks.as_ref())
            .flatten()
            .filter_map(|c| match c {
                ChunkRef::Data { sha256, len } => Some((sha256.as_str(), *len)),
                ChunkRef::Zero { .. } => None,
            })
    }
}

pub fn context(repository_id: &str, name: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with(CONTEXT_REPOSITORY, repository_id)
        .with(CONTEXT_SNAPSHOT, name)
}

fn aes_key(plain: &[u8]) -> Result<&[u8; 32], RemoteError> {
    plain.try_into().map_err(|_| RemoteError::Key {
        what: "the manifest's data key".into(),
        source: KmsError::Validation(
            "the key service returned a data key that is not 32 bytes".into(),
        ),
    })
}

/// The sealed manifest, under a fresh data key wrapped by `key`.
pub fn seal(ks: &dyn KeyService, key: &str, m: &Manifest) -> Result<Vec<u8>, RemoteError> {
    let ctx = context(&m.repository_id, &m.name);
    let dk = ks
        .generate_data_key(key, 32, &ctx)
        .map_err(|e| RemoteError::Key {
            what: format!("cannot make the manifest's data key under {key}"),
            source: e,
        })?;
    let blob_len = u32::try_from(dk.ciphertext_blob.len())
        .map_err(|_| RemoteError::Usage("wrapped data key too long".into()))?;
    let mut out = MAGIC.to_vec();
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&blob_len.to_be_bytes());
    out.extend_from_slice(&dk.ciphertext_blob);
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec(m).map_err(|e| RemoteError::Usage(format!("manifest: {e}")))?,
    );
    let sealed = Cipher::new(aes_key(&dk.plaintext)?).seal_to_vec(&out, &json);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Open the manifest stored under `object_key` as snapshot `name` of the
/// repository `repository_id`: anything that does not authenticate, parse
/// or name the same snapshot is `Damaged`; a key service that refuses for
/// another reason (a disabled key) is `Key`.
pub fn open(
    ks: &dyn KeyService,
    expected_key: Option<&str>,
    repository_id: &str,
    name: &str,
    object_key: &str,
    bytes: &[u8],
) -> Result<Manifest, RemoteError> {
    let damaged = |what: String| RemoteError::Damaged {
        key: object_key.to_owned(),
        what,
    };
    if bytes.len() < 9 || &bytes[..4] != MAGIC {
        return Err(damaged("not an envelopefs manifest".into()));
    }
    if bytes[4] != ENVELOPE_VERSION {
        return Err(damaged(format!(
            "manifest envelope version {} is not supported",
            bytes[4]
        )));
    }
    let blob_len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let header_len = 9usize
        .checked_add(blob_len)
        .filter(|n| *n <= bytes.len())
        .ok_or_else(|| damaged("truncated manifest".into()))?;
    let (header, sealed) = bytes.split_at(header_len);
    let dk = match ks.decrypt(&header[9..], &context(repository_id, name), expected_key) {
        Ok(k) => k,
        Err(e @ (KmsError::InvalidCiphertext | KmsError::IncorrectKey(_))) => {
            return Err(damaged(format!(
                "does not authenticate as snapshot {name} of this repository (tampered, or moved from another name or repository): {e}"
            )))
        }
        Err(e) => {
            return Err(RemoteError::Key {
                what: format!("{object_key}: the key service cannot open the manifest"),
                source: e,
            })
        }
    };
    let json = Cipher::new(aes_key(&dk.plaintext)?)
        .open_from_slice(header, sealed)
        .map_err(|_| damaged("does not authenticate (tampered)".into()))?;
    let m: Manifest = serde_json::from_slice(&json)
        .map_err(|e| damaged(format!("authenticated but does not parse: {e}")))?;
    if m.version != MANIFEST_VERSION {
        return Err(damaged(format!(
            "manifest version {} is not supported",
            m.version
        )));
    }
    if m.repository_id != repository_id || m.name != name {
        return Err(damaged(format!(
            "names snapshot {} of repository {}, not {name} of {repository_id}",
            m.name, m.repository_id
        )));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(repo: &str, name: &str) -> Manifest {
        Manifest {
            version: 1,
            repository_id: repo.into(),
            name: name.into(),
            created: "2026-12-01T00:00:00Z".into(),
            config: b64(b"{}"),
            entries: vec![Entry {
                path: RawName::from_bytes(b"a\xff"),
                kind: Kind::File,
                mode: 0o100600,
                uid: 0,
                gid: 0,
                mtime_ns: 1,
                xattrs: BTreeMap::new(),
                size: Some(5),
                chunks: Some(vec![
                    ChunkRef::Data {
                        sha256: "ab".into(),
                        len: 3,
                    },
                    ChunkRef::Zero { zero: 2 },
                ]),
                target: None,
                link_of: None,
            }],
        }
    }

    #[test]
    fn a_manifest_opens_only_under_its_own_name_and_repository() {
        let dir = tempfile::tempdir().unwrap();
        let ks = crate::kms::local::test_store(&dir.path().join("ks"));
        let key = ks.default_key().unwrap();
        let m = sample("r1", "s1");
        let sealed = seal(&ks, &key, &m).unwrap();
        assert_eq!(
            open(&ks, None, "r1", "s1", "manifests/s1", &sealed).unwrap(),
            m
        );
        let json = serde_json::to_string(&m.entries[0]).unwrap();
        assert!(json.contains(r#""path":{"b64":"Yf8="}"#), "{json}");
        assert!(json.contains(r#"{"zero":2}"#), "{json}");
        for (repo, name) in [("r1", "s2"), ("r2", "s1")] {
            let e = open(&ks, None, repo, name, "manifests/x", &sealed).unwrap_err();
            assert!(
                matches!(&e, RemoteError::Damaged { key, .. } if key == "manifests/x"),
                "{e}"
            );
        }
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let e = open(&ks, None, "r1", "s1", "manifests/s1", &flipped).unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifests/s1: does not authenticate (tampered)"
        );
    }
}
