//! Asymmetric keys, as thin typed wrappers over aws-lc-rs (constant-time RSA
//! decryption, which RustCrypto's `rsa` and ring do not offer): the key specs
//! AWS KMS names, key generation, PKCS#8 private and SubjectPublicKeyInfo
//! public DER, signatures over a message or its digest, RSA-OAEP and ECDH.
//! A private key's DER only ever lives in a `Zeroizing` buffer here; the
//! library's own copies are wiped by its drop code.

use aws_lc_rs::agreement;
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    self, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsymError {
    /// The stored private key does not parse as the spec's key.
    #[error("the private key does not parse as a {0} key")]
    BadPrivateKey(&'static str),
    /// A public key given to us is not DER SubjectPublicKeyInfo of the right kind.
    #[error("the public key is not a DER SubjectPublicKeyInfo {0} key")]
    BadPublicKey(&'static str),
    /// A digest whose length is not the algorithm's.
    #[error("the digest is {got} bytes; {algorithm} needs {want}")]
    DigestLength {
        algorithm: &'static str,
        got: usize,
        want: usize,
    },
    #[error("the signature is not valid")]
    BadSignature,
    #[error("the ciphertext does not decrypt")]
    BadCiphertext,
    #[error("{0} failed")]
    Failed(&'static str),
}

/// AWS KMS's asymmetric key specs that this service implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EccNistP256,
    EccNistP384,
    EccNistP521,
    EccSecgP256k1,
}

pub const ALL_SPECS: [KeySpec; 7] = [
    KeySpec::Rsa2048,
    KeySpec::Rsa3072,
    KeySpec::Rsa4096,
    KeySpec::EccNistP256,
    KeySpec::EccNistP384,
    KeySpec::EccNistP521,
    KeySpec::EccSecgP256k1,
];

impl KeySpec {
    pub fn name(self) -> &'static str {
        match self {
            KeySpec::Rsa2048 => "RSA_2048",
            KeySpec::Rsa3072 => "RSA_3072",
            KeySpec::Rsa4096 => "RSA_4096",
            KeySpec::EccNistP256 => "ECC_NIST_P256",
            KeySpec::EccNistP384 => "ECC_NIST_P384",
            KeySpec::EccNistP521 => "ECC_NIST_P521",
            KeySpec::EccSecgP256k1 => "ECC_SECG_P256K1",
        }
    }

    pub fn parse(s: &str) -> Option<KeySpec> {
        ALL_SPECS.into_iter().find(|k| k.name() == s)
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096)
    }

    /// NIST curves allow key agreement; secp256k1 signs only (as in AWS).
    pub fn is_nist_ecc(self) -> bool {
        matches!(
            self,
            KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521
        )
    }

    /// The modulus length of an RSA key, in bytes.
    pub fn rsa_bytes(self) -> usize {
        match self {
            KeySpec::Rsa2048 => 256,
            KeySpec::Rsa3072 => 384,
            _ => 512,
        }
    }

    /// The signing algorithms AWS KMS offers for the spec, in its order.
    pub fn signing_algorithms(self) -> Vec<SigningAlgorithm> {
        use SigningAlgorithm::*;
        match self {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => vec![
                RsassaPkcs1V15Sha256,
                RsassaPkcs1V15Sha384,
                RsassaPkcs1V15Sha512,
                RsassaPssSha256,
                RsassaPssSha384,
                RsassaPssSha512,
            ],
            KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => vec![EcdsaSha256],
            KeySpec::EccNistP384 => vec![EcdsaSha384],
            KeySpec::EccNistP521 => vec![EcdsaSha512],
        }
    }

    fn ecdsa_signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            KeySpec::EccNistP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            KeySpec::EccNistP521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
            KeySpec::EccSecgP256k1 => &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
            _ => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        }
    }

    fn ecdh(self) -> Option<&'static agreement::Algorithm> {
        match self {
            KeySpec::EccNistP256 => Some(&agreement::ECDH_P256),
            KeySpec::EccNistP384 => Some(&agreement::ECDH_P384),
            KeySpec::EccNistP521 => Some(&agreement::ECDH_P521),
            _ => None,
        }
    }
}

/// AWS KMS's signing algorithms (PSS salt length = the hash's length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    RsassaPssSha256,
    RsassaPssSha384,
    RsassaPssSha512,
    RsassaPkcs1V15Sha256,
    RsassaPkcs1V15Sha384,
    RsassaPkcs1V15Sha512,
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
}

