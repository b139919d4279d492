//! The grant operations the key agent serves: CreateGrant, ListGrants,
//! ListRetirableGrants, RetireGrant and RevokeGrant, each already
//! authorized (`policy::authorize`), carried out on the store in the
//! caller's name, with AWS's JSON.

use serde_json::{json, Value};

use super::super::kms_cmd::pages::{listed, PageArgs};
use super::super::kms_cmd::policies::grant_json;
use crate::kms::local::LocalKeyService;
use crate::kms::policy::{GrantConstraints, GrantRequest};
use crate::kms::KmsError;

fn field<'a>(req: &'a Value, name: &str) -> Option<&'a str> {
    req.get(name).and_then(Value::as_str)
}

fn need<'a>(req: &'a Value, name: &str) -> Result<&'a str, KmsError> {
    field(req, name).ok_or_else(|| KmsError::Validation(format!("{name} is required")))
}

/// A list of strings of a request (absent: none).
pub fn strings(req: &Value, name: &str) -> Vec<String> {
    req.get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A CreateGrant request's `Constraints`.
pub fn constraints(req: &Value) -> Result<Option<GrantConstraints>, KmsError> {
    match req.get("Constraints") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => GrantConstraints::from_aws_json(v).map(Some),
    }
}

fn page(req: &Value) -> PageArgs {
    PageArgs::new(
        req.get("Limit").and_then(Value::as_u64).map(|n| n as u32),
        field(req, "Marker").map(str::to_owned),
    )
}

fn list(v: Result<Value, super::Failure>) -> Result<Value, KmsError> {
    v.map_err(|f| match f {
        super::Failure::Kms(e) => e,
        other => KmsError::Validation(other.to_string()),
    })
}

pub fn run(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Value, KmsError> {
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
            list(listed(
                &page(req),
                "Grants",
                |p| {
                    ks.list_grants_page(
                        key,
                        field(req, "GrantId"),
                        field(req, "GranteePrincipal"),
                        p,
                    )
                },
                |kg| grant_json(ks, kg),
            ))
        }
        "ListRetirableGrants" => {
            let whose = need(req, "RetiringPrincipal")?;
            list(listed(
                &page(req),
                "Grants",
                |p| ks.list_retirable_grants_page(whose, p),
                |kg| grant_json(ks, kg),
            ))
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
