//! A key policy document in AWS's grammar: `Version`, `Id` and `Statement`
//! (one statement or a list), each statement with `Sid`, `Effect`,
//! `Principal`, `Action`, `Resource` and `Condition`. Anything outside the
//! part of the grammar implemented here is refused, naming it, rather than
//! ignored: a policy that silently meant less than it says would grant or
//! deny something its author did not see.

use serde_json::{Map, Value};

use super::condition::{parse_conditions, Condition};
use super::glob::glob_match;
use crate::kms::KmsError;

/// AWS's limit of a key policy, in bytes.
pub const MAX_POLICY_BYTES: usize = 32 * 1024;

/// Every KMS action a policy may name (AWS's list, names as AWS spells them).
pub const KMS_ACTIONS: &[&str] = &[
    "CancelKeyDeletion",
    "ConnectCustomKeyStore",
    "CreateAlias",
    "CreateCustomKeyStore",
    "CreateGrant",
    "CreateKey",
    "Decrypt",
    "DeleteAlias",
    "DeleteCustomKeyStore",
    "DeleteImportedKeyMaterial",
    "DeriveSharedSecret",
    "DescribeCustomKeyStores",
    "DescribeKey",
    "DisableKey",
    "DisableKeyRotation",
    "DisconnectCustomKeyStore",
    "EnableKey",
    "EnableKeyRotation",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "GenerateRandom",
    "GetKeyPolicy",
    "GetKeyRotationStatus",
    "GetParametersForImport",
    "GetPublicKey",
    "ImportKeyMaterial",
    "ListAliases",
    "ListGrants",
    "ListKeyPolicies",
    "ListKeyRotations",
    "ListKeys",
    "ListResourceTags",
    "ListRetirableGrants",
    "PutKeyPolicy",
    "ReEncryptFrom",
    "ReEncryptTo",
    "ReplicateKey",
    "RetireGrant",
    "RevokeGrant",
    "RotateKeyOnDemand",
    "ScheduleKeyDeletion",
    "Sign",
    "SynchronizeMultiRegionKey",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateCustomKeyStore",
    "UpdateKeyDescription",
    "UpdatePrimaryRegion",
    "Verify",
    "VerifyMac",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Whom a statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// `"*"` or `{"AWS": "*"}`: every caller.
    Anyone,
    /// Principal ARNs: `arn:envelopefs:iam::STORE:root` or `...:user/NAME`.
    Arns(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principals: Principals,
    /// Action patterns (`kms:Decrypt`, `kms:GenerateDataKey*`, `*`).
    pub actions: Vec<String>,
    /// All must hold for the statement to apply.
    pub conditions: Vec<Condition>,
}

/// A parsed, checked key policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

pub(super) fn malformed(msg: impl Into<String>) -> KmsError {
    KmsError::MalformedPolicyDocument(msg.into())
}

impl Policy {
    /// Parse and check a policy document (the text as PutKeyPolicy takes it).
    pub fn parse(text: &str) -> Result<Policy, KmsError> {
        if text.is_empty() {
            return Err(KmsError::Validation("Policy must not be empty".into()));
        }
        if text.len() > MAX_POLICY_BYTES {
            return Err(KmsError::LimitExceeded(format!(
                "the key policy is {} bytes; a key policy has at most {MAX_POLICY_BYTES}",
                text.len()
            )));
        }
        // AWS's PolicyType: printable Latin-1, tab, line feed, carriage return.
        let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}');
        if let Some(c) = text.chars().find(|c| !allowed(*c)) {
            return Err(KmsError::Validation(format!(
                "Policy has the character {c:?}: a key policy takes printable Latin-1 characters, tab and line breaks"
            )));
        }
        let v: Value = serde_json::from_str(text)
            .map_err(|e| malformed(format!("the policy is not valid JSON: {e}")))?;
        serde_json::from_str::<NoRepeatedKeys>(text).map_err(|e| malformed(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| malformed("the policy must be a JSON object"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["Version", "Id", "Statement"].contains(&k.as_str()))
        {
            return Err(malformed(format!("unknown policy element {k:?}")));
        }
        match obj.get("Version") {
            None => {}
            Some(Value::String(s)) if s == "2012-10-17" || s == "2008-10-17" => {}
            Some(other) => {
                return Err(malformed(format!(
                    "Version {other} is not 2012-10-17 or 2008-10-17"
                )))
            }
        }
        let id = match obj.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(malformed(format!("Id {other} is not a string"))),
        };
        let list = match obj.get("Statement") {
            None => return Err(malformed("the policy has no Statement")),
            Some(Value::Array(a)) if !a.is_empty() => a.iter().collect::<Vec<_>>(),
            Some(o @ Value::Object(_)) => vec![o],
            Some(other) => {
                return Err(malformed(format!(
                    "Statement {other} is not a statement or a non-empty list of them"
                )))
            }
        };
        let mut statements = Vec::with_capacity(list.len());
        for (i, s) in list.into_iter().enumerate() {
            let st = statement(s, i + 1)?;
            if let Some(sid) = &st.sid {
                if statements
                    .iter()
                    .any(|o: &Statement| o.sid.as_ref() == Some(sid))
                {
                    return Err(malformed(format!("Sid {sid:?} is used twice")));
                }
            }
            statements.push(st);
        }
        Ok(Policy { id, statements })
    }
}

/// A JSON text none of whose objects has a key twice. serde_json keeps
/// the last of a repeated key silently: a second `StringEquals` beside the
/// first in one Condition would drop the first, and the statement would
/// allow more than its author wrote.
struct NoRepeatedKeys;

impl<'de> serde::Deserialize<'de> for NoRepeatedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoRepeatedKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoRepeatedKeys {
    type Value = NoRepeatedKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self, A::Error> {
        while a.next_element::<NoRepeatedKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {k:?} is given twice in one JSON object (only the last would count)"
                )));
            }
            a.next_value::<NoRepeatedKeys>()?;
        }
        Ok(self)
    }
}

