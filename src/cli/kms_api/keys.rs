//! Keys, aliases, rotation, descriptions and tags.

use serde_json::{json, Value};

use super::super::kms_cmd::pages::listed;
use super::{field, flag, need, number_u32, page};
use crate::kms::local::asymmetric::{algorithm_list, SYMMETRIC_DEFAULT};
use crate::kms::local::{KeyRecord, LocalKeyService};
use crate::kms::{KeyService, KmsError};

/// A key's metadata as `aws kms describe-key` shows it.
pub(crate) fn metadata(ks: &LocalKeyService, r: &KeyRecord) -> Value {
    let mut m = json!({
        "AWSAccountId": ks.store_id(),
        "KeyId": r.key_id,
        "Arn": ks.arn(&r.key_id),
        "CreationDate": r.creation_date,
        "Enabled": r.key_state == "Enabled",
        "Description": r.description,
        "KeyUsage": r.key_usage,
        "KeyState": r.key_state,
        "Origin": r.origin,
        "KeyManager": r.key_manager,
        "KeySpec": r.key_spec,
        "CustomerMasterKeySpec": r.key_spec,
        "MultiRegion": false,
    });
    let (field, algorithms) = algorithm_list(&r.key_spec, &r.key_usage);
    m[field] = json!(algorithms);
    // AWS shows the current material of symmetric keys only (the ones that rotate).
    if !r.current_material.is_empty() && r.key_spec == SYMMETRIC_DEFAULT {
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

fn nothing(r: Result<(), KmsError>) -> Result<Option<Value>, KmsError> {
    r.map(|()| Some(json!({})))
}

/// The key, alias and rotation operations; None for another operation.
pub fn run(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Option<Value>, KmsError> {
    let key = || need(req, "KeyId");
    let v = match op {
        "CreateKey" => {
            let r = ks.create_key_with_policy(
                field(req, "Description").unwrap_or(""),
                field(req, "Origin").unwrap_or("AWS_KMS"),
                field(req, "KeySpec").unwrap_or(SYMMETRIC_DEFAULT),
                field(req, "KeyUsage").unwrap_or("ENCRYPT_DECRYPT"),
                field(req, "Policy"),
                flag(req, "BypassPolicyLockoutSafetyCheck"),
            )?;
            json!({ "KeyMetadata": metadata(ks, &r) })
        }
        "DescribeKey" => {
            let k = key()?;
            let r = ks.audited_read(op, Some(k), || ks.describe(k))?;
            json!({ "KeyMetadata": metadata(ks, &r) })
        }
        "ListKeys" => listed(
            &page(req),
            "Keys",
            |p| ks.audited_read(op, None, || ks.list_keys_page(p)),
            |r| json!({"KeyId": r.key_id, "KeyArn": ks.arn(&r.key_id)}),
        )?,
        "ListAliases" => {
            let k = field(req, "KeyId");
            listed(
                &page(req),
                "Aliases",
                |p| ks.audited_read(op, k, || ks.list_aliases_page(k, p)),
                |(a, k)| json!({"AliasName": a, "AliasArn": ks.alias_arn(a), "TargetKeyId": k}),
            )?
        }
        "CreateAlias" => {
            return nothing(ks.create_alias(need(req, "AliasName")?, need(req, "TargetKeyId")?))
        }
        "UpdateAlias" => {
            return nothing(ks.update_alias(need(req, "AliasName")?, need(req, "TargetKeyId")?))
        }
        "DeleteAlias" => return nothing(ks.delete_alias(need(req, "AliasName")?)),
        "EnableKey" => return nothing(ks.enable_key(key()?)),
        "DisableKey" => return nothing(ks.disable_key(key()?)),
        "ScheduleKeyDeletion" => {
            let days = number_u32(req, "PendingWindowInDays");
            let (when, days) = ks.schedule_key_deletion(key()?, days)?;
            json!({"KeyId": ks.resolve(key()?)?, "DeletionDate": when,
                "KeyState": "PendingDeletion", "PendingWindowInDays": days})
        }
        "CancelKeyDeletion" => {
            ks.cancel_key_deletion(key()?)?;
            json!({"KeyId": ks.resolve(key()?)?})
        }
        _ => return rotation_and_tags(ks, op, req),
    };
    Ok(Some(v))
}

fn rotation_and_tags(
    ks: &LocalKeyService,
    op: &str,
    req: &Value,
) -> Result<Option<Value>, KmsError> {
    let key = || need(req, "KeyId");
    let v = match op {
        "EnableKeyRotation" => {
            let days = number_u32(req, "RotationPeriodInDays");
            return nothing(ks.enable_key_rotation(key()?, days));
        }
        "DisableKeyRotation" => return nothing(ks.disable_key_rotation(key()?)),
        "GetKeyRotationStatus" => {
            let k = key()?;
            let (on, days, next) =
                ks.audited_read(op, Some(k), || ks.get_key_rotation_status(k))?;
            let mut v = json!({"KeyRotationEnabled": on, "KeyId": ks.resolve(k)?});
            if on {
                v["RotationPeriodInDays"] = json!(days);
                v["NextRotationDate"] = json!(next);
            }
            v
        }
        "RotateKeyOnDemand" => {
            let m = ks.rotate_key_on_demand(key()?)?;
            json!({"KeyId": ks.key_id_of(key()?)?, "KeyMaterialId": m})
        }
        "ListKeyRotations" => {
            let k = key()?;
            listed(
                &page(req),
                "Rotations",
                |p| ks.audited_read(op, Some(k), || ks.list_key_rotations_page(k, p)),
                |r| {
                    json!({
                        "KeyId": r.key_id,
                        "KeyMaterialId": r.key_material_id,
                        "KeyMaterialState": if r.current { "CURRENT" } else { "NON_CURRENT" },
                        "RotationDate": r.rotation_date,
                        "RotationType": r.rotation_type,
                    })
                },
            )?
        }
        "UpdateKeyDescription" => {
            return nothing(ks.update_key_description(key()?, need(req, "Description")?))
        }
        "TagResource" => return nothing(ks.tag_resource(key()?, &tags(req)?)),
        "UntagResource" => {
            return nothing(ks.untag_resource(key()?, &super::strings(req, "TagKeys")))
        }
        "ListResourceTags" => {
            let k = key()?;
            listed(
                &page(req),
                "Tags",
                |p| ks.audited_read(op, Some(k), || ks.list_resource_tags_page(k, p)),
                |(k, v)| json!({"TagKey": k, "TagValue": v}),
            )?
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// A TagResource request's `Tags`: `[{"TagKey": K, "TagValue": V}, ...]`.
fn tags(req: &Value) -> Result<Vec<(String, String)>, KmsError> {
    let bad = || KmsError::Validation("Tags must be a list of {TagKey, TagValue}".into());
    req.get("Tags")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|t| match (t["TagKey"].as_str(), t["TagValue"].as_str()) {
            (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
            _ => Err(bad()),
        })
        .collect()
}
