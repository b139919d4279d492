//! Asymmetric keys: get-public-key, sign, verify, derive-shared-secret,
//! generate-data-key-pair(-without-plaintext), with `aws kms`'s flags and
//! JSON shapes. Blobs are base64 in JSON, as the AWS CLI prints them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use serde_json::{json, Value};

use super::super::output::wipe;
use super::super::{print_result, Failure, Global};
use super::{blob_arg, ctx};
use crate::kms::local::asymmetric::algorithm_list;

#[derive(Args, Debug)]
pub struct GetPublicKeyArgs {
    /// Key ID, key ARN, alias name or alias ARN of an asymmetric key.
    #[arg(long)]
    pub(super) key_id: String,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Key ID, key ARN, alias name or alias ARN of a SIGN_VERIFY key.
    #[arg(long)]
    pub(super) key_id: String,
    /// The message (1..4096 bytes) or its digest: base64, fileb://FILE (raw
    /// bytes) or file://FILE (base64 text).
    #[arg(long)]
    pub(super) message: String,
    /// RAW (the message, hashed here) or DIGEST (the caller's hash of it).
    #[arg(long, default_value = "RAW")]
    pub(super) message_type: String,
    /// RSASSA_PSS_SHA_256|384|512, RSASSA_PKCS1_V1_5_SHA_256|384|512 or
    /// ECDSA_SHA_256|384|512 (the one of the key's curve).
    #[arg(long)]
    pub(super) signing_algorithm: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Key ID, key ARN, alias name or alias ARN of a SIGN_VERIFY key.
    #[arg(long)]
    pub(super) key_id: String,
    /// The message or its digest, as given to sign.
    #[arg(long)]
    pub(super) message: String,
    /// RAW or DIGEST, as given to sign.
    #[arg(long, default_value = "RAW")]
    pub(super) message_type: String,
    /// The signature: base64, fileb://FILE or file://FILE.
    #[arg(long)]
    pub(super) signature: String,
    /// The algorithm the signature was made with.
    #[arg(long)]
    pub(super) signing_algorithm: String,
}

#[derive(Args, Debug)]
pub struct DeriveSharedSecretArgs {
    /// Key ID, key ARN, alias name or alias ARN of a KEY_AGREEMENT key.
    #[arg(long)]
    pub(super) key_id: String,
    /// ECDH (the only one).
    #[arg(long)]
    pub(super) key_agreement_algorithm: String,
    /// The other party's public key, DER SubjectPublicKeyInfo on the key's
    /// curve: base64, fileb://FILE or file://FILE.
    #[arg(long)]
    pub(super) public_key: String,
}

#[derive(Args, Debug)]
pub struct GenerateDataKeyPairArgs {
    /// The symmetric key that encrypts the private key (key ID, ARN or alias).
    #[arg(long)]
    pub(super) key_id: String,
    /// RSA_2048|3072|4096, ECC_NIST_P256|P384|P521 or ECC_SECG_P256K1
    /// (AWS's ECC_NIST_EDWARDS25519 and SM2 are not implemented here).
    #[arg(long)]
    pub(super) key_pair_spec: String,
    /// KEY=VALUE,... or a JSON object; decrypt of the private key must give the same.
    #[arg(long)]
    pub(super) encryption_context: Option<String>,
}

pub fn get_public_key(g: &Global, a: GetPublicKeyArgs) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let p = ks.get_public_key(&a.key_id)?;
    let public = B64.encode(&p.public_key);
    let (field, algs) = algorithm_list(&p.key_spec, &p.key_usage);
    let mut v = json!({
        "KeyId": p.key_arn,
        "PublicKey": public,
        "CustomerMasterKeySpec": p.key_spec,
        "KeySpec": p.key_spec,
        "KeyUsage": p.key_usage,
    });
    v[field] = json!(algs);
    print_result(g.output, &v, &public);
    Ok(())
}

pub fn sign(g: &Global, a: SignArgs) -> Result<(), Failure> {
    let msg = zeroize::Zeroizing::new(blob_arg(&a.message, "--message")?);
    let ks = g.open_store()?;
    let (sig, arn) = ks.sign(&a.key_id, &msg, &a.message_type, &a.signing_algorithm)?;
    let sig = B64.encode(sig);
    let v = json!({"KeyId": arn, "Signature": sig, "SigningAlgorithm": a.signing_algorithm});
    print_result(g.output, &v, &sig);
    Ok(())
}

pub fn verify(g: &Global, a: VerifyArgs) -> Result<(), Failure> {
    let msg = zeroize::Zeroizing::new(blob_arg(&a.message, "--message")?);
    let sig = blob_arg(&a.signature, "--signature")?;
    let ks = g.open_store()?;
    let arn = ks.verify(&a.key_id, &msg, &a.message_type, &sig, &a.signing_algorithm)?;
    let v = json!({"KeyId": arn, "SignatureValid": true, "SigningAlgorithm": a.signing_algorithm});
    print_result(g.output, &v, "True");
    Ok(())
}

pub fn derive_shared_secret(g: &Global, a: DeriveSharedSecretArgs) -> Result<(), Failure> {
    let peer = blob_arg(&a.public_key, "--public-key")?;
    let ks = g.open_store()?;
    let (secret, arn) = ks.derive_shared_secret(&a.key_id, &a.key_agreement_algorithm, &peer)?;
    let mut v = json!({
        "KeyId": arn,
        "KeyAgreementAlgorithm": a.key_agreement_algorithm,
        "KeyOrigin": "AWS_KMS",
    });
    // Moved in, not serialized in (json! would leave a copy unwiped).
    v["SharedSecret"] = Value::String(B64.encode(&secret[..]));
    print_result(g.output, &v, v["SharedSecret"].as_str().unwrap_or_default());
    wipe(&mut v);
    Ok(())
}

fn generate_pair(
    g: &Global,
    a: GenerateDataKeyPairArgs,
    with_plaintext: bool,
) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let p = ks.generate_data_key_pair(
        &a.key_id,
        &a.key_pair_spec,
        &ctx(&a.encryption_context)?,
        with_plaintext,
    )?;
    let blob = B64.encode(&p.private_key_ciphertext_blob);
    let mut v = json!({
        "PrivateKeyCiphertextBlob": blob,
        "PublicKey": B64.encode(&p.public_key),
        "KeyId": p.key_arn,
        "KeyPairSpec": p.key_pair_spec,
        "KeyMaterialId": p.key_material_id,
    });
    if let Some(pt) = &p.private_key_plaintext {
        v["PrivateKeyPlaintext"] = Value::String(B64.encode(&pt[..]));
    }
    print_result(g.output, &v, &blob);
    wipe(&mut v);
    Ok(())
}

pub fn generate_data_key_pair(g: &Global, a: GenerateDataKeyPairArgs) -> Result<(), Failure> {
    generate_pair(g, a, true)
}

pub fn generate_data_key_pair_without_plaintext(
    g: &Global,
    a: GenerateDataKeyPairArgs,
) -> Result<(), Failure> {
    generate_pair(g, a, false)
}
