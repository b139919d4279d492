//! Key policies and grants: put-key-policy, get-key-policy,
//! list-key-policies, create-grant, list-grants, list-retirable-grants,
//! retire-grant and revoke-grant. On the store itself these are the
//! owner's commands, not checked against the policies (those bind the
//! callers of the key agent).

use std::collections::BTreeMap;

use clap::Args;

use super::super::Failure;
use super::pages::PageArgs;
use super::tags::arg_text;
use super::usage;
use crate::kms::policy::GrantConstraints;

#[derive(Args, Debug)]
pub struct PutKeyPolicyArgs {
    /// The key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// The policy's name: a key has one, `default`.
    #[arg(long, default_value = "default")]
    pub(super) policy_name: String,
    /// The key policy document (JSON, at most 32 KB), or file://FILE.
    #[arg(long)]
    pub(super) policy: String,
    /// Put a policy that would not let root change the policy again
    /// through the key agent.
    #[arg(long)]
    pub(super) bypass_policy_lockout_safety_check: bool,
}

#[derive(Args, Debug)]
pub struct GetKeyPolicyArgs {
    /// The key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// The policy's name: `default`.
    #[arg(long, default_value = "default")]
    pub(super) policy_name: String,
}

#[derive(Args, Debug)]
pub struct ListKeyPoliciesArgs {
    /// The key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct CreateGrantArgs {
    /// The key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// Who the grant is for: arn:envelopefs:iam::STORE-ID:user/NAME (or :root).
    #[arg(long)]
    pub(super) grantee_principal: String,
    /// Who may retire the grant besides root.
    #[arg(long)]
    pub(super) retiring_principal: Option<String>,
    /// The operations allowed (AWS's GrantOperation names: Decrypt,
    /// Encrypt, GenerateDataKey, DescribeKey, RetireGrant, CreateGrant, ...).
    #[arg(long, num_args = 1.., required = true, value_name = "OPERATION")]
    pub(super) operations: Vec<String>,
    /// EncryptionContextSubset={k=v,...} or EncryptionContextEquals={k=v,...},
    /// or the JSON `{"EncryptionContextSubset": {...}}`, or file://FILE.
    #[arg(long)]
    pub(super) constraints: Option<String>,
    /// A name: a retry with the same name and parameters gives the same grant.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Grant tokens of grants the request relies on.
    #[arg(long, num_args = 1..)]
    pub(super) grant_tokens: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListGrantsArgs {
    /// The key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// Only this grant.
    #[arg(long)]
    pub(super) grant_id: Option<String>,
    /// Only the grants of this grantee.
    #[arg(long)]
    pub(super) grantee_principal: Option<String>,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct ListRetirableGrantsArgs {
    /// The retiring principal whose grants to list.
    #[arg(long)]
    pub(super) retiring_principal: String,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct RetireGrantArgs {
    /// The grant's token (or --key-id and --grant-id).
    #[arg(long, conflicts_with_all = ["key_id", "grant_id"])]
    pub(super) grant_token: Option<String>,
    /// The grant's key (key ID or key ARN), with --grant-id.
    #[arg(long, requires = "grant_id")]
    pub(super) key_id: Option<String>,
    /// The grant's ID, with --key-id.
    #[arg(long, requires = "key_id")]
    pub(super) grant_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct RevokeGrantArgs {
    /// The grant's key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// The grant's ID.
    #[arg(long)]
    pub(super) grant_id: String,
}

/// `{k=v,k2=v2}` of the AWS CLI's shorthand.
fn shorthand_map(s: &str) -> Option<BTreeMap<String, String>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    inner
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// `--constraints` in the shorthand or JSON form.
pub(super) fn parse_constraints(arg: &str) -> Result<GrantConstraints, Failure> {
    let text = arg_text(arg, "--constraints")?;
    let bad = || {
        usage(format!(
            "--constraints {text:?}: expected EncryptionContextSubset={{k=v,...}}, EncryptionContextEquals={{k=v,...}} or their JSON"
        ))
    };
    let mut c = GrantConstraints::default();
    if text.trim_start().starts_with('{') {
        let v: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_str(&text).map_err(|_| bad())?;
        for (k, m) in v {
            match k.as_str() {
                "EncryptionContextSubset" => c.encryption_context_subset = Some(m),
                "EncryptionContextEquals" => c.encryption_context_equals = Some(m),
                _ => return Err(bad()),
            }
        }
        return Ok(c);
    }
    let (kind, map) = text.split_once('=').ok_or_else(bad)?;
    let map = shorthand_map(map).ok_or_else(bad)?;
    match kind {
        "EncryptionContextSubset" => c.encryption_context_subset = Some(map),
        "EncryptionContextEquals" => c.encryption_context_equals = Some(map),
        _ => return Err(bad()),
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_parse_in_the_aws_cli_forms() {
        let m = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let c = parse_constraints("EncryptionContextSubset={volume=team,a=b}").unwrap();
        assert_eq!(
            c.encryption_context_subset,
            m(&[("volume", "team"), ("a", "b")])
        );
        let c = parse_constraints(r#"{"EncryptionContextEquals": {"v": "1"}}"#).unwrap();
        assert_eq!(c.encryption_context_equals, m(&[("v", "1")]));
        for bad in [
            "Other={a=b}",
            "EncryptionContextSubset=a=b",
            "{\"X\": {}}",
            "{",
        ] {
            assert!(
                matches!(parse_constraints(bad), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
    }
}
