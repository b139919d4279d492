//! Imported key material (Origin EXTERNAL): import parameters, the HPKE
//! wrapping of the material, its import, expiry and deletion.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use super::{
    digest, ImportParams, KeyMaterial, KeyRecord, LocalKeyService, DAY, ENABLED, PENDING_DELETION,
    PENDING_IMPORT,
};
use crate::kms::KmsError;

const IMPORT_INFO: &[u8] = b"envelopefs import-key-material v1";

impl LocalKeyService {
    /// (import token, public key, valid to).
    pub fn get_parameters_for_import(&self, key: &str) -> Result<(String, Vec<u8>, u64), KmsError> {
        use hpke::{Kem as _, Serializable};
        self.manage("GetParametersForImport", key, |r, now| {
            self.require_external(r)?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            let (sk, pk) = hpke::kem::X25519HkdfSha256::gen_keypair();
            let token = B64.encode(crate::crypto::random_array::<32>());
            let valid_to = now + DAY;
            r.import = Some(ImportParams {
                token: token.clone(),
                private_key: Zeroizing::new(B64.encode(sk.to_bytes())),
                valid_to,
            });
            Ok((token, pk.to_bytes().to_vec(), valid_to))
        })
    }

    /// Returns the key material ID.
    pub fn import_key_material(
        &self,
        key: &str,
        import_token: &str,
        encrypted_material: &[u8],
        valid_to: Option<u64>,
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
            let id = place_material(r, &material, valid_to, now)?;
            r.current_material = id.clone();
            r.import = None;
            if r.key_state == PENDING_IMPORT {
                r.key_state = ENABLED.into();
            }
            Ok(id)
        })
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
    if material.len() != 32 {
        return Err(KmsError::Validation("key material must be 32 bytes".into()));
    }
    Ok(material)
}

/// Put imported material in place: the first import makes the material,
/// a re-import must bring the same bytes. Returns the material ID.
fn place_material(
    r: &mut KeyRecord,
    material: &[u8],
    valid_to: Option<u64>,
    now: u64,
) -> Result<String, KmsError> {
    let encm = Zeroizing::new(B64.encode(material));
    let dg = digest(&encm);
    match r.materials.first() {
        Some(m) if m.digest != dg && !crate::fault::planted("kms-import-other-material") => {
            Err(KmsError::IncorrectKeyMaterial(
                "the key material differs from the material imported before".into(),
            ))
        }
        Some(_) => {
            let m = &mut r.materials[0];
            m.material = Some(encm);
            m.valid_to = valid_to;
            Ok(m.id.clone())
        }
        None => {
            let m = KeyMaterial {
                id: uuid::Uuid::new_v4().to_string(),
                created: now,
                material: Some(encm),
                digest: dg,
                rotation_type: "IMPORT".into(),
                valid_to,
                pending_rotation: false,
            };
            let id = m.id.clone();
            r.materials.push(m);
            Ok(id)
        }
    }
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
