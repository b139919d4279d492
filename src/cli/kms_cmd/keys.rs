//! Keys, aliases and rotation.

use clap::Args;
use serde_json::{json, Value};

use super::super::{print_aws, Failure, Global};
use super::pages::{listed, PageArgs};
use crate::kms::local::asymmetric::{algorithm_list, SYMMETRIC_DEFAULT};
use crate::kms::local::{KeyRecord, LocalKeyService};
use crate::kms::KeyService;

#[derive(Args, Debug)]
pub struct CreateKeyArgs {
    /// A description of the key (shown by describe-key and list-keys).
    #[arg(long, default_value = "")]
    pub(super) description: String,
    /// AWS_KMS (material made here) or EXTERNAL (imported material; symmetric keys only here).
    #[arg(long, default_value = "AWS_KMS")]
    pub(super) origin: String,
    /// SYMMETRIC_DEFAULT, RSA_2048|3072|4096, ECC_NIST_P256|P384|P521 or
    /// ECC_SECG_P256K1 (AWS's HMAC, ML-DSA, Ed25519 and SM2 specs are not implemented here).
    #[arg(long, default_value = "SYMMETRIC_DEFAULT")]
    pub(super) key_spec: String,
    /// ENCRYPT_DECRYPT (RSA, symmetric), SIGN_VERIFY (RSA, ECC) or
    /// KEY_AGREEMENT (NIST ECC); fixed for the key's life.
    #[arg(long, default_value = "ENCRYPT_DECRYPT")]
    pub(super) key_usage: String,
    /// The key policy (JSON, or file://FILE); by default AWS's default key
    /// policy (the store's root principal may do everything).
    #[arg(long)]
    policy: Option<String>,
    /// Create the key with a policy that would not let root change it
    /// through the key agent.
    #[arg(long)]
    bypass_policy_lockout_safety_check: bool,
}

/// The one key a subcommand acts on.
#[derive(Args, Debug)]
pub struct KeyArg {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
}

#[derive(Args, Debug)]
pub struct ListKeysArgs {
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct ListAliasesArgs {
    /// Only the aliases of this key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: Option<String>,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct ListKeyRotationsArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct CreateAliasArgs {
    /// The new alias, starting with alias/.
    #[arg(long)]
    pub(super) alias_name: String,
    /// The key it names (key ID or key ARN).
    #[arg(long)]
    pub(super) target_key_id: String,
}

#[derive(Args, Debug)]
pub struct UpdateAliasArgs {
    /// The alias to change, starting with alias/.
    #[arg(long)]
    pub(super) alias_name: String,
    /// The key it is to name (key ID or key ARN).
    #[arg(long)]
    pub(super) target_key_id: String,
}

#[derive(Args, Debug)]
pub struct DeleteAliasArgs {
    /// The alias to delete, starting with alias/.
    #[arg(long)]
    pub(super) alias_name: String,
}

#[derive(Args, Debug)]
pub struct ScheduleKeyDeletionArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    /// Days until the key is deleted (7..30, default 30).
    #[arg(long)]
    pub(super) pending_window_in_days: Option<u32>,
}

#[derive(Args, Debug)]
pub struct EnableKeyRotationArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    /// Days between rotations (90..2560, default 365).
    #[arg(long)]
    pub(super) rotation_period_in_days: Option<u32>,
}

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

pub fn create_key(g: &Global, a: CreateKeyArgs) -> Result<(), Failure> {
    let policy = a
        .policy
        .as_deref()
        .map(|p| super::tags::arg_text(p, "--policy"))
        .transpose()?;
    let ks = g.open_or_create_store()?;
    let r = ks.create_key_with_policy(
        &a.description,
        &a.origin,
        &a.key_spec,
        &a.key_usage,
        policy.as_deref(),
        a.bypass_policy_lockout_safety_check,
    )?;
    print_aws(g.output, &json!({ "KeyMetadata": metadata(&ks, &r) }));
    Ok(())
}

pub fn describe_key(g: &Global, a: KeyArg) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let r = ks.audited_read("DescribeKey", Some(&a.key_id), || ks.describe(&a.key_id))?;
    print_aws(g.output, &json!({ "KeyMetadata": metadata(&ks, &r) }));
    Ok(())
}

