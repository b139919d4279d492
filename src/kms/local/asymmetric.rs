//! Asymmetric keys with AWS KMS semantics: which key spec allows which key
//! usage, GetPublicKey, Sign and Verify, RSA-OAEP Encrypt and Decrypt (no
//! encryption context), DeriveSharedSecret (ECDH) and GenerateDataKeyPair
//! under a symmetric key. The private key is the key's one material, PKCS#8
//! DER in base64 in the sealed store; it is decoded only into `Zeroizing`
//! buffers, and no key is generated or used under the store's lock.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use super::{digest, new_material, Audit, KeyRecord, LocalKeyService, StoreData};
use crate::crypto::asym::{self, AsymError, EncryptionAlgorithm, KeySpec, Message};
use crate::crypto::asym::{SigningAlgorithm, ALL_SPECS};
use crate::kms::{DecryptedKey, EncryptionContext, KeyService, KmsError};

pub const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
pub const ENCRYPT_DECRYPT: &str = "ENCRYPT_DECRYPT";
pub const SIGN_VERIFY: &str = "SIGN_VERIFY";
pub const KEY_AGREEMENT: &str = "KEY_AGREEMENT";
const GENERATE_VERIFY_MAC: &str = "GENERATE_VERIFY_MAC";
pub const ECDH: &str = "ECDH";

/// Key specs AWS KMS has that this service does not implement.
const AWS_ONLY_SPECS: [&str; 9] = [
    "ECC_NIST_EDWARDS25519",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "SM2",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
];

/// Signing algorithms AWS KMS has for key specs not implemented here: a key
/// of this service never allows them.
const AWS_ONLY_SIGNING: [&str; 4] = [
    "ED25519_SHA_512",
    "ED25519_PH_SHA_512",
    "ML_DSA_SHAKE_256",
    "SM2DSA",
];

/// Messages and digests to sign or verify: AWS's 1..4096 bytes.
const MAX_MESSAGE: usize = 4096;

/// A CiphertextBlob of AWS's API: 1..6144 bytes.
const MAX_CIPHERTEXT: usize = 6144;

fn spec_names() -> String {
    let mut v = vec![SYMMETRIC_DEFAULT];
    v.extend(ALL_SPECS.iter().map(|s| s.name()));
    v.join(", ")
}

/// An asymmetric spec by name; None for SYMMETRIC_DEFAULT.
fn parse_spec(spec: &str, what: &str) -> Result<Option<KeySpec>, KmsError> {
    if spec == SYMMETRIC_DEFAULT {
        return Ok(None);
    }
    if let Some(s) = KeySpec::parse(spec) {
        return Ok(Some(s));
    }
    if AWS_ONLY_SPECS.contains(&spec) {
        return Err(KmsError::UnsupportedOperation(format!(
            "{what} {spec} is an AWS KMS key spec that the local key service does not implement"
        )));
    }
    Err(KmsError::Validation(format!(
        "{what} {spec} is not one of {}",
        spec_names()
    )))
}

/// AWS's rule of which key usage each key spec allows, at CreateKey.
/// Returns the asymmetric spec, or None for a symmetric key.
pub fn check_spec_usage(spec: &str, usage: &str) -> Result<Option<KeySpec>, KmsError> {
    let known = [
        ENCRYPT_DECRYPT,
        SIGN_VERIFY,
        KEY_AGREEMENT,
        GENERATE_VERIFY_MAC,
    ];
    if !known.contains(&usage) {
        return Err(KmsError::Validation(format!(
            "KeyUsage {usage} is not one of {}",
            known.join(", ")
        )));
    }
    let parsed = parse_spec(spec, "KeySpec")?;
    let allowed: &[&str] = match parsed {
        None => &[ENCRYPT_DECRYPT],
        Some(s) if s.is_rsa() => &[ENCRYPT_DECRYPT, SIGN_VERIFY],
        Some(s) if s.is_nist_ecc() => &[SIGN_VERIFY, KEY_AGREEMENT],
        Some(_) => &[SIGN_VERIFY],
    };
    if !allowed.contains(&usage) {
        return Err(KmsError::Validation(format!(
            "KeyUsage {usage} is not compatible with KeySpec {spec} (it allows {})",
            allowed.join(" or ")
        )));
    }
    Ok(parsed)
}

