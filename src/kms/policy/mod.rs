//! Key policies and grants: who may do what with a key, decided as AWS KMS
//! decides it. An explicit Deny in the key policy wins; otherwise an Allow
//! of the key policy or a grant allows; otherwise the request is denied.
//!
//! There is no IAM here, so the principal AWS uses to hand a key's access
//! to the account's IAM policies, the account root
//! `arn:envelopefs:iam::STORE-ID:root`, stands for uid 0 alone. Requests
//! that name no key (ListKeys, CreateKey, GenerateRandom, ...), which AWS
//! leaves to IAM policies, are allowed to uid 0 only.
//!
//! These rules bind the callers of the key agent; whoever holds the store's
//! passphrase opens the store directly and is its owner.

#[cfg(test)]
mod access_tests;
mod condition;
mod document;
mod glob;
mod grants;
#[cfg(test)]
mod tests;

pub use condition::{Condition, ConditionKey, Operator, RequestContext};
pub use document::{
    action_matches, is_principal_arn, Effect, Policy, Principals, Statement, KMS_ACTIONS,
    MAX_POLICY_BYTES,
};
pub use grants::{
    check_grant_name, check_grant_token_count, grant_token, new_grant_id, operation_of,
    parse_grant_token, Grant, GrantConstraints, GrantRequest, GRANT_OPERATIONS,
    MAX_CONSTRAINT_CHARS, MAX_CONSTRAINT_PAIRS, MAX_GRANTS_PER_KEY,
};

use crate::kms::local::LocalKeyService;
use crate::kms::KmsError;

/// Who is calling, as the agent learned it from SO_PEERCRED / SO_PEERGROUPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// For the audit trail only; never used to decide.
    pub pid: u32,
    /// arn:envelopefs:iam::STORE-ID:user/NAME, or arn:envelopefs:iam::STORE-ID:root for uid 0.
    pub principal_arn: String,
}

/// What is asked, in the terms of a key policy.
#[derive(Debug, Clone, Default)]
pub struct AccessRequest<'a> {
    /// The IAM action, e.g. "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey".
    pub action: &'a str,
    /// The key as the caller named it: key ID, key ARN, alias name or alias
    /// ARN (None for ListKeys/ListAliases/ListRetirableGrants/GenerateRandom).
    pub key: Option<&'a str>,
    /// The alias the caller named the key by, if any ("alias/team"), for kms:RequestAlias.
    pub request_alias: Option<&'a str>,
    pub encryption_context: Option<&'a crate::kms::EncryptionContext>,
    /// Grant tokens sent with the request (--grant-tokens).
    pub grant_tokens: &'a [String],
    /// For CreateGrant: the operations the new grant would allow (kms:GrantOperations).
    pub grant_operations: &'a [String],
    /// For CreateGrant: the new grant's constraints (a grant allowing
    /// CreateGrant admits only grants at least as strict as itself).
    pub grant_constraints: Option<&'a GrantConstraints>,
    /// For RetireGrant named by key and grant ID: the grant ID.
    pub grant_id: Option<&'a str>,
    /// For ListRetirableGrants: whose retirable grants are listed.
    pub retiring_principal: Option<&'a str>,
}

/// The account root principal of a store.
pub fn root_principal(store_id: &str) -> String {
    format!("arn:envelopefs:iam::{store_id}:root")
}

/// AWS's default key policy: the account root (uid 0 here) may do everything.
pub fn default_policy(store_id: &str) -> String {
    let root = root_principal(store_id);
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : \"{root}\"\n    }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
    )
}

/// The outcome of a key policy for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A Deny statement applies: nothing can allow the request.
    ExplicitDeny,
    Allow,
    /// No statement applies.
    NoMatch,
}

/// Whether a statement's principal is the caller. The account root means
/// uid 0 only (see the module's comment).
fn principal_matches(p: &Principals, caller: &Caller) -> bool {
    match p {
        Principals::Anyone => true,
        Principals::Arns(arns) => arns
            .iter()
            .any(|a| a == &caller.principal_arn && (!a.ends_with(":root") || caller.uid == 0)),
    }
}

