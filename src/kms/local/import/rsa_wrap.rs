//! AWS's RSA wrapping of imported key material (GetParametersForImport):
//! `RSAES_OAEP_SHA_*` encrypts the material with the RSA public key;
//! `RSA_AES_KEY_WRAP_SHA_*` encrypts a fresh AES-256 key with it and wraps
//! the material under that key with AES key wrap with padding (RFC 5649),
//! the two concatenated (PKCS #11 CKM_RSA_AES_KEY_WRAP).

use zeroize::Zeroizing;

use crate::crypto::asym::{self, EncryptionAlgorithm, KeySpec};
use crate::kms::KmsError;

/// How an RSA wrapping algorithm unwraps: the OAEP hash, and whether an
/// AES-wrapped part follows the RSA part.
pub struct RsaWrapping {
    oaep: EncryptionAlgorithm,
    aes_key_wrap: bool,
}

/// The RSA wrapping algorithm of this name, if it is one.
pub fn rsa_wrapping(name: &str) -> Option<RsaWrapping> {
    use EncryptionAlgorithm::{RsaesOaepSha1, RsaesOaepSha256};
    let (oaep, aes_key_wrap) = match name {
        "RSAES_OAEP_SHA_256" => (RsaesOaepSha256, false),
        "RSAES_OAEP_SHA_1" => (RsaesOaepSha1, false),
        "RSA_AES_KEY_WRAP_SHA_256" => (RsaesOaepSha256, true),
        "RSA_AES_KEY_WRAP_SHA_1" => (RsaesOaepSha1, true),
        _ => return None,
    };
    Some(RsaWrapping { oaep, aes_key_wrap })
}

/// A new wrapping key pair of `spec` (RSA_2048, RSA_3072 or RSA_4096):
/// (private key as PKCS#8 DER, public key as DER SubjectPublicKeyInfo).
pub fn generate(spec: &str) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KmsError> {
    let spec = KeySpec::parse(spec).filter(|s| s.is_rsa()).ok_or_else(|| {
        KmsError::Validation(format!(
            "WrappingKeySpec must be RSA_2048, RSA_3072 or RSA_4096, not {spec}"
        ))
    })?;
    let unavailable = |e: asym::AsymError| KmsError::Unavailable(format!("RSA wrapping key: {e}"));
    let private = asym::generate(spec).map_err(unavailable)?;
    let public = asym::public_key_der(spec, &private).map_err(unavailable)?;
    Ok((private, public))
}

impl RsaWrapping {
    /// The key material inside `encrypted`, with the PKCS#8 private key.
    /// Anything that does not unwrap is InvalidCiphertextException, as AWS
    /// answers when it cannot decrypt the wrapped material.
    pub fn open(&self, pkcs8: &[u8], encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let spec = asym::rsa_spec_of(pkcs8).ok_or(KmsError::InvalidCiphertext)?;
        let rsa_len = spec.rsa_bytes();
        let (rsa_part, aes_part) = if self.aes_key_wrap {
            if encrypted.len() <= rsa_len {
                return Err(KmsError::InvalidCiphertext);
            }
            encrypted.split_at(rsa_len)
        } else {
            (encrypted, &[][..])
        };
        let opened = asym::decrypt(spec, pkcs8, self.oaep, rsa_part)
            .map_err(|_| KmsError::InvalidCiphertext)?;
        if !self.aes_key_wrap {
            return Ok(opened);
        }
        asym::aes_key_unwrap_padded(&opened, aes_part).map_err(|_| KmsError::InvalidCiphertext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(public: &[u8], data: &[u8]) -> Vec<u8> {
        asym::encrypt(public, EncryptionAlgorithm::RsaesOaepSha256, data).unwrap()
    }

    #[test]
    fn both_shapes_unwrap_and_tampering_is_invalid_ciphertext() {
        let (private, public) = generate("RSA_2048").unwrap();
        let material = [5u8; 32];
        let oaep = rsa_wrapping("RSAES_OAEP_SHA_256").unwrap();
        let direct = seal(&public, &material);
        assert_eq!(&oaep.open(&private, &direct).unwrap()[..], &material);
        let aes_key = [7u8; 32];
        let mut wrapped = seal(&public, &aes_key);
        wrapped.extend_from_slice(&asym::aes_key_wrap_padded(&aes_key, &material).unwrap());
        let kw = rsa_wrapping("RSA_AES_KEY_WRAP_SHA_256").unwrap();
        assert_eq!(&kw.open(&private, &wrapped).unwrap()[..], &material);
        for i in [0, 100, 255, 256, wrapped.len() - 1] {
            let mut bad = wrapped.clone();
            bad[i] ^= 1;
            assert!(matches!(
                kw.open(&private, &bad),
                Err(KmsError::InvalidCiphertext)
            ));
        }
        // The other algorithm's shape does not open.
        assert!(matches!(
            kw.open(&private, &direct),
            Err(KmsError::InvalidCiphertext)
        ));
        assert!(matches!(
            oaep.open(&private, &wrapped),
            Err(KmsError::InvalidCiphertext)
        ));
        assert!(matches!(generate("RSA_1024"), Err(KmsError::Validation(_))));
    }
}
