//! The `Condition` element: the operators and condition keys this key
//! service evaluates, with IAM's rules for a key the request lacks
//! (a positive operator does not match, a negated one does,
//! `ForAllValues` matches, `...IfExists` matches).

use serde_json::Value;

use super::document::malformed;
use super::glob::glob_match;
use crate::kms::{EncryptionContext, KmsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringLike,
    ForAnyValueStringEquals,
    ForAllValuesStringEquals,
    Bool,
    Null,
}

/// The condition keys this key service knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `kms:EncryptionContext:KEY`; the name is kept in lower case, as the
    /// key name matches without case.
    EncryptionContext(String),
    EncryptionContextKeys,
    CallerAccount,
    PrincipalArn,
    RequestAlias,
    KeySpec,
    KeyUsage,
    GrantOperations,
}

/// One operator on one key with its values (any of them may match).
#[derive(Debug, Clone)]
pub struct Condition {
    pub operator: Operator,
    pub if_exists: bool,
    pub key: ConditionKey,
    pub values: Vec<String>,
}

/// The values of the condition keys for one request.
#[derive(Debug, Clone, Default)]
pub struct RequestContext<'a> {
    pub encryption_context: Option<&'a EncryptionContext>,
    pub caller_account: &'a str,
    pub principal_arn: &'a str,
    pub request_alias: Option<&'a str>,
    pub key_spec: Option<&'a str>,
    pub key_usage: Option<&'a str>,
    pub grant_operations: &'a [String],
}

impl RequestContext<'_> {
    /// The key's values in this request; None when the request has none.
    fn values(&self, key: &ConditionKey) -> Option<Vec<&str>> {
        fn one(v: Option<&str>) -> Option<Vec<&str>> {
            v.map(|s| vec![s])
        }
        let vals = match key {
            ConditionKey::EncryptionContext(name) => {
                let ctx = self.encryption_context?;
                ctx.0
                    .iter()
                    .filter(|(k, _)| k.to_lowercase() == *name)
                    .map(|(_, v)| v.as_str())
                    .collect()
            }
            ConditionKey::EncryptionContextKeys => {
                let ctx = self.encryption_context?;
                ctx.0.keys().map(String::as_str).collect()
            }
            ConditionKey::CallerAccount => vec![self.caller_account],
            ConditionKey::PrincipalArn => vec![self.principal_arn],
            ConditionKey::RequestAlias => one(self.request_alias)?,
            ConditionKey::KeySpec => one(self.key_spec)?,
            ConditionKey::KeyUsage => one(self.key_usage)?,
            ConditionKey::GrantOperations => {
                self.grant_operations.iter().map(String::as_str).collect()
            }
        };
        Some(vals).filter(|v: &Vec<&str>| !v.is_empty())
    }
}

impl Condition {
    /// Whether the condition holds for this request.
    pub fn holds(&self, ctx: &RequestContext) -> bool {
        let vals = ctx.values(&self.key);
        let wanted = |x: &&str| self.values.iter().any(|p| p == x);
        let Some(vals) = vals else {
            return match self.operator {
                Operator::Null => self.values.iter().any(|p| p == "true"),
                Operator::StringNotEquals | Operator::ForAllValuesStringEquals => true,
                _ => self.if_exists,
            };
        };
        match self.operator {
            Operator::Null => self.values.iter().any(|p| p == "false"),
            Operator::StringEquals | Operator::ForAnyValueStringEquals => vals.iter().any(wanted),
            Operator::StringNotEquals => !vals.iter().any(wanted),
            Operator::ForAllValuesStringEquals => vals.iter().all(wanted),
            Operator::StringLike => vals
                .iter()
                .any(|x| self.values.iter().any(|p| glob_match(p, x, false))),
            Operator::Bool => vals
                .iter()
                .any(|x| self.values.iter().any(|p| p.eq_ignore_ascii_case(x))),
        }
    }
}

/// The operator of a name, and whether it is the `...IfExists` form.
fn operator(name: &str) -> Option<(Operator, bool)> {
    let (base, if_exists) = match name.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let op = match base {
        "StringEquals" => Operator::StringEquals,
        "StringNotEquals" => Operator::StringNotEquals,
        "StringLike" => Operator::StringLike,
        "ForAnyValue:StringEquals" => Operator::ForAnyValueStringEquals,
        "ForAllValues:StringEquals" => Operator::ForAllValuesStringEquals,
        "Bool" => Operator::Bool,
        "Null" if !if_exists => Operator::Null,
        _ => return None,
    };
    Some((op, if_exists))
}

/// A condition key of a name (names match without case, as IAM's).
fn condition_key(name: &str) -> Option<ConditionKey> {
    const CONTEXT: &str = "kms:encryptioncontext:";
    let lower = name.to_lowercase();
    if let Some(k) = lower.strip_prefix(CONTEXT) {
        return (!k.is_empty()).then(|| ConditionKey::EncryptionContext(k.to_owned()));
    }
    Some(match lower.as_str() {
        "kms:encryptioncontextkeys" => ConditionKey::EncryptionContextKeys,
        "kms:calleraccount" => ConditionKey::CallerAccount,
        "aws:principalarn" => ConditionKey::PrincipalArn,
        "kms:requestalias" => ConditionKey::RequestAlias,
        "kms:keyspec" => ConditionKey::KeySpec,
        "kms:keyusage" => ConditionKey::KeyUsage,
        "kms:grantoperations" => ConditionKey::GrantOperations,
        _ => return None,
    })
}

/// A condition value: a string, or a number or boolean written bare.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `Condition` element of a statement.
pub fn parse_conditions(v: &Value, at: &str) -> Result<Vec<Condition>, KmsError> {
    let ops = v
        .as_object()
        .ok_or_else(|| malformed(format!("{at}: Condition {v} is not a JSON object")))?;
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let (operator, if_exists) = operator(op_name).ok_or_else(|| {
            malformed(format!(
                "{at}: unknown or unsupported condition operator {op_name:?}"
            ))
        })?;
        let keys = keys.as_object().ok_or_else(|| {
            malformed(format!("{at}: {op_name} must map condition keys to values"))
        })?;
        for (key_name, vals) in keys {
            let key = condition_key(key_name).ok_or_else(|| {
                malformed(format!(
                    "{at}: unknown or unsupported condition key {key_name:?}"
                ))
            })?;
            let values = condition_values(vals, operator, &format!("{at}: {op_name} {key_name}"))?;
            out.push(Condition {
                operator,
                if_exists,
                key,
                values,
            });
        }
    }
    Ok(out)
}

fn condition_values(v: &Value, op: Operator, at: &str) -> Result<Vec<String>, KmsError> {
    let bad = || malformed(format!("{at}: {v} is not a value or a list of values"));
    let values = match v {
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| value_text(x).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![value_text(other).ok_or_else(bad)?],
    };
    if matches!(op, Operator::Bool | Operator::Null) {
        let mut normal = Vec::with_capacity(values.len());
        for s in values {
            match s.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => normal.push(b.to_owned()),
                _ => return Err(malformed(format!("{at}: {s:?} is not true or false"))),
            }
        }
        return Ok(normal);
    }
    Ok(values)
}