/// The algorithm list describe-key and get-public-key show for a key, and
/// the field it goes in.
pub fn algorithm_list(spec: &str, usage: &str) -> (&'static str, Vec<&'static str>) {
    let Some(s) = KeySpec::parse(spec) else {
        return ("EncryptionAlgorithms", vec![SYMMETRIC_DEFAULT]);
    };
    match usage {
        SIGN_VERIFY => (
            "SigningAlgorithms",
            s.signing_algorithms()
                .into_iter()
                .map(|a| a.name())
                .collect(),
        ),
        KEY_AGREEMENT => ("KeyAgreementAlgorithms", vec![ECDH]),
        _ => (
            "EncryptionAlgorithms",
            EncryptionAlgorithm::ALL.iter().map(|a| a.name()).collect(),
        ),
    }
}

/// GetPublicKey's answer.
pub struct PublicKeyInfo {
    pub key_arn: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    pub key_spec: String,
    pub key_usage: String,
}

/// GenerateDataKeyPair's answer (no plaintext private key for the
/// WithoutPlaintext form).
pub struct DataKeyPair {
    pub private_key_plaintext: Option<Zeroizing<Vec<u8>>>,
    pub private_key_ciphertext_blob: Vec<u8>,
    pub public_key: Vec<u8>,
    pub key_arn: String,
    pub key_material_id: String,
    pub key_pair_spec: &'static str,
}

fn message<'a>(bytes: &'a [u8], message_type: &str) -> Result<Message<'a>, KmsError> {
    if bytes.is_empty() || bytes.len() > MAX_MESSAGE {
        return Err(KmsError::Validation(format!(
            "Message must be 1 to {MAX_MESSAGE} bytes (sign a digest of a longer one)"
        )));
    }
    match message_type {
        "RAW" => Ok(Message::Raw(bytes)),
        "DIGEST" => Ok(Message::Digest(bytes)),
        t => Err(KmsError::Validation(format!(
            "MessageType {t} is not RAW or DIGEST"
        ))),
    }
}

/// One of AWS's EncryptionAlgorithm values (SM2PKE, China's, no key here allows).
fn check_encryption_algorithm(alg: &str) -> Result<(), KmsError> {
    if alg == SYMMETRIC_DEFAULT || alg == "SM2PKE" || EncryptionAlgorithm::parse(alg).is_some() {
        return Ok(());
    }
    Err(KmsError::Validation(format!(
        "EncryptionAlgorithm {alg} is not SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256"
    )))
}

fn asym_err(e: AsymError) -> KmsError {
    match e {
        AsymError::DigestLength { .. } | AsymError::BadPublicKey(_) => {
            KmsError::Validation(e.to_string())
        }
        AsymError::BadSignature => KmsError::InvalidSignature,
        AsymError::BadCiphertext => KmsError::InvalidCiphertext,
        AsymError::BadPrivateKey(_) | AsymError::Failed(_) => {
            KmsError::Validation(format!("key service: {e}"))
        }
    }
}

impl LocalKeyService {
    fn usage_err(&self, rec: &KeyRecord, what: &str) -> KmsError {
        KmsError::InvalidKeyUsage(format!(
            "{} has KeySpec {} and KeyUsage {}: {what} is not valid for it",
            self.arn(&rec.key_id),
            rec.key_spec,
            rec.key_usage
        ))
    }

    /// Symmetric operations (Encrypt/Decrypt with SYMMETRIC_DEFAULT,
    /// GenerateDataKey...) need a symmetric encryption key.
    pub(super) fn require_symmetric(&self, rec: &KeyRecord, what: &str) -> Result<(), KmsError> {
        if rec.key_spec == SYMMETRIC_DEFAULT && rec.key_usage == ENCRYPT_DECRYPT {
            Ok(())
        } else {
            Err(self.usage_err(rec, what))
        }
    }

    /// Automatic and on-demand rotation are for symmetric encryption keys only.
    pub(super) fn refuse_asymmetric_rotation(&self, rec: &KeyRecord) -> Result<(), KmsError> {
        if rec.key_spec == SYMMETRIC_DEFAULT {
            return Ok(());
        }
        Err(KmsError::UnsupportedOperation(format!(
            "{} is an asymmetric key ({}): you cannot perform this operation on a non-symmetric key",
            self.arn(&rec.key_id),
            rec.key_spec
        )))
    }