pub const ALL_SIGNING: [SigningAlgorithm; 9] = [
    SigningAlgorithm::RsassaPssSha256,
    SigningAlgorithm::RsassaPssSha384,
    SigningAlgorithm::RsassaPssSha512,
    SigningAlgorithm::RsassaPkcs1V15Sha256,
    SigningAlgorithm::RsassaPkcs1V15Sha384,
    SigningAlgorithm::RsassaPkcs1V15Sha512,
    SigningAlgorithm::EcdsaSha256,
    SigningAlgorithm::EcdsaSha384,
    SigningAlgorithm::EcdsaSha512,
];

impl SigningAlgorithm {
    pub fn name(self) -> &'static str {
        use SigningAlgorithm::*;
        match self {
            RsassaPssSha256 => "RSASSA_PSS_SHA_256",
            RsassaPssSha384 => "RSASSA_PSS_SHA_384",
            RsassaPssSha512 => "RSASSA_PSS_SHA_512",
            RsassaPkcs1V15Sha256 => "RSASSA_PKCS1_V1_5_SHA_256",
            RsassaPkcs1V15Sha384 => "RSASSA_PKCS1_V1_5_SHA_384",
            RsassaPkcs1V15Sha512 => "RSASSA_PKCS1_V1_5_SHA_512",
            EcdsaSha256 => "ECDSA_SHA_256",
            EcdsaSha384 => "ECDSA_SHA_384",
            EcdsaSha512 => "ECDSA_SHA_512",
        }
    }

    pub fn parse(s: &str) -> Option<SigningAlgorithm> {
        ALL_SIGNING.into_iter().find(|a| a.name() == s)
    }

    pub fn digest(self) -> &'static digest::Algorithm {
        use SigningAlgorithm::*;
        match self {
            RsassaPssSha256 | RsassaPkcs1V15Sha256 | EcdsaSha256 => &digest::SHA256,
            RsassaPssSha384 | RsassaPkcs1V15Sha384 | EcdsaSha384 => &digest::SHA384,
            RsassaPssSha512 | RsassaPkcs1V15Sha512 | EcdsaSha512 => &digest::SHA512,
        }
    }

    fn rsa_signing(self) -> &'static dyn signature::RsaEncoding {
        use SigningAlgorithm::*;
        match self {
            RsassaPssSha384 => &signature::RSA_PSS_SHA384,
            RsassaPssSha512 => &signature::RSA_PSS_SHA512,
            RsassaPkcs1V15Sha256 => &signature::RSA_PKCS1_SHA256,
            RsassaPkcs1V15Sha384 => &signature::RSA_PKCS1_SHA384,
            RsassaPkcs1V15Sha512 => &signature::RSA_PKCS1_SHA512,
            _ => &signature::RSA_PSS_SHA256,
        }
    }

    fn verification(self, spec: KeySpec) -> &'static dyn signature::VerificationAlgorithm {
        use SigningAlgorithm::*;
        match (self, spec) {
            (RsassaPssSha256, _) => &signature::RSA_PSS_2048_8192_SHA256,
            (RsassaPssSha384, _) => &signature::RSA_PSS_2048_8192_SHA384,
            (RsassaPssSha512, _) => &signature::RSA_PSS_2048_8192_SHA512,
            (RsassaPkcs1V15Sha256, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (RsassaPkcs1V15Sha384, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (RsassaPkcs1V15Sha512, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (_, KeySpec::EccSecgP256k1) => &signature::ECDSA_P256K1_SHA256_ASN1,
            (_, KeySpec::EccNistP384) => &signature::ECDSA_P384_SHA384_ASN1,
            (_, KeySpec::EccNistP521) => &signature::ECDSA_P521_SHA512_ASN1,
            _ => &signature::ECDSA_P256_SHA256_ASN1,
        }
    }
}

/// RSA-OAEP with the same hash for MGF1 and an empty label, as AWS KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionAlgorithm {
    RsaesOaepSha1,
    RsaesOaepSha256,
}

impl EncryptionAlgorithm {
    pub const ALL: [EncryptionAlgorithm; 2] = [
        EncryptionAlgorithm::RsaesOaepSha1,
        EncryptionAlgorithm::RsaesOaepSha256,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EncryptionAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            EncryptionAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }

