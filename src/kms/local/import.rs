//! Imported key material (Origin EXTERNAL): import parameters, the
//! wrapping of the material (HPKE, or AWS's RSA algorithms), its import,
//! expiry and deletion, and new material for on-demand rotation.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use super::keys::missing_material;
use super::{
    digest, ImportParams, KeyMaterial, KeyRecord, LocalKeyService, DAY, ENABLED,
    IMPORT_WRAPPING_ALGORITHM, PENDING_DELETION, PENDING_IMPORT,
};
use crate::kms::KmsError;

mod rsa_wrap;

const IMPORT_INFO: &[u8] = b"envelopefs import-key-material v1";

/// ImportKeyMaterial's ImportType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportType {
    /// Material the key had before (or its first material).
    ExistingKeyMaterial,
    /// Further material for a symmetric key, current after RotateKeyOnDemand.
    NewKeyMaterial,
}

impl ImportType {
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        match s {
            "EXISTING_KEY_MATERIAL" => Ok(ImportType::ExistingKeyMaterial),
            "NEW_KEY_MATERIAL" => Ok(ImportType::NewKeyMaterial),
            other => Err(KmsError::Validation(format!(
                "ImportType must be EXISTING_KEY_MATERIAL or NEW_KEY_MATERIAL, not {other}"
            ))),
        }
    }
}

/// The serde default of import parameters stored before RSA wrapping.
pub(super) fn hpke_wrapping() -> String {
    IMPORT_WRAPPING_ALGORITHM.into()
}

/// A wrapping key pair for `algorithm`: (private key, public key), the
/// private key as stored (base64) and the public key as handed out.
fn wrapping_key_pair(
    algorithm: &str,
    spec: Option<&str>,
) -> Result<(Zeroizing<String>, Vec<u8>), KmsError> {
    use hpke::{Kem as _, Serializable};
    if algorithm == IMPORT_WRAPPING_ALGORITHM {
        if let Some(s) = spec {
            return Err(KmsError::Validation(format!(
                "{IMPORT_WRAPPING_ALGORITHM} takes no WrappingKeySpec ({s})"
            )));
        }
        let (sk, pk) = hpke::kem::X25519HkdfSha256::gen_keypair();
        return Ok((
            Zeroizing::new(B64.encode(sk.to_bytes())),
            pk.to_bytes().to_vec(),
        ));
    }
    if rsa_wrap::rsa_wrapping(algorithm).is_none() {
        return Err(KmsError::Validation(format!(
            "WrappingAlgorithm must be RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, \
             RSA_AES_KEY_WRAP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or \
             {IMPORT_WRAPPING_ALGORITHM}, not {algorithm}"
        )));
    }
    let (private, public) = rsa_wrap::generate(spec.unwrap_or("RSA_2048"))?;
    Ok((Zeroizing::new(B64.encode(&private[..])), public))
}

impl LocalKeyService {
    /// (import token, public key, valid to). The public key of an RSA
    /// algorithm is DER SubjectPublicKeyInfo (`spec` RSA_2048, the default,
    /// RSA_3072 or RSA_4096); HPKE's is the raw X25519 key.
    pub fn get_parameters_for_import(
        &self,
        key: &str,
        algorithm: &str,
        spec: Option<&str>,
    ) -> Result<(String, Vec<u8>, u64), KmsError> {
        // Generated before the store lock: an RSA_4096 key takes a while.
        let (private_key, public_key) = wrapping_key_pair(algorithm, spec)?;
        self.manage("GetParametersForImport", key, |r, now| {
            self.require_external(r)?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            let token = B64.encode(crate::crypto::random_array::<32>());
            let valid_to = now + DAY;
            r.import = Some(ImportParams {
                token: token.clone(),
                private_key: private_key.into(),
                valid_to,
                wrapping_algorithm: algorithm.to_owned(),
            });
            Ok((token, public_key, valid_to))
        })
    }

    /// Returns the key material ID.
    pub fn import_key_material(
        &self,
        key: &str,
        import_token: &str,
        encrypted_material: &[u8],
        valid_to: Option<u64>,
        import_type: ImportType,
    ) -> Result<String, KmsError> {
        self.manage("ImportKeyMaterial", key, |r, now| {
            self.require_external(r)?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            if let Some(t) = valid_to {
                if t <= now || t > now + 365 * DAY {
                    return Err(KmsError::Validation(
                        "ValidTo must be in the next 365 days".into(),
                    ));
                }
            }
            let p = r
                .import
                .as_ref()
                .filter(|p| p.token == import_token)
                .ok_or_else(|| {
                    KmsError::InvalidImportToken(
                        "the import token is not valid for this key".into(),
                    )
                })?;
            if p.valid_to <= now {
                return Err(KmsError::ExpiredImportToken(
                    "the import token has expired".into(),
                ));
            }
            let material = open_material(p, &r.key_id, encrypted_material)?;
            let id = match import_type {
                ImportType::NewKeyMaterial if !r.materials.is_empty() => {
                    self.place_new_material(r, &material, valid_to, now)?
                }
                _ => place_material(r, &material, valid_to, now)?,
            };
            r.import = None;
            if r.key_state == PENDING_IMPORT && !missing_material(r) {
                r.key_state = ENABLED.into();
            }
            Ok(id)
        })
    }

