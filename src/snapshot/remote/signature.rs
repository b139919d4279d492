//! Signed manifests (`push --sign-key KEY`): the key service signs the
//! SHA-256 of the manifest object's bytes (MessageType RAW, the 32 digest
//! bytes as the message) with an asymmetric SIGN_VERIFY key, stored as
//! `signatures/NAME`. A pull or verify with `--signed-by KEY` requires a
//! valid signature by that key, checked against its public key; a
//! signature present without `--signed-by` is checked against the key it
//! names, so a damaged one is never ignored. An unsigned snapshot is
//! refused only when `--signed-by` asks for a signature: deleting the
//! signature object is the attack `--signed-by` exists for.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RemoteError;
use crate::crypto::asym::{self, KeySpec, Message, SigningAlgorithm};
use crate::kms::KeyService;

pub const SIGNATURE_PREFIX: &str = "signatures/";

/// A signature object is a few hundred bytes; a planted endless one is not.
pub const MAX_SIGNATURE_OBJECT: u64 = 16 << 10;

pub fn signature_key(name: &str) -> String {
    format!("{SIGNATURE_PREFIX}{name}")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SignatureObject {
    key_id: String,
    signing_algorithm: String,
    /// Base64.
    signature: String,
}

/// The algorithm a key of this spec signs manifests with.
fn algorithm_for(spec: KeySpec) -> SigningAlgorithm {
    match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => SigningAlgorithm::RsassaPssSha256,
        KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => SigningAlgorithm::EcdsaSha256,
        KeySpec::EccNistP384 => SigningAlgorithm::EcdsaSha384,
        KeySpec::EccNistP521 => SigningAlgorithm::EcdsaSha512,
    }
}

fn key_err(what: String) -> impl FnOnce(crate::kms::KmsError) -> RemoteError {
    move |source| RemoteError::Key { what, source }
}

/// A SIGN_VERIFY key's public half: its spec and DER.
fn signing_key(ks: &dyn KeyService, key: &str) -> Result<(String, KeySpec, Vec<u8>), RemoteError> {
    let p = ks
        .get_public_key(key)
        .map_err(key_err(format!("the signing key {key}")))?;
    if p.key_usage != "SIGN_VERIFY" {
        return Err(RemoteError::Usage(format!(
            "{key} is a {} key, not SIGN_VERIFY",
            p.key_usage
        )));
    }
    let spec = KeySpec::parse(&p.key_spec)
        .ok_or_else(|| RemoteError::Usage(format!("{key}: key spec {} cannot sign", p.key_spec)))?;
    Ok((p.key_arn, spec, p.der))
}

/// The signature object for a manifest object's bytes.
pub fn sign(ks: &dyn KeyService, key: &str, manifest: &[u8]) -> Result<Vec<u8>, RemoteError> {
    let (arn, spec, _) = signing_key(ks, key)?;
    let alg = algorithm_for(spec);
    let digest = Sha256::digest(manifest);
    let sig = ks
        .sign_raw(&arn, &digest, alg.name())
        .map_err(key_err(format!("signing the manifest with {key}")))?;
    let obj = SignatureObject {
        key_id: arn,
        signing_algorithm: alg.name().to_owned(),
        signature: B64.encode(sig),
    };
    serde_json::to_vec(&obj).map_err(|e| RemoteError::Usage(format!("signature: {e}")))
}

/// Check the signature object (if any) of a manifest object; `signed_by`
/// demands one by that key. The signer's ARN when signed.
pub fn check(
    ks: &dyn KeyService,
    object_key: &str,
    manifest: &[u8],
    signature: Option<&[u8]>,
    signed_by: Option<&str>,
) -> Result<Option<String>, RemoteError> {
    let damaged = |what: String| RemoteError::Damaged {
        key: object_key.to_owned(),
        what,
    };
    let Some(raw) = signature else {
        return match signed_by {
            Some(k) => Err(damaged(format!(
                "missing: the snapshot is not signed, and {k} must sign it"
            ))),
            None => Ok(None),
        };
    };
    let obj: SignatureObject =
        serde_json::from_slice(raw).map_err(|_| damaged("not a signature object".into()))?;
    let (arn, spec, der) = signing_key(ks, signed_by.unwrap_or(&obj.key_id))?;
    if signed_by.is_some() && obj.key_id != arn {
        return Err(damaged(format!("signed by {}, not by {arn}", obj.key_id)));
    }
    let alg = SigningAlgorithm::parse(&obj.signing_algorithm)
        .filter(|a| *a == algorithm_for(spec))
        .ok_or_else(|| {
            damaged(format!(
                "signing algorithm {} refused",
                obj.signing_algorithm
            ))
        })?;
    let sig = B64
        .decode(&obj.signature)
        .map_err(|_| damaged("the signature is not base64".into()))?;
    let digest = Sha256::digest(manifest);
    asym::verify(spec, &der, alg, Message::Raw(&digest), &sig)
        .map_err(|_| damaged(format!("the signature by {arn} does not verify")))?;
    Ok(Some(arn))
}
