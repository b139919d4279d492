//! The `kms` operations as the AWS API has them: a request in AWS's JSON
//! (`Operation` plus AWS's parameter names) carried out on an opened store,
//! and AWS's JSON out. `envelopefs kms` on the store and the key agent for
//! its callers both answer through here, so the two give the same JSON and
//! the same errors by construction. Read-only calls are audited here (the
//! store audits the rest itself); who is acting comes from
//! [`crate::kms::audit::acting`].

mod data;
mod keys;
mod manage;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use zeroize::Zeroizing;

pub(crate) use manage::constraints;

use super::kms_cmd::pages::PageArgs;
use crate::kms::local::LocalKeyService;
use crate::kms::{EncryptionContext, KmsError};

/// Every operation answered, by AWS's name.
pub const OPERATIONS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "ListAliases",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "UpdateKeyDescription",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GetPublicKey",
    "Sign",
    "Verify",
    "DeriveSharedSecret",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "PutKeyPolicy",
    "GetKeyPolicy",
    "ListKeyPolicies",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteImportedKeyMaterial",
];

/// The operation a request names.
pub fn operation(req: &Value) -> &str {
    field(req, "Operation").unwrap_or("")
}

/// Carry out one request on `ks`.
pub fn call(ks: &LocalKeyService, req: &Value) -> Result<Value, KmsError> {
    let op = operation(req);
    if !OPERATIONS.contains(&op) {
        return Err(KmsError::UnsupportedOperation(format!(
            "{op:?} is not a key service operation (there are {})",
            OPERATIONS.join(", ")
        )));
    }
    if let Some(v) = keys::run(ks, op, req)? {
        return Ok(v);
    }
    if let Some(v) = data::run(ks, op, req)? {
        return Ok(v);
    }
    manage::run(ks, op, req)
}

pub(crate) fn field<'a>(req: &'a Value, name: &str) -> Option<&'a str> {
    req.get(name).and_then(Value::as_str)
}

pub(crate) fn need<'a>(req: &'a Value, name: &str) -> Result<&'a str, KmsError> {
    field(req, name).ok_or_else(|| KmsError::Validation(format!("{name} is required")))
}

fn flag(req: &Value, name: &str) -> bool {
    req.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn number(req: &Value, name: &str) -> Option<u64> {
    req.get(name).and_then(Value::as_u64)
}

/// A count or a number of days, held at u32's largest (the store refuses
/// what is out of its range with AWS's message).
fn number_u32(req: &Value, name: &str) -> Option<u32> {
    number(req, name).map(|n| n.min(u64::from(u32::MAX)) as u32)
}

/// A byte count, held at usize's largest.
fn number_usize(req: &Value, name: &str) -> Option<usize> {
    number(req, name).map(|n| n.min(usize::MAX as u64) as usize)
}

/// A base64 blob of a request, in memory that is wiped after use.
pub(crate) fn blob(req: &Value, name: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    B64.decode(need(req, name)?)
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Validation(format!("{name} is not base64")))
}

pub(crate) fn context(req: &Value, name: &str) -> Result<EncryptionContext, KmsError> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(EncryptionContext::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| KmsError::Validation(format!("{name} must map strings to strings"))),
    }
}

/// A list of strings of a request (absent: none).
pub(crate) fn strings(req: &Value, name: &str) -> Vec<String> {
    req.get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `Limit` and `Marker` of a list request.
fn page(req: &Value) -> PageArgs {
    PageArgs::new(
        number_u32(req, "Limit"),
        field(req, "Marker").map(str::to_owned),
    )
}

/// `v` with a secret moved in as base64 (not serialized in: a copy `json!`
/// made would be left unwiped). Whoever prints or sends `v` wipes it.
fn with_secret(mut v: Value, name: &str, bytes: &[u8]) -> Value {
    v[name] = Value::String(B64.encode(bytes));
    v
}