impl Policy {
    /// Evaluate the policy's statements for one request.
    pub fn decide(&self, caller: &Caller, action: &str, ctx: &RequestContext) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            let applies = principal_matches(&s.principals, caller)
                && s.actions.iter().any(|a| action_matches(a, action))
                && s.conditions.iter().all(|c| c.holds(ctx));
            if !applies {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NoMatch
        }
    }
}

/// AWS's AccessDeniedException message.
fn denied(caller: &Caller, action: &str, resource: Option<&str>, why: &str) -> KmsError {
    let on = resource
        .map(|r| format!(" on resource: {r}"))
        .unwrap_or_default();
    KmsError::AccessDenied(format!(
        "User: {} is not authorized to perform: {action}{on} {why}",
        caller.principal_arn
    ))
}

/// What a store knows of one key for a decision.
#[derive(Debug, Clone)]
pub struct KeyAccess {
    pub key_id: String,
    pub key_arn: String,
    pub key_spec: String,
    pub key_usage: String,
    /// The key policy's text (the default policy when none was put).
    pub policy: String,
    pub grants: Vec<Grant>,
}

/// Whether the caller is the store's owner: root, as the root principal.
fn is_owner(ks: &LocalKeyService, caller: &Caller) -> bool {
    caller.uid == 0 && caller.principal_arn == root_principal(ks.store_id())
}

/// The resource a request names, as an ARN, whether or not it exists: a
/// denial names what the caller named, and tells nothing more.
pub fn named_resource(ks: &LocalKeyService, name: &str) -> String {
    if name.starts_with("arn:") {
        name.to_owned()
    } else if name.starts_with("alias/") {
        ks.alias_arn(name)
    } else {
        ks.arn(name)
    }
}

fn no_policy_allows(action: &str) -> String {
    format!("because no resource-based policy allows the {action} action")
}

/// Allow, with the ARN of the key the request resolved to, or
/// Err(KmsError::AccessDenied) naming the principal, action and the key
/// as named. Decided on the store as it is on disk now (read once, here).
/// A key that does not exist is, to a caller other than the store's
/// owner, the same AccessDeniedException as a key it may not use (as AWS
/// answers another account): a denied caller cannot tell them apart.
pub fn authorize(
    ks: &LocalKeyService,
    caller: &Caller,
    req: &AccessRequest<'_>,
) -> Result<Option<String>, KmsError> {
    ks.refresh()?;
    if req.action.eq_ignore_ascii_case("kms:RetireGrant") {
        return authorize_retire(ks, caller, req).map(Some);
    }
    check_grant_token_count(req.grant_tokens)?;
    for t in req.grant_tokens {
        let (key_id, grant_id) = parse_grant_token(t)?;
        if !ks.grant_is_live(&key_id, &grant_id) {
            return Err(KmsError::InvalidGrantToken(format!(
                "the grant token names grant {grant_id}, which does not exist (retired or revoked)"
            )));
        }
    }
    let Some(named) = req.key else {
        let own_retirable = req.action.eq_ignore_ascii_case("kms:ListRetirableGrants")
            && req.retiring_principal == Some(caller.principal_arn.as_str());
        if is_owner(ks, caller) || own_retirable {
            return Ok(None);
        }
        return Err(denied(
            caller,
            req.action,
            None,
            &format!(
                "because no identity-based policy allows the {} action",
                req.action
            ),
        ));
    };
    let resource = named_resource(ks, named);
    let key = match ks.key_access(named) {
        Ok(k) => k,
        Err(KmsError::NotFound(_)) if !is_owner(ks, caller) => {
            return Err(denied(
                caller,
                req.action,
                Some(&resource),
                &no_policy_allows(req.action),
            ))
        }
        Err(e) => return Err(e),
    };
    let policy = Policy::parse(&key.policy)?;
    let ctx = RequestContext {
        encryption_context: req.encryption_context,
        caller_account: ks.store_id(),
        principal_arn: &caller.principal_arn,
        request_alias: req.request_alias,
        key_spec: Some(&key.key_spec),
        key_usage: Some(&key.key_usage),
        grant_operations: req.grant_operations,
    };
    match policy.decide(caller, req.action, &ctx) {
        Decision::ExplicitDeny => Err(denied(
            caller,
            req.action,
            Some(&resource),
            "with an explicit deny in a resource-based policy",
        )),
        Decision::Allow => Ok(Some(key.key_arn)),
        Decision::NoMatch if grant_allows(&key, caller, req) => Ok(Some(key.key_arn)),
        Decision::NoMatch => Err(denied(
            caller,
            req.action,
            Some(&resource),
            &no_policy_allows(req.action),
        )),
    }
}

