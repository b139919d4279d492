//! Data keys and blobs: generate-data-key, encrypt, decrypt, re-encrypt.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use serde_json::json;

use super::super::output::print_aws_secret;
use super::super::{print_aws, Failure, Global};
use super::{blob_arg, ctx};
use crate::kms::local::asymmetric::SYMMETRIC_DEFAULT;
use crate::kms::{KeyService, KmsError};

#[derive(Args, Debug)]
pub struct GenerateDataKeyArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    /// AES_256 or AES_128; exactly one of --key-spec and --number-of-bytes.
    #[arg(long)]
    pub(super) key_spec: Option<String>,
    /// Length of the data key in bytes (1 to 1024), instead of --key-spec.
    #[arg(long)]
    pub(super) number_of_bytes: Option<usize>,
    /// KEY=VALUE,... or a JSON object.
    #[arg(long)]
    pub(super) encryption_context: Option<String>,
}

#[derive(Args, Debug)]
pub struct GenerateRandomArgs {
    /// How many random bytes (1..1024).
    #[arg(long)]
    pub(super) number_of_bytes: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    /// The plaintext: base64, fileb://FILE (raw bytes) or file://FILE (base64 text).
    #[arg(long)]
    pub(super) plaintext: String,
    /// KEY=VALUE,... or a JSON object; decrypt must give the same
    /// (symmetric keys only).
    #[arg(long)]
    pub(super) encryption_context: Option<String>,
    /// SYMMETRIC_DEFAULT, or RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256 with an RSA
    /// ENCRYPT_DECRYPT key (plaintext at most 214/190, 342/318 or 470/446 bytes).
    #[arg(long, default_value = "SYMMETRIC_DEFAULT")]
    pub(super) encryption_algorithm: String,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// The blob from encrypt or generate-data-key: base64, fileb://FILE or file://FILE.
    #[arg(long)]
    pub(super) ciphertext_blob: String,
    /// Fail unless the blob is under this key (key ID, ARN or alias);
    /// required for an RSA key's ciphertext.
    #[arg(long)]
    pub(super) key_id: Option<String>,
    /// The encryption context the blob was made with.
    #[arg(long)]
    pub(super) encryption_context: Option<String>,
    /// SYMMETRIC_DEFAULT, or the RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256 the
    /// ciphertext was made with (then --key-id is required).
    #[arg(long, default_value = "SYMMETRIC_DEFAULT")]
    pub(super) encryption_algorithm: String,
}

#[derive(Args, Debug)]
pub struct ReEncryptArgs {
    /// The blob from encrypt or generate-data-key: base64, fileb://FILE or file://FILE.
    #[arg(long)]
    pub(super) ciphertext_blob: String,
    /// The key to encrypt under (key ID, ARN or alias).
    #[arg(long)]
    pub(super) destination_key_id: String,
    /// Fail unless the blob is under this key (key ID, ARN or alias).
    #[arg(long)]
    pub(super) source_key_id: Option<String>,
    /// The encryption context the blob was made with.
    #[arg(long)]
    pub(super) source_encryption_context: Option<String>,
    /// The encryption context of the new blob.
    #[arg(long)]
    pub(super) destination_encryption_context: Option<String>,
}

pub fn generate_data_key(g: &Global, a: GenerateDataKeyArgs) -> Result<(), Failure> {
    let n = data_key_length(a.key_spec.as_deref(), a.number_of_bytes)?;
    let ks = g.open_store()?;
    let d = ks.generate_data_key(&a.key_id, n, &ctx(&a.encryption_context)?)?;
    let v = json!({
        "CiphertextBlob": B64.encode(&d.ciphertext_blob),
        "KeyId": d.key_arn,
        "KeyMaterialId": d.key_material_id,
    });
    print_aws_secret(g.output, v, "Plaintext", &d.plaintext);
    Ok(())
}

pub fn encrypt(g: &Global, a: EncryptArgs) -> Result<(), Failure> {
    let pt = zeroize::Zeroizing::new(blob_arg(&a.plaintext, "--plaintext")?);
    let ks = g.open_store()?;
    let context = ctx(&a.encryption_context)?;
    let alg = a.encryption_algorithm;
    let v = if alg == SYMMETRIC_DEFAULT {
        let (blob, arn, mat) = ks.encrypt(&a.key_id, &pt, &context)?;
        json!({"CiphertextBlob": B64.encode(&blob), "KeyId": arn, "EncryptionAlgorithm": alg, "KeyMaterialId": mat})
    } else {
        let (blob, arn) = ks.encrypt_asymmetric(&a.key_id, &pt, &alg, &context)?;
        json!({"CiphertextBlob": B64.encode(&blob), "KeyId": arn, "EncryptionAlgorithm": alg})
    };
    print_aws(g.output, &v);
    Ok(())
}

pub fn decrypt(g: &Global, a: DecryptArgs) -> Result<(), Failure> {
    let blob = blob_arg(&a.ciphertext_blob, "the blob")?;
    let ks = g.open_store()?;
    let d = ks.decrypt_with_algorithm(
        &blob,
        &ctx(&a.encryption_context)?,
        a.key_id.as_deref(),
        &a.encryption_algorithm,
    )?;
    let mut v = json!({
        "KeyId": d.key_arn,
        "EncryptionAlgorithm": a.encryption_algorithm,
    });
    // AWS names the key material of symmetric decryption only.
    if !d.key_material_id.is_empty() {
        v["KeyMaterialId"] = json!(d.key_material_id);
    }
    print_aws_secret(g.output, v, "Plaintext", &d.plaintext);
    Ok(())
}

pub fn re_encrypt(g: &Global, a: ReEncryptArgs) -> Result<(), Failure> {
    let blob = blob_arg(&a.ciphertext_blob, "the blob")?;
    let ks = g.open_store()?;
    let (nb, src, dst, mat) = ks.re_encrypt_from(
        &blob,
        &ctx(&a.source_encryption_context)?,
        a.source_key_id.as_deref(),
        &a.destination_key_id,
        &ctx(&a.destination_encryption_context)?,
    )?;
    let v = json!({
        "CiphertextBlob": B64.encode(&nb),
        "SourceKeyId": src,
        "KeyId": dst,
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationKeyMaterialId": mat,
    });
    print_aws(g.output, &v);
    Ok(())
}

/// A data key's length from exactly one of KeySpec and NumberOfBytes, as
/// AWS takes them.
fn data_key_length(
    key_spec: Option<&str>,
    number_of_bytes: Option<usize>,
) -> Result<usize, KmsError> {
    match (key_spec, number_of_bytes) {
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

pub fn generate_data_key_without_plaintext(
    g: &Global,
    a: GenerateDataKeyArgs,
) -> Result<(), Failure> {
    let n = data_key_length(a.key_spec.as_deref(), a.number_of_bytes)?;
    let context = ctx(&a.encryption_context)?;
    let ks = g.open_store()?;
    let (blob, arn, mat) = ks.generate_data_key_without_plaintext(&a.key_id, n, &context)?;
    let v = json!({"CiphertextBlob": B64.encode(&blob), "KeyId": arn, "KeyMaterialId": mat});
    print_aws(g.output, &v);
    Ok(())
}

pub fn generate_random(g: &Global, a: GenerateRandomArgs) -> Result<(), Failure> {
    let n = a
        .number_of_bytes
        .ok_or_else(|| KmsError::Validation("NumberOfBytes is required".into()))?;
    let ks = g.open_store()?;
    let bytes = ks.generate_random(n)?;
    print_aws_secret(g.output, json!({}), "Plaintext", &bytes);
    Ok(())
}