    pub fn parse(s: &str) -> Option<EncryptionAlgorithm> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    fn oaep(self) -> &'static rsa::OaepAlgorithm {
        match self {
            EncryptionAlgorithm::RsaesOaepSha1 => &rsa::OAEP_SHA1_MGF1SHA1,
            EncryptionAlgorithm::RsaesOaepSha256 => &rsa::OAEP_SHA256_MGF1SHA256,
        }
    }

    /// The longest plaintext for an RSA key of `spec`: k - 2*hLen - 2
    /// (214/190, 342/318, 470/446 bytes, AWS's table).
    pub fn max_plaintext(self, spec: KeySpec) -> usize {
        let hash = match self {
            EncryptionAlgorithm::RsaesOaepSha1 => 20,
            EncryptionAlgorithm::RsaesOaepSha256 => 32,
        };
        spec.rsa_bytes() - 2 * hash - 2
    }
}

fn zeroizing(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(bytes.to_vec())
}

/// A new private key of `spec`, as PKCS#8 DER.
pub fn generate(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let fail = |_| AsymError::Failed("key generation");
    if spec.is_rsa() {
        let size = match spec {
            KeySpec::Rsa2048 => rsa::KeySize::Rsa2048,
            KeySpec::Rsa3072 => rsa::KeySize::Rsa3072,
            _ => rsa::KeySize::Rsa4096,
        };
        let pair = RsaKeyPair::generate(size).map_err(fail)?;
        let der = pair.as_der().map_err(fail)?;
        return Ok(zeroizing(der.as_ref()));
    }
    let pair = EcdsaKeyPair::generate(spec.ecdsa_signing()).map_err(fail)?;
    let doc = pair.to_pkcs8v1().map_err(fail)?;
    Ok(zeroizing(doc.as_ref()))
}

fn rsa_pair(spec: KeySpec, pkcs8: &[u8]) -> Result<RsaKeyPair, AsymError> {
    let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| AsymError::BadPrivateKey(spec.name()))?;
    if pair.public_modulus_len() != spec.rsa_bytes() {
        return Err(AsymError::BadPrivateKey(spec.name()));
    }
    Ok(pair)
}

fn ec_pair(spec: KeySpec, pkcs8: &[u8]) -> Result<EcdsaKeyPair, AsymError> {
    EcdsaKeyPair::from_pkcs8(spec.ecdsa_signing(), pkcs8)
        .map_err(|_| AsymError::BadPrivateKey(spec.name()))
}

/// The public half of a private key, as DER SubjectPublicKeyInfo.
pub fn public_key_der(spec: KeySpec, pkcs8: &[u8]) -> Result<Vec<u8>, AsymError> {
    let fail = |_| AsymError::Failed("public key encoding");
    let der = if spec.is_rsa() {
        rsa_pair(spec, pkcs8)?.public_key().as_der().map_err(fail)?
    } else {
        ec_pair(spec, pkcs8)?.public_key().as_der().map_err(fail)?
    };
    Ok(der.as_ref().to_vec())
}

/// What a signature covers: the message itself (hashed here) or the
/// digest the caller made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Raw(&'a [u8]),
    Digest(&'a [u8]),
}

fn imported_digest(alg: SigningAlgorithm, d: &[u8]) -> Result<Digest, AsymError> {
    Digest::import_less_safe(d, alg.digest()).map_err(|_| AsymError::DigestLength {
        algorithm: alg.name(),
        got: d.len(),
        want: alg.digest().output_len(),
    })
}

/// Sign with the private key; `alg` must suit `spec` (the caller checks).
pub fn sign(
    spec: KeySpec,
    pkcs8: &[u8],
    alg: SigningAlgorithm,
    msg: Message,
) -> Result<Vec<u8>, AsymError> {
    let fail = |_| AsymError::Failed("signing");
    if spec.is_rsa() {
        let pair = rsa_pair(spec, pkcs8)?;
        let mut sig = vec![0u8; pair.public_modulus_len()];
        match msg {
            Message::Raw(m) => pair
                .sign(
                    alg.rsa_signing(),
                    &aws_lc_rs::rand::SystemRandom::new(),
                    m,
                    &mut sig,
                )
                .map_err(fail)?,
            Message::Digest(d) => pair
                .sign_digest(alg.rsa_signing(), &imported_digest(alg, d)?, &mut sig)
                .map_err(fail)?,
        }
        return Ok(sig);
    }
    let pair = ec_pair(spec, pkcs8)?;
    let sig = match msg {
        Message::Raw(m) => pair
            .sign(&aws_lc_rs::rand::SystemRandom::new(), m)
            .map_err(fail)?,
        Message::Digest(d) => pair.sign_digest(&imported_digest(alg, d)?).map_err(fail)?,
    };
    Ok(sig.as_ref().to_vec())
}

