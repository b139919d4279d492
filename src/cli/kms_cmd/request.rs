//! A `kms` command's arguments as the AWS API request it stands for:
//! `Operation` and AWS's parameter names, blobs base64. The same request
//! goes to the store ([`crate::cli::kms_api::call`]) or to the key agent.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::super::Failure;
use super::pages::PageArgs;
use super::{blob_arg, ctx, usage, KmsCommand};

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn context_json(s: &Option<String>) -> Result<Value, Failure> {
    Ok(json!(ctx(s)?.0))
}

/// A blob argument (base64, fileb://, file://) as the request's base64.
fn blob_json(arg: &str, what: &str) -> Result<Value, Failure> {
    let bytes = Zeroizing::new(blob_arg(arg, what)?);
    Ok(Value::String(b64(&bytes)))
}

/// Adds `Limit` and `Marker` of a list command.
fn paged(mut v: Value, p: &PageArgs) -> Value {
    if let Some(l) = p.limit {
        v["Limit"] = json!(l);
    }
    if let Some(m) = &p.marker {
        v["Marker"] = json!(m);
    }
    v
}

/// Sets `name` when the argument was given.
fn opt<T: serde::Serialize>(mut v: Value, name: &str, x: &Option<T>) -> Value {
    if let Some(x) = x {
        v[name] = json!(x);
    }
    v
}

/// The request of `c`; None for the commands that are the store's own
/// (change-passphrase, export-backup, import-backup, audit,
/// wrap-key-material), which never become a request.
pub fn request(c: &KmsCommand) -> Result<Option<Value>, Failure> {
    use KmsCommand::*;
    let v = match c {
        CreateKey(a) => {
            let v = json!({"Operation": "CreateKey", "Description": a.description,
                "Origin": a.origin, "KeySpec": a.key_spec, "KeyUsage": a.key_usage,
                "BypassPolicyLockoutSafetyCheck": a.bypass_policy_lockout_safety_check});
            let policy = a
                .policy
                .as_deref()
                .map(|p| super::tags::arg_text(p, "--policy"))
                .transpose()?;
            opt(v, "Policy", &policy)
        }
        DescribeKey(a) => json!({"Operation": "DescribeKey", "KeyId": a.key_id}),
        ListKeys(a) => paged(json!({"Operation": "ListKeys"}), &a.page),
        ListAliases(a) => opt(
            paged(json!({"Operation": "ListAliases"}), &a.page),
            "KeyId",
            &a.key_id,
        ),
        CreateAlias(a) => json!({"Operation": "CreateAlias", "AliasName": a.alias_name,
            "TargetKeyId": a.target_key_id}),
        UpdateAlias(a) => json!({"Operation": "UpdateAlias", "AliasName": a.alias_name,
            "TargetKeyId": a.target_key_id}),
        DeleteAlias(a) => json!({"Operation": "DeleteAlias", "AliasName": a.alias_name}),
        EnableKey(a) => json!({"Operation": "EnableKey", "KeyId": a.key_id}),
        DisableKey(a) => json!({"Operation": "DisableKey", "KeyId": a.key_id}),
        ScheduleKeyDeletion(a) => opt(
            json!({"Operation": "ScheduleKeyDeletion", "KeyId": a.key_id}),
            "PendingWindowInDays",
            &a.pending_window_in_days,
        ),
        CancelKeyDeletion(a) => json!({"Operation": "CancelKeyDeletion", "KeyId": a.key_id}),
        EnableKeyRotation(a) => opt(
            json!({"Operation": "EnableKeyRotation", "KeyId": a.key_id}),
            "RotationPeriodInDays",
            &a.rotation_period_in_days,
        ),
        DisableKeyRotation(a) => json!({"Operation": "DisableKeyRotation", "KeyId": a.key_id}),
        GetKeyRotationStatus(a) => {
            json!({"Operation": "GetKeyRotationStatus", "KeyId": a.key_id})
        }
        RotateKeyOnDemand(a) => json!({"Operation": "RotateKeyOnDemand", "KeyId": a.key_id}),
        ListKeyRotations(a) => paged(
            json!({"Operation": "ListKeyRotations", "KeyId": a.key_id}),
            &a.page,
        ),
        _ => return data_request(c),
    };
    Ok(Some(v))
}

