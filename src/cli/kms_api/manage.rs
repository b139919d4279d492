//! Key policies, grants and imported key material.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::super::kms_cmd::pages::listed;
use super::{blob, field, flag, need, number, page, strings};
use crate::kms::local::{ImportType, KeyGrant, LocalKeyService};
use crate::kms::policy::{GrantConstraints, GrantRequest};
use crate::kms::{KeyService, KmsError};

/// A grant as ListGrants shows it.
pub(crate) fn grant_json(ks: &LocalKeyService, kg: &KeyGrant) -> Value {
    let g = &kg.grant;
    let mut v = json!({
        "KeyId": ks.arn(&kg.key_id),
        "GrantId": g.grant_id,
        "CreationDate": g.creation_date,
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": g.issuing_account,
        "Operations": g.operations,
    });
    if let Some(n) = &g.name {
        v["Name"] = json!(n);
    }
    if let Some(p) = &g.retiring_principal {
        v["RetiringPrincipal"] = json!(p);
    }
    if let Some(c) = &g.constraints {
        v["Constraints"] = c.to_aws_json();
    }
    v
}

/// A CreateGrant request's `Constraints`.
pub fn constraints(req: &Value) -> Result<Option<GrantConstraints>, KmsError> {
    match req.get("Constraints") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => GrantConstraints::from_aws_json(v).map(Some),
    }
}

/// The policy, grant and import operations.
pub fn run(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Value, KmsError> {
    let key = || need(req, "KeyId");
    let policy_name = field(req, "PolicyName").unwrap_or("default");
    let none = |r: Result<(), KmsError>| r.map(|()| json!({}));
    match op {
        "PutKeyPolicy" => none(ks.put_key_policy(
            key()?,
            policy_name,
            need(req, "Policy")?,
            flag(req, "BypassPolicyLockoutSafetyCheck"),
        )),
        "GetKeyPolicy" => {
            let policy = ks.get_key_policy(key()?, policy_name)?;
            Ok(json!({"Policy": policy, "PolicyName": policy_name}))
        }
        "ListKeyPolicies" => {
            let k = key()?;
            listed(
                &page(req),
                "PolicyNames",
                |p| ks.audited_read(op, Some(k), || ks.list_key_policies_page(k, p)),
                |n| json!(n),
            )
        }
        "GetParametersForImport" => {
            let alg = need(req, "WrappingAlgorithm")?;
            let (token, pk, valid_to) =
                ks.get_parameters_for_import(key()?, alg, field(req, "WrappingKeySpec"))?;
            Ok(json!({"KeyId": ks.resolve(key()?)?, "ImportToken": token,
                "PublicKey": B64.encode(&pk), "ParametersValidTo": valid_to,
                "WrappingAlgorithm": alg}))
        }
        "ImportKeyMaterial" => {
            let import_type =
                ImportType::parse(field(req, "ImportType").unwrap_or("EXISTING_KEY_MATERIAL"))?;
            let id = ks.import_key_material(
                key()?,
                need(req, "ImportToken")?,
                &blob(req, "EncryptedKeyMaterial")?,
                number(req, "ValidTo"),
                import_type,
            )?;
            Ok(json!({"KeyId": ks.resolve(key()?)?, "KeyMaterialId": id}))
        }
        "DeleteImportedKeyMaterial" => none(ks.delete_imported_key_material(key()?)),
        _ => grants(ks, op, req),
    }
}

fn grants(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Value, KmsError> {
    match op {
        "CreateGrant" => {
            let g = GrantRequest {
                grantee_principal: need(req, "GranteePrincipal")?.to_owned(),
                retiring_principal: field(req, "RetiringPrincipal").map(str::to_owned),
                operations: strings(req, "Operations"),
                constraints: constraints(req)?,
                name: field(req, "Name").map(str::to_owned),
            };
            let (token, id) =
                ks.create_grant(need(req, "KeyId")?, &g, &strings(req, "GrantTokens"))?;
            Ok(json!({"GrantToken": token, "GrantId": id}))
        }
        "ListGrants" => {
            let key = need(req, "KeyId")?;
            listed(
                &page(req),
                "Grants",
                |p| {
                    ks.audited_read(op, Some(key), || {
                        ks.list_grants_page(
                            key,
                            field(req, "GrantId"),
                            field(req, "GranteePrincipal"),
                            p,
                        )
                    })
                },
                |kg| grant_json(ks, kg),
            )
        }
        "ListRetirableGrants" => {
            let whose = need(req, "RetiringPrincipal")?;
            listed(
                &page(req),
                "Grants",
                |p| ks.audited_read(op, None, || ks.list_retirable_grants_page(whose, p)),
                |kg| grant_json(ks, kg),
            )
        }
        "RetireGrant" => ks
            .retire_grant(
                field(req, "GrantToken"),
                field(req, "KeyId"),
                field(req, "GrantId"),
            )
            .map(|()| json!({})),
        "RevokeGrant" => ks
            .revoke_grant(need(req, "KeyId")?, need(req, "GrantId")?)
            .map(|()| json!({})),
        _ => Err(KmsError::UnsupportedOperation(op.to_owned())),
    }
}