/// Verify a signature against a DER SubjectPublicKeyInfo public key.
pub fn verify(
    spec: KeySpec,
    spki: &[u8],
    alg: SigningAlgorithm,
    msg: Message,
    sig: &[u8],
) -> Result<(), AsymError> {
    let key = UnparsedPublicKey::new(alg.verification(spec), spki);
    let r = match msg {
        Message::Raw(m) => key.verify(m, sig),
        Message::Digest(d) => key.verify_digest(&imported_digest(alg, d)?, sig),
    };
    r.map_err(|_| AsymError::BadSignature)
}

/// RSA-OAEP encryption under a DER SubjectPublicKeyInfo public key.
pub fn encrypt(
    spki: &[u8],
    alg: EncryptionAlgorithm,
    plaintext: &[u8],
) -> Result<Vec<u8>, AsymError> {
    let key = PublicEncryptingKey::from_der(spki)
        .ok()
        .and_then(|k| OaepPublicEncryptingKey::new(k).ok())
        .ok_or(AsymError::BadPublicKey("RSA"))?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(alg.oaep(), plaintext, &mut out, None)
        .map_err(|_| AsymError::Failed("RSA-OAEP encryption"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// The RSA spec of a PKCS#8 RSA private key, by its modulus length.
pub fn rsa_spec_of(pkcs8: &[u8]) -> Option<KeySpec> {
    let len = PrivateDecryptingKey::from_pkcs8(pkcs8)
        .ok()?
        .key_size_bytes();
    ALL_SPECS
        .into_iter()
        .find(|s| s.is_rsa() && s.rsa_bytes() == len)
}

/// AES key unwrap with padding (RFC 5649) under a 256-bit key.
pub fn aes_key_unwrap_padded(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
    let kek = AesKek::new(&AES_256, kek).map_err(|_| AsymError::BadCiphertext)?;
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let n = kek
        .unwrap_with_padding(wrapped, &mut out)
        .map_err(|_| AsymError::BadCiphertext)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// AES key wrap with padding (RFC 5649) under a 256-bit key.
pub fn aes_key_wrap_padded(kek: &[u8], key: &[u8]) -> Result<Vec<u8>, AsymError> {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
    let kek = AesKek::new(&AES_256, kek).map_err(|_| AsymError::Failed("AES key wrap"))?;
    let mut out = vec![0u8; key.len() + 15];
    let n = kek
        .wrap_with_padding(key, &mut out)
        .map_err(|_| AsymError::Failed("AES key wrap"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// RSA-OAEP decryption (constant-time in AWS-LC) with the private key.
pub fn decrypt(
    spec: KeySpec,
    pkcs8: &[u8],
    alg: EncryptionAlgorithm,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let key = PrivateDecryptingKey::from_pkcs8(pkcs8)
        .ok()
        .filter(|k| k.key_size_bytes() == spec.rsa_bytes())
        .and_then(|k| OaepPrivateDecryptingKey::new(k).ok())
        .ok_or(AsymError::BadPrivateKey(spec.name()))?;
    if ciphertext.len() != key.key_size_bytes() {
        return Err(AsymError::BadCiphertext);
    }
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = key
        .decrypt(alg.oaep(), ciphertext, &mut out, None)
        .map_err(|_| AsymError::BadCiphertext)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// The raw ECDH shared secret of our private key and a peer's public key
/// (DER SubjectPublicKeyInfo on the same curve).
pub fn derive_shared_secret(
    spec: KeySpec,
    pkcs8: &[u8],
    peer_spki: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AsymError> {
    let alg = spec.ecdh().ok_or(AsymError::BadPrivateKey(spec.name()))?;
    let ours = agreement::PrivateKey::from_private_key_der(alg, pkcs8)
        .map_err(|_| AsymError::BadPrivateKey(spec.name()))?;
    let peer =
        agreement::ParsedPublicKey::try_from(&agreement::UnparsedPublicKey::new(alg, peer_spki))
            .ok()
            .filter(|p| p.format() == agreement::ParsedPublicKeyFormat::X509)
            .ok_or(AsymError::BadPublicKey(spec.name()))?;
    agreement::agree(&ours, peer, AsymError::BadPublicKey(spec.name()), |s| {
        Ok(zeroizing(s))
    })
}

/// The spec of a DER SubjectPublicKeyInfo public key: an RSA key of one of
/// the RSA specs, or a point on one of the NIST curves; None otherwise.
pub fn public_key_spec(spki: &[u8]) -> Option<KeySpec> {
    if let Ok(k) = PublicEncryptingKey::from_der(spki) {
        let len = k.key_size_bytes();
        return ALL_SPECS
            .into_iter()
            .find(|s| s.is_rsa() && s.rsa_bytes() == len);
    }
    ALL_SPECS.into_iter().filter(|s| s.is_nist_ecc()).find(|s| {
        s.ecdh().is_some_and(|alg| {
            agreement::ParsedPublicKey::try_from(&agreement::UnparsedPublicKey::new(alg, spki))
                .is_ok_and(|p| p.format() == agreement::ParsedPublicKeyFormat::X509)
        })
    })
}

/// ECDH of a fresh ephemeral key with a recipient's public key (DER SPKI on
/// the curve of `spec`): the ephemeral public key as DER SPKI, and the raw
/// shared secret (the x-coordinate, as KMS DeriveSharedSecret returns it).
pub fn ecdh_ephemeral(
    spec: KeySpec,
    peer_spki: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), AsymError> {
    use aws_lc_rs::encoding::PublicKeyX509Der;
    let alg = spec.ecdh().ok_or(AsymError::BadPublicKey(spec.name()))?;
    let fail = |_| AsymError::Failed("ephemeral ECDH");
    let ours = agreement::PrivateKey::generate(alg).map_err(fail)?;
    let public = ours.compute_public_key().map_err(fail)?;
    let der: PublicKeyX509Der = public.as_der().map_err(fail)?;
    let peer =
        agreement::ParsedPublicKey::try_from(&agreement::UnparsedPublicKey::new(alg, peer_spki))
            .ok()
            .filter(|p| p.format() == agreement::ParsedPublicKeyFormat::X509)
            .ok_or(AsymError::BadPublicKey(spec.name()))?;
    let z = agreement::agree(&ours, peer, AsymError::BadPublicKey(spec.name()), |s| {
        Ok(zeroizing(s))
    })?;
    Ok((der.as_ref().to_vec(), z))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecc_keys_sign_verify_and_agree() {
        for spec in [
            KeySpec::EccNistP256,
            KeySpec::EccNistP384,
            KeySpec::EccNistP521,
            KeySpec::EccSecgP256k1,
        ] {
            let k = generate(spec).unwrap();
            let pubk = public_key_der(spec, &k).unwrap();
            for alg in spec.signing_algorithms() {
                let sig = sign(spec, &k, alg, Message::Raw(b"hello")).unwrap();
                verify(spec, &pubk, alg, Message::Raw(b"hello"), &sig).unwrap();
                let d = digest::digest(alg.digest(), b"hello");
                verify(spec, &pubk, alg, Message::Digest(d.as_ref()), &sig).unwrap();
                assert_eq!(
                    verify(spec, &pubk, alg, Message::Raw(b"hellO"), &sig),
                    Err(AsymError::BadSignature)
                );
            }
            if spec.is_nist_ecc() {
                let other = generate(spec).unwrap();
                let other_pub = public_key_der(spec, &other).unwrap();
                let a = derive_shared_secret(spec, &k, &other_pub).unwrap();
                let b = derive_shared_secret(spec, &other, &pubk).unwrap();
                assert_eq!(*a, *b);
            }
        }
    }

    #[test]
    fn rsa_oaep_round_trips_at_aws_limits() {
        let spec = KeySpec::Rsa2048;
        let k = generate(spec).unwrap();
        let pubk = public_key_der(spec, &k).unwrap();
        for (alg, max) in [
            (EncryptionAlgorithm::RsaesOaepSha1, 214),
            (EncryptionAlgorithm::RsaesOaepSha256, 190),
        ] {
            assert_eq!(alg.max_plaintext(spec), max);
            let pt = vec![7u8; max];
            let ct = encrypt(&pubk, alg, &pt).unwrap();
            assert_eq!(*decrypt(spec, &k, alg, &ct).unwrap(), pt);
            assert!(encrypt(&pubk, alg, &vec![7u8; max + 1]).is_err());
        }
        let sig = sign(
            spec,
            &k,
            SigningAlgorithm::RsassaPssSha384,
            Message::Raw(b"m"),
        )
        .unwrap();
        verify(
            spec,
            &pubk,
            SigningAlgorithm::RsassaPssSha384,
            Message::Raw(b"m"),
            &sig,
        )
        .unwrap();
    }
}
