//! Data keys and blobs: generate-data-key, encrypt, decrypt, re-encrypt.

use clap::Args;

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