/// Whether one of the key's grants lets the caller do this.
fn grant_allows(key: &KeyAccess, caller: &Caller, req: &AccessRequest<'_>) -> bool {
    key.grants.iter().any(|g| {
        g.grantee_principal == caller.principal_arn
            && (!g.grantee_principal.ends_with(":root") || caller.uid == 0)
            && g.allows(
                req.action,
                req.encryption_context,
                req.grant_operations,
                req.grant_constraints,
            )
    })
}

/// RetireGrant is decided by the grant, not the key policy: its retiring
/// principal, its grantee when it allows RetireGrant, or the store's root
/// (the account that issued it) may retire it. The grant is the one the
/// request's single grant token names, or its key and grant ID. A key or
/// grant named by ID that does not exist is, to a caller other than the
/// owner, the same denial as a grant it may not retire. Allowed: the key's ARN.
fn authorize_retire(
    ks: &LocalKeyService,
    caller: &Caller,
    req: &AccessRequest<'_>,
) -> Result<String, KmsError> {
    let owner = is_owner(ks, caller);
    let (key_id, grant_id, resource) = match (req.grant_tokens, req.key, req.grant_id) {
        ([token], None, None) => {
            let (key_id, grant_id) = parse_grant_token(token)?;
            let resource = ks.arn(&key_id);
            (Some(key_id), grant_id, resource)
        }
        ([], Some(key), Some(grant_id)) => match ks.key_id_of(key) {
            Ok(id) => (Some(id.clone()), grant_id.to_owned(), ks.arn(&id)),
            Err(KmsError::NotFound(_)) if !owner => {
                (None, grant_id.to_owned(), named_resource(ks, key))
            }
            Err(e) => return Err(e),
        },
        _ => {
            return Err(KmsError::Validation(
                "RetireGrant takes a GrantToken, or a KeyId and a GrantId".into(),
            ))
        }
    };
    let grant = key_id.as_deref().and_then(|k| ks.grant(k, &grant_id));
    let Some(grant) = grant else {
        if !req.grant_tokens.is_empty() {
            return Err(KmsError::InvalidGrantToken(format!(
                "the grant token names grant {grant_id}, which does not exist (retired or revoked)"
            )));
        }
        if owner {
            return Err(KmsError::NotFound(format!("Grant ID {grant_id} not found")));
        }
        return Err(retire_denied(caller, &resource));
    };
    let me = caller.principal_arn.as_str();
    let retiring = grant.retiring_principal.as_deref() == Some(me);
    let grantee =
        grant.grantee_principal == me && grant.operations.iter().any(|o| o == "RetireGrant");
    if owner || retiring || grantee {
        return Ok(resource);
    }
    Err(retire_denied(caller, &resource))
}

fn retire_denied(caller: &Caller, resource: &str) -> KmsError {
    denied(
        caller,
        "kms:RetireGrant",
        Some(resource),
        "because the grant names it neither its retiring principal nor a grantee allowed RetireGrant",
    )
}
