//! `envelopefs kms ...`: the local key service, with `aws kms` operation and
//! flag names and its JSON output shapes.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Subcommand;
use serde_json::{json, Value};

use super::{print_result, Failure, Global};
use crate::error::exitcodes;
use crate::kms::audit::AuditFilter;
use crate::kms::local::{fmt_time, KdfCost, KeyRecord, LocalKeyService, IMPORT_WRAPPING_ALGORITHM};
use crate::kms::passphrase::PassphraseSource;
use crate::kms::{EncryptionContext, KeyService};

#[derive(Subcommand, Debug)]
pub enum KmsCommand {
    /// Create a symmetric customer managed key.
    CreateKey {
        /// A description of the key (shown by describe-key and list-keys).
        #[arg(long, default_value = "")]
        description: String,
        /// AWS_KMS (material made here) or EXTERNAL (imported material).
        #[arg(long, default_value = "AWS_KMS")]
        origin: String,
    },
    /// Show a key's metadata: state, origin, dates, material.
    DescribeKey {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// List the key IDs and ARNs in the store.
    ListKeys,
    /// List the aliases in the store, with the keys they point to.
    ListAliases {
        /// Only the aliases of this key (key ID or key ARN).
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Create an alias (alias/NAME) for a key.
    CreateAlias {
        /// The new alias, starting with alias/.
        #[arg(long)]
        alias_name: String,
        /// The key it names (key ID or key ARN).
        #[arg(long)]
        target_key_id: String,
    },
    /// Point an existing alias at another key.
    UpdateAlias {
        /// The alias to change, starting with alias/.
        #[arg(long)]
        alias_name: String,
        /// The key it is to name (key ID or key ARN).
        #[arg(long)]
        target_key_id: String,
    },
    /// Delete an alias (the key stays).
    DeleteAlias {
        /// The alias to delete, starting with alias/.
        #[arg(long)]
        alias_name: String,
    },
    /// Enable a disabled key, so it may be used again.
    EnableKey {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Disable a key: volumes under it cannot be mounted until it is enabled.
    DisableKey {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Schedule a key's deletion after a waiting period (7..30 days).
    ScheduleKeyDeletion {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// Days until the key is deleted (7..30, default 30).
        #[arg(long)]
        pending_window_in_days: Option<u32>,
    },
    /// Cancel a scheduled deletion (the key stays disabled).
    CancelKeyDeletion {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Rotate a key's material automatically at a fixed period.
    EnableKeyRotation {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// Days between rotations (90..2560, default 365).
        #[arg(long)]
        rotation_period_in_days: Option<u32>,
    },
    /// Stop a key's automatic rotation.
    DisableKeyRotation {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Show whether a key rotates automatically, and when next.
    GetKeyRotationStatus {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Rotate a key's material now (older material still decrypts).
    RotateKeyOnDemand {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// List a key's past rotations.
    ListKeyRotations {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
    },
    /// A wrapping public key (X25519, for HPKE) and a 24-hour import token.
    GetParametersForImport {
        /// The EXTERNAL key to import material into (key ID or ARN).
        #[arg(long)]
        key_id: String,
        /// How the material is to be wrapped (only this one is offered).
        #[arg(long, default_value = IMPORT_WRAPPING_ALGORITHM)]
        wrapping_algorithm: String,
    },
    /// Seal key material for import-key-material (a local helper; no aws counterpart).
    WrapKeyMaterial {
        /// The EXTERNAL key the material is for (key ID or ARN).
        #[arg(long)]
        key_id: String,
        /// The PublicKey from get-parameters-for-import (base64).
        #[arg(long)]
        public_key: String,
        /// A file holding exactly 32 bytes of key material.
        #[arg(long)]
        key_material_file: PathBuf,
    },
    /// Import wrapped key material into an EXTERNAL key.
    ImportKeyMaterial {
        /// The EXTERNAL key to import into (key ID or ARN).
        #[arg(long)]
        key_id: String,
        /// The ImportToken from get-parameters-for-import (base64).
        #[arg(long)]
        import_token: String,
        /// Base64 output of wrap-key-material.
        #[arg(long)]
        encrypted_key_material: String,
        /// KEY_MATERIAL_EXPIRES (needs --valid-to) or KEY_MATERIAL_DOES_NOT_EXPIRE.
        #[arg(long)]
        expiration_model: Option<String>,
        /// Seconds since the epoch.
        #[arg(long)]
        valid_to: Option<u64>,
    },
    /// Delete an EXTERNAL key's imported material (the key becomes unusable).
    DeleteImportedKeyMaterial {
        /// The EXTERNAL key (key ID or ARN).
        #[arg(long)]
        key_id: String,
    },
    /// A data key and its wrapped blob.
    GenerateDataKey {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// AES_256 or AES_128 (or give --number-of-bytes).
        #[arg(long, default_value = "AES_256")]
        key_spec: String,
        /// Length of the data key in bytes, instead of --key-spec.
        #[arg(long)]
        number_of_bytes: Option<usize>,
        /// KEY=VALUE,... or a JSON object.
        #[arg(long)]
        encryption_context: Option<String>,
    },
    /// Encrypt up to 4096 bytes under a key.
    Encrypt {
        /// Key ID, key ARN, alias name or alias ARN.
        #[arg(long)]
        key_id: String,
        /// Base64 plaintext.
        #[arg(long)]
        plaintext: String,
        /// KEY=VALUE,... or a JSON object; decrypt must give the same.
        #[arg(long)]
        encryption_context: Option<String>,
    },
    /// Decrypt a base64 ciphertext blob.
    Decrypt {
        /// The blob from encrypt or generate-data-key (base64).
        #[arg(long)]
        ciphertext_blob: String,
        /// Fail unless the blob is under this key (key ID, ARN or alias).
        #[arg(long)]
        key_id: Option<String>,
        /// The encryption context the blob was made with.
        #[arg(long)]
        encryption_context: Option<String>,
    },
    /// Decrypt a blob and encrypt its plaintext under another key.
    ReEncrypt {
        /// The blob from encrypt or generate-data-key (base64).
        #[arg(long)]
        ciphertext_blob: String,
        /// The key to encrypt under (key ID, ARN or alias).
        #[arg(long)]
        destination_key_id: String,
        /// The encryption context the blob was made with.
        #[arg(long)]
        source_encryption_context: Option<String>,
        /// The encryption context of the new blob.
        #[arg(long)]
        destination_encryption_context: Option<String>,
    },
    /// Write the store, encrypted under a backup passphrase, to FILE.
    ExportBackup {
        /// The backup file to write (must not exist).
        file: PathBuf,
        /// Read the backup passphrase from this file (default: ask).
        #[arg(long, env = "ENVELOPEFS_BACKUP_PASSPHRASE_FILE")]
        backup_passphrase_file: Option<PathBuf>,
    },
    /// Create the store (which must not exist) from a backup FILE.
    ImportBackup {
        /// The backup file written by export-backup.
        file: PathBuf,
        /// Read the backup passphrase from this file (default: ask).
        #[arg(long, env = "ENVELOPEFS_BACKUP_PASSPHRASE_FILE")]
        backup_passphrase_file: Option<PathBuf>,
    },
    /// Re-seal the store under a new passphrase (keys unchanged).
    ChangePassphrase {
        /// Read the new passphrase from this file (default: ask twice).
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Read the audit log.
    Audit {
        /// Only events about this key (key ID or ARN).
        #[arg(long)]
        key_id: Option<String>,
        /// Seconds since the epoch.
        #[arg(long)]
        since: Option<u64>,
        /// Only events of this operation (e.g. Decrypt, GenerateDataKey).
        #[arg(long)]
        operation: Option<String>,
    },
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        code: exitcodes::USAGE,
        msg: msg.into(),
    }
}

fn ctx(s: &Option<String>) -> Result<EncryptionContext, Failure> {
    match s {
        None => Ok(EncryptionContext::new()),
        Some(s) => EncryptionContext::parse_cli(s).map_err(usage),
    }
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, Failure> {
    B64.decode(s.trim()).map_err(|_| Failure {
        code: exitcodes::INVALID_CIPHERTEXT,
        msg: format!("InvalidCiphertextException: {what} is not base64"),
    })
}

pub fn metadata(ks: &LocalKeyService, r: &KeyRecord) -> Value {
    let mut m = json!({
        "AWSAccountId": ks.store_id(),
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
    });
    if !r.current_material.is_empty() {
        m["CurrentKeyMaterialId"] = json!(r.current_material);
    }
    if let Some(d) = r.deletion_date {
        m["DeletionDate"] = json!(d);
        m["PendingDeletionWindowInDays"] = json!(r.pending_window_in_days);
    }
    if r.origin == "EXTERNAL" {
        match r.valid_to() {
            Some(t) => {
                m["ExpirationModel"] = json!("KEY_MATERIAL_EXPIRES");
                m["ValidTo"] = json!(t);
            }
            None => m["ExpirationModel"] = json!("KEY_MATERIAL_DOES_NOT_EXPIRE"),
        }
    }
    m
}

fn read_pass(file: &Option<PathBuf>, new: bool) -> Result<zeroize::Zeroizing<String>, Failure> {
    let src = PassphraseSource::file(file.clone());
    Ok(if new {
        src.new_passphrase()?
    } else {
        src.existing()?
    })
}

pub fn run(g: &Global, c: KmsCommand) -> Result<(), Failure> {
    let out = g.output;
    match c {
        KmsCommand::CreateKey {
            description,
            origin,
        } => {
            let ks = g.open_or_create_store()?;
            let r = ks.create_key(&description, &origin)?;
            print_result(out, &json!({ "KeyMetadata": metadata(&ks, &r) }), &r.key_id);
        }
        KmsCommand::DescribeKey { key_id } => {
            let ks = g.open_store()?;
            let r = ks.describe(&key_id)?;
            let text = format!("{}\t{}\t{}", r.key_id, r.key_state, r.description);
            print_result(out, &json!({ "KeyMetadata": metadata(&ks, &r) }), &text);
        }
        KmsCommand::ListKeys => {
            let ks = g.open_store()?;
            let keys = ks.list_keys();
            let v: Vec<_> = keys
                .iter()
                .map(|r| json!({"KeyId": r.key_id, "KeyArn": ks.arn(&r.key_id)}))
                .collect();
            let text: Vec<_> = keys
                .iter()
                .map(|r| format!("{}\t{}", r.key_id, ks.arn(&r.key_id)))
                .collect();
            print_result(out, &json!({ "Keys": v }), &text.join("\n"));
        }
        KmsCommand::ListAliases { key_id } => {
            let ks = g.open_store()?;
            let filter = key_id.map(|k| ks.key_id_of(&k)).transpose()?;
            let al: Vec<_> = ks
                .list_aliases()
                .into_iter()
                .filter(|(_, k)| filter.as_ref().is_none_or(|f| f == k))
                .collect();
            let v: Vec<_> = al
                .iter()
                .map(
                    |(a, k)| json!({"AliasName": a, "AliasArn": ks.alias_arn(a), "TargetKeyId": k}),
                )
                .collect();
            let text: Vec<_> = al.iter().map(|(a, k)| format!("{a}\t{k}")).collect();
            print_result(out, &json!({ "Aliases": v }), &text.join("\n"));
        }
        KmsCommand::CreateAlias {
            alias_name,
            target_key_id,
        } => {
            g.open_store()?.create_alias(&alias_name, &target_key_id)?;
        }
        KmsCommand::UpdateAlias {
            alias_name,
            target_key_id,
        } => {
            g.open_store()?.update_alias(&alias_name, &target_key_id)?;
        }
        KmsCommand::DeleteAlias { alias_name } => g.open_store()?.delete_alias(&alias_name)?,
        KmsCommand::EnableKey { key_id } => g.open_store()?.enable_key(&key_id)?,
        KmsCommand::DisableKey { key_id } => g.open_store()?.disable_key(&key_id)?,
        KmsCommand::ScheduleKeyDeletion {
            key_id,
            pending_window_in_days,
        } => {
            let ks = g.open_store()?;
            let (when, days) = ks.schedule_key_deletion(&key_id, pending_window_in_days)?;
            let arn = ks.resolve(&key_id)?;
            let v = json!({"KeyId": arn, "DeletionDate": when, "KeyState": "PendingDeletion", "PendingWindowInDays": days});
            print_result(
                out,
                &v,
                &format!("{arn} will be deleted at {}", fmt_time(when)),
            );
        }
        KmsCommand::CancelKeyDeletion { key_id } => {
            let ks = g.open_store()?;
            ks.cancel_key_deletion(&key_id)?;
            let arn = ks.resolve(&key_id)?;
            print_result(out, &json!({"KeyId": arn}), &arn);
        }
        KmsCommand::EnableKeyRotation {
            key_id,
            rotation_period_in_days,
        } => {
            g.open_store()?
                .enable_key_rotation(&key_id, rotation_period_in_days)?;
        }
        KmsCommand::DisableKeyRotation { key_id } => {
            g.open_store()?.disable_key_rotation(&key_id)?
        }
        KmsCommand::GetKeyRotationStatus { key_id } => {
            let ks = g.open_store()?;
            let (on, days, next) = ks.get_key_rotation_status(&key_id)?;
            let mut v = json!({"KeyRotationEnabled": on, "KeyId": ks.resolve(&key_id)?});
            if on {
                v["RotationPeriodInDays"] = json!(days);
                v["NextRotationDate"] = json!(next);
            }
            print_result(out, &v, &format!("{on}"));
        }
        KmsCommand::RotateKeyOnDemand { key_id } => {
            let ks = g.open_store()?;
            let m = ks.rotate_key_on_demand(&key_id)?;
            print_result(
                out,
                &json!({"KeyId": ks.key_id_of(&key_id)?, "KeyMaterialId": m}),
                &m,
            );
        }
        KmsCommand::ListKeyRotations { key_id } => {
            let ks = g.open_store()?;
            let r = ks.describe(&key_id)?;
            let rot: Vec<_> = r
                .materials
                .iter()
                .filter(|m| m.rotation_type == "AUTOMATIC" || m.rotation_type == "ON_DEMAND")
                .map(|m| {
                    json!({
                        "KeyId": r.key_id,
                        "KeyMaterialId": m.id,
                        "KeyMaterialState": if m.id == r.current_material { "CURRENT" } else { "NON_CURRENT" },
                        "RotationDate": m.created,
                        "RotationType": m.rotation_type,
                    })
                })
                .collect();
            let text: Vec<_> = rot
                .iter()
                .map(|v| {
                    format!(
                        "{}\t{}\t{}",
                        v["KeyMaterialId"].as_str().unwrap_or(""),
                        v["RotationType"].as_str().unwrap_or(""),
                        v["KeyMaterialState"].as_str().unwrap_or("")
                    )
                })
                .collect();
            print_result(
                out,
                &json!({"Rotations": rot, "Truncated": false}),
                &text.join("\n"),
            );
        }
        KmsCommand::GetParametersForImport {
            key_id,
            wrapping_algorithm,
        } => {
            if wrapping_algorithm != IMPORT_WRAPPING_ALGORITHM {
                return Err(usage(format!(
                    "ValidationException: the only wrapping algorithm here is {IMPORT_WRAPPING_ALGORITHM}"
                )));
            }
            let ks = g.open_store()?;
            let (token, pk, valid_to) = ks.get_parameters_for_import(&key_id)?;
            let v = json!({
                "KeyId": ks.resolve(&key_id)?,
                "ImportToken": token,
                "PublicKey": B64.encode(&pk),
                "ParametersValidTo": valid_to,
                "WrappingAlgorithm": IMPORT_WRAPPING_ALGORITHM,
            });
            print_result(
                out,
                &v,
                &format!(
                    "{}\t{}",
                    B64.encode(&pk),
                    v["ImportToken"].as_str().unwrap_or("")
                ),
            );
        }
        KmsCommand::WrapKeyMaterial {
            key_id,
            public_key,
            key_material_file,
        } => {
            let m = zeroize::Zeroizing::new(
                std::fs::read(&key_material_file)
                    .map_err(|e| usage(format!("{}: {e}", key_material_file.display())))?,
            );
            if m.len() != 32 {
                return Err(usage("key material must be exactly 32 bytes"));
            }
            let pk = b64(&public_key, "the public key")?;
            let ks = g.open_store()?;
            let id = ks.key_id_of(&key_id)?;
            let w = crate::kms::local::wrap_key_material(&pk, &id, &m)?;
            print_result(
                out,
                &json!({"EncryptedKeyMaterial": B64.encode(&w)}),
                &B64.encode(&w),
            );
        }
        KmsCommand::ImportKeyMaterial {
            key_id,
            import_token,
            encrypted_key_material,
            expiration_model,
            valid_to,
        } => {
            match (expiration_model.as_deref(), valid_to) {
                (Some("KEY_MATERIAL_EXPIRES"), None) => {
                    return Err(usage(
                        "ValidationException: KEY_MATERIAL_EXPIRES needs --valid-to",
                    ))
                }
                (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), Some(_)) => {
                    return Err(usage(
                        "ValidationException: --valid-to contradicts KEY_MATERIAL_DOES_NOT_EXPIRE",
                    ))
                }
                (Some(m), _)
                    if m != "KEY_MATERIAL_EXPIRES" && m != "KEY_MATERIAL_DOES_NOT_EXPIRE" =>
                {
                    return Err(usage(format!(
                        "ValidationException: unknown expiration model {m}"
                    )))
                }
                _ => {}
            }
            let blob = b64(&encrypted_key_material, "the encrypted key material")?;
            let ks = g.open_store()?;
            let id = ks.import_key_material(&key_id, &import_token, &blob, valid_to)?;
            print_result(
                out,
                &json!({"KeyId": ks.resolve(&key_id)?, "KeyMaterialId": id}),
                &id,
            );
        }
        KmsCommand::DeleteImportedKeyMaterial { key_id } => {
            g.open_store()?.delete_imported_key_material(&key_id)?;
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
                    return Err(usage(format!("ValidationException: unknown key spec {s}")))
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
            print_result(out, &v, &B64.encode(&d.ciphertext_blob));
        }
        KmsCommand::Encrypt {
            key_id,
            plaintext,
            encryption_context,
        } => {
            let pt = zeroize::Zeroizing::new(
                B64.decode(plaintext.trim())
                    .map_err(|_| usage("ValidationException: --plaintext must be base64"))?,
            );
            let ks = g.open_store()?;
            let (blob, arn, mat) = ks.encrypt(&key_id, &pt, &ctx(&encryption_context)?)?;
            let v = json!({"CiphertextBlob": B64.encode(&blob), "KeyId": arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "KeyMaterialId": mat});
            print_result(out, &v, &B64.encode(&blob));
        }
        KmsCommand::Decrypt {
            ciphertext_blob,
            key_id,
            encryption_context,
        } => {
            let blob = b64(&ciphertext_blob, "the blob")?;
            let ks = g.open_store()?;
            let d = ks.decrypt(&blob, &ctx(&encryption_context)?, key_id.as_deref())?;
            let v = json!({
                "KeyId": d.key_arn,
                "Plaintext": B64.encode(&d.plaintext[..]),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "KeyMaterialId": d.key_material_id,
            });
            print_result(out, &v, &B64.encode(&d.plaintext[..]));
        }
        KmsCommand::ReEncrypt {
            ciphertext_blob,
            destination_key_id,
            source_encryption_context,
            destination_encryption_context,
        } => {
            let blob = b64(&ciphertext_blob, "the blob")?;
            let ks = g.open_store()?;
            let (nb, src, dst, mat) = ks.re_encrypt(
                &blob,
                &ctx(&source_encryption_context)?,
                &destination_key_id,
                &ctx(&destination_encryption_context)?,
            )?;
            let v = json!({
                "CiphertextBlob": B64.encode(&nb),
                "SourceKeyId": src,
                "KeyId": dst,
                "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "DestinationKeyMaterialId": mat,
            });
            print_result(out, &v, &B64.encode(&nb));
        }
        KmsCommand::ExportBackup {
            file,
            backup_passphrase_file,
        } => {
            let ks = g.open_store()?;
            let bp = read_pass(&backup_passphrase_file, true)?;
            ks.export_backup(&file, &bp)?;
            eprintln!(
                "Wrote the key store backup to {}; keep it and its passphrase apart.",
                file.display()
            );
        }
        KmsCommand::ImportBackup {
            file,
            backup_passphrase_file,
        } => {
            let bp = read_pass(&backup_passphrase_file, false)?;
            let np = g.passphrase().new_passphrase()?;
            LocalKeyService::import_backup(&g.store_dir(), &file, &bp, &np, KdfCost::default())?;
            eprintln!("Imported the backup into {}.", g.store_dir().display());
        }
        KmsCommand::ChangePassphrase {
            new_passphrase_file,
        } => {
            let mut ks = g.open_store()?;
            let np = read_pass(&new_passphrase_file, true)?;
            ks.change_passphrase(&np)?;
        }
        KmsCommand::Audit {
            key_id,
            since,
            operation,
        } => {
            let dir = g.store_dir();
            let recs = crate::kms::audit::read(
                &dir,
                &AuditFilter {
                    key: key_id,
                    since,
                    operation,
                },
            )
            .map_err(|e| Failure {
                code: exitcodes::IO,
                msg: format!("{}: {e}", crate::kms::audit::audit_path(&dir).display()),
            })?;
            let v = serde_json::to_value(&recs).unwrap_or(Value::Null);
            let text: Vec<_> = recs
                .iter()
                .map(|r| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        fmt_time(r.time),
                        r.operation,
                        r.key_arn.as_deref().unwrap_or("-"),
                        r.outcome
                    )
                })
                .collect();
            print_result(out, &json!({"Events": v}), &text.join("\n"));
        }
    }
    Ok(())
}