    /// Add a new asymmetric key holding `pkcs8` (made outside the lock).
    pub(super) fn new_asymmetric_key(
        d: &mut StoreData,
        description: &str,
        spec: KeySpec,
        usage: &str,
        pkcs8: &[u8],
        now: u64,
    ) -> KeyRecord {
        let mut rec = Self::new_key(d, description, false, "AWS_KMS", now);
        let enc = Zeroizing::new(B64.encode(pkcs8));
        let mut m = new_material("CREATION", now);
        m.digest = digest(&enc);
        m.material = Some(enc.into());
        rec.current_material = m.id.clone();
        rec.materials = vec![m];
        rec.key_spec = spec.name().into();
        rec.key_usage = usage.into();
        if let Some(stored) = d.keys.iter_mut().find(|r| r.key_id == rec.key_id) {
            *stored = rec.clone();
        }
        rec
    }

    /// An enabled asymmetric key of `usage`, copied out of the store with its
    /// private key decoded; the audit names its material.
    fn asymmetric_key(
        &self,
        a: &mut Audit,
        key: &str,
        usage: &str,
        what: &str,
    ) -> Result<(KeyRecord, KeySpec, Zeroizing<Vec<u8>>), KmsError> {
        let id = self.key_id_of(key)?;
        let rec = {
            let d = self.data.lock();
            d.keys
                .iter()
                .find(|r| r.key_id == id)
                .cloned()
                .ok_or_else(|| KmsError::NotFound(format!("Key '{key}' does not exist")))?
        };
        self.usable(&rec)?;
        let spec = KeySpec::parse(&rec.key_spec)
            .filter(|_| rec.key_usage == usage)
            .ok_or_else(|| self.usage_err(&rec, what))?;
        let mat = rec
            .current()
            .and_then(|m| m.material.as_ref().map(|x| (m.id.clone(), x)))
            .ok_or_else(|| self.state_err(&rec))?;
        a.material = Some(mat.0);
        let pkcs8 =
            Zeroizing::new(
                B64.decode(mat.1.as_bytes())
                    .map_err(|_| KmsError::StoreCorrupt {
                        path: self.dir.display().to_string(),
                        why: format!("the private key of {} is not base64", rec.key_id),
                    })?,
            );
        Ok((rec, spec, pkcs8))
    }

    pub fn get_public_key(&self, key: &str) -> Result<PublicKeyInfo, KmsError> {
        self.audited("GetPublicKey", Some(key), |a| {
            let id = self.key_id_of(key)?;
            let rec = self.describe(&id)?;
            self.usable(&rec)?;
            if rec.key_spec == SYMMETRIC_DEFAULT {
                return Err(KmsError::UnsupportedOperation(format!(
                    "{} is a symmetric key: it has no public key",
                    self.arn(&id)
                )));
            }
            let (rec, spec, pkcs8) = self.asymmetric_key(a, key, &rec.key_usage, "GetPublicKey")?;
            Ok(PublicKeyInfo {
                key_arn: self.arn(&rec.key_id),
                public_key: asym::public_key_der(spec, &pkcs8).map_err(asym_err)?,
                key_spec: rec.key_spec,
                key_usage: rec.key_usage,
            })
        })
    }

    fn signing_algorithm(
        &self,
        rec: &KeyRecord,
        spec: KeySpec,
        alg: &str,
    ) -> Result<SigningAlgorithm, KmsError> {
        match SigningAlgorithm::parse(alg) {
            Some(a) if spec.signing_algorithms().contains(&a) => Ok(a),
            Some(_) => Err(self.usage_err(rec, &format!("SigningAlgorithm {alg}"))),
            None if AWS_ONLY_SIGNING.contains(&alg) => {
                Err(self.usage_err(rec, &format!("SigningAlgorithm {alg}")))
            }
            None => Err(KmsError::Validation(format!(
                "SigningAlgorithm {alg} is not a known algorithm"
            ))),
        }
    }

