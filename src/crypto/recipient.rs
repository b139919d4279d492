//! Write-only volumes (format 2): the recipient's public key, the write
//! sessions sealed to it, and the keys everyone holding the public key can
//! derive (the writer key W and what comes from it).
//!
//! A session file is
//! `"EFSS" | version 1 | alg | reserved [2] | session ID [16] | F [32] | body`:
//! for RSA the OAEP-SHA-256 ciphertext of the session's raw key K; for ECDH
//! `len u16 | ephemeral public key (DER SPKI) | nonce [12] | AES-GCM(KEK, K) | tag`
//! with `KEK = HKDF(Z, session ID, "envelopefs session seal v2" || F || P_e)`.
//! The session key is `S = HKDF(K, volume ID, "envelopefs session v2" || ID)`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::aead::{Cipher, NONCE_LEN, TAG_LEN};
use super::asym::{self, EncryptionAlgorithm, KeySpec};
use super::keys::{derive, derive_from_slice, SessionKey, SubKey, VolumeId, KEY_LEN};

pub const SESSION_FILE_PREFIX: &str = "envelopefs.session.";
/// Session files are read capped at this length.
pub const MAX_SESSION_FILE_LEN: usize = 1024;
pub const SESSION_ID_LEN: usize = 16;
const MAGIC: &[u8; 4] = b"EFSS";
const VERSION: u8 = 1;
const ALG_RSA_OAEP_SHA_256: u8 = 1;
const ALG_ECDH: u8 = 2;
/// Magic, version, alg, reserved, session ID and F: bound into the ECDH seal.
const PREFIX_LEN: usize = 56;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecipientError {
    #[error("the recipient key is not a DER SubjectPublicKeyInfo or PEM \"PUBLIC KEY\" of an RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384 or ECC_NIST_P521 key")]
    NotAPublicKey,
    #[error("sealing a session to the recipient failed: {0}")]
    Seal(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("the session file is garbled: {0}")]
    Garbled(&'static str),
    #[error("the session file is sealed to another recipient key")]
    OtherRecipient,
    #[error("the session file does not unseal (tampered, or the key service's answer is wrong)")]
    Unseal,
}

/// The recipient's public key: DER SubjectPublicKeyInfo, its spec, and its
/// fingerprint F = SHA-256(DER).
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientPublicKey {
    der: Vec<u8>,
    spec: KeySpec,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for RecipientPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientPublicKey")
            .field("spec", &self.spec.name())
            .field("fingerprint", &self.fingerprint_hex())
            .finish()
    }
}

impl RecipientPublicKey {
    /// A public key as DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<RecipientPublicKey, RecipientError> {
        let spec = asym::public_key_spec(der).ok_or(RecipientError::NotAPublicKey)?;
        Ok(RecipientPublicKey {
            der: der.to_vec(),
            spec,
            fingerprint: Sha256::digest(der).into(),
        })
    }

    /// A public key as DER, or PEM "PUBLIC KEY" (a recipient file).
    pub fn parse(bytes: &[u8]) -> Result<RecipientPublicKey, RecipientError> {
        let text = std::str::from_utf8(bytes).ok();
        match text.map(str::trim) {
            Some(t) if t.starts_with("-----BEGIN") => Self::from_der(&pem_public_key(t)?),
            _ => Self::from_der(bytes),
        }
    }

    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// W = HKDF(F, volume ID, "envelopefs writer v2"): anyone holding the
    /// public key can derive it; it opens nothing written before.
    pub fn writer_key(&self, vid: &VolumeId) -> SubKey {
        derive(&self.fingerprint, &vid.0, &[b"envelopefs writer v2"])
    }
}

fn pem_public_key(text: &str) -> Result<Vec<u8>, RecipientError> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let body = text
        .strip_prefix(BEGIN)
        .and_then(|t| t.strip_suffix(END))
        .ok_or(RecipientError::NotAPublicKey)?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(b64).map_err(|_| RecipientError::NotAPublicKey)
}

/// A session's random 128-bit identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SessionId(pub [u8; SESSION_ID_LEN]);

impl SessionId {
    pub fn random() -> SessionId {
        SessionId(super::random_array())
    }

    /// The session file's name in the backing root.
    pub fn file_name(&self) -> String {
        format!("{SESSION_FILE_PREFIX}{}", B64URL.encode(self.0))
    }

