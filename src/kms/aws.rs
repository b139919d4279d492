//! AWS KMS as the master-key provider (feature `aws-kms`). A volume's key is
//! then a KMS key, named by its ARN (`arn:aws:kms:...`) or by `aws-kms:` and a
//! key ID, alias name or alias ARN. Only init (GenerateDataKey), mount
//! (Decrypt), rewrap (ReEncrypt) and copies talk to KMS; nothing per file.
//! A write-only volume's recipient key is asked for its public key
//! (GetPublicKey) and, by a full mount, once per write session (Decrypt
//! RSAES_OAEP_SHA_256 or DeriveSharedSecret).
//!
//! The standard AWS configuration applies (credential chain, region, profile,
//! `AWS_ENDPOINT_URL_KMS`/`AWS_ENDPOINT_URL` for KMS-compatible services).
//! Transient errors retry with backoff; every call is bounded in time.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec};
use aws_smithy_types::Blob;
use zeroize::Zeroizing;

use super::{DecryptedKey, EncryptionContext, GeneratedDataKey, KeyService, KmsError, ReEncrypted};

pub const PROVIDER: &str = "aws-kms";
const PREFIX: &str = "aws-kms:";

/// Whether a key name belongs to AWS KMS rather than the local key service.
pub fn is_aws_key(key: &str) -> bool {
    key.starts_with("arn:aws:kms:") || key.starts_with("arn:aws-") || key.starts_with(PREFIX)
}

/// The KeyId parameter KMS takes for our key name.
fn key_param(key: &str) -> &str {
    key.strip_prefix(PREFIX).unwrap_or(key)
}

pub struct AwsKms {
    client: aws_sdk_kms::Client,
    rt: tokio::runtime::Runtime,
}

fn map_err<E, R>(op: &str, e: SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let msg = e.message().unwrap_or("").to_owned();
    match e.code() {
        Some("DisabledException") => KmsError::Disabled(msg),
        Some("NotFoundException") => KmsError::NotFound(msg),
        Some("KMSInvalidStateException") | Some("KmsInvalidStateException") => {
            KmsError::InvalidState(msg)
        }
        Some("InvalidCiphertextException") => KmsError::InvalidCiphertext,
        Some("IncorrectKeyException") => KmsError::IncorrectKey(msg),
        Some("AccessDeniedException") => {
            KmsError::AccessDenied(format!("{msg} (KMS also answers this for a deleted key)"))
        }
        Some("ValidationException") => KmsError::Validation(msg),
        Some("InvalidKeyUsageException") => KmsError::InvalidKeyUsage(msg),
        Some(code) => KmsError::Unavailable(format!("{op}: {code}: {msg}")),
        None => match &e {
            SdkError::TimeoutError(_) => {
                KmsError::Unavailable(format!("{op}: AWS KMS did not answer in time"))
            }
            SdkError::DispatchFailure(d) => KmsError::Unavailable(format!(
                "{op}: cannot reach AWS KMS ({})",
                if d.is_io() {
                    "connection failed"
                } else if d.is_timeout() {
                    "timed out"
                } else {
                    "dispatch failure"
                }
            )),
            _ => KmsError::Unavailable(format!(
                "{op}: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            )),
        },
    }
}

fn ctx_map(c: &EncryptionContext) -> std::collections::HashMap<String, String> {
    c.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl AwsKms {
    /// A client from the standard AWS configuration; `region` from a key ARN wins.
    pub fn new(region: Option<String>) -> Result<AwsKms, KmsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KmsError::Unavailable(format!("tokio runtime: {e}")))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            );
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        let conf = rt.block_on(loader.load());
        Ok(AwsKms {
            client: aws_sdk_kms::Client::new(&conf),
            rt,
        })
    }

    /// Create a symmetric key with an alias (for tests against an emulator;
    /// real keys are made with the AWS console or CLI). Returns the key ARN.
    pub fn create_key_for_tests(&self, alias: &str) -> Result<String, KmsError> {
        let r = self
            .rt
            .block_on(self.client.create_key().send())
            .map_err(|e| map_err("CreateKey", e))?;
        let m = r
            .key_metadata()
            .ok_or_else(|| KmsError::NotFound("CreateKey".into()))?;
        let arn = m.arn().unwrap_or("").to_owned();
        self.rt
            .block_on(
                self.client
                    .create_alias()
                    .alias_name(alias)
                    .target_key_id(m.key_id())
                    .send(),
            )
            .map_err(|e| map_err("CreateAlias", e))?;
        Ok(arn)
    }

    /// The region named in a key ARN, if any.
    pub fn region_of(key: &str) -> Option<String> {
        let k = key_param(key);
        let parts: Vec<&str> = k.split(':').collect();
        (parts.len() >= 6 && parts[0] == "arn" && parts[2] == "kms" && !parts[3].is_empty())
            .then(|| parts[3].to_owned())
    }
}

