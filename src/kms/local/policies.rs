//! Key policies and grants in the store: PutKeyPolicy, GetKeyPolicy,
//! ListKeyPolicies, CreateGrant, ListGrants, ListRetirableGrants,
//! RetireGrant and RevokeGrant, and what `policy::authorize` reads of a key.
//! Whoever opens the store directly is its owner: these operations are not
//! themselves checked against the policies they change.

use super::pages::{dated, page, Listing, Page, PageRequest};
use super::{KeyRecord, LocalKeyService, StoreData, PENDING_DELETION};
use crate::kms::policy::{
    self, check_grant_name, grant_token, is_principal_arn, new_grant_id, parse_grant_token, Caller,
    Decision, Grant, GrantRequest, KeyAccess, Policy, RequestContext, GRANT_OPERATIONS,
    MAX_GRANTS_PER_KEY,
};
use crate::kms::KmsError;

/// The one policy name a key has.
pub const POLICY_NAME: &str = "default";

const LIST_KEY_POLICIES: Listing = Listing {
    op: "ListKeyPolicies",
    max: 1000,
    default: 100,
};
const LIST_GRANTS: Listing = Listing {
    op: "ListGrants",
    max: 100,
    default: 50,
};
const LIST_RETIRABLE_GRANTS: Listing = Listing {
    op: "ListRetirableGrants",
    max: 100,
    default: 50,
};

/// A grant of the store with the key it is on.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub key_id: String,
    pub grant: Grant,
}

fn check_policy_name(name: &str) -> Result<(), KmsError> {
    if name == POLICY_NAME {
        Ok(())
    } else {
        Err(KmsError::NotFound(format!(
            "key policy {name:?} is not found: a key has one policy, {POLICY_NAME:?}"
        )))
    }
}

fn grant_not_found(grant_id: &str) -> KmsError {
    KmsError::NotFound(format!("Grant ID {grant_id} not found"))
}

impl LocalKeyService {
    /// A key's policy text: as put, or the default key policy.
    pub fn policy_text(&self, r: &KeyRecord) -> String {
        r.policy
            .clone()
            .unwrap_or_else(|| policy::default_policy(&self.store_id))
    }

    /// Parse a policy for a key of this spec and usage, and unless
    /// `bypass`, refuse one that would lock the owner (uid 0) out of
    /// PutKeyPolicy through the agent.
    pub fn check_new_policy(
        &self,
        text: &str,
        key_spec: &str,
        key_usage: &str,
        bypass: bool,
    ) -> Result<(), KmsError> {
        let p = Policy::parse(text)?;
        if bypass {
            return Ok(());
        }
        let root = Caller {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            pid: 0,
            principal_arn: policy::root_principal(&self.store_id),
        };
        let ctx = RequestContext {
            caller_account: &self.store_id,
            principal_arn: &root.principal_arn,
            key_spec: Some(key_spec),
            key_usage: Some(key_usage),
            ..RequestContext::default()
        };
        if p.decide(&root, "kms:PutKeyPolicy", &ctx) == Decision::Allow {
            return Ok(());
        }
        Err(KmsError::MalformedPolicyDocument(format!(
            "the new key policy will not allow {} to update the key policy in the future (--bypass-policy-lockout-safety-check to put it anyway)",
            root.principal_arn
        )))
    }

    /// PutKeyPolicy (key ID or key ARN; the managed default key too).
    pub fn put_key_policy(
        &self,
        key: &str,
        policy_name: &str,
        text: &str,
        bypass: bool,
    ) -> Result<(), KmsError> {
        self.manage("PutKeyPolicy", key, |r, _| {
            check_policy_name(policy_name)?;
            self.check_new_policy(text, &r.key_spec, &r.key_usage, bypass)?;
            r.policy = Some(text.to_owned());
            Ok(())
        })
    }

    /// GetKeyPolicy: the policy's text.
    pub fn get_key_policy(&self, key: &str, policy_name: &str) -> Result<String, KmsError> {
        self.audited("GetKeyPolicy", Some(key), |_| {
            check_policy_name(policy_name)?;
            let r = self.mgmt_record(key)?;
            Ok(self.policy_text(&r))
        })
    }

    /// ListKeyPolicies: `default`, the one policy of every key.
    pub fn list_key_policies_page(
        &self,
        key: &str,
        req: PageRequest,
    ) -> Result<Page<String>, KmsError> {
        let r = self.mgmt_record(key)?;
        let items = vec![(POLICY_NAME.to_owned(), POLICY_NAME.to_owned())];
        page(&LIST_KEY_POLICIES, &r.key_id, items, req)
    }

