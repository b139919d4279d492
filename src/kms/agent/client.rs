//! [`AgentKeyService`]: the key service of the key agent, over its socket.
//! Before anything is sent, the agent's own credentials are checked: it must
//! run as root, as this user, or as the owner of the key store this user
//! names, so a fake agent on a reachable path cannot hand out keys.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use zeroize::{Zeroize, Zeroizing};

use super::{error_of, read_frame, write_frame, MAX_RESPONSE};
use crate::kms::{
    DecryptedKey, EncryptionContext, GeneratedDataKey, KeyService, KmsError, PublicKey, ReEncrypted,
};

/// How long a call may take before the client gives up on the agent.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client keeps asking an agent that is at its connection cap.
const BUSY_WAIT: Duration = Duration::from_secs(10);

pub struct AgentKeyService {
    socket: PathBuf,
    /// Besides root and this user: the owner of the key store the user names.
    store_owner: Option<u32>,
}

impl AgentKeyService {
    /// The agent at `socket`; `store_dir` is the key store this user names
    /// (its owner may run the agent).
    pub fn new(socket: &Path, store_dir: Option<&Path>) -> Self {
        use std::os::unix::fs::MetadataExt;
        let store_owner = store_dir
            .and_then(|d| std::fs::symlink_metadata(d).ok())
            .filter(|m| m.is_dir())
            .map(|m| m.uid());
        AgentKeyService {
            socket: socket.to_owned(),
            store_owner,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> KmsError {
        KmsError::Unavailable(format!("key agent {}: {what}", self.socket.display()))
    }

    /// Connect, and check who serves the socket before sending anything.
    fn connect(&self) -> Result<UnixStream, KmsError> {
        let s = UnixStream::connect(&self.socket).map_err(|e| self.unavailable(e))?;
        let peer = crate::sys::peer_cred(s.as_fd()).map_err(|e| self.unavailable(e))?;
        let me = crate::sys::geteuid();
        if peer.uid != 0 && peer.uid != me && Some(peer.uid) != self.store_owner {
            return Err(KmsError::AccessDenied(format!(
                "the key agent at {} runs as uid {}, neither root nor the key store's owner: refused",
                self.socket.display(),
                peer.uid
            )));
        }
        s.set_read_timeout(Some(CALL_TIMEOUT))
            .and_then(|()| s.set_write_timeout(Some(CALL_TIMEOUT)))
            .map_err(|e| self.unavailable(e))?;
        Ok(s)
    }

    /// One request, its response (an error response as its error). An
    /// agent at its connection cap is asked again for a while.
    pub fn call(&self, mut request: Value) -> Result<Value, KmsError> {
        let body = Zeroizing::new(serde_json::to_vec(&request).map_err(|e| self.unavailable(e))?);
        wipe(&mut request);
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            match self.call_once(&body) {
                Err(KmsError::LimitExceeded(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    fn call_once(&self, body: &[u8]) -> Result<Value, KmsError> {
        let mut s = self.connect()?;
        // An agent over its cap answers before reading: its answer counts
        // even when the request could not be sent.
        let sent = write_frame(&mut s, body);
        let reply = match (sent, read_frame(&mut s, MAX_RESPONSE)) {
            (_, Ok(Some(r))) => r,
            (Err(e), _) | (Ok(()), Err(e)) => return Err(self.unavailable(e)),
            (Ok(()), Ok(None)) => {
                return Err(self.unavailable("closed the connection without an answer"))
            }
        };
        let v: Value = serde_json::from_slice(&reply).map_err(|e| self.unavailable(e))?;
        match error_of(&v) {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }
}

/// Zeroize every string of a request or response (plaintexts, data keys).
pub fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(o) => o.values_mut().for_each(wipe),
        _ => {}
    }
}

fn text(v: &Value, field: &str) -> Result<String, KmsError> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| KmsError::Unavailable(format!("the key agent's answer lacks {field}")))
}

fn bytes(v: &Value, field: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| KmsError::Unavailable(format!("the key agent's answer lacks {field}")))?;
    B64.decode(s)
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Unavailable(format!("the key agent's {field} is not base64")))
}

fn context(c: &EncryptionContext) -> Value {
    json!(c.0)
}

impl KeyService for AgentKeyService {
    fn resolve(&self, key: &str) -> Result<String, KmsError> {
        let v = self.call(json!({"Operation": "DescribeKey", "KeyId": key}))?;
        v.get("KeyMetadata")
            .map_or_else(|| text(&v, "KeyMetadata"), |m| text(m, "Arn"))
    }

