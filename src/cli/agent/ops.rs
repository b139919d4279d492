//! The operations the key agent serves: each request is authorized (the
//! caller, the action AWS names, the key it resolves to) on a fresh copy of
//! the store, then carried out in the caller's name, with AWS's JSON.

use serde_json::Value;

use super::super::kms_api::{self, field, need};
use super::Denials;
use crate::kms::access::{authorize, named_resource, AccessRequest, Caller};
use crate::kms::audit::{self, Acting, AuditRecord};
use crate::kms::local::LocalKeyService;
use crate::kms::{KeyService, KmsError};

/// The operations that make or change an alias: allowed to the store's
/// owner only (in AWS an identity-based policy must allow the alias), and
/// then as the key's policy says.
const ALIAS_OPERATIONS: &[&str] = &["CreateAlias", "UpdateAlias", "DeleteAlias"];

/// The key a request acts on, as the caller named it.
fn key_named(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Option<String>, KmsError> {
    Ok(match op {
        "CreateKey" | "ListKeys" | "ListAliases" | "GenerateRandom" | "ListRetirableGrants" => None,
        "CreateAlias" | "UpdateAlias" => Some(need(req, "TargetKeyId")?.to_owned()),
        "DeleteAlias" => Some(need(req, "AliasName")?.to_owned()),
        "RetireGrant" => field(req, "KeyId").map(str::to_owned),
        "ReEncrypt" => Some(need(req, "DestinationKeyId")?.to_owned()),
        "Decrypt" => match field(req, "KeyId") {
            Some(k) => Some(k.to_owned()),
            None => ks.blob_key_arn(&kms_api::blob(req, "CiphertextBlob")?),
        },
        _ => Some(need(req, "KeyId")?.to_owned()),
    })
}

/// Answer one request of `caller`: a response or an AWS error JSON.
pub fn handle(ks: &LocalKeyService, caller: &Caller, denials: &Denials, req: &Value) -> Value {
    let op = field(req, "Operation").unwrap_or("").to_owned();
    let who = Acting {
        uid: caller.uid,
        pid: caller.pid,
        principal_arn: caller.principal_arn.clone(),
    };
    let r = decide(ks, caller, denials, &op, req)
        .and_then(|_| audit::acting_for(&who, || kms_api::call(ks, req)));
    r.unwrap_or_else(|e| crate::kms::agent::error_json(&e))
}

/// Authorize (which reads the store once, as it is on disk now) and give
/// the ARN of the key the request resolved to; a refusal is audited (at a
/// bounded rate).
fn decide(
    ks: &LocalKeyService,
    caller: &Caller,
    denials: &Denials,
    op: &str,
    req: &Value,
) -> Result<Option<String>, KmsError> {
    if !kms_api::OPERATIONS.contains(&op) {
        return Err(KmsError::UnsupportedOperation(format!(
            "the key agent does not serve {op:?} (it serves {})",
            kms_api::OPERATIONS.join(", ")
        )));
    }
    let named = key_named(ks, op, req)?;
    let action = format!("kms:{op}");
    let ctx = kms_api::context(req, "EncryptionContext")?;
    let mut grant_tokens = kms_api::strings(req, "GrantTokens");
    if op == "RetireGrant" {
        grant_tokens.extend(field(req, "GrantToken").map(str::to_owned));
    }
    let (grant_operations, constraints) = match op {
        "CreateGrant" => (
            kms_api::strings(req, "Operations"),
            kms_api::constraints(req)?,
        ),
        _ => (Vec::new(), None),
    };
    let access = AccessRequest {
        action: &action,
        key: named.as_deref(),
        request_alias: named.as_deref().filter(|k| k.contains("alias/")),
        encryption_context: Some(&ctx),
        grant_tokens: &grant_tokens,
        grant_operations: &grant_operations,
        grant_constraints: constraints.as_ref(),
        grant_id: field(req, "GrantId").filter(|_| op == "RetireGrant"),
        retiring_principal: field(req, "RetiringPrincipal").filter(|_| op == "ListRetirableGrants"),
    };
    let owner_only = AccessRequest {
        key: None,
        request_alias: None,
        ..access
    };
    let alias_allowed = match ALIAS_OPERATIONS.contains(&op) {
        true => authorize(ks, caller, &owner_only).map(|_| ()),
        false => Ok(()),
    };
    alias_allowed
        .and_then(|()| authorize(ks, caller, &access))
        .inspect_err(|e| {
            if let Some(suppressed) = denials.admit(caller.uid) {
                let key_arn = named
                    .as_deref()
                    .map(|n| KeyService::resolve(ks, n).unwrap_or_else(|_| named_resource(ks, n)));
                audit_line(ks, caller, op, key_arn, &Err(e), suppressed);
            }
        })
}

fn audit_line(
    ks: &LocalKeyService,
    caller: &Caller,
    op: &str,
    key_arn: Option<String>,
    outcome: &Result<(), &KmsError>,
    suppressed: u64,
) {
    let mut outcome = match outcome {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.name().to_owned(),
    };
    if suppressed > 0 {
        outcome = format!("{outcome} ({suppressed} more of this user not logged)");
    }
    audit::append_sealed(
        ks.dir(),
        &AuditRecord {
            time: crate::sys::now_secs(),
            operation: op.to_owned(),
            key_arn,
            key_material_id: None,
            encryption_context: None,
            uid: caller.uid,
            pid: caller.pid,
            principal_arn: Some(caller.principal_arn.clone()),
            outcome,
        },
        Some(&ks.head_seal_key()),
    );
}