    /// A copy of the key a management operation names (key ID or key ARN).
    fn mgmt_record(&self, key: &str) -> Result<KeyRecord, KmsError> {
        let d = self.data.lock();
        let id = self.mgmt_id(&d, key)?;
        d.keys
            .iter()
            .find(|r| r.key_id == id)
            .cloned()
            .ok_or_else(|| KmsError::NotFound(format!("Key '{key}' does not exist")))
    }

    /// What `policy::authorize` needs of a key (any name of it).
    pub fn key_access(&self, key: &str) -> Result<KeyAccess, KmsError> {
        let id = self.key_id_of(key)?;
        let d = self.data.lock();
        let r = d
            .keys
            .iter()
            .find(|r| r.key_id == id)
            .ok_or_else(|| KmsError::NotFound(format!("Key '{key}' does not exist")))?;
        Ok(KeyAccess {
            key_id: r.key_id.clone(),
            key_arn: self.arn(&r.key_id),
            key_spec: r.key_spec.clone(),
            key_usage: r.key_usage.clone(),
            policy: self.policy_text(r),
            grants: r.grants.clone(),
        })
    }

    /// A live grant of a key.
    pub fn grant(&self, key_id: &str, grant_id: &str) -> Option<Grant> {
        let d = self.data.lock();
        find_grant(&d, key_id, grant_id).cloned()
    }

    pub fn grant_is_live(&self, key_id: &str, grant_id: &str) -> bool {
        self.grant(key_id, grant_id).is_some()
    }

    /// A token of a live grant (a --key-id/--grant-id request made into
    /// the token form, for `policy::authorize` of RetireGrant).
    pub fn grant_token_of(&self, key: &str, grant_id: &str) -> Result<String, KmsError> {
        let r = self.mgmt_record(key)?;
        if !r.grants.iter().any(|g| g.grant_id == grant_id) {
            return Err(grant_not_found(grant_id));
        }
        Ok(grant_token(&r.key_id, grant_id))
    }

    /// Every token must name a live grant (InvalidGrantTokenException).
    pub fn check_grant_tokens(&self, tokens: &[String]) -> Result<(), KmsError> {
        policy::check_grant_token_count(tokens)?;
        for t in tokens {
            let (key_id, grant_id) = parse_grant_token(t)?;
            if !self.grant_is_live(&key_id, &grant_id) {
                return Err(KmsError::InvalidGrantToken(format!(
                    "the grant token names grant {grant_id}, which does not exist"
                )));
            }
        }
        Ok(())
    }

    /// CreateGrant: (grant token, grant ID). A request with the Name and
    /// parameters of a live grant gives that grant again, with a new token.
    pub fn create_grant(
        &self,
        key: &str,
        req: &GrantRequest,
        grant_tokens: &[String],
    ) -> Result<(String, String), KmsError> {
        self.manage("CreateGrant", key, |r, now| {
            self.check_grant_tokens(grant_tokens)?;
            check_grant_request(r, req)?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            if let Some(g) = r.grants.iter().find(|g| g.same_as(req)) {
                return Ok((grant_token(&r.key_id, &g.grant_id), g.grant_id.clone()));
            }
            if r.grants.len() >= MAX_GRANTS_PER_KEY {
                return Err(KmsError::LimitExceeded(format!(
                    "{} has {MAX_GRANTS_PER_KEY} grants, the most a key may have",
                    self.arn(&r.key_id)
                )));
            }
            let g = Grant {
                grant_id: new_grant_id(),
                name: req.name.clone(),
                grantee_principal: req.grantee_principal.clone(),
                retiring_principal: req.retiring_principal.clone(),
                issuing_account: policy::root_principal(&self.store_id),
                operations: req.operations.clone(),
                constraints: req.constraints.clone(),
                creation_date: now,
            };
            let out = (grant_token(&r.key_id, &g.grant_id), g.grant_id.clone());
            r.grants.push(g);
            Ok(out)
        })
    }

    /// ListGrants of a key (key ID or key ARN), optionally only one grant
    /// or one grantee's.
    pub fn list_grants_page(
        &self,
        key: &str,
        grant_id: Option<&str>,
        grantee: Option<&str>,
        req: PageRequest,
    ) -> Result<Page<KeyGrant>, KmsError> {
        let r = self.mgmt_record(key)?;
        let items = r
            .grants
            .iter()
            .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
            .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
            .map(|g| keyed(&r.key_id, g))
            .collect();
        page(&LIST_GRANTS, &r.key_id, items, req)
    }

