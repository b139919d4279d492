//! Grants: one grantee principal allowed some operations on one key,
//! optionally only with a given encryption context, until the grant is
//! retired or revoked. What a grant is, what it allows, and its tokens;
//! the store's grant operations are in kms::local.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::kms::{EncryptionContext, KmsError};

/// AWS's GrantOperation enum.
pub const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

/// The operations a grant's constraint never applies to (they take no
/// encryption context).
const UNCONSTRAINED_OPERATIONS: &[&str] = &["DescribeKey", "RetireGrant"];

/// AWS's limits of a constraint: pairs, and characters of each.
pub const MAX_CONSTRAINT_PAIRS: usize = 8;
pub const MAX_CONSTRAINT_CHARS: usize = 384;

/// Grants a key may have (AWS's quota).
pub const MAX_GRANTS_PER_KEY: usize = 50_000;

/// EncryptionContextEquals or EncryptionContextSubset (one of them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct GrantConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
}

/// One grant, as the store keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub grantee_principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    /// The store ID (AWS's issuing account).
    pub issuing_account: String,
    pub operations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
    pub creation_date: u64,
}

/// What CreateGrant asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantRequest {
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub name: Option<String>,
}

/// Pairs whose keys match without case and whose values match exactly
/// (AWS's rule for grant constraints).
fn get_folded<'a>(ctx: &'a EncryptionContext, key: &str) -> Option<&'a str> {
    let key = key.to_lowercase();
    ctx.0
        .iter()
        .find(|(k, _)| k.to_lowercase() == key)
        .map(|(_, v)| v.as_str())
}

impl GrantConstraints {
    /// Whether a request's encryption context meets the constraint.
    pub fn admits(&self, ctx: Option<&EncryptionContext>) -> bool {
        let empty = EncryptionContext::new();
        let ctx = ctx.unwrap_or(&empty);
        let contains = |want: &BTreeMap<String, String>| {
            want.iter()
                .all(|(k, v)| get_folded(ctx, k) == Some(v.as_str()))
        };
        if let Some(eq) = &self.encryption_context_equals {
            if !(contains(eq) && ctx.0.len() == eq.len()) {
                return false;
            }
        }
        if let Some(sub) = &self.encryption_context_subset {
            if !contains(sub) {
                return false;
            }
        }
        true
    }

    /// AWS's limits, and exactly one kind of constraint.
    pub fn check(&self) -> Result<(), KmsError> {
        let maps: Vec<(&str, &BTreeMap<String, String>)> = [
            ("EncryptionContextEquals", &self.encryption_context_equals),
            ("EncryptionContextSubset", &self.encryption_context_subset),
        ]
        .into_iter()
        .filter_map(|(n, m)| m.as_ref().map(|m| (n, m)))
        .collect();
        if maps.len() != 1 {
            return Err(KmsError::Validation(
                "Constraints take one of EncryptionContextEquals and EncryptionContextSubset"
                    .into(),
            ));
        }
        let (name, map) = maps[0];
        if map.is_empty() || map.len() > MAX_CONSTRAINT_PAIRS {
            return Err(KmsError::Validation(format!(
                "{name} must have 1 to {MAX_CONSTRAINT_PAIRS} pairs, not {}",
                map.len()
            )));
        }
        for (k, v) in map {
            let n = k.chars().count() + v.chars().count();
            if k.is_empty() || n > MAX_CONSTRAINT_CHARS {
                return Err(KmsError::Validation(format!(
                    "{name} pair {k:?}: a key of at least 1 and a pair of at most {MAX_CONSTRAINT_CHARS} characters"
                )));
            }
        }
        Ok(())
    }

    /// Whether `child` is at least as strict as `self` (a grant created
    /// through a constrained grant's CreateGrant must be).
    pub fn covers(&self, child: Option<&GrantConstraints>) -> bool {
        let Some(child) = child else { return false };
        let within = |small: &BTreeMap<String, String>, big: &BTreeMap<String, String>| {
            small.iter().all(|(k, v)| big.get(k) == Some(v))
        };
        match (
            &self.encryption_context_equals,
            &self.encryption_context_subset,
        ) {
            (Some(eq), _) => child.encryption_context_equals.as_ref() == Some(eq),
            (None, Some(sub)) => {
                child
                    .encryption_context_equals
                    .as_ref()
                    .is_some_and(|e| within(sub, e))
                    || child
                        .encryption_context_subset
                        .as_ref()
                        .is_some_and(|s| within(sub, s))
            }
            (None, None) => true,
        }
    }
}

