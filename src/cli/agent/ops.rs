//! The operations the key agent serves: each request is authorized (the
//! caller, the action AWS names, the key it resolves to) on a fresh copy of
//! the store, then carried out in the caller's name, with AWS's JSON.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::super::kms_cmd::keys::metadata;
use super::super::kms_cmd::pages::{listed, PageArgs};
use super::{grants, Denials};
use crate::kms::access::{authorize, named_resource, AccessRequest, Caller};
use crate::kms::audit::{self, Acting, AuditRecord};
use crate::kms::local::asymmetric::SYMMETRIC_DEFAULT;
use crate::kms::local::LocalKeyService;
use crate::kms::{EncryptionContext, KeyService, KmsError};

/// The operations served, by AWS's name.
pub const SERVED: &[&str] = &[
    "DescribeKey",
    "ListKeys",
    "ListAliases",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GetPublicKey",
    "DeriveSharedSecret",
    "GenerateRandom",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "PutKeyPolicy",
    "GetKeyPolicy",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
];

/// The operations the store itself writes no audit line for.
const AUDITED_HERE: &[&str] = &[
    "DescribeKey",
    "ListKeys",
    "ListAliases",
    "ListGrants",
    "ListRetirableGrants",
];

fn field<'a>(req: &'a Value, name: &str) -> Option<&'a str> {
    req.get(name).and_then(Value::as_str)
}

fn need<'a>(req: &'a Value, name: &str) -> Result<&'a str, KmsError> {
    field(req, name).ok_or_else(|| KmsError::Validation(format!("{name} is required")))
}

fn blob(req: &Value, name: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    B64.decode(need(req, name)?)
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Validation(format!("{name} is not base64")))
}

fn context(req: &Value, name: &str) -> Result<EncryptionContext, KmsError> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(EncryptionContext::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| KmsError::Validation(format!("{name} must map strings to strings"))),
    }
}

fn count(req: &Value, name: &str) -> Option<usize> {
    req.get(name).and_then(Value::as_u64).map(|n| n as usize)
}

fn data_key_length(req: &Value) -> Result<usize, KmsError> {
    match (field(req, "KeySpec"), count(req, "NumberOfBytes")) {
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (None, Some(n)) => Ok(n),
        _ => Err(KmsError::Validation(
            "give either KeySpec (AES_256 or AES_128) or NumberOfBytes".into(),
        )),
    }
}