    /// ListRetirableGrants: the grants of every key this principal may retire.
    pub fn list_retirable_grants_page(
        &self,
        retiring_principal: &str,
        req: PageRequest,
    ) -> Result<Page<KeyGrant>, KmsError> {
        check_principal("RetiringPrincipal", retiring_principal)?;
        let items = {
            let d = self.data.lock();
            d.keys
                .iter()
                .flat_map(|r| r.grants.iter().map(move |g| (r, g)))
                .filter(|(_, g)| g.retiring_principal.as_deref() == Some(retiring_principal))
                .map(|(r, g)| keyed(&r.key_id, g))
                .collect()
        };
        page(&LIST_RETIRABLE_GRANTS, retiring_principal, items, req)
    }

    /// RetireGrant by its token, or by key (ID or ARN) and grant ID.
    pub fn retire_grant(
        &self,
        token: Option<&str>,
        key: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<(), KmsError> {
        let (key, grant_id) = match (token, key, grant_id) {
            (Some(t), None, None) => {
                let (key_id, grant_id) = parse_grant_token(t)?;
                if !self.grant_is_live(&key_id, &grant_id) {
                    return Err(KmsError::InvalidGrantToken(format!(
                        "the grant token names grant {grant_id}, which does not exist"
                    )));
                }
                (key_id, grant_id)
            }
            (None, Some(k), Some(g)) => (k.to_owned(), g.to_owned()),
            _ => {
                return Err(KmsError::Validation(
                    "RetireGrant takes a GrantToken, or a KeyId and a GrantId".into(),
                ))
            }
        };
        self.remove_grant("RetireGrant", &key, &grant_id)
    }

    /// RevokeGrant (key ID or key ARN, and grant ID).
    pub fn revoke_grant(&self, key: &str, grant_id: &str) -> Result<(), KmsError> {
        self.remove_grant("RevokeGrant", key, grant_id)
    }

    fn remove_grant(&self, op: &str, key: &str, grant_id: &str) -> Result<(), KmsError> {
        check_grant_id(grant_id)?;
        self.manage(op, key, |r, _| {
            let before = r.grants.len();
            r.grants.retain(|g| g.grant_id != grant_id);
            if r.grants.len() == before {
                return Err(grant_not_found(grant_id));
            }
            Ok(())
        })
    }
}

fn find_grant<'a>(d: &'a StoreData, key_id: &str, grant_id: &str) -> Option<&'a Grant> {
    d.keys
        .iter()
        .find(|r| r.key_id == key_id)?
        .grants
        .iter()
        .find(|g| g.grant_id == grant_id)
}

/// A grant listed in the order grants were made.
fn keyed(key_id: &str, g: &Grant) -> (String, KeyGrant) {
    (
        dated(g.creation_date, &g.grant_id),
        KeyGrant {
            key_id: key_id.to_owned(),
            grant: g.clone(),
        },
    )
}

/// AWS's grant ID: 1 to 128 characters.
fn check_grant_id(id: &str) -> Result<(), KmsError> {
    if id.is_empty() || id.len() > 128 {
        return Err(KmsError::InvalidGrantId(format!(
            "{id:?} is not a grant ID"
        )));
    }
    Ok(())
}

fn check_principal(what: &str, arn: &str) -> Result<(), KmsError> {
    if is_principal_arn(arn) {
        return Ok(());
    }
    Err(KmsError::InvalidArn(format!(
        "{what} {arn:?} is not arn:envelopefs:iam::STORE-ID:root or arn:envelopefs:iam::STORE-ID:user/NAME"
    )))
}

/// CreateGrant's parameters against AWS's rules and this key.
fn check_grant_request(r: &KeyRecord, req: &GrantRequest) -> Result<(), KmsError> {
    check_principal("GranteePrincipal", &req.grantee_principal)?;
    if let Some(p) = &req.retiring_principal {
        check_principal("RetiringPrincipal", p)?;
    }
    if req.operations.is_empty() {
        return Err(KmsError::Validation(
            "Operations must name at least one operation".into(),
        ));
    }
    if let Some(op) = req
        .operations
        .iter()
        .find(|o| !GRANT_OPERATIONS.contains(&o.as_str()))
    {
        return Err(KmsError::Validation(format!(
            "Operations: {op:?} is not one of {}",
            GRANT_OPERATIONS.join(", ")
        )));
    }
    if let Some(n) = &req.name {
        check_grant_name(n)?;
    }
    if let Some(c) = &req.constraints {
        c.check()?;
        if r.key_spec != super::asymmetric::SYMMETRIC_DEFAULT {
            return Err(KmsError::Validation(format!(
                "grant constraints are for symmetric encryption keys; this key is {}",
                r.key_spec
            )));
        }
    }
    Ok(())
}
