//! Random bytes and data keys whose plaintext the caller never sees:
//! GenerateRandom and GenerateDataKeyWithoutPlaintext.

use zeroize::Zeroizing;

use super::LocalKeyService;
use crate::kms::{EncryptionContext, GeneratedDataKey, KmsError};

/// The range of NumberOfBytes of GenerateRandom and the data-key calls.
pub const MAX_RANDOM_BYTES: usize = 1024;

fn check_number_of_bytes(n: usize) -> Result<(), KmsError> {
    if n == 0 || n > MAX_RANDOM_BYTES {
        return Err(KmsError::Validation(format!(
            "NumberOfBytes must be 1 to {MAX_RANDOM_BYTES}, not {n}"
        )));
    }
    Ok(())
}

impl LocalKeyService {
    /// GenerateRandom: `n` random bytes, from the same generator as keys.
    pub fn generate_random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.audited("GenerateRandom", None, |_| {
            check_number_of_bytes(n)?;
            let mut b = Zeroizing::new(vec![0u8; n]);
            crate::crypto::random_bytes(&mut b);
            Ok(b)
        })
    }

    /// A fresh data key of `n` bytes wrapped under `key`, audited as `op`.
    pub(super) fn new_data_key(
        &self,
        op: &str,
        key: &str,
        n: usize,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, KmsError> {
        self.audited(op, Some(key), |a| {
            a.context = Some(context.clone());
            check_number_of_bytes(n)?;
            let mut pt = Zeroizing::new(vec![0u8; n]);
            crate::crypto::random_bytes(&mut pt);
            let (blob, arn, mat) = self.encrypt_inner(key, &pt, context)?;
            a.material = Some(mat.clone());
            Ok(GeneratedDataKey {
                plaintext: pt,
                ciphertext_blob: blob,
                key_arn: arn,
                key_material_id: mat,
            })
        })
    }

    /// GenerateDataKeyWithoutPlaintext: the blob of a fresh data key (its
    /// plaintext zeroized here); (blob, key ARN, material ID).
    pub fn generate_data_key_without_plaintext(
        &self,
        key: &str,
        n: usize,
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String, String), KmsError> {
        let d = self.new_data_key("GenerateDataKeyWithoutPlaintext", key, n, context)?;
        Ok((d.ciphertext_blob, d.key_arn, d.key_material_id))
    }
}
