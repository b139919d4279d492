//! The one decision the key agent asks for every request. A stand-in until
//! key policies and grants decide it: root is allowed, everyone else denied.

use super::local::LocalKeyService;
use super::KmsError;

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
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    /// The IAM action, e.g. "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey".
    pub action: &'a str,
    /// The ARN of the key the request resolves to (None for ListKeys/ListAliases/CreateKey/GenerateRandom).
    pub key_arn: Option<&'a str>,
    /// The alias the caller named the key by, if any ("alias/team"), for kms:RequestAlias.
    pub request_alias: Option<&'a str>,
    pub encryption_context: Option<&'a crate::kms::EncryptionContext>,
    /// Grant tokens sent with the request (--grant-tokens).
    pub grant_tokens: &'a [String],
    /// For CreateGrant: the operations the new grant would allow (kms:GrantOperations).
    pub grant_operations: &'a [String],
}

/// Allow root; deny everyone else with AWS's message.
pub fn authorize(
    ks: &LocalKeyService,
    caller: &Caller,
    req: &AccessRequest<'_>,
) -> Result<(), KmsError> {
    let _ = ks;
    if caller.uid == 0 {
        return Ok(());
    }
    let resource = req.key_arn.unwrap_or("*");
    Err(KmsError::AccessDenied(format!(
        "User: {} is not authorized to perform: {} on resource: {resource} because no resource-based policy allows the {} action",
        caller.principal_arn, req.action, req.action
    )))
}
