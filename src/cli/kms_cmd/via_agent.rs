//! The kms commands with `--agent`/`ENVELOPEFS_AGENT`: the data-plane ones
//! are sent to the key agent and print what the store would print; the
//! store's own management is refused (not silently done on the store), and
//! change-passphrase, export-backup and import-backup never use the agent.

use serde_json::{json, Value};

use super::super::output::wipe;
use super::super::{print_aws, Failure, Global};
use super::{blob_arg, ctx, KmsCommand};
use crate::kms::agent::client::AgentKeyService;

/// Whether the command is one of the store's own, never sent to the agent.
pub fn never_agent(c: &KmsCommand) -> bool {
    matches!(
        c,
        KmsCommand::ChangePassphrase(_) | KmsCommand::ExportBackup(_) | KmsCommand::ImportBackup(_)
    )
}

/// `describe-key` from `DescribeKey`.
fn command_name(c: &KmsCommand) -> String {
    let dbg = format!("{c:?}");
    let variant = dbg.split(['(', ' ']).next().unwrap_or("");
    let mut out = String::new();
    for (i, ch) in variant.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn context_json(s: &Option<String>) -> Result<Value, Failure> {
    Ok(json!(ctx(s)?.0))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The request a served command sends; None for a command not served.
fn request(c: &KmsCommand) -> Result<Option<Value>, Failure> {
    use KmsCommand::*;
    let page = |p: &super::pages::PageArgs| {
        let mut v = json!({});
        if let Some(l) = p.limit {
            v["Limit"] = json!(l);
        }
        if let Some(m) = &p.marker {
            v["Marker"] = json!(m);
        }
        v
    };
    let mut v = match c {
        DescribeKey(a) => json!({"Operation": "DescribeKey", "KeyId": a.key_id}),
        ListKeys(a) => {
            let mut v = page(&a.page);
            v["Operation"] = json!("ListKeys");
            v
        }
        ListAliases(a) => {
            let mut v = page(&a.page);
            v["Operation"] = json!("ListAliases");
            if let Some(k) = &a.key_id {
                v["KeyId"] = json!(k);
            }
            v
        }
        GenerateDataKey(a) | GenerateDataKeyWithoutPlaintext(a) => {
            let op = if matches!(c, GenerateDataKey(_)) {
                "GenerateDataKey"
            } else {
                "GenerateDataKeyWithoutPlaintext"
            };
            let mut v = json!({"Operation": op, "KeyId": a.key_id,
                "EncryptionContext": context_json(&a.encryption_context)?});
            if let Some(s) = &a.key_spec {
                v["KeySpec"] = json!(s);
            }
            if let Some(n) = a.number_of_bytes {
                v["NumberOfBytes"] = json!(n);
            }
            v
        }
        GenerateRandom(a) => {
            json!({"Operation": "GenerateRandom", "NumberOfBytes": a.number_of_bytes})
        }
        Encrypt(a) => {
            let pt = zeroize::Zeroizing::new(blob_arg(&a.plaintext, "--plaintext")?);
            json!({"Operation": "Encrypt", "KeyId": a.key_id, "Plaintext": b64(&pt),
                "EncryptionContext": context_json(&a.encryption_context)?,
                "EncryptionAlgorithm": a.encryption_algorithm})
        }
        Decrypt(a) => {
            let mut v = json!({"Operation": "Decrypt",
                "CiphertextBlob": b64(&blob_arg(&a.ciphertext_blob, "the blob")?),
                "EncryptionContext": context_json(&a.encryption_context)?,
                "EncryptionAlgorithm": a.encryption_algorithm});
            if let Some(k) = &a.key_id {
                v["KeyId"] = json!(k);
            }
            v
        }
        ReEncrypt(a) => {
            let mut v = json!({"Operation": "ReEncrypt",
                "CiphertextBlob": b64(&blob_arg(&a.ciphertext_blob, "the blob")?),
                "DestinationKeyId": a.destination_key_id,
                "SourceEncryptionContext": context_json(&a.source_encryption_context)?,
                "DestinationEncryptionContext": context_json(&a.destination_encryption_context)?});
            if let Some(k) = &a.source_key_id {
                v["SourceKeyId"] = json!(k);
            }
            v
        }
        GetPublicKey(a) => json!({"Operation": "GetPublicKey", "KeyId": a.key_id}),
        EnableKey(a) => json!({"Operation": "EnableKey", "KeyId": a.key_id}),
        DisableKey(a) => json!({"Operation": "DisableKey", "KeyId": a.key_id}),
        CancelKeyDeletion(a) => json!({"Operation": "CancelKeyDeletion", "KeyId": a.key_id}),
        ScheduleKeyDeletion(a) => json!({"Operation": "ScheduleKeyDeletion",
            "KeyId": a.key_id, "PendingWindowInDays": a.pending_window_in_days}),
        PutKeyPolicy(a) => {
            json!({"Operation": "PutKeyPolicy", "KeyId": a.key_id, "PolicyName": a.policy_name,
                "Policy": super::tags::arg_text(&a.policy, "--policy")?,
                "BypassPolicyLockoutSafetyCheck": a.bypass_policy_lockout_safety_check})
        }
        GetKeyPolicy(a) => {
            json!({"Operation": "GetKeyPolicy", "KeyId": a.key_id, "PolicyName": a.policy_name})
        }
        CreateGrant(_)
        | ListGrants(_)
        | ListRetirableGrants(_)
        | RetireGrant(_)
        | RevokeGrant(_) => return grant_request(c, page).map(Some),
        _ => return Ok(None),
    };
    if v.get("NumberOfBytes") == Some(&Value::Null) {
        v.as_object_mut().map(|o| o.remove("NumberOfBytes"));
    }
    Ok(Some(v))
}

/// The request of a grant command.
fn grant_request(
    c: &KmsCommand,
    page: impl Fn(&super::pages::PageArgs) -> Value,
) -> Result<Value, Failure> {
    use KmsCommand::*;
    let mut v = match c {
        CreateGrant(a) => {
            let mut v = json!({"Operation": "CreateGrant", "KeyId": a.key_id,
                "GranteePrincipal": a.grantee_principal, "Operations": a.operations});
            if let Some(p) = &a.retiring_principal {
                v["RetiringPrincipal"] = json!(p);
            }
            if let Some(text) = &a.constraints {
                v["Constraints"] = super::policies::parse_constraints(text)?.to_aws_json();
            }
            if let Some(n) = &a.name {
                v["Name"] = json!(n);
            }
            v
        }
        ListGrants(a) => {
            let mut v = page(&a.page);
            v["Operation"] = json!("ListGrants");
            v["KeyId"] = json!(a.key_id);
            if let Some(g) = &a.grant_id {
                v["GrantId"] = json!(g);
            }
            if let Some(p) = &a.grantee_principal {
                v["GranteePrincipal"] = json!(p);
            }
            v
        }
        ListRetirableGrants(a) => {
            let mut v = page(&a.page);
            v["Operation"] = json!("ListRetirableGrants");
            v["RetiringPrincipal"] = json!(a.retiring_principal);
            v
        }
        RetireGrant(a) => {
            let mut v = json!({"Operation": "RetireGrant"});
            match (&a.grant_token, &a.key_id, &a.grant_id) {
                (Some(t), _, _) => v["GrantToken"] = json!(t),
                (None, Some(k), Some(g)) => {
                    v["KeyId"] = json!(k);
                    v["GrantId"] = json!(g);
                }
                _ => {
                    return Err(Failure::Usage(
                        "retire-grant takes --grant-token, or --key-id and --grant-id".into(),
                    ))
                }
            }
            v
        }
        RevokeGrant(a) => {
            json!({"Operation": "RevokeGrant", "KeyId": a.key_id, "GrantId": a.grant_id})
        }
        _ => return Err(Failure::Usage("not a grant command".into())),
    };
    if let CreateGrant(a) = c {
        if !a.grant_tokens.is_empty() {
            v["GrantTokens"] = json!(a.grant_tokens);
        }
    }
    Ok(v)
}

/// Run a kms command through the agent at `socket`.
pub fn run(g: &Global, socket: &std::path::Path, c: KmsCommand) -> Result<(), Failure> {
    let Some(req) = request(&c)? else {
        return Err(Failure::Usage(format!(
            "kms {} is not served by the key agent ({} is selected by --agent or ENVELOPEFS_AGENT): run it as the key store's owner without the agent",
            command_name(&c),
            socket.display()
        )));
    };
    let svc = AgentKeyService::new(socket, Some(&g.store_dir()));
    let mut v = svc.call(req)?;
    // What prints nothing on the store (enable-key, put-key-policy...)
    // prints nothing through the agent either.
    if v.as_object().is_some_and(|o| !o.is_empty()) {
        print_aws(g.output, &v);
    }
    wipe(&mut v);
    Ok(())
}