    /// The session of a session file's name.
    pub fn from_file_name(name: &OsStr) -> Option<SessionId> {
        let enc = name
            .as_bytes()
            .strip_prefix(SESSION_FILE_PREFIX.as_bytes())?;
        let raw = B64URL.decode(enc).ok()?;
        Some(SessionId(raw.try_into().ok()?))
    }

    /// The session a sealed blob (side file, symlink target, xattr) names
    /// in its first 16 bytes.
    pub fn of_blob(blob: &[u8]) -> Option<SessionId> {
        Some(SessionId(blob.get(..SESSION_ID_LEN)?.try_into().ok()?))
    }
}

fn session_key(k: &SubKey, id: &SessionId, vid: &VolumeId) -> SessionKey {
    let s = derive(k.expose(), &vid.0, &[b"envelopefs session v2", &id.0]);
    let mut out = SessionKey::zeroed();
    out.expose_mut().copy_from_slice(s.expose());
    out
}

fn ecdh_kek(z: &[u8], id: &SessionId, f: &[u8; 32], ephemeral: &[u8]) -> Cipher {
    let kek = derive_from_slice(z, &id.0, &[b"envelopefs session seal v2", f, ephemeral]);
    Cipher::new(kek.expose())
}

fn prefix(alg: u8, id: &SessionId, f: &[u8; 32]) -> [u8; PREFIX_LEN] {
    let mut p = [0u8; PREFIX_LEN];
    p[..4].copy_from_slice(MAGIC);
    p[4] = VERSION;
    p[5] = alg;
    p[8..24].copy_from_slice(&id.0);
    p[24..56].copy_from_slice(f);
    p
}

/// A new write session: its ID, its key S, and the session file to write.
pub struct NewSession {
    pub id: SessionId,
    pub key: SessionKey,
    pub file: Vec<u8>,
}

/// Make a session sealed to `r`: K is random, sealed once, and wiped after
/// S is derived from it.
pub fn new_session(r: &RecipientPublicKey, vid: &VolumeId) -> Result<NewSession, RecipientError> {
    let id = SessionId::random();
    let k = SubKey::random();
    let seal_err = |e: asym::AsymError| RecipientError::Seal(e.to_string());
    let file = if r.spec.is_rsa() {
        let mut f = prefix(ALG_RSA_OAEP_SHA_256, &id, &r.fingerprint).to_vec();
        let ct = asym::encrypt(&r.der, EncryptionAlgorithm::RsaesOaepSha256, k.expose())
            .map_err(seal_err)?;
        f.extend_from_slice(&ct);
        f
    } else {
        let (ephemeral, z) = asym::ecdh_ephemeral(r.spec, &r.der).map_err(seal_err)?;
        let p = prefix(ALG_ECDH, &id, &r.fingerprint);
        let len = u16::try_from(ephemeral.len())
            .map_err(|_| RecipientError::Seal("ephemeral key too long".into()))?;
        let mut f = p.to_vec();
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&ephemeral);
        let aad = [&p[..], &vid.0[..]].concat();
        let sealed = ecdh_kek(&z, &id, &r.fingerprint, &ephemeral).seal_to_vec(&aad, k.expose());
        f.extend_from_slice(&sealed);
        f
    };
    let key = session_key(&k, &id, vid);
    Ok(NewSession { id, key, file })
}

