//! `envelopefs kms ...`: the local key service, with `aws kms` operation and
//! flag names and its JSON output shapes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Subcommand;
use serde_json::json;

use super::{print_result, Failure, Global};
use crate::error::exitcodes;
use crate::kms::local::KeyRecord;
use crate::kms::{EncryptionContext, KeyService};

#[derive(Subcommand, Debug)]
pub enum KmsCommand {
    /// Create a symmetric customer managed key.
    CreateKey {
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Create an alias (alias/NAME) for a key.
    CreateAlias {
        #[arg(long)]
        alias_name: String,
        #[arg(long)]
        target_key_id: String,
    },
    ListKeys,
    ListAliases,
    DescribeKey {
        #[arg(long)]
        key_id: String,
    },
    /// A data key and its wrapped blob.
    GenerateDataKey {
        #[arg(long)]
        key_id: String,
        #[arg(long, default_value = "AES_256")]
        key_spec: String,
        #[arg(long)]
        number_of_bytes: Option<usize>,
        /// KEY=VALUE,... or a JSON object.
        #[arg(long)]
        encryption_context: Option<String>,
    },
    /// Decrypt a base64 ciphertext blob.
    Decrypt {
        #[arg(long)]
        ciphertext_blob: String,
        #[arg(long)]
        key_id: Option<String>,
        #[arg(long)]
        encryption_context: Option<String>,
    },
}

fn ctx(s: &Option<String>) -> Result<EncryptionContext, Failure> {
    match s {
        None => Ok(EncryptionContext::new()),
        Some(s) => EncryptionContext::parse_cli(s).map_err(|msg| Failure {
            code: exitcodes::USAGE,
            msg,
        }),
    }
}

fn metadata(ks: &crate::kms::local::LocalKeyService, r: &KeyRecord) -> serde_json::Value {
    json!({
        "KeyId": r.key_id,
        "Arn": ks.arn(&r.key_id),
        "CreationDate": r.creation_date,
        "Enabled": r.key_state == "Enabled",
        "Description": r.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": r.key_state,
        "Origin": r.origin,
        "KeyManager": r.key_manager,
        "KeySpec": "SYMMETRIC_DEFAULT",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
        "CurrentKeyMaterialId": r.current_material,
    })
}

pub fn run(g: &Global, c: KmsCommand) -> Result<(), Failure> {
    match c {
        KmsCommand::CreateKey { description } => {
            let ks = g.open_or_create_store()?;
            let r = ks.create_key(&description, false)?;
            let m = metadata(&ks, &r);
            print_result(g.output, &json!({ "KeyMetadata": m }), &r.key_id);
        }
        KmsCommand::CreateAlias {
            alias_name,
            target_key_id,
        } => {
            let ks = g.open_store()?;
            ks.create_alias(&alias_name, &target_key_id)?;
        }
        KmsCommand::ListKeys => {
            let ks = g.open_store()?;
            let keys: Vec<_> = ks
                .list_keys()
                .iter()
                .map(|r| json!({"KeyId": r.key_id, "KeyArn": ks.arn(&r.key_id)}))
                .collect();
            let text = ks
                .list_keys()
                .iter()
                .map(|r| format!("{}\t{}", r.key_id, ks.arn(&r.key_id)))
                .collect::<Vec<_>>()
                .join("\n");
            print_result(g.output, &json!({ "Keys": keys }), &text);
        }
        KmsCommand::ListAliases => {
            let ks = g.open_store()?;
            let al = ks.list_aliases();
            let v: Vec<_> = al
                .iter()
                .map(|(a, k)| {
                    json!({"AliasName": a, "AliasArn": format!("{}", ks.arn(k).replace(&format!("key/{k}"), a)), "TargetKeyId": k})
                })
                .collect();
            let text = al
                .iter()
                .map(|(a, k)| format!("{a}\t{k}"))
                .collect::<Vec<_>>()
                .join("\n");
            print_result(g.output, &json!({ "Aliases": v }), &text);
        }
        KmsCommand::DescribeKey { key_id } => {
            let ks = g.open_store()?;
            let r = ks.describe(&key_id)?;
            let m = metadata(&ks, &r);
            let text = format!("{}\t{}\t{}", r.key_id, r.key_state, r.description);
            print_result(g.output, &json!({ "KeyMetadata": m }), &text);
        }
        KmsCommand::GenerateDataKey {
            key_id,
            key_spec,
            number_of_bytes,
            encryption_context,
        } => {
            let n = match (number_of_bytes, key_spec.as_str()) {
                (Some(n), _) => n,
                (None, "AES_256") => 32,
                (None, "AES_128") => 16,
                (None, s) => {
                    return Err(Failure {
                        code: exitcodes::USAGE,
                        msg: format!("ValidationException: unknown key spec {s}"),
                    })
                }
            };
            let ks = g.open_store()?;
            let d = ks.generate_data_key(&key_id, n, &ctx(&encryption_context)?)?;
            let v = json!({
                "CiphertextBlob": B64.encode(&d.ciphertext_blob),
                "Plaintext": B64.encode(&d.plaintext[..]),
                "KeyId": d.key_arn,
                "KeyMaterialId": d.key_material_id,
            });
            let text = B64.encode(&d.ciphertext_blob);
            print_result(g.output, &v, &text);
        }
        KmsCommand::Decrypt {
            ciphertext_blob,
            key_id,
            encryption_context,
        } => {
            let blob = B64.decode(ciphertext_blob.trim()).map_err(|_| Failure {
                code: exitcodes::INVALID_CIPHERTEXT,
                msg: "InvalidCiphertextException: the blob is not base64".into(),
            })?;
            let ks = g.open_store()?;
            let d = ks.decrypt(&blob, &ctx(&encryption_context)?, key_id.as_deref())?;
            let v = json!({
                "KeyId": d.key_arn,
                "Plaintext": B64.encode(&d.plaintext[..]),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "KeyMaterialId": d.key_material_id,
            });
            print_result(g.output, &v, &B64.encode(&d.plaintext[..]));
        }
    }
    Ok(())
}
