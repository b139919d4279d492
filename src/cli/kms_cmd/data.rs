//! Data keys and blobs: generate-data-key, encrypt, decrypt, re-encrypt.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use serde_json::json;

use super::super::{print_result, Failure, Global};
use super::{blob_arg, ctx};
use crate::kms::{KeyService, KmsError};

#[derive(Args, Debug)]
pub struct GenerateDataKeyArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    key_id: String,
    /// AES_256 or AES_128, or give --number-of-bytes (not both). AWS
    /// requires one of the two; here neither means AES_256.
    #[arg(long)]
    key_spec: Option<String>,
    /// Length of the data key in bytes (1 to 1024), instead of --key-spec.
    #[arg(long)]
    number_of_bytes: Option<usize>,
    /// KEY=VALUE,... or a JSON object.
    #[arg(long)]
    encryption_context: Option<String>,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    key_id: String,
    /// The plaintext: base64, fileb://FILE (raw bytes) or file://FILE (base64 text).
    #[arg(long)]
    plaintext: String,
    /// KEY=VALUE,... or a JSON object; decrypt must give the same.
    #[arg(long)]
    encryption_context: Option<String>,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// The blob from encrypt or generate-data-key: base64, fileb://FILE or file://FILE.
    #[arg(long)]
    ciphertext_blob: String,
    /// Fail unless the blob is under this key (key ID, ARN or alias).
    #[arg(long)]
    key_id: Option<String>,
    /// The encryption context the blob was made with.
    #[arg(long)]
    encryption_context: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReEncryptArgs {
    /// The blob from encrypt or generate-data-key: base64, fileb://FILE or file://FILE.
    #[arg(long)]
    ciphertext_blob: String,
    /// The key to encrypt under (key ID, ARN or alias).
    #[arg(long)]
    destination_key_id: String,
    /// The encryption context the blob was made with.
    #[arg(long)]
    source_encryption_context: Option<String>,
    /// The encryption context of the new blob.
    #[arg(long)]
    destination_encryption_context: Option<String>,
}

pub fn generate_data_key(g: &Global, a: GenerateDataKeyArgs) -> Result<(), Failure> {
    let n = data_key_length(a.key_spec.as_deref(), a.number_of_bytes)?;
    let ks = g.open_store()?;
    let d = ks.generate_data_key(&a.key_id, n, &ctx(&a.encryption_context)?)?;
    let v = json!({
        "CiphertextBlob": B64.encode(&d.ciphertext_blob),
        "Plaintext": B64.encode(&d.plaintext[..]),
        "KeyId": d.key_arn,
        "KeyMaterialId": d.key_material_id,
    });
    print_result(g.output, &v, &B64.encode(&d.ciphertext_blob));
    Ok(())
}

/// The data key's length from `--key-spec` or `--number-of-bytes`.
fn data_key_length(spec: Option<&str>, bytes: Option<usize>) -> Result<usize, KmsError> {
    match (spec, bytes) {
        (Some(_), Some(_)) => Err(KmsError::Validation(
            "give KeySpec or NumberOfBytes, not both".into(),
        )),
        (None, Some(n)) => Ok(n),
        (None | Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(s), None) => Err(KmsError::Validation(format!(
            "KeySpec must be AES_256 or AES_128, not {s}"
        ))),
    }
}

pub fn encrypt(g: &Global, a: EncryptArgs) -> Result<(), Failure> {
    let pt = zeroize::Zeroizing::new(blob_arg(&a.plaintext, "--plaintext")?);
    let ks = g.open_store()?;
    let (blob, arn, mat) = ks.encrypt(&a.key_id, &pt, &ctx(&a.encryption_context)?)?;
    let v = json!({"CiphertextBlob": B64.encode(&blob), "KeyId": arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "KeyMaterialId": mat});
    print_result(g.output, &v, &B64.encode(&blob));
    Ok(())
}

pub fn decrypt(g: &Global, a: DecryptArgs) -> Result<(), Failure> {
    let blob = blob_arg(&a.ciphertext_blob, "the blob")?;
    let ks = g.open_store()?;
    let d = ks.decrypt(&blob, &ctx(&a.encryption_context)?, a.key_id.as_deref())?;
    let v = json!({
        "KeyId": d.key_arn,
        "Plaintext": B64.encode(&d.plaintext[..]),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "KeyMaterialId": d.key_material_id,
    });
    print_result(g.output, &v, &B64.encode(&d.plaintext[..]));
    Ok(())
}

pub fn re_encrypt(g: &Global, a: ReEncryptArgs) -> Result<(), Failure> {
    let blob = blob_arg(&a.ciphertext_blob, "the blob")?;
    let ks = g.open_store()?;
    let (nb, src, dst, mat) = ks.re_encrypt(
        &blob,
        &ctx(&a.source_encryption_context)?,
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
    print_result(g.output, &v, &B64.encode(&nb));
    Ok(())
}