impl KeyService for AwsKms {
    fn resolve(&self, key: &str) -> Result<String, KmsError> {
        let r = self
            .rt
            .block_on(self.client.describe_key().key_id(key_param(key)).send())
            .map_err(|e| map_err("DescribeKey", e))?;
        r.key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_owned)
            .ok_or_else(|| KmsError::NotFound(format!("{key}: no ARN in DescribeKey")))
    }

    fn generate_data_key(
        &self,
        key: &str,
        bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        let r = self
            .rt
            .block_on(
                self.client
                    .generate_data_key()
                    .key_id(key_param(key))
                    .number_of_bytes(bytes as i32)
                    .set_encryption_context(Some(ctx_map(context)))
                    .send(),
            )
            .map_err(|e| map_err("GenerateDataKey", e))?;
        let plaintext = Zeroizing::new(
            r.plaintext()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
        );
        Ok(GeneratedDataKey {
            plaintext,
            ciphertext_blob: r
                .ciphertext_blob()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
            key_arn: r.key_id().unwrap_or(key).to_owned(),
            key_material_id: r.key_material_id().unwrap_or("").to_owned(),
        })
    }

    fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key: Option<&str>,
    ) -> Result<DecryptedKey, KmsError> {
        let mut req = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_encryption_context(Some(ctx_map(context)));
        if let Some(k) = key {
            req = req.key_id(key_param(k));
        }
        let r = self
            .rt
            .block_on(req.send())
            .map_err(|e| map_err("Decrypt", e))?;
        Ok(DecryptedKey {
            plaintext: Zeroizing::new(
                r.plaintext()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default(),
            ),
            key_arn: r.key_id().unwrap_or("").to_owned(),
            key_material_id: r.key_material_id().unwrap_or("").to_owned(),
        })
    }

    fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        destination_key: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        let r = self
            .rt
            .block_on(
                self.client
                    .re_encrypt()
                    .ciphertext_blob(Blob::new(blob.to_vec()))
                    .set_source_encryption_context(Some(ctx_map(source_context)))
                    .destination_key_id(key_param(destination_key))
                    .set_destination_encryption_context(Some(ctx_map(destination_context)))
                    .send(),
            )
            .map_err(|e| map_err("ReEncrypt", e))?;
        Ok(ReEncrypted {
            ciphertext_blob: r
                .ciphertext_blob()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
            source_key_arn: r.source_key_id().unwrap_or("").to_owned(),
            key_arn: r.key_id().unwrap_or(destination_key).to_owned(),
            key_material_id: r.destination_key_material_id().unwrap_or("").to_owned(),
        })
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn get_public_key(&self, key: &str) -> Result<super::PublicKey, KmsError> {
        let r = self
            .rt
            .block_on(self.client.get_public_key().key_id(key_param(key)).send())
            .map_err(|e| map_err("GetPublicKey", e))?;
        let der = r.public_key().map(|b| b.as_ref().to_vec()).ok_or_else(|| {
            KmsError::Unavailable("GetPublicKey: no public key in the answer".into())
        })?;
        Ok(super::PublicKey {
            key_arn: r.key_id().unwrap_or(key).to_owned(),
            key_spec: r.key_spec().map(|s| s.as_str()).unwrap_or("").to_owned(),
            key_usage: r.key_usage().map(|u| u.as_str()).unwrap_or("").to_owned(),
            der,
        })
    }

    fn decrypt_rsa_oaep_sha256(
        &self,
        key: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let r = self
            .rt
            .block_on(
                self.client
                    .decrypt()
                    .key_id(key_param(key))
                    .ciphertext_blob(Blob::new(blob.to_vec()))
                    .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
                    .send(),
            )
            .map_err(|e| map_err("Decrypt", e))?;
        Ok(Zeroizing::new(
            r.plaintext()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
        ))
    }

    fn derive_shared_secret(
        &self,
        key: &str,
        peer_public_der: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let r = self
            .rt
            .block_on(
                self.client
                    .derive_shared_secret()
                    .key_id(key_param(key))
                    .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
                    .public_key(Blob::new(peer_public_der.to_vec()))
                    .send(),
            )
            .map_err(|e| map_err("DeriveSharedSecret", e))?;
        Ok(Zeroizing::new(
            r.shared_secret()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert!(is_aws_key("arn:aws:kms:us-east-1:111122223333:key/abc"));
        assert!(is_aws_key("aws-kms:alias/app"));
        assert!(!is_aws_key("arn:envelopefs:kms:local:x:key/abc"));
        assert!(!is_aws_key("alias/app"));
        assert_eq!(key_param("aws-kms:alias/app"), "alias/app");
        assert_eq!(
            AwsKms::region_of("arn:aws:kms:eu-west-1:1:key/k").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(AwsKms::region_of("aws-kms:alias/app"), None);
    }
}
