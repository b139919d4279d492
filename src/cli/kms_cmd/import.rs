//! Imported key material: parameters, wrapping, import and deletion.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use serde_json::json;

use super::super::{print_aws, Failure, Global};
use super::{blob_arg, usage};
use crate::kms::local::IMPORT_WRAPPING_ALGORITHM;

#[derive(Args, Debug)]
pub struct GetParametersArgs {
    /// The EXTERNAL key to import material into (key ID or ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// How the material is to be wrapped: RSAES_OAEP_SHA_256,
    /// RSA_AES_KEY_WRAP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_1
    /// (AWS's), or HPKE_X25519_HKDF_SHA256_AES_256_GCM (ours, for
    /// wrap-key-material, and the default here; AWS requires the argument).
    #[arg(long, default_value = IMPORT_WRAPPING_ALGORITHM)]
    pub(super) wrapping_algorithm: String,
    /// RSA_2048, RSA_3072 or RSA_4096 for the RSA algorithms (default
    /// RSA_2048 here; AWS requires it); none for HPKE.
    #[arg(long)]
    pub(super) wrapping_key_spec: Option<String>,
}

#[derive(Args, Debug)]
pub struct WrapArgs {
    /// The EXTERNAL key the material is for (key ID or ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// The PublicKey from get-parameters-for-import (base64).
    #[arg(long)]
    pub(super) public_key: String,
    /// A file holding exactly 32 bytes of key material.
    #[arg(long)]
    pub(super) key_material_file: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The EXTERNAL key to import into (key ID or ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// The ImportToken from get-parameters-for-import (base64).
    #[arg(long)]
    pub(super) import_token: String,
    /// Base64 output of wrap-key-material.
    #[arg(long)]
    pub(super) encrypted_key_material: String,
    /// KEY_MATERIAL_EXPIRES (needs --valid-to) or KEY_MATERIAL_DOES_NOT_EXPIRE.
    #[arg(long)]
    pub(super) expiration_model: Option<String>,
    /// When the material expires: ISO 8601 (2099-06-17T12:00:00-08:00) or
    /// seconds since the epoch.
    #[arg(long, value_parser = super::store::parse_time)]
    pub(super) valid_to: Option<u64>,
    /// EXISTING_KEY_MATERIAL (the default: the key's first material, or
    /// material it had before) or NEW_KEY_MATERIAL (further material for a
    /// symmetric key, made current by rotate-key-on-demand).
    #[arg(long, default_value = "EXISTING_KEY_MATERIAL")]
    pub(super) import_type: String,
}

#[derive(Args, Debug)]
pub struct ExternalKeyArg {
    /// The EXTERNAL key (key ID or ARN).
    #[arg(long)]
    pub(super) key_id: String,
}

pub fn wrap_key_material(g: &Global, a: WrapArgs) -> Result<(), Failure> {
    let m = zeroize::Zeroizing::new(
        std::fs::read(&a.key_material_file)
            .map_err(|e| usage(format!("{}: {e}", a.key_material_file.display())))?,
    );
    if m.len() != 32 {
        return Err(usage("key material must be exactly 32 bytes"));
    }
    let pk = blob_arg(&a.public_key, "the public key")?;
    let ks = g.open_store()?;
    let id = ks.key_id_of(&a.key_id)?;
    let w = crate::kms::local::wrap_key_material(&pk, &id, &m)?;
    print_aws(g.output, &json!({"EncryptedKeyMaterial": B64.encode(&w)}));
    Ok(())
}

/// `--expiration-model` and `--valid-to` must agree.
pub(super) fn check_expiration(model: Option<&str>, valid_to: Option<u64>) -> Result<(), Failure> {
    match (model, valid_to) {
        (Some("KEY_MATERIAL_EXPIRES"), None) => Err(usage(
            "ValidationException: KEY_MATERIAL_EXPIRES needs --valid-to",
        )),
        (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), Some(_)) => Err(usage(
            "ValidationException: --valid-to contradicts KEY_MATERIAL_DOES_NOT_EXPIRE",
        )),
        (Some(m), _) if m != "KEY_MATERIAL_EXPIRES" && m != "KEY_MATERIAL_DOES_NOT_EXPIRE" => Err(
            usage(format!("ValidationException: unknown expiration model {m}")),
        ),
        _ => Ok(()),
    }
}
