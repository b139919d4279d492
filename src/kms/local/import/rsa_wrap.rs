//! AWS's RSA wrapping of imported key material (GetParametersForImport):
//! `RSAES_OAEP_SHA_*` encrypts the material with the RSA public key;
//! `RSA_AES_KEY_WRAP_SHA_*` encrypts a fresh AES-256 key with it and wraps
//! the material under that key with AES key wrap with padding (RFC 5649),
//! the two concatenated (PKCS #11 CKM_RSA_AES_KEY_WRAP).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
use aws_lc_rs::rsa::{
    KeySize, OaepAlgorithm, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA1_MGF1SHA1,
    OAEP_SHA256_MGF1SHA256,
};
use zeroize::Zeroizing;

use crate::kms::KmsError;

/// How an RSA wrapping algorithm unwraps: the OAEP hash, and whether an
/// AES-wrapped part follows the RSA part.
pub struct RsaWrapping {
    oaep: &'static OaepAlgorithm,
    aes_key_wrap: bool,
}

/// The RSA wrapping algorithm of this name, if it is one.
pub fn rsa_wrapping(name: &str) -> Option<RsaWrapping> {
    let (oaep, aes_key_wrap) = match name {
        "RSAES_OAEP_SHA_256" => (&OAEP_SHA256_MGF1SHA256, false),
        "RSAES_OAEP_SHA_1" => (&OAEP_SHA1_MGF1SHA1, false),
        "RSA_AES_KEY_WRAP_SHA_256" => (&OAEP_SHA256_MGF1SHA256, true),
        "RSA_AES_KEY_WRAP_SHA_1" => (&OAEP_SHA1_MGF1SHA1, true),
        _ => return None,
    };
    Some(RsaWrapping { oaep, aes_key_wrap })
}

/// A new wrapping key pair of `spec` (RSA_2048, RSA_3072 or RSA_4096):
/// (private key as PKCS#8 DER, public key as DER SubjectPublicKeyInfo).
pub fn generate(spec: &str) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KmsError> {
    let size = match spec {
        "RSA_2048" => KeySize::Rsa2048,
        "RSA_3072" => KeySize::Rsa3072,
        "RSA_4096" => KeySize::Rsa4096,
        other => {
            return Err(KmsError::Validation(format!(
                "WrappingKeySpec must be RSA_2048, RSA_3072 or RSA_4096, not {other}"
            )))
        }
    };
    let unavailable = |what: &str| KmsError::Unavailable(format!("RSA {what} failed"));
    let key = PrivateDecryptingKey::generate(size).map_err(|_| unavailable("key generation"))?;
    let private = key.as_der().map_err(|_| unavailable("key encoding"))?;
    let public = key
        .public_key()
        .as_der()
        .map_err(|_| unavailable("key encoding"))?;
    Ok((
        Zeroizing::new(private.as_ref().to_vec()),
        public.as_ref().to_vec(),
    ))
}

impl RsaWrapping {
    /// The key material inside `encrypted`, with the PKCS#8 private key.
    /// Anything that does not unwrap is InvalidCiphertextException, as AWS
    /// answers when it cannot decrypt the wrapped material.
    pub fn open(&self, pkcs8: &[u8], encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let key = PrivateDecryptingKey::from_pkcs8(pkcs8)
            .map_err(|_| KmsError::InvalidCiphertext)
            .and_then(|k| {
                OaepPrivateDecryptingKey::new(k).map_err(|_| KmsError::InvalidCiphertext)
            })?;
        let rsa_len = key.key_size_bytes();
        let (rsa_part, aes_part) = if self.aes_key_wrap {
            if encrypted.len() <= rsa_len {
                return Err(KmsError::InvalidCiphertext);
            }
            encrypted.split_at(rsa_len)
        } else {
            (encrypted, &[][..])
        };
        if rsa_part.len() != rsa_len {
            return Err(KmsError::InvalidCiphertext);
        }
        let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let n = key
            .decrypt(self.oaep, rsa_part, &mut out, None)
            .map_err(|_| KmsError::InvalidCiphertext)?
            .len();
        out.truncate(n);
        if !self.aes_key_wrap {
            return Ok(out);
        }
        let kek = AesKek::new(&AES_256, &out).map_err(|_| KmsError::InvalidCiphertext)?;
        let mut material = Zeroizing::new(vec![0u8; aes_part.len()]);
        let n = kek
            .unwrap_with_padding(aes_part, &mut material)
            .map_err(|_| KmsError::InvalidCiphertext)?
            .len();
        material.truncate(n);
        Ok(material)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};

    fn seal(public: &[u8], oaep: &'static OaepAlgorithm, data: &[u8]) -> Vec<u8> {
        let pk =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public).unwrap()).unwrap();
        let mut out = vec![0u8; pk.ciphertext_size()];
        pk.encrypt(oaep, data, &mut out, None).unwrap().to_vec()
    }

    #[test]
    fn both_shapes_unwrap_and_tampering_is_invalid_ciphertext() {
        let (private, public) = generate("RSA_2048").unwrap();
        let material = [5u8; 32];
        let oaep = rsa_wrapping("RSAES_OAEP_SHA_256").unwrap();
        let direct = seal(&public, &OAEP_SHA256_MGF1SHA256, &material);
        assert_eq!(&oaep.open(&private, &direct).unwrap()[..], &material);
        let aes_key = [7u8; 32];
        let mut wrapped = seal(&public, &OAEP_SHA256_MGF1SHA256, &aes_key);
        let mut kwp = vec![0u8; 48];
        let n = AesKek::new(&AES_256, &aes_key)
            .unwrap()
            .wrap_with_padding(&material, &mut kwp)
            .unwrap()
            .len();
        wrapped.extend_from_slice(&kwp[..n]);
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