fn data_request(c: &KmsCommand) -> Result<Option<Value>, Failure> {
    use KmsCommand::*;
    let v = match c {
        GenerateDataKey(a) | GenerateDataKeyWithoutPlaintext(a) => {
            let op = if matches!(c, GenerateDataKey(_)) {
                "GenerateDataKey"
            } else {
                "GenerateDataKeyWithoutPlaintext"
            };
            let v = json!({"Operation": op, "KeyId": a.key_id,
                "EncryptionContext": context_json(&a.encryption_context)?});
            opt(
                opt(v, "KeySpec", &a.key_spec),
                "NumberOfBytes",
                &a.number_of_bytes,
            )
        }
        GenerateRandom(a) => opt(
            json!({"Operation": "GenerateRandom"}),
            "NumberOfBytes",
            &a.number_of_bytes,
        ),
        Encrypt(a) => json!({"Operation": "Encrypt", "KeyId": a.key_id,
            "Plaintext": blob_json(&a.plaintext, "--plaintext")?,
            "EncryptionContext": context_json(&a.encryption_context)?,
            "EncryptionAlgorithm": a.encryption_algorithm}),
        Decrypt(a) => opt(
            json!({"Operation": "Decrypt",
                "CiphertextBlob": blob_json(&a.ciphertext_blob, "the blob")?,
                "EncryptionContext": context_json(&a.encryption_context)?,
                "EncryptionAlgorithm": a.encryption_algorithm}),
            "KeyId",
            &a.key_id,
        ),
        ReEncrypt(a) => opt(
            json!({"Operation": "ReEncrypt",
                "CiphertextBlob": blob_json(&a.ciphertext_blob, "the blob")?,
                "DestinationKeyId": a.destination_key_id,
                "SourceEncryptionContext": context_json(&a.source_encryption_context)?,
                "DestinationEncryptionContext": context_json(&a.destination_encryption_context)?}),
            "SourceKeyId",
            &a.source_key_id,
        ),
        GetPublicKey(a) => json!({"Operation": "GetPublicKey", "KeyId": a.key_id}),
        Sign(a) => json!({"Operation": "Sign", "KeyId": a.key_id,
            "Message": blob_json(&a.message, "--message")?, "MessageType": a.message_type,
            "SigningAlgorithm": a.signing_algorithm}),
        Verify(a) => json!({"Operation": "Verify", "KeyId": a.key_id,
            "Message": blob_json(&a.message, "--message")?, "MessageType": a.message_type,
            "Signature": blob_json(&a.signature, "--signature")?,
            "SigningAlgorithm": a.signing_algorithm}),
        DeriveSharedSecret(a) => json!({"Operation": "DeriveSharedSecret", "KeyId": a.key_id,
            "KeyAgreementAlgorithm": a.key_agreement_algorithm,
            "PublicKey": blob_json(&a.public_key, "--public-key")?}),
        GenerateDataKeyPair(a) | GenerateDataKeyPairWithoutPlaintext(a) => {
            let op = if matches!(c, GenerateDataKeyPair(_)) {
                "GenerateDataKeyPair"
            } else {
                "GenerateDataKeyPairWithoutPlaintext"
            };
            json!({"Operation": op, "KeyId": a.key_id, "KeyPairSpec": a.key_pair_spec,
                "EncryptionContext": context_json(&a.encryption_context)?})
        }
        _ => return manage_request(c),
    };
    Ok(Some(v))
}

