//! Asymmetric keys: get-public-key, sign, verify, derive-shared-secret,
//! generate-data-key-pair(-without-plaintext), with `aws kms`'s flags and
//! JSON shapes. Blobs are base64 in JSON, as the AWS CLI prints them.

use clap::Args;

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