    /// Sign: (signature, key ARN).
    pub fn sign(
        &self,
        key: &str,
        msg: &[u8],
        message_type: &str,
        alg: &str,
    ) -> Result<(Vec<u8>, String), KmsError> {
        self.audited("Sign", Some(key), |a| {
            let m = message(msg, message_type)?;
            let (rec, spec, pkcs8) = self.asymmetric_key(a, key, SIGN_VERIFY, "Sign")?;
            let alg = self.signing_algorithm(&rec, spec, alg)?;
            let sig = asym::sign(spec, &pkcs8, alg, m).map_err(asym_err)?;
            Ok((sig, self.arn(&rec.key_id)))
        })
    }

    /// Verify: the key ARN when the signature is valid, else
    /// KMSInvalidSignatureException (as AWS: never a `false`).
    pub fn verify(
        &self,
        key: &str,
        msg: &[u8],
        message_type: &str,
        signature: &[u8],
        alg: &str,
    ) -> Result<String, KmsError> {
        self.audited("Verify", Some(key), |a| {
            let m = message(msg, message_type)?;
            if signature.is_empty() || signature.len() > 6144 {
                return Err(KmsError::Validation(
                    "Signature must be 1 to 6144 bytes".into(),
                ));
            }
            let (rec, spec, pkcs8) = self.asymmetric_key(a, key, SIGN_VERIFY, "Verify")?;
            let alg = self.signing_algorithm(&rec, spec, alg)?;
            let public = asym::public_key_der(spec, &pkcs8).map_err(asym_err)?;
            asym::verify(spec, &public, alg, m, signature).map_err(asym_err)?;
            Ok(self.arn(&rec.key_id))
        })
    }

    fn encryption_algorithm(
        &self,
        rec: &KeyRecord,
        alg: &str,
        context: &EncryptionContext,
    ) -> Result<EncryptionAlgorithm, KmsError> {
        if !context.0.is_empty() {
            return Err(KmsError::Validation(
                "EncryptionContext is not supported with asymmetric keys".into(),
            ));
        }
        EncryptionAlgorithm::parse(alg).ok_or_else(|| self.usage_err(rec, alg))
    }

    /// RSA-OAEP Encrypt: (ciphertext, key ARN).
    pub fn encrypt_asymmetric(
        &self,
        key: &str,
        plaintext: &[u8],
        alg: &str,
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), KmsError> {
        self.audited("Encrypt", Some(key), |a| {
            check_encryption_algorithm(alg)?;
            let (rec, spec, pkcs8) = self.asymmetric_key(a, key, ENCRYPT_DECRYPT, alg)?;
            let alg = self.encryption_algorithm(&rec, alg, context)?;
            let max = alg.max_plaintext(spec);
            if plaintext.is_empty() || plaintext.len() > max {
                return Err(KmsError::Validation(format!(
                    "Plaintext must be 1 to {max} bytes for {} with {}",
                    spec.name(),
                    alg.name()
                )));
            }
            let public = asym::public_key_der(spec, &pkcs8).map_err(asym_err)?;
            let ct = asym::encrypt(&public, alg, plaintext).map_err(asym_err)?;
            Ok((ct, self.arn(&rec.key_id)))
        })
    }

    /// Decrypt with an encryption algorithm, as the Decrypt API takes it:
    /// SYMMETRIC_DEFAULT is the symmetric blob path; RSAES_OAEP_* need the
    /// asymmetric key named. An asymmetric result has no key material ID.
    pub fn decrypt_with_algorithm(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key: Option<&str>,
        alg: &str,
    ) -> Result<DecryptedKey, KmsError> {
        let asymmetric_key = key
            .and_then(|k| self.describe(k).ok())
            .is_some_and(|r| r.key_spec != SYMMETRIC_DEFAULT);
        if alg == SYMMETRIC_DEFAULT && !asymmetric_key {
            return KeyService::decrypt(self, blob, context, key);
        }
        self.audited("Decrypt", key, |a| {
            let key = key.ok_or_else(|| {
                KmsError::Validation(format!(
                    "KeyId is required to decrypt with EncryptionAlgorithm {alg}"
                ))
            })?;
            check_encryption_algorithm(alg)?;
            if blob.is_empty() || blob.len() > MAX_CIPHERTEXT {
                return Err(KmsError::Validation(format!(
                    "CiphertextBlob must be 1 to {MAX_CIPHERTEXT} bytes"
                )));
            }
            let (rec, spec, pkcs8) = self.asymmetric_key(a, key, ENCRYPT_DECRYPT, alg)?;
            let alg = self.encryption_algorithm(&rec, alg, context)?;
            let plaintext = asym::decrypt(spec, &pkcs8, alg, blob).map_err(asym_err)?;
            Ok(DecryptedKey {
                plaintext,
                key_arn: self.arn(&rec.key_id),
                key_material_id: String::new(),
            })
        })
    }

