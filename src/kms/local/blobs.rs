//! Blobs: encrypt, decrypt and re-encrypt under a key's material, and the
//! [`KeyService`] the volume layer uses.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use super::{uuid_bytes, Audit, LocalKeyService};
use crate::crypto::aead::Cipher;
use crate::crypto::keys::derive;
use crate::kms::{
    DecryptedKey, EncryptionContext, GeneratedDataKey, KeyService, KmsError, ReEncrypted,
};

const BLOB_MAGIC: &[u8; 4] = b"EFK1";
const BLOB_PREFIX: usize = 4 + 16 + 16 + 16; // magic, key id, material id, salt

impl LocalKeyService {
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
    pub(super) fn encrypt_inner(
        &self,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        context.check()?;
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
        self.require_symmetric(rec, "SYMMETRIC_DEFAULT encryption")?;
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
        context.check()?;
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
        self.require_symmetric(rec, "SYMMETRIC_DEFAULT decryption")?;
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
        self.re_encrypt_from(
            blob,
            source_context,
            None,
            destination_key,
            destination_context,
        )
    }

    /// ReEncrypt with its SourceKeyId: as [`Self::re_encrypt`], but a blob
    /// of another key than `source_key` is an IncorrectKeyException.
    pub fn re_encrypt_from(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        source_key: Option<&str>,
        destination_key: &str,
        destination_context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String, String), KmsError> {
        self.audited("ReEncrypt", Some(destination_key), |a| {
            a.context = Some(destination_context.clone());
            let d = self.decrypt_inner(blob, source_context, source_key)?;
            let (nb, arn, mat) =
                self.encrypt_inner(destination_key, &d.plaintext, destination_context)?;
            a.material = Some(mat.clone());
            Ok((nb, d.key_arn, arn, mat))
        })
    }
}

impl LocalKeyService {
    /// The ARN of the key a symmetric blob names (unauthenticated: what
    /// the blob claims). Only a blob of ours names its key; other bytes
    /// name nothing.
    pub fn blob_key_arn(&self, blob: &[u8]) -> Option<String> {
        if blob.len() >= 20 && &blob[..4] == BLOB_MAGIC {
            if let Ok(u) = uuid::Uuid::from_slice(&blob[4..20]) {
                return Some(self.arn(&u.to_string()));
            }
        }
        None
    }
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
        self.new_data_key("GenerateDataKey", key, bytes, context)
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
        a.key_arn = self.blob_key_arn(blob);
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
    ) -> Result<ReEncrypted, KmsError> {
        let (b, src, dst, mat) = LocalKeyService::re_encrypt(
            self,
            blob,
            source_context,
            destination_key,
            destination_context,
        )?;
        Ok(ReEncrypted {
            ciphertext_blob: b,
            source_key_arn: src,
            key_arn: dst,
            key_material_id: mat,
        })
    }

    fn provider(&self) -> &'static str {
        "local"
    }

    fn sign_raw(&self, key: &str, msg: &[u8], algorithm: &str) -> Result<Vec<u8>, KmsError> {
        LocalKeyService::sign(self, key, msg, "RAW", algorithm).map(|(sig, _)| sig)
    }

    fn get_public_key(&self, key: &str) -> Result<crate::kms::PublicKey, KmsError> {
        let p = LocalKeyService::get_public_key(self, key)?;
        Ok(crate::kms::PublicKey {
            key_arn: p.key_arn,
            key_spec: p.key_spec,
            key_usage: p.key_usage,
            der: p.public_key,
        })
    }

    fn decrypt_rsa_oaep_sha256(
        &self,
        key: &str,
        blob: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KmsError> {
        let d = self.decrypt_with_algorithm(
            blob,
            &EncryptionContext::new(),
            Some(key),
            "RSAES_OAEP_SHA_256",
        )?;
        Ok(d.plaintext)
    }

    fn derive_shared_secret(
        &self,
        key: &str,
        peer_public_der: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KmsError> {
        let (secret, _) = LocalKeyService::derive_shared_secret(
            self,
            key,
            super::asymmetric::ECDH,
            peer_public_der,
        )?;
        Ok(secret)
    }
}