/// The key a request acts on, as the caller named it.
fn key_named(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Option<String>, KmsError> {
    Ok(match op {
        "ListKeys" | "ListAliases" | "GenerateRandom" | "ListRetirableGrants" => None,
        "RetireGrant" => field(req, "KeyId").map(str::to_owned),
        "ReEncrypt" => Some(need(req, "DestinationKeyId")?.to_owned()),
        "Decrypt" => match field(req, "KeyId") {
            Some(k) => Some(k.to_owned()),
            None => ks.blob_key_arn(&blob(req, "CiphertextBlob")?),
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
        .and_then(|key_arn| audit::acting_for(&who, || run_audited(ks, &op, key_arn, req)));
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
    if !SERVED.contains(&op) {
        return Err(KmsError::UnsupportedOperation(format!(
            "the key agent does not serve {op:?} (it serves {})",
            SERVED.join(", ")
        )));
    }
    let named = key_named(ks, op, req)?;
    let action = format!("kms:{op}");
    let ctx = context(req, "EncryptionContext")?;
    let mut grant_tokens = grants::strings(req, "GrantTokens");
    if op == "RetireGrant" {
        grant_tokens.extend(field(req, "GrantToken").map(str::to_owned));
    }
    let (grant_operations, constraints) = match op {
        "CreateGrant" => (
            grants::strings(req, "Operations"),
            grants::constraints(req)?,
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
    authorize(ks, caller, &access).inspect_err(|e| {
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

fn run_audited(
    ks: &LocalKeyService,
    op: &str,
    key_arn: Option<String>,
    req: &Value,
) -> Result<Value, KmsError> {
    let r = run(ks, op, req);
    if AUDITED_HERE.contains(&op) {
        if let Some(who) = audit::acting() {
            let caller = Caller {
                uid: who.uid,
                gid: 0,
                groups: Vec::new(),
                pid: who.pid,
                principal_arn: who.principal_arn,
            };
            audit_line(ks, &caller, op, key_arn, &r.as_ref().map(|_| ()), 0);
        }
    }
    r
}

fn secret(mut v: Value, name: &str, bytes: &[u8]) -> Value {
    v[name] = Value::String(B64.encode(bytes));
    v
}

fn list(v: Result<Value, super::Failure>) -> Result<Value, KmsError> {
    v.map_err(|f| match f {
        super::Failure::Kms(e) => e,
        other => KmsError::Validation(other.to_string()),
    })
}

fn run(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Value, KmsError> {
    let page = || {
        PageArgs::new(
            req.get("Limit").and_then(Value::as_u64).map(|n| n as u32),
            field(req, "Marker").map(str::to_owned),
        )
    };
    match op {
        "DescribeKey" => {
            let r = ks.describe(need(req, "KeyId")?)?;
            Ok(json!({"KeyMetadata": metadata(ks, &r)}))
        }
        "ListKeys" => list(listed(
            &page(),
            "Keys",
            |p| ks.list_keys_page(p),
            |r| json!({"KeyId": r.key_id, "KeyArn": ks.arn(&r.key_id)}),
        )),
        "ListAliases" => list(listed(
            &page(),
            "Aliases",
            |p| ks.list_aliases_page(field(req, "KeyId"), p),
            |(a, k)| json!({"AliasName": a, "AliasArn": ks.alias_arn(a), "TargetKeyId": k}),
        )),
        "GenerateDataKey" => {
            let ctx = context(req, "EncryptionContext")?;
            let d = ks.generate_data_key(need(req, "KeyId")?, data_key_length(req)?, &ctx)?;
            let v = json!({"CiphertextBlob": B64.encode(&d.ciphertext_blob),
                "KeyId": d.key_arn, "KeyMaterialId": d.key_material_id});
            Ok(secret(v, "Plaintext", &d.plaintext))
        }
        "GenerateDataKeyWithoutPlaintext" => {
            let ctx = context(req, "EncryptionContext")?;
            let (b, arn, mat) = ks.generate_data_key_without_plaintext(
                need(req, "KeyId")?,
                data_key_length(req)?,
                &ctx,
            )?;
            Ok(json!({"CiphertextBlob": B64.encode(&b), "KeyId": arn, "KeyMaterialId": mat}))
        }
        "GenerateRandom" => {
            let n = count(req, "NumberOfBytes")
                .ok_or_else(|| KmsError::Validation("NumberOfBytes is required".into()))?;
            Ok(secret(json!({}), "Plaintext", &ks.generate_random(n)?))
        }
        _ => run_blobs(ks, op, req),
    }
}

fn run_blobs(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Value, KmsError> {
    let alg = field(req, "EncryptionAlgorithm").unwrap_or(SYMMETRIC_DEFAULT);
    match op {
        "Encrypt" => {
            let pt = blob(req, "Plaintext")?;
            let ctx = context(req, "EncryptionContext")?;
            let key = need(req, "KeyId")?;
            if alg == SYMMETRIC_DEFAULT {
                let (b, arn, mat) = ks.encrypt(key, &pt, &ctx)?;
                Ok(json!({"CiphertextBlob": B64.encode(&b), "KeyId": arn,
                    "EncryptionAlgorithm": alg, "KeyMaterialId": mat}))
            } else {
                let (b, arn) = ks.encrypt_asymmetric(key, &pt, alg, &ctx)?;
                Ok(
                    json!({"CiphertextBlob": B64.encode(&b), "KeyId": arn, "EncryptionAlgorithm": alg}),
                )
            }
        }
        "Decrypt" => {
            let ctx = context(req, "EncryptionContext")?;
            let b = blob(req, "CiphertextBlob")?;
            let d = ks.decrypt_with_algorithm(&b, &ctx, field(req, "KeyId"), alg)?;
            let mut v = json!({"KeyId": d.key_arn, "EncryptionAlgorithm": alg});
            if !d.key_material_id.is_empty() {
                v["KeyMaterialId"] = json!(d.key_material_id);
            }
            Ok(secret(v, "Plaintext", &d.plaintext))
        }
        "ReEncrypt" => {
            let (nb, src, dst, mat) = ks.re_encrypt_from(
                &blob(req, "CiphertextBlob")?,
                &context(req, "SourceEncryptionContext")?,
                field(req, "SourceKeyId"),
                need(req, "DestinationKeyId")?,
                &context(req, "DestinationEncryptionContext")?,
            )?;
            Ok(
                json!({"CiphertextBlob": B64.encode(&nb), "SourceKeyId": src, "KeyId": dst,
                "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT,
                "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT,
                "DestinationKeyMaterialId": mat}),
            )
        }
        "GetPublicKey" => {
            let p = ks.get_public_key(need(req, "KeyId")?)?;
            Ok(
                json!({"KeyId": p.key_arn, "PublicKey": B64.encode(&p.public_key),
                "KeySpec": p.key_spec, "KeyUsage": p.key_usage}),
            )
        }
        "DeriveSharedSecret" => {
            let alg = field(req, "KeyAgreementAlgorithm").unwrap_or("ECDH");
            let (s, arn) =
                ks.derive_shared_secret(need(req, "KeyId")?, alg, &blob(req, "PublicKey")?)?;
            let v = json!({"KeyId": arn, "KeyAgreementAlgorithm": alg, "KeyOrigin": "AWS_KMS"});
            Ok(secret(v, "SharedSecret", &s))
        }
        _ => run_management(ks, op, req),
    }
}

/// Key management: what a key policy grants or refuses a caller beside
/// the store's owner.
fn run_management(ks: &LocalKeyService, op: &str, req: &Value) -> Result<Value, KmsError> {
    if matches!(op, "RetireGrant" | "ListRetirableGrants") {
        return grants::run(ks, op, req);
    }
    let key = need(req, "KeyId")?;
    let policy_name = field(req, "PolicyName").unwrap_or("default");
    match op {
        "EnableKey" => ks.enable_key(key).map(|()| json!({})),
        "DisableKey" => ks.disable_key(key).map(|()| json!({})),
        "ScheduleKeyDeletion" => {
            let days = req
                .get("PendingWindowInDays")
                .and_then(Value::as_u64)
                .map(|d| d.min(u64::from(u32::MAX)) as u32);
            let (when, days) = ks.schedule_key_deletion(key, days)?;
            Ok(json!({"KeyId": ks.resolve(key)?, "DeletionDate": when,
                "KeyState": "PendingDeletion", "PendingWindowInDays": days}))
        }
        "CancelKeyDeletion" => {
            ks.cancel_key_deletion(key)?;
            Ok(json!({"KeyId": ks.resolve(key)?}))
        }
        "PutKeyPolicy" => {
            let bypass = req
                .get("BypassPolicyLockoutSafetyCheck")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            ks.put_key_policy(key, policy_name, need(req, "Policy")?, bypass)
                .map(|()| json!({}))
        }
        "GetKeyPolicy" => {
            let policy = ks.get_key_policy(key, policy_name)?;
            Ok(json!({"Policy": policy, "PolicyName": policy_name}))
        }
        _ => grants::run(ks, op, req),
    }
}