    /// DeriveSharedSecret (ECDH): (raw shared secret, key ARN).
    pub fn derive_shared_secret(
        &self,
        key: &str,
        algorithm: &str,
        peer_public_key: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, String), KmsError> {
        self.audited("DeriveSharedSecret", Some(key), |a| {
            if algorithm != ECDH {
                return Err(KmsError::Validation(format!(
                    "KeyAgreementAlgorithm {algorithm} is not ECDH"
                )));
            }
            let (rec, spec, pkcs8) =
                self.asymmetric_key(a, key, KEY_AGREEMENT, "DeriveSharedSecret")?;
            let secret =
                asym::derive_shared_secret(spec, &pkcs8, peer_public_key).map_err(asym_err)?;
            Ok((secret, self.arn(&rec.key_id)))
        })
    }

    /// GenerateDataKeyPair(WithoutPlaintext): a new key pair whose private
    /// key is returned encrypted under the symmetric key `key`.
    pub fn generate_data_key_pair(
        &self,
        key: &str,
        key_pair_spec: &str,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKeyPair, KmsError> {
        let op = if with_plaintext {
            "GenerateDataKeyPair"
        } else {
            "GenerateDataKeyPairWithoutPlaintext"
        };
        self.audited(op, Some(key), |a| {
            a.context = Some(context.clone());
            let spec = parse_spec(key_pair_spec, "KeyPairSpec")?.ok_or_else(|| {
                KmsError::Validation(format!(
                    "KeyPairSpec {key_pair_spec} is not a key pair spec"
                ))
            })?;
            // The key's state and usage first: a key pair is slow to make.
            let rec = self.describe(key)?;
            self.usable(&rec)?;
            self.require_symmetric(&rec, op)?;
            let pkcs8 = asym::generate(spec).map_err(asym_err)?;
            let public_key = asym::public_key_der(spec, &pkcs8).map_err(asym_err)?;
            let (blob, arn, mat) = self.encrypt_inner(key, &pkcs8, context)?;
            a.material = Some(mat.clone());
            Ok(DataKeyPair {
                private_key_plaintext: with_plaintext.then_some(pkcs8),
                private_key_ciphertext_blob: blob,
                public_key,
                key_arn: arn,
                key_material_id: mat,
                key_pair_spec: spec.name(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_store, LocalKeyService};

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_private_key_is_sealed_in_the_store_and_signs_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let ks = test_store(dir.path());
        let rec = ks
            .create_key_with_spec("s", "AWS_KMS", "ECC_NIST_P256", "SIGN_VERIFY")
            .unwrap();
        let private = rec.current().unwrap().material.clone().unwrap();
        let (sig, _) = ks.sign(&rec.key_id, b"m", "RAW", "ECDSA_SHA_256").unwrap();
        let public = ks.get_public_key(&rec.key_id).unwrap().public_key;
        let store = std::fs::read(LocalKeyService::store_path(dir.path())).unwrap();
        let audit = std::fs::read(dir.path().join("audit.log")).unwrap();
        for (what, bytes) in [("store", &store), ("audit log", &audit)] {
            // Past the PKCS#8 header: the private scalar itself.
            assert!(!contains(bytes, &private.as_bytes()[48..88]), "{what}");
        }
        drop(ks);
        let ks = LocalKeyService::open(dir.path(), "test passphrase").unwrap();
        ks.verify(&rec.key_id, b"m", "RAW", &sig, "ECDSA_SHA_256")
            .unwrap();
        assert_eq!(ks.get_public_key(&rec.key_id).unwrap().public_key, public);
        let (sig2, _) = ks.sign(&rec.key_id, b"m", "RAW", "ECDSA_SHA_256").unwrap();
        ks.verify(&rec.key_id, b"m", "RAW", &sig2, "ECDSA_SHA_256")
            .unwrap();
    }
}