    /// Material imported with NEW_KEY_MATERIAL: kept pending rotation, one
    /// at a time, and never material the key already has.
    fn place_new_material(
        &self,
        r: &mut KeyRecord,
        material: &[u8],
        valid_to: Option<u64>,
        now: u64,
    ) -> Result<String, KmsError> {
        if r.key_spec != "SYMMETRIC_DEFAULT" {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is not a symmetric encryption key: only its one key material can be imported",
                self.arn(&r.key_id)
            )));
        }
        let encm = Zeroizing::new(B64.encode(material));
        let dg = digest(&encm);
        if r.materials.iter().any(|m| m.digest == dg) {
            return Err(KmsError::IncorrectKeyMaterial(
                "this key material is already associated with the key: import it with ImportType EXISTING_KEY_MATERIAL".into(),
            ));
        }
        if let Some(m) = r.materials.iter().find(|m| m.pending_rotation) {
            return Err(KmsError::InvalidState(format!(
                "{} already has key material {} pending rotation: rotate to it (rotate-key-on-demand) or delete it first",
                self.arn(&r.key_id),
                m.id
            )));
        }
        let m = imported_material(encm, dg, valid_to, now, true);
        let id = m.id.clone();
        r.materials.push(m);
        Ok(id)
    }

    pub fn delete_imported_key_material(&self, key: &str) -> Result<(), KmsError> {
        self.manage("DeleteImportedKeyMaterial", key, |r, _| {
            self.require_external(r)?;
            for m in r.materials.iter_mut() {
                m.material = None;
            }
            if r.key_state != PENDING_DELETION {
                r.key_state = PENDING_IMPORT.into();
            }
            Ok(())
        })
    }
}

/// The key material sealed to the import parameters' private key, for `key_id`.
fn open_material(
    p: &ImportParams,
    key_id: &str,
    encrypted: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    use hpke::{Deserializable, OpModeR};
    if let Some(rsa) = rsa_wrap::rsa_wrapping(&p.wrapping_algorithm) {
        let der = Zeroizing::new(
            B64.decode(p.private_key.as_bytes())
                .map_err(|_| KmsError::InvalidCiphertext)?,
        );
        return material_of_length(rsa.open(&der, encrypted)?);
    }
    let skb = Zeroizing::new(
        B64.decode(p.private_key.as_bytes())
            .map_err(|_| KmsError::InvalidCiphertext)?,
    );
    let sk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(&skb)
        .map_err(|_| KmsError::InvalidCiphertext)?;
    if encrypted.len() < 32 {
        return Err(KmsError::InvalidCiphertext);
    }
    let (enc, ct) = encrypted.split_at(32);
    let enc = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| KmsError::InvalidCiphertext)?;
    let material = Zeroizing::new(
        hpke::single_shot_open::<
            hpke::aead::AesGcm256,
            hpke::kdf::HkdfSha256,
            hpke::kem::X25519HkdfSha256,
        >(
            &OpModeR::Base,
            &sk,
            &enc,
            IMPORT_INFO,
            ct,
            key_id.as_bytes(),
        )
        .map_err(|_| KmsError::InvalidCiphertext)?,
    );
    material_of_length(material)
}

/// Symmetric key material is 256 bits.
fn material_of_length(material: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    if material.len() != 32 {
        return Err(KmsError::Validation("key material must be 32 bytes".into()));
    }
    Ok(material)
}

/// A new version of imported material.
fn imported_material(
    material_b64: Zeroizing<String>,
    digest: String,
    valid_to: Option<u64>,
    now: u64,
    pending_rotation: bool,
) -> KeyMaterial {
    KeyMaterial {
        id: uuid::Uuid::new_v4().to_string(),
        created: now,
        material: Some(material_b64.into()),
        digest,
        rotation_type: "IMPORT".into(),
        valid_to,
        pending_rotation,
    }
}

/// Put EXISTING_KEY_MATERIAL in place: the first import makes the key's
/// material and its current one; a re-import must bring the bytes of a
/// material the key has. Returns the material ID.
fn place_material(
    r: &mut KeyRecord,
    material: &[u8],
    valid_to: Option<u64>,
    now: u64,
) -> Result<String, KmsError> {
    let encm = Zeroizing::new(B64.encode(material));
    let dg = digest(&encm);
    if r.materials.is_empty() {
        let m = imported_material(encm, dg, valid_to, now, false);
        let id = m.id.clone();
        r.current_material = id.clone();
        r.materials.push(m);
        return Ok(id);
    }
    let found = match r.materials.iter().position(|m| m.digest == dg) {
        Some(i) => i,
        None if crate::fault::planted("kms-import-other-material") => 0,
        None => {
            return Err(KmsError::IncorrectKeyMaterial(
                "the key material differs from every material imported before".into(),
            ))
        }
    };
    let m = &mut r.materials[found];
    m.material = Some(encm.into());
    m.valid_to = valid_to;
    Ok(m.id.clone())
}

/// Seal 32 bytes of key material for `import-key-material` with the public
/// key from `get-parameters-for-import` (HPKE base mode, RFC 9180).
pub fn wrap_key_material(
    public_key: &[u8],
    key_id: &str,
    material: &[u8],
) -> Result<Vec<u8>, KmsError> {
    use hpke::{Deserializable, OpModeS, Serializable};
    let pk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(public_key)
        .map_err(|_| KmsError::Validation("the public key is not an X25519 key".into()))?;
    let (enc, ct) = hpke::single_shot_seal::<
        hpke::aead::AesGcm256,
        hpke::kdf::HkdfSha256,
        hpke::kem::X25519HkdfSha256,
    >(
        &OpModeS::Base,
        &pk,
        IMPORT_INFO,
        material,
        key_id.as_bytes(),
    )
    .map_err(|_| KmsError::Validation("HPKE seal failed".into()))?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}