/// One statement; `n` counts from 1, for the messages.
fn statement(v: &Value, n: usize) -> Result<Statement, KmsError> {
    let obj = v
        .as_object()
        .ok_or_else(|| malformed(format!("statement {n} is not a JSON object")))?;
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(malformed(format!(
                "statement {n}: Sid {other} is not a string"
            )))
        }
    };
    let at = match &sid {
        Some(s) => format!("statement {n} (Sid {s:?})"),
        None => format!("statement {n}"),
    };
    check_elements(obj, &at)?;
    let effect = match obj.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => {
            return Err(malformed(format!(
                "{at}: Effect {} is not Allow or Deny",
                shown(obj.get("Effect"))
            )))
        }
    };
    let principals = principals(obj.get("Principal"), &at)?;
    let actions = actions(obj.get("Action"), &at)?;
    resource(obj.get("Resource"), &at)?;
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c, &at)?,
    };
    Ok(Statement {
        sid,
        effect,
        principals,
        actions,
        conditions,
    })
}

fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "(missing)".to_owned(), Value::to_string)
}

/// Every element of a statement is one this grammar knows.
fn check_elements(obj: &Map<String, Value>, at: &str) -> Result<(), KmsError> {
    for k in obj.keys() {
        match k.as_str() {
            "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition" => {}
            "NotPrincipal" | "NotAction" | "NotResource" => {
                return Err(malformed(format!(
                    "{at}: the element {k} is not supported by this key service"
                )))
            }
            _ => return Err(malformed(format!("{at}: unknown element {k:?}"))),
        }
    }
    Ok(())
}

/// A string or a non-empty list of strings.
fn strings(v: &Value, what: &str, at: &str) -> Result<Vec<String>, KmsError> {
    let bad = || {
        malformed(format!(
            "{at}: {what} {v} is not a string or a list of strings"
        ))
    };
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

fn principals(v: Option<&Value>, at: &str) -> Result<Principals, KmsError> {
    let v = v.ok_or_else(|| malformed(format!("{at} has no Principal")))?;
    let aws = match v {
        Value::String(s) if s == "*" => return Ok(Principals::Anyone),
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| *k != "AWS") {
                return Err(malformed(format!(
                    "{at}: Principal {k:?} is not supported (only \"AWS\" principals)"
                )));
            }
            m.get("AWS")
                .ok_or_else(|| malformed(format!("{at}: Principal has no \"AWS\" entry")))?
        }
        other => {
            return Err(malformed(format!(
                "{at}: Principal {other} is not \"*\" or {{\"AWS\": ...}}"
            )))
        }
    };
    let arns = strings(aws, "Principal AWS", at)?;
    if arns.iter().any(|a| a == "*") {
        return Ok(Principals::Anyone);
    }
    if let Some(bad) = arns.iter().find(|a| !is_principal_arn(a)) {
        return Err(malformed(format!(
            "{at}: invalid principal {bad:?} (want arn:envelopefs:iam::STORE-ID:root or arn:envelopefs:iam::STORE-ID:user/NAME)"
        )));
    }
    Ok(Principals::Arns(arns))
}

/// `arn:envelopefs:iam::STORE-ID:root` or `arn:envelopefs:iam::STORE-ID:user/NAME`.
pub fn is_principal_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:envelopefs:iam::") else {
        return false;
    };
    let Some((store, who)) = rest.split_once(':') else {
        return false;
    };
    let store_ok = !store.is_empty() && store.chars().all(|c| c.is_ascii_alphanumeric());
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.@+=,-".contains(c))
    };
    store_ok && (who == "root" || who.strip_prefix("user/").is_some_and(name_ok))
}

fn actions(v: Option<&Value>, at: &str) -> Result<Vec<String>, KmsError> {
    let v = v.ok_or_else(|| malformed(format!("{at} has no Action")))?;
    let list = strings(v, "Action", at)?;
    for a in &list {
        check_action(a).map_err(|why| malformed(format!("{at}: Action {a:?} {why}")))?;
    }
    Ok(list)
}

/// `*`, or `kms:NAME` where NAME is a KMS action or a pattern (`*`, `?`)
/// that matches at least one.
fn check_action(a: &str) -> Result<(), &'static str> {
    if a == "*" {
        return Ok(());
    }
    let Some((service, name)) = a.split_once(':') else {
        return Err("is not SERVICE:ACTION");
    };
    if !service.eq_ignore_ascii_case("kms") {
        return Err("is not a kms action");
    }
    if KMS_ACTIONS.iter().any(|k| glob_match(name, k, true)) {
        Ok(())
    } else {
        Err("names no KMS action")
    }
}

fn resource(v: Option<&Value>, at: &str) -> Result<(), KmsError> {
    let v = v.ok_or_else(|| malformed(format!("{at} has no Resource")))?;
    let list = strings(v, "Resource", at)?;
    if list.iter().all(|r| r == "*") {
        Ok(())
    } else {
        Err(malformed(format!(
            "{at}: Resource must be \"*\" (the key the policy is attached to), not {v}"
        )))
    }
}

/// Whether an action pattern of a statement covers `action` (IAM's
/// case-insensitive match).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob_match(pattern, action, true)
}