impl GrantConstraints {
    /// AWS's JSON form: `{"EncryptionContextSubset": {...}}` or
    /// `{"EncryptionContextEquals": {...}}`.
    pub fn to_aws_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({});
        if let Some(m) = &self.encryption_context_subset {
            v["EncryptionContextSubset"] = serde_json::json!(m);
        }
        if let Some(m) = &self.encryption_context_equals {
            v["EncryptionContextEquals"] = serde_json::json!(m);
        }
        v
    }

    /// From AWS's JSON form (see [`GrantConstraints::to_aws_json`]).
    pub fn from_aws_json(v: &serde_json::Value) -> Result<GrantConstraints, KmsError> {
        let bad = || {
            KmsError::Validation(
                "Constraints takes EncryptionContextSubset or EncryptionContextEquals, each mapping strings to strings"
                    .into(),
            )
        };
        let obj = v.as_object().ok_or_else(bad)?;
        let mut c = GrantConstraints::default();
        for (k, m) in obj {
            let map: BTreeMap<String, String> =
                serde_json::from_value(m.clone()).map_err(|_| bad())?;
            match k.as_str() {
                "EncryptionContextSubset" => c.encryption_context_subset = Some(map),
                "EncryptionContextEquals" => c.encryption_context_equals = Some(map),
                _ => return Err(bad()),
            }
        }
        Ok(c)
    }
}

/// The GrantOperation of an IAM action (`kms:Decrypt` → `Decrypt`).
pub fn operation_of(action: &str) -> Option<&'static str> {
    let (service, name) = action.split_once(':')?;
    if !service.eq_ignore_ascii_case("kms") {
        return None;
    }
    GRANT_OPERATIONS.iter().copied().find(|o| *o == name)
}

impl Grant {
    /// Whether this grant lets its grantee do `action` with this context.
    /// `new_operations` are, for CreateGrant, those of the grant to be made,
    /// which must be among this grant's.
    pub fn allows(
        &self,
        action: &str,
        ctx: Option<&EncryptionContext>,
        new_operations: &[String],
        new_constraints: Option<&GrantConstraints>,
    ) -> bool {
        let Some(op) = operation_of(action) else {
            return false;
        };
        if !self.operations.iter().any(|o| o == op) {
            return false;
        }
        if op == "CreateGrant" {
            let subset = new_operations
                .iter()
                .all(|n| self.operations.iter().any(|o| o == n));
            let strict = self
                .constraints
                .as_ref()
                .is_none_or(|c| c.covers(new_constraints));
            return subset && strict;
        }
        if UNCONSTRAINED_OPERATIONS.contains(&op) {
            return true;
        }
        self.constraints.as_ref().is_none_or(|c| c.admits(ctx))
    }

    /// Same grant as a CreateGrant request would make (AWS's retry rule:
    /// same name and same parameters give the existing grant).
    pub fn same_as(&self, req: &GrantRequest) -> bool {
        self.name.is_some()
            && self.name == req.name
            && self.grantee_principal == req.grantee_principal
            && self.retiring_principal == req.retiring_principal
            && self.operations == req.operations
            && self.constraints == req.constraints
    }
}

/// A new grant ID: 64 hex digits, as AWS's.
pub fn new_grant_id() -> String {
    let b: [u8; 32] = crate::crypto::random_array();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A grant token: names the key and grant (a token is not a secret; it
/// only lets a request use a grant at once). Each CreateGrant gives a new one.
pub fn grant_token(key_id: &str, grant_id: &str) -> String {
    let nonce: [u8; 16] = crate::crypto::random_array();
    let hex: String = nonce.iter().map(|x| format!("{x:02x}")).collect();
    B64URL.encode(format!("envelopefs-grant\n{key_id}\n{grant_id}\n{hex}"))
}

/// Grant tokens a request may carry (AWS's GrantTokens: 0 to 10).
pub const MAX_GRANT_TOKENS: usize = 10;

/// At most [`MAX_GRANT_TOKENS`] tokens a request.
pub fn check_grant_token_count(tokens: &[String]) -> Result<(), KmsError> {
    if tokens.len() > MAX_GRANT_TOKENS {
        return Err(KmsError::Validation(format!(
            "GrantTokens takes at most {MAX_GRANT_TOKENS} tokens, not {}",
            tokens.len()
        )));
    }
    Ok(())
}

/// AWS's longest grant token.
const MAX_GRANT_TOKEN: usize = 8192;

/// The (key ID, grant ID) a token names, or InvalidGrantTokenException.
pub fn parse_grant_token(token: &str) -> Result<(String, String), KmsError> {
    let bad = || KmsError::InvalidGrantToken(format!("{:?} is not a grant token", short(token)));
    if token.is_empty() || token.len() > MAX_GRANT_TOKEN {
        return Err(bad());
    }
    let raw = B64URL.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split('\n');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("envelopefs-grant"), Some(key), Some(grant), Some(_)) if parts.next().is_none() => {
            Ok((key.to_owned(), grant.to_owned()))
        }
        _ => Err(bad()),
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A grant name: AWS's `^[a-zA-Z0-9:/_-]+$`, 1 to 256 characters.
pub fn check_grant_name(name: &str) -> Result<(), KmsError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(KmsError::Validation(format!(
            "grant Name {name:?} must be 1 to 256 of the characters a-z A-Z 0-9 : / _ -"
        )))
    }
}