/// What the key service must compute to unseal a session.
#[derive(Debug, PartialEq, Eq)]
pub enum UnsealRequest<'a> {
    /// Decrypt with RSAES_OAEP_SHA_256: the answer is K.
    RsaOaepSha256(&'a [u8]),
    /// DeriveSharedSecret (ECDH) with this peer public key: the answer is Z.
    Ecdh(&'a [u8]),
}

/// A parsed session file, checked against its name and the volume's F.
#[derive(Debug)]
pub struct SessionFile {
    id: SessionId,
    prefix: [u8; PREFIX_LEN],
    body: SealedBody,
}

#[derive(Debug)]
enum SealedBody {
    Rsa(Vec<u8>),
    Ecdh { ephemeral: Vec<u8>, sealed: Vec<u8> },
}

impl SessionFile {
    pub fn parse(
        raw: &[u8],
        id: &SessionId,
        r: &RecipientPublicKey,
    ) -> Result<SessionFile, SessionError> {
        use SessionError::Garbled;
        if raw.len() < PREFIX_LEN || raw.len() > MAX_SESSION_FILE_LEN {
            return Err(Garbled("its length is out of range"));
        }
        if &raw[..4] != MAGIC || raw[4] != VERSION || raw[6..8] != [0, 0] {
            return Err(Garbled("bad magic, version or reserved bytes"));
        }
        if raw[8..24] != id.0 {
            return Err(Garbled("its session ID is not its name's"));
        }
        if raw[24..56] != r.fingerprint {
            return Err(SessionError::OtherRecipient);
        }
        let body = &raw[PREFIX_LEN..];
        let body = match (raw[5], r.spec.is_rsa()) {
            (ALG_RSA_OAEP_SHA_256, true) if body.len() == r.spec.rsa_bytes() => {
                SealedBody::Rsa(body.to_vec())
            }
            (ALG_ECDH, false) => {
                let len = u16::from_be_bytes(
                    body.get(..2)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(Garbled("short ECDH body"))?,
                ) as usize;
                let ephemeral = body.get(2..2 + len).ok_or(Garbled("short ECDH body"))?;
                let sealed = &body[2 + len..];
                if sealed.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
                    return Err(Garbled("the sealed key has the wrong length"));
                }
                if asym::public_key_spec(ephemeral) != Some(r.spec) {
                    return Err(Garbled("the ephemeral key is not on the recipient's curve"));
                }
                SealedBody::Ecdh {
                    ephemeral: ephemeral.to_vec(),
                    sealed: sealed.to_vec(),
                }
            }
            _ => {
                return Err(Garbled(
                    "its algorithm or body does not fit the recipient key",
                ))
            }
        };
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&raw[..PREFIX_LEN]);
        Ok(SessionFile {
            id: *id,
            prefix,
            body,
        })
    }

    pub fn id(&self) -> &SessionId {
        &self.id
    }

    pub fn request(&self) -> UnsealRequest<'_> {
        match &self.body {
            SealedBody::Rsa(ct) => UnsealRequest::RsaOaepSha256(ct),
            SealedBody::Ecdh { ephemeral, .. } => UnsealRequest::Ecdh(ephemeral),
        }
    }

    /// The session key, from the key service's answer to [`Self::request`].
    pub fn finish(&self, answer: &[u8], vid: &VolumeId) -> Result<SessionKey, SessionError> {
        let k = match &self.body {
            SealedBody::Rsa(_) => SubKey::from_slice(answer).ok_or(SessionError::Unseal)?,
            SealedBody::Ecdh { ephemeral, sealed } => {
                let f: [u8; 32] = self.prefix[24..56]
                    .try_into()
                    .map_err(|_| SessionError::Unseal)?;
                let aad = [&self.prefix[..], &vid.0[..]].concat();
                let k = Zeroizing::new(
                    ecdh_kek(answer, &self.id, &f, ephemeral)
                        .open_from_slice(&aad, sealed)
                        .map_err(|_| SessionError::Unseal)?,
                );
                SubKey::from_slice(&k).ok_or(SessionError::Unseal)?
            }
        };
        Ok(session_key(&k, &self.id, vid))
    }
}

/// Seal a small value (a name, a symlink target, a directory xattr) under a
/// key derived from the session key for `label`:
/// `session ID | nonce | AES-GCM(ciphertext) | tag`.
pub fn seal_blob(
    s: &SessionKey,
    id: &SessionId,
    vid: &VolumeId,
    label: &[u8],
    aad: &[u8],
    plain: &[u8],
) -> Vec<u8> {
    let k = derive(s.expose(), &vid.0, &[label]);
    let mut out = id.0.to_vec();
    out.extend_from_slice(&Cipher::new(k.expose()).seal_to_vec(aad, plain));
    out
}

/// Open a blob made by [`seal_blob`] with its session's key.
pub fn open_blob(
    s: &SessionKey,
    vid: &VolumeId,
    label: &[u8],
    aad: &[u8],
    blob: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let k = derive(s.expose(), &vid.0, &[label]);
    Cipher::new(k.expose())
        .open_from_slice(aad, blob.get(SESSION_ID_LEN..)?)
        .ok()
}

#[cfg(test)]
#[path = "recipient_tests.rs"]
mod tests;
