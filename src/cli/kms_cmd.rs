//! `envelopefs kms ...`: the local key service, with `aws kms` operation and
//! flag names and its JSON output shapes. One function per subcommand, in
//! kms_cmd/ by theme: keys, aliases and rotation; imported material; data
//! keys and blobs; the store as a whole.

mod asym;
mod data;
mod import;
pub(crate) mod keys;
pub(crate) mod pages;
pub(crate) mod policies;
mod request;
mod store;
mod tags;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Subcommand;

use super::output::wipe;
use super::{kms_api, print_aws, Failure, Global};
use crate::kms::passphrase::PassphraseSource;
use crate::kms::EncryptionContext;

#[derive(Subcommand, Debug)]
pub enum KmsCommand {
    /// Create a symmetric customer managed key, or an asymmetric key pair (--key-spec).
    CreateKey(keys::CreateKeyArgs),
    /// Show a key's metadata: state, origin, dates, material.
    DescribeKey(keys::KeyArg),
    /// List the key IDs and ARNs in the store.
    ListKeys(keys::ListKeysArgs),
    /// List the aliases in the store, with the keys they point to.
    ListAliases(keys::ListAliasesArgs),
    /// Create an alias (alias/NAME) for a key.
    CreateAlias(keys::CreateAliasArgs),
    /// Point an existing alias at another key.
    UpdateAlias(keys::UpdateAliasArgs),
    /// Delete an alias (the key stays).
    DeleteAlias(keys::DeleteAliasArgs),
    /// Enable a disabled key, so it may be used again.
    EnableKey(keys::KeyArg),
    /// Disable a key: volumes under it cannot be mounted until it is enabled.
    DisableKey(keys::KeyArg),
    /// Schedule a key's deletion after a waiting period (7..30 days).
    ScheduleKeyDeletion(keys::ScheduleKeyDeletionArgs),
    /// Cancel a scheduled deletion (the key stays disabled).
    CancelKeyDeletion(keys::KeyArg),
    /// Rotate a key's material automatically at a fixed period.
    EnableKeyRotation(keys::EnableKeyRotationArgs),
    /// Stop a key's automatic rotation.
    DisableKeyRotation(keys::KeyArg),
    /// Show whether a key rotates automatically, and when next.
    GetKeyRotationStatus(keys::KeyArg),
    /// Rotate a key's material now (older material still decrypts).
    RotateKeyOnDemand(keys::KeyArg),
    /// List a key's past rotations.
    ListKeyRotations(keys::ListKeyRotationsArgs),
    /// A wrapping public key (X25519, for HPKE) and a 24-hour import token.
    GetParametersForImport(import::GetParametersArgs),
    /// Seal key material for import-key-material (a local helper; no aws counterpart).
    WrapKeyMaterial(import::WrapArgs),
    /// Import wrapped key material into an EXTERNAL key.
    ImportKeyMaterial(import::ImportArgs),
    /// Delete an EXTERNAL key's imported material (the key becomes unusable).
    DeleteImportedKeyMaterial(import::ExternalKeyArg),
    /// A data key and its wrapped blob.
    GenerateDataKey(data::GenerateDataKeyArgs),
    /// Encrypt up to 4096 bytes under a key.
    Encrypt(data::EncryptArgs),
    /// Decrypt a base64 ciphertext blob.
    Decrypt(data::DecryptArgs),
    /// Decrypt a blob and encrypt its plaintext under another key.
    ReEncrypt(data::ReEncryptArgs),
    /// A data key's blob only (its plaintext is never shown).
    GenerateDataKeyWithoutPlaintext(data::GenerateDataKeyArgs),
    /// Random bytes (1..1024), base64.
    GenerateRandom(data::GenerateRandomArgs),
    /// Change a key's description.
    UpdateKeyDescription(tags::UpdateKeyDescriptionArgs),
    /// Add or change tags of a key (at most 50 a key).
    TagResource(tags::TagResourceArgs),
    /// Remove tags from a key.
    UntagResource(tags::UntagResourceArgs),
    /// List a key's tags.
    ListResourceTags(tags::ListResourceTagsArgs),
    /// Replace a key's policy (JSON in AWS's key policy grammar).
    PutKeyPolicy(policies::PutKeyPolicyArgs),
    /// Show a key's policy.
    GetKeyPolicy(policies::GetKeyPolicyArgs),
    /// List a key's policy names (`default`).
    ListKeyPolicies(policies::ListKeyPoliciesArgs),
    /// Allow a principal some operations on a key (a grant).
    CreateGrant(policies::CreateGrantArgs),
    /// List a key's grants.
    ListGrants(policies::ListGrantsArgs),
    /// List the grants a principal may retire.
    ListRetirableGrants(policies::ListRetirableGrantsArgs),
    /// Retire a grant (by its token, or key and grant ID).
    RetireGrant(policies::RetireGrantArgs),
    /// Revoke a grant.
    RevokeGrant(policies::RevokeGrantArgs),
    /// Write the store, encrypted under a backup passphrase, to FILE.
    ExportBackup(store::ExportBackupArgs),
    /// Create the store (which must not exist) from a backup FILE.
    ImportBackup(store::ImportBackupArgs),
    /// Re-seal the store under a new passphrase (keys unchanged).
    ChangePassphrase(store::ChangePassphraseArgs),
    /// Read the audit log.
    Audit(store::AuditArgs),
    /// The public key of an asymmetric key (DER SubjectPublicKeyInfo, base64).
    GetPublicKey(asym::GetPublicKeyArgs),
    /// Sign a message or its digest with a SIGN_VERIFY key.
    Sign(asym::SignArgs),
    /// Verify a signature (an invalid one is KMSInvalidSignatureException).
    Verify(asym::VerifyArgs),
    /// The ECDH shared secret of a KEY_AGREEMENT key and another party's public key.
    DeriveSharedSecret(asym::DeriveSharedSecretArgs),
    /// A key pair, its private key also encrypted under a symmetric key.
    GenerateDataKeyPair(asym::GenerateDataKeyPairArgs),
    /// A key pair with its private key only encrypted under a symmetric key.
    GenerateDataKeyPairWithoutPlaintext(asym::GenerateDataKeyPairArgs),
}