fn manage_request(c: &KmsCommand) -> Result<Option<Value>, Failure> {
    use KmsCommand::*;
    let v = match c {
        UpdateKeyDescription(a) => json!({"Operation": "UpdateKeyDescription",
            "KeyId": a.key_id, "Description": a.description}),
        TagResource(a) => {
            let mut tags = Vec::new();
            for t in &a.tags {
                tags.extend(super::tags::parse_tags(t)?);
            }
            let tags: Vec<Value> = tags
                .into_iter()
                .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
                .collect();
            json!({"Operation": "TagResource", "KeyId": a.key_id, "Tags": tags})
        }
        UntagResource(a) => {
            let mut keys = Vec::new();
            for k in &a.tag_keys {
                keys.extend(super::tags::parse_tag_keys(k)?);
            }
            json!({"Operation": "UntagResource", "KeyId": a.key_id, "TagKeys": keys})
        }
        ListResourceTags(a) => paged(
            json!({"Operation": "ListResourceTags", "KeyId": a.key_id}),
            &a.page,
        ),
        PutKeyPolicy(a) => json!({"Operation": "PutKeyPolicy", "KeyId": a.key_id,
            "PolicyName": a.policy_name,
            "Policy": super::tags::arg_text(&a.policy, "--policy")?,
            "BypassPolicyLockoutSafetyCheck": a.bypass_policy_lockout_safety_check}),
        GetKeyPolicy(a) => json!({"Operation": "GetKeyPolicy", "KeyId": a.key_id,
            "PolicyName": a.policy_name}),
        ListKeyPolicies(a) => paged(
            json!({"Operation": "ListKeyPolicies", "KeyId": a.key_id}),
            &a.page,
        ),
        GetParametersForImport(a) => opt(
            json!({"Operation": "GetParametersForImport", "KeyId": a.key_id,
                "WrappingAlgorithm": a.wrapping_algorithm}),
            "WrappingKeySpec",
            &a.wrapping_key_spec,
        ),
        ImportKeyMaterial(a) => {
            super::import::check_expiration(a.expiration_model.as_deref(), a.valid_to)?;
            let v = json!({"Operation": "ImportKeyMaterial", "KeyId": a.key_id,
                "ImportToken": blob_json(&a.import_token, "--import-token")?,
                "EncryptedKeyMaterial": blob_json(&a.encrypted_key_material, "the encrypted key material")?,
                "ImportType": a.import_type});
            opt(
                opt(v, "ExpirationModel", &a.expiration_model),
                "ValidTo",
                &a.valid_to,
            )
        }
        DeleteImportedKeyMaterial(a) => {
            json!({"Operation": "DeleteImportedKeyMaterial", "KeyId": a.key_id})
        }
        CreateGrant(_)
        | ListGrants(_)
        | ListRetirableGrants(_)
        | RetireGrant(_)
        | RevokeGrant(_) => grant_request(c)?,
        _ => return Ok(None),
    };
    Ok(Some(v))
}

fn grant_request(c: &KmsCommand) -> Result<Value, Failure> {
    use KmsCommand::*;
    Ok(match c {
        CreateGrant(a) => {
            let mut v = json!({"Operation": "CreateGrant", "KeyId": a.key_id,
                "GranteePrincipal": a.grantee_principal, "Operations": a.operations});
            if let Some(text) = &a.constraints {
                v["Constraints"] = super::policies::parse_constraints(text)?.to_aws_json();
            }
            if !a.grant_tokens.is_empty() {
                v["GrantTokens"] = json!(a.grant_tokens);
            }
            opt(
                opt(v, "RetiringPrincipal", &a.retiring_principal),
                "Name",
                &a.name,
            )
        }
        ListGrants(a) => {
            let v = paged(
                json!({"Operation": "ListGrants", "KeyId": a.key_id}),
                &a.page,
            );
            opt(
                opt(v, "GrantId", &a.grant_id),
                "GranteePrincipal",
                &a.grantee_principal,
            )
        }
        ListRetirableGrants(a) => paged(
            json!({"Operation": "ListRetirableGrants", "RetiringPrincipal": a.retiring_principal}),
            &a.page,
        ),
        RetireGrant(a) => match (&a.grant_token, &a.key_id, &a.grant_id) {
            (Some(t), _, _) => json!({"Operation": "RetireGrant", "GrantToken": t}),
            (None, Some(k), Some(g)) => {
                json!({"Operation": "RetireGrant", "KeyId": k, "GrantId": g})
            }
            _ => {
                return Err(usage(
                    "retire-grant takes --grant-token, or --key-id and --grant-id",
                ))
            }
        },
        RevokeGrant(a) => {
            json!({"Operation": "RevokeGrant", "KeyId": a.key_id, "GrantId": a.grant_id})
        }
        _ => Value::Object(Map::new()),
    })
}

/// The keys a request names, for routing: a key ARN of a store this user
/// cannot open goes to the default key agent.
pub fn named_keys(req: &Value) -> impl Iterator<Item = &str> {
    ["KeyId", "TargetKeyId", "DestinationKeyId", "SourceKeyId"]
        .into_iter()
        .filter_map(|f| req.get(f).and_then(Value::as_str))
}