pub fn list_keys(g: &Global, a: ListKeysArgs) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let v = listed(
        &a.page,
        "Keys",
        |req| ks.audited_read("ListKeys", None, || ks.list_keys_page(req)),
        |r| json!({"KeyId": r.key_id, "KeyArn": ks.arn(&r.key_id)}),
    )?;
    print_aws(g.output, &v);
    Ok(())
}

pub fn list_aliases(g: &Global, a: ListAliasesArgs) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let v = listed(
        &a.page,
        "Aliases",
        |req| {
            ks.audited_read("ListAliases", a.key_id.as_deref(), || {
                ks.list_aliases_page(a.key_id.as_deref(), req)
            })
        },
        |(a, k)| json!({"AliasName": a, "AliasArn": ks.alias_arn(a), "TargetKeyId": k}),
    )?;
    print_aws(g.output, &v);
    Ok(())
}

pub fn create_alias(g: &Global, a: CreateAliasArgs) -> Result<(), Failure> {
    Ok(g.open_store()?
        .create_alias(&a.alias_name, &a.target_key_id)?)
}

pub fn update_alias(g: &Global, a: UpdateAliasArgs) -> Result<(), Failure> {
    Ok(g.open_store()?
        .update_alias(&a.alias_name, &a.target_key_id)?)
}

pub fn delete_alias(g: &Global, a: DeleteAliasArgs) -> Result<(), Failure> {
    Ok(g.open_store()?.delete_alias(&a.alias_name)?)
}

pub fn enable_key(g: &Global, a: KeyArg) -> Result<(), Failure> {
    Ok(g.open_store()?.enable_key(&a.key_id)?)
}

pub fn disable_key(g: &Global, a: KeyArg) -> Result<(), Failure> {
    Ok(g.open_store()?.disable_key(&a.key_id)?)
}

pub fn schedule_key_deletion(g: &Global, a: ScheduleKeyDeletionArgs) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let (when, days) = ks.schedule_key_deletion(&a.key_id, a.pending_window_in_days)?;
    let arn = ks.resolve(&a.key_id)?;
    let v = json!({"KeyId": arn, "DeletionDate": when, "KeyState": "PendingDeletion", "PendingWindowInDays": days});
    print_aws(g.output, &v);
    Ok(())
}

pub fn cancel_key_deletion(g: &Global, a: KeyArg) -> Result<(), Failure> {
    let ks = g.open_store()?;
    ks.cancel_key_deletion(&a.key_id)?;
    let arn = ks.resolve(&a.key_id)?;
    print_aws(g.output, &json!({"KeyId": arn}));
    Ok(())
}

pub fn enable_key_rotation(g: &Global, a: EnableKeyRotationArgs) -> Result<(), Failure> {
    Ok(g.open_store()?
        .enable_key_rotation(&a.key_id, a.rotation_period_in_days)?)
}

pub fn disable_key_rotation(g: &Global, a: KeyArg) -> Result<(), Failure> {
    Ok(g.open_store()?.disable_key_rotation(&a.key_id)?)
}

pub fn get_key_rotation_status(g: &Global, a: KeyArg) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let (on, days, next) = ks.audited_read("GetKeyRotationStatus", Some(&a.key_id), || {
        ks.get_key_rotation_status(&a.key_id)
    })?;
    let mut v = json!({"KeyRotationEnabled": on, "KeyId": ks.resolve(&a.key_id)?});
    if on {
        v["RotationPeriodInDays"] = json!(days);
        v["NextRotationDate"] = json!(next);
    }
    print_aws(g.output, &v);
    Ok(())
}

pub fn rotate_key_on_demand(g: &Global, a: KeyArg) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let m = ks.rotate_key_on_demand(&a.key_id)?;
    print_aws(
        g.output,
        &json!({"KeyId": ks.key_id_of(&a.key_id)?, "KeyMaterialId": m}),
    );
    Ok(())
}

pub fn list_key_rotations(g: &Global, a: ListKeyRotationsArgs) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let v = listed(
        &a.page,
        "Rotations",
        |req| {
            ks.audited_read("ListKeyRotations", Some(&a.key_id), || {
                ks.list_key_rotations_page(&a.key_id, req)
            })
        },
        |r| {
            json!({
                "KeyId": r.key_id,
                "KeyMaterialId": r.key_material_id,
                "KeyMaterialState": if r.current { "CURRENT" } else { "NON_CURRENT" },
                "RotationDate": r.rotation_date,
                "RotationType": r.rotation_type,
            })
        },
    )?;
    print_aws(g.output, &v);
    Ok(())
}