pub fn run(g: &Global, c: KmsCommand) -> Result<(), Failure> {
    use KmsCommand::*;
    let c = match c {
        ExportBackup(a) => return store::export_backup(g, a),
        ImportBackup(a) => return store::import_backup(g, a),
        ChangePassphrase(a) => return store::change_passphrase(g, a),
        Audit(a) => return store::audit(g, a),
        WrapKeyMaterial(a) => return import::wrap_key_material(g, a),
        c => c,
    };
    let Some(mut req) = request::request(&c)? else {
        return Err(usage(format!("{c:?} is not a key service operation")));
    };
    let r = call(g, &req);
    wipe(&mut req);
    let mut v = r?;
    // What AWS answers with nothing (enable-key, put-key-policy...) prints nothing.
    if v.as_object().is_some_and(|o| !o.is_empty()) {
        print_aws(g.output, &v);
    }
    wipe(&mut v);
    Ok(())
}

/// Send a request to the key agent (`--agent`, `ENVELOPEFS_AGENT`, or the
/// default agent for a key ARN of a store this user cannot open), or carry
/// it out on the store.
fn call(g: &Global, req: &serde_json::Value) -> Result<serde_json::Value, Failure> {
    let socket = match g.agent.clone() {
        Some(s) => Some(s),
        None => request::named_keys(req).find_map(|k| g.agent_for(Some(k))),
    };
    if let Some(socket) = socket {
        let svc = crate::kms::agent::client::AgentKeyService::new(&socket, Some(&g.store_dir()));
        return Ok(svc.call(req.clone())?);
    }
    let ks = if kms_api::operation(req) == "CreateKey" {
        g.open_or_create_store()?
    } else {
        g.open_store()?
    };
    Ok(kms_api::call(&ks, req)?)
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

fn ctx(s: &Option<String>) -> Result<EncryptionContext, Failure> {
    match s {
        None => Ok(EncryptionContext::new()),
        Some(s) => EncryptionContext::parse_cli(s).map_err(usage),
    }
}

/// Longest file a blob argument reads (far above any KMS blob).
const MAX_BLOB_ARG: u64 = 1 << 20;

/// A blob argument as the AWS CLI takes it: `fileb://PATH` is the file's
/// raw bytes, `file://PATH` the file's text as base64, anything else base64.
fn blob_arg(s: &str, what: &str) -> Result<Vec<u8>, Failure> {
    let text;
    let b64_text = if let Some(p) = s.strip_prefix("fileb://") {
        return read_arg_file(p, what).map(|b| b.to_vec());
    } else if let Some(p) = s.strip_prefix("file://") {
        let raw = read_arg_file(p, what)?;
        text = String::from_utf8(raw.to_vec()).map_err(|_| Failure::NotBase64(what.to_owned()))?;
        text.as_str()
    } else {
        s
    };
    // As the AWS CLI (Python's b64decode), line breaks and spaces inside
    // are skipped: `base64 FILE` wraps at 76 columns.
    let mut compact = zeroize::Zeroizing::new(String::with_capacity(b64_text.len()));
    compact.extend(b64_text.chars().filter(|c| !c.is_ascii_whitespace()));
    B64.decode(compact.as_bytes())
        .map_err(|_| Failure::NotBase64(what.to_owned()))
}

/// A path of a `fileb://` or `file://` argument as the AWS CLI opens it
/// (`os.path.expandvars(os.path.expanduser(path))`): a leading `~` is
/// $HOME, `$NAME` and `${NAME}` are the variable's value (left as written
/// when unset).
fn expand_path(path: &str) -> String {
    let home = || std::env::var("HOME").ok();
    let path = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match home() {
            Some(h) => format!("{h}{rest}"),
            None => path.to_owned(),
        },
        _ => path.to_owned(),
    };
    let mut out = String::with_capacity(path.len());
    let mut rest = path.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(b) => match b.find('}') {
                Some(j) => (&b[..j], &b[j + 1..]),
                None => ("", after),
            },
            None => {
                let n = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..n], &after[n..])
            }
        };
        match std::env::var(name).ok().filter(|_| !name.is_empty()) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[i..rest.len() - tail.len()]),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The bytes of a file named in an argument (a path the user gave, so a
/// pipe such as /dev/stdin is fine), at most [`MAX_BLOB_ARG`] bytes.
fn read_arg_file(path: &str, what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    use std::io::Read;
    let fail = |e: std::io::Error| usage(format!("{what}: cannot read {path}: {e}"));
    let f = std::fs::File::open(expand_path(path)).map_err(fail)?;
    // Room for the whole cap at once: a buffer that grew would leave
    // unwiped copies of a plaintext behind.
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(MAX_BLOB_ARG as usize + 1));
    f.take(MAX_BLOB_ARG + 1)
        .read_to_end(&mut buf)
        .map_err(fail)?;
    if buf.len() as u64 > MAX_BLOB_ARG {
        return Err(usage(format!(
            "{what}: {path} is over {MAX_BLOB_ARG} bytes"
        )));
    }
    Ok(buf)
}

fn read_pass(file: &Option<PathBuf>, new: bool) -> Result<zeroize::Zeroizing<String>, Failure> {
    let src = PassphraseSource::file(file.clone());
    Ok(if new {
        src.new_passphrase()?
    } else {
        src.existing()?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_argument_paths_expand_as_the_aws_cli_expands_them() {
        let home = std::env::var("HOME").unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_path("~/k.bin"), format!("{home}/k.bin"));
        assert_eq!(expand_path("~"), home);
        assert_eq!(expand_path("a~/b"), "a~/b");
        assert_eq!(expand_path("$PATH/x"), format!("{path}/x"));
        assert_eq!(expand_path("${PATH}x"), format!("{path}x"));
        assert_eq!(
            expand_path("/$ENVELOPEFS_UNSET_VAR/x"),
            "/$ENVELOPEFS_UNSET_VAR/x"
        );
        assert_eq!(expand_path("/a/$"), "/a/$");
        assert_eq!(expand_path("${unclosed"), "${unclosed");
    }

    #[test]
    fn base64_arguments_skip_line_breaks() {
        assert_eq!(blob_arg("aGVs\nbG8=\n", "x").unwrap(), b"hello");
        assert!(blob_arg("aGVs!bG8=", "x").is_err());
    }
}