    fn generate_data_key(
        &self,
        key: &str,
        n: usize,
        c: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        let mut v = self.call(json!({"Operation": "GenerateDataKey", "KeyId": key,
            "NumberOfBytes": n, "EncryptionContext": context(c)}))?;
        let r = (|| {
            Ok(GeneratedDataKey {
                plaintext: bytes(&v, "Plaintext")?,
                ciphertext_blob: bytes(&v, "CiphertextBlob")?.to_vec(),
                key_arn: text(&v, "KeyId")?,
                key_material_id: text(&v, "KeyMaterialId").unwrap_or_default(),
            })
        })();
        wipe(&mut v);
        r
    }

    fn decrypt(
        &self,
        blob: &[u8],
        c: &EncryptionContext,
        key: Option<&str>,
    ) -> Result<DecryptedKey, KmsError> {
        let mut req = json!({"Operation": "Decrypt", "CiphertextBlob": B64.encode(blob),
            "EncryptionContext": context(c)});
        if let Some(k) = key {
            req["KeyId"] = json!(k);
        }
        let mut v = self.call(req)?;
        let r = (|| {
            Ok(DecryptedKey {
                plaintext: bytes(&v, "Plaintext")?,
                key_arn: text(&v, "KeyId")?,
                key_material_id: text(&v, "KeyMaterialId").unwrap_or_default(),
            })
        })();
        wipe(&mut v);
        r
    }

    fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        destination_key: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        let v = self.call(
            json!({"Operation": "ReEncrypt", "CiphertextBlob": B64.encode(blob),
            "SourceEncryptionContext": context(source_context),
            "DestinationKeyId": destination_key,
            "DestinationEncryptionContext": context(destination_context)}),
        )?;
        Ok(ReEncrypted {
            ciphertext_blob: bytes(&v, "CiphertextBlob")?.to_vec(),
            source_key_arn: text(&v, "SourceKeyId")?,
            key_arn: text(&v, "KeyId")?,
            key_material_id: text(&v, "DestinationKeyMaterialId").unwrap_or_default(),
        })
    }

    fn provider(&self) -> &'static str {
        // The agent serves the local key service: volumes record it as such.
        "local"
    }

    fn get_public_key(&self, key: &str) -> Result<PublicKey, KmsError> {
        let v = self.call(json!({"Operation": "GetPublicKey", "KeyId": key}))?;
        Ok(PublicKey {
            key_arn: text(&v, "KeyId")?,
            key_spec: text(&v, "KeySpec")?,
            key_usage: text(&v, "KeyUsage")?,
            der: bytes(&v, "PublicKey")?.to_vec(),
        })
    }

    fn decrypt_rsa_oaep_sha256(
        &self,
        key: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let mut v = self.call(json!({"Operation": "Decrypt", "KeyId": key,
            "CiphertextBlob": B64.encode(blob), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}))?;
        let r = bytes(&v, "Plaintext");
        wipe(&mut v);
        r
    }

    fn derive_shared_secret(
        &self,
        key: &str,
        peer_public_der: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let mut v = self.call(json!({"Operation": "DeriveSharedSecret", "KeyId": key,
            "KeyAgreementAlgorithm": "ECDH", "PublicKey": B64.encode(peer_public_der)}))?;
        let r = bytes(&v, "SharedSecret");
        wipe(&mut v);
        r
    }
}
