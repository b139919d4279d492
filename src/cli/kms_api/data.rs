//! Data keys, blobs and asymmetric keys: what a key is used for.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::{blob, context, field, need, number_usize, with_secret};
use crate::kms::local::asymmetric::{algorithm_list, SYMMETRIC_DEFAULT};
use crate::kms::local::LocalKeyService;
use crate::kms::{KeyService, KmsError};

/// A data key's length from exactly one of KeySpec and NumberOfBytes, as
/// AWS takes them.
fn data_key_length(req: &Value) -> Result<usize, KmsError> {
    let n = number_usize(req, "NumberOfBytes");
    match (field(req, "KeySpec"), n) {
        (Some(_), Some(_)) | (None, None) => Err(KmsError::Validation(
            "give either --key-spec or --number-of-bytes, not both nor neither".into(),
        )),
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(s), None) => Err(KmsError::Validation(format!(
            "KeySpec must be AES_256 or AES_128, not {s}"
        ))),
        (None, Some(n)) => Ok(n),
    }
}

/// The data key and blob operations; None for another operation.
pub fn run(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Option<Value>, KmsError> {
    let key = || need(req, "KeyId");
    let ctx = || context(req, "EncryptionContext");
    let alg = field(req, "EncryptionAlgorithm").unwrap_or(SYMMETRIC_DEFAULT);
    let v = match op {
        "GenerateDataKey" => {
            let d = ks.generate_data_key(key()?, data_key_length(req)?, &ctx()?)?;
            let v = json!({"CiphertextBlob": B64.encode(&d.ciphertext_blob),
                "KeyId": d.key_arn, "KeyMaterialId": d.key_material_id});
            with_secret(v, "Plaintext", &d.plaintext)
        }
        "GenerateDataKeyWithoutPlaintext" => {
            let (b, arn, mat) =
                ks.generate_data_key_without_plaintext(key()?, data_key_length(req)?, &ctx()?)?;
            json!({"CiphertextBlob": B64.encode(&b), "KeyId": arn, "KeyMaterialId": mat})
        }
        "GenerateRandom" => {
            let n = number_usize(req, "NumberOfBytes")
                .ok_or_else(|| KmsError::Validation("NumberOfBytes is required".into()))?;
            let bytes = ks.generate_random(n)?;
            with_secret(json!({}), "Plaintext", &bytes)
        }
        "Encrypt" => {
            let pt = blob(req, "Plaintext")?;
            if alg == SYMMETRIC_DEFAULT {
                let (b, arn, mat) = ks.encrypt(key()?, &pt, &ctx()?)?;
                json!({"CiphertextBlob": B64.encode(&b), "KeyId": arn,
                    "EncryptionAlgorithm": alg, "KeyMaterialId": mat})
            } else {
                let (b, arn) = ks.encrypt_asymmetric(key()?, &pt, alg, &ctx()?)?;
                json!({"CiphertextBlob": B64.encode(&b), "KeyId": arn, "EncryptionAlgorithm": alg})
            }
        }
        "Decrypt" => {
            let b = blob(req, "CiphertextBlob")?;
            let d = ks.decrypt_with_algorithm(&b, &ctx()?, field(req, "KeyId"), alg)?;
            let mut v = json!({"KeyId": d.key_arn, "EncryptionAlgorithm": alg});
            // AWS names the key material of symmetric decryption only.
            if !d.key_material_id.is_empty() {
                v["KeyMaterialId"] = json!(d.key_material_id);
            }
            with_secret(v, "Plaintext", &d.plaintext)
        }
        "ReEncrypt" => {
            let (nb, src, dst, mat) = ks.re_encrypt_from(
                &blob(req, "CiphertextBlob")?,
                &context(req, "SourceEncryptionContext")?,
                field(req, "SourceKeyId"),
                need(req, "DestinationKeyId")?,
                &context(req, "DestinationEncryptionContext")?,
            )?;
            json!({"CiphertextBlob": B64.encode(&nb), "SourceKeyId": src, "KeyId": dst,
                "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT,
                "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT,
                "DestinationKeyMaterialId": mat})
        }
        _ => return asymmetric(ks, op, req),
    };
    Ok(Some(v))
}

fn asymmetric(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Option<Value>, KmsError> {
    let key = || need(req, "KeyId");
    let message_type = field(req, "MessageType").unwrap_or("RAW");
    let v = match op {
        "GetPublicKey" => {
            let p = ks.get_public_key(key()?)?;
            let (field, algs) = algorithm_list(&p.key_spec, &p.key_usage);
            let mut v = json!({"KeyId": p.key_arn, "PublicKey": B64.encode(&p.public_key),
                "CustomerMasterKeySpec": p.key_spec, "KeySpec": p.key_spec,
                "KeyUsage": p.key_usage});
            v[field] = json!(algs);
            v
        }
        "Sign" => {
            let alg = need(req, "SigningAlgorithm")?;
            let (sig, arn) = ks.sign(key()?, &blob(req, "Message")?, message_type, alg)?;
            json!({"KeyId": arn, "Signature": B64.encode(sig), "SigningAlgorithm": alg})
        }
        "Verify" => {
            let alg = need(req, "SigningAlgorithm")?;
            let msg = blob(req, "Message")?;
            let arn = ks.verify(key()?, &msg, message_type, &blob(req, "Signature")?, alg)?;
            json!({"KeyId": arn, "SignatureValid": true, "SigningAlgorithm": alg})
        }
        "DeriveSharedSecret" => {
            let alg = need(req, "KeyAgreementAlgorithm")?;
            let (s, arn) = ks.derive_shared_secret(key()?, alg, &blob(req, "PublicKey")?)?;
            let v = json!({"KeyId": arn, "KeyAgreementAlgorithm": alg, "KeyOrigin": "AWS_KMS"});
            with_secret(v, "SharedSecret", &s[..])
        }
        "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
            let p = ks.generate_data_key_pair(
                key()?,
                need(req, "KeyPairSpec")?,
                &context(req, "EncryptionContext")?,
                op == "GenerateDataKeyPair",
            )?;
            let v = json!({
                "PrivateKeyCiphertextBlob": B64.encode(&p.private_key_ciphertext_blob),
                "PublicKey": B64.encode(&p.public_key),
                "KeyId": p.key_arn,
                "KeyPairSpec": p.key_pair_spec,
                "KeyMaterialId": p.key_material_id,
            });
            match &p.private_key_plaintext {
                Some(pt) => with_secret(v, "PrivateKeyPlaintext", &pt[..]),
                None => v,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}
