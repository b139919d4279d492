//! The key service: master keys that wrap volume keys. The volume code talks
//! to it only through [`KeyService`], so a remote KMS can stand in later.

pub mod access;
pub mod agent;
pub mod audit;
#[cfg(feature = "aws-kms")]
pub mod aws;
pub mod context;
pub mod local;
pub mod passphrase;
pub mod policy;
pub mod store;

pub use context::EncryptionContext;

use zeroize::Zeroizing;

/// Errors named as KMS names them; the name starts every message.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("NotFoundException: {0}")]
    NotFound(String),
    #[error("DisabledException: {0}")]
    Disabled(String),
    #[error("KMSInvalidStateException: {0}")]
    InvalidState(String),
    #[error("InvalidCiphertextException: the ciphertext or its encryption context is not valid")]
    InvalidCiphertext,
    #[error("IncorrectKeyException: {0}")]
    IncorrectKey(String),
    #[error("AccessDeniedException: {0}")]
    AccessDenied(String),
    #[error("ValidationException: {0}")]
    Validation(String),
    #[error("InvalidAliasNameException: {0}")]
    InvalidAliasName(String),
    #[error("AlreadyExistsException: {0}")]
    AlreadyExists(String),
    #[error("LimitExceededException: {0}")]
    LimitExceeded(String),
    #[error("UnsupportedOperationException: {0}")]
    UnsupportedOperation(String),
    #[error("InvalidKeyUsageException: {0}")]
    InvalidKeyUsage(String),
    #[error("KMSInvalidSignatureException: the signature is not valid")]
    InvalidSignature,
    #[error("IncorrectKeyMaterialException: {0}")]
    IncorrectKeyMaterial(String),
    #[error("InvalidImportTokenException: {0}")]
    InvalidImportToken(String),
    #[error("ExpiredImportTokenException: {0}")]
    ExpiredImportToken(String),
    #[error("TagException: {0}")]
    Tag(String),
    #[error("InvalidMarkerException: {0}")]
    InvalidMarker(String),
    #[error("MalformedPolicyDocumentException: {0}")]
    MalformedPolicyDocument(String),
    #[error("InvalidGrantTokenException: {0}")]
    InvalidGrantToken(String),
    #[error("InvalidGrantIdException: {0}")]
    InvalidGrantId(String),
    #[error("InvalidArnException: {0}")]
    InvalidArn(String),
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    #[error("wrong passphrase for the key store at {0}")]
    WrongPassphrase(String),
    #[error(
        "no key store at {0} (create one with `envelopefs kms create-key` or `envelopefs init`)"
    )]
    NoStore(String),
    #[error("the key store at {path} is corrupt: {why}")]
    StoreCorrupt { path: String, why: String },
    #[error("passphrase: {0}")]
    Passphrase(String),
    #[error("key store I/O at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl KmsError {
    /// The error's name, as in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidCiphertext => "InvalidCiphertextException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::AccessDenied(_) => "AccessDeniedException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::UnsupportedOperation(_) => "UnsupportedOperationException",
            KmsError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            KmsError::InvalidSignature => "KMSInvalidSignatureException",
            KmsError::IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            KmsError::InvalidImportToken(_) => "InvalidImportTokenException",
            KmsError::ExpiredImportToken(_) => "ExpiredImportTokenException",
            KmsError::Tag(_) => "TagException",
            KmsError::InvalidMarker(_) => "InvalidMarkerException",
            KmsError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            KmsError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            KmsError::InvalidGrantId(_) => "InvalidGrantIdException",
            KmsError::InvalidArn(_) => "InvalidArnException",
            KmsError::Unavailable(_) => "Unavailable",
            KmsError::WrongPassphrase(_) => "WrongPassphrase",
            KmsError::NoStore(_) => "NoKeyStore",
            KmsError::StoreCorrupt { .. } => "KeyStoreCorrupt",
            KmsError::Passphrase(_) => "Passphrase",
            KmsError::Io { .. } => "IOError",
        }
    }
}

/// Result of GenerateDataKey.
pub struct GeneratedDataKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext_blob: Vec<u8>,
    pub key_arn: String,
    pub key_material_id: String,
}

/// Result of Decrypt.
pub struct DecryptedKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub key_arn: String,
    pub key_material_id: String,
}

/// Result of ReEncrypt.
pub struct ReEncrypted {
    pub ciphertext_blob: Vec<u8>,
    pub source_key_arn: String,
    pub key_arn: String,
    pub key_material_id: String,
}

/// Result of GetPublicKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_arn: String,
    /// AWS's name of the key spec (RSA_2048, ECC_NIST_P256, ...).
    pub key_spec: String,
    /// ENCRYPT_DECRYPT, KEY_AGREEMENT or SIGN_VERIFY.
    pub key_usage: String,
    /// DER SubjectPublicKeyInfo.
    pub der: Vec<u8>,
}

/// What the volume layer needs of a key service.
pub trait KeyService: Send + Sync {
    /// Resolve a key ID, ARN, alias name or alias ARN to the key's ARN.
    fn resolve(&self, key: &str) -> Result<String, KmsError>;
    /// A fresh random data key and its blob wrapped under `key`.
    fn generate_data_key(
        &self,
        key: &str,
        bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError>;
    /// Unwrap a blob; `key`, when given, must name the key that wrapped it.
    fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key: Option<&str>,
    ) -> Result<DecryptedKey, KmsError>;
    /// Re-wrap a blob under a key's current material without exposing it.
    fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        destination_key: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError>;
    /// A short name of the provider, recorded in the volume config.
    fn provider(&self) -> &'static str;
    /// GetPublicKey of an asymmetric key (a write-only volume's recipient).
    fn get_public_key(&self, key: &str) -> Result<PublicKey, KmsError>;
    /// Decrypt with the private half of the RSA key `key`, algorithm
    /// RSAES_OAEP_SHA_256 (a write session sealed to it).
    fn decrypt_rsa_oaep_sha256(
        &self,
        key: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;
    /// Sign `msg` (MessageType RAW, at most 4096 bytes) with the SIGN_VERIFY
    /// key `key` under `algorithm` (AWS's name): the signature.
    fn sign_raw(&self, key: &str, msg: &[u8], algorithm: &str) -> Result<Vec<u8>, KmsError> {
        let _ = (key, msg, algorithm);
        Err(KmsError::UnsupportedOperation(format!(
            "the {} key service does not sign here",
            self.provider()
        )))
    }
    /// DeriveSharedSecret (ECDH) of the KEY_AGREEMENT key `key` and a peer
    /// public key (DER SubjectPublicKeyInfo): the raw shared secret.
    fn derive_shared_secret(
        &self,
        key: &str,
        peer_public_der: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}
