//! The operations the key agent serves: each request is authorized (the
//! caller, the action AWS names, the key it resolves to) on a fresh copy of
//! the store, then carried out in the caller's name, with AWS's JSON.

use serde_json::Value;

use super::super::kms_api::{self, field, need};
use super::Denials;
use crate::kms::access::{authorize, named_resource, AccessRequest, Caller};
use crate::kms::audit::{self, Acting, AuditRecord};
use crate::kms::local::LocalKeyService;
use crate::kms::{EncryptionContext, KeyService, KmsError};

/// The operations that make or change an alias: allowed to the store's
/// owner only (in AWS an identity-based policy must allow the alias), and
/// then as the key's policy says.
const ALIAS_OPERATIONS: &[&str] = &["CreateAlias", "UpdateAlias", "DeleteAlias"];

/// One decision a request needs: an action on a key (None: on no key,
/// which only the store's owner may do), with the context its conditions
/// and grant constraints see.
struct Check {
    action: String,
    key: Option<String>,
    context: EncryptionContext,
}

/// The operations whose request carries AWS's `EncryptionContext`: only
/// theirs is seen by kms:EncryptionContext conditions and grant
/// constraints. A context sent with another request is not the request's
/// (AWS sees none there), or a user allowed `kms:*` under a context
/// condition would disable the key by adding the context to DisableKey.
const CONTEXT_OPERATIONS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

/// AWS's longest key name (KeyIdType: key ID, key ARN, alias name or ARN).
const MAX_KEY_NAME: usize = 2048;

/// A key name of the request, within AWS's length, before any decision: a
/// denial is audited with the key as named, and a name as long as the
/// request made each audited line 120 KiB.
fn key_name(name: &str, value: &str) -> Result<String, KmsError> {
    let n = value.chars().count();
    if n > MAX_KEY_NAME {
        return Err(KmsError::Validation(format!(
            "{name} must be at most {MAX_KEY_NAME} characters, not {n}"
        )));
    }
    Ok(value.to_owned())
}

/// The key of a blob: the one named, else the one its bytes name.
fn blob_key(
    ks: &LocalKeyService,
    req: &Value,
    named: &str,
    blob: &str,
) -> Result<Option<String>, KmsError> {
    match field(req, named) {
        Some(k) => key_name(named, k).map(Some),
        None => Ok(ks.blob_key_arn(&kms_api::blob(req, blob)?)),
    }
}

/// The context CreateGrant's conditions see: the new grant's constraint
/// (as AWS's kms:EncryptionContext on CreateGrant), none without one.
fn constraint_context(req: &Value) -> Result<EncryptionContext, KmsError> {
    let c = kms_api::constraints(req)?.unwrap_or_default();
    let map = c
        .encryption_context_equals
        .or(c.encryption_context_subset)
        .unwrap_or_default();
    Ok(EncryptionContext(map))
}

/// What `op` must be allowed, as AWS decides it: ReEncrypt on both keys,
/// an alias on no key (the owner) and on its keys, the rest on the key
/// the caller named; each with the context of the request field `ctx`
/// names (None: the request has no context).
fn checks(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Vec<Check>, KmsError> {
    let check = |action: &str, key: Option<String>, ctx: Option<&str>| -> Result<Check, KmsError> {
        Ok(Check {
            action: format!("kms:{action}"),
            key,
            context: match ctx {
                Some(name) => kms_api::context(req, name)?,
                None => EncryptionContext::new(),
            },
        })
    };
    let key = |name: &str| key_name(name, need(req, name)?).map(Some);
    Ok(match op {
        "CreateKey" | "ListKeys" | "ListAliases" | "GenerateRandom" | "ListRetirableGrants" => {
            vec![check(op, None, None)?]
        }
        "ReEncrypt" => vec![
            check(
                "ReEncryptFrom",
                blob_key(ks, req, "SourceKeyId", "CiphertextBlob")?,
                Some("SourceEncryptionContext"),
            )?,
            check(
                "ReEncryptTo",
                key("DestinationKeyId")?,
                Some("DestinationEncryptionContext"),
            )?,
        ],
        _ if ALIAS_OPERATIONS.contains(&op) => {
            let mut v = vec![check(op, None, None)?];
            if op != "DeleteAlias" {
                v.push(check(op, key("TargetKeyId")?, None)?);
            }
            if op != "CreateAlias" {
                v.push(check(op, key("AliasName")?, None)?);
            }
            v
        }
        "RetireGrant" => {
            let k = field(req, "KeyId").map(|k| key_name("KeyId", k));
            vec![check(op, k.transpose()?, None)?]
        }
        "Decrypt" => vec![check(
            op,
            blob_key(ks, req, "KeyId", "CiphertextBlob")?,
            Some("EncryptionContext"),
        )?],
        "CreateGrant" => vec![Check {
            context: constraint_context(req)?,
            ..check(op, key("KeyId")?, None)?
        }],
        _ => {
            let ctx = CONTEXT_OPERATIONS
                .contains(&op)
                .then_some("EncryptionContext");
            vec![check(op, key("KeyId")?, ctx)?]
        }
    })
}

/// kms:RequestAlias: the alias name a key was named by, also when named
/// by its alias ARN (else a Deny on `alias/x` is dodged by the ARN).
fn request_alias<'a>(ks: &LocalKeyService, named: &'a str) -> Option<&'a str> {
    let prefix = ks.alias_arn("");
    let name = named.strip_prefix(prefix.as_str()).unwrap_or(named);
    name.starts_with("alias/").then_some(name)
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

/// Authorize each check of the request (each reads the store as it is on
/// disk now); a refusal is audited (at a bounded rate).
fn decide(
    ks: &LocalKeyService,
    caller: &Caller,
    denials: &Denials,
    op: &str,
    req: &Value,
) -> Result<(), KmsError> {
    if !kms_api::OPERATIONS.contains(&op) {
        return Err(KmsError::UnsupportedOperation(format!(
            "the key agent does not serve {op:?} (it serves {})",
            kms_api::OPERATIONS.join(", ")
        )));
    }
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
    for c in checks(ks, op, req)? {
        let access = AccessRequest {
            action: &c.action,
            key: c.key.as_deref(),
            request_alias: c.key.as_deref().and_then(|k| request_alias(ks, k)),
            encryption_context: Some(&c.context),
            grant_tokens: &grant_tokens,
            grant_operations: &grant_operations,
            grant_constraints: constraints.as_ref(),
            grant_id: field(req, "GrantId").filter(|_| op == "RetireGrant"),
            retiring_principal: field(req, "RetiringPrincipal")
                .filter(|_| op == "ListRetirableGrants"),
        };
        authorize(ks, caller, &access).inspect_err(|e| {
            if let Some(suppressed) = denials.admit(caller.uid) {
                let key_arn = c
                    .key
                    .as_deref()
                    .map(|n| KeyService::resolve(ks, n).unwrap_or_else(|_| named_resource(ks, n)));
                audit_line(ks, caller, op, key_arn, &Err(e), suppressed);
            }
        })?;
    }
    Ok(())
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
