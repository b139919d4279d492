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
mod store;
mod tags;
mod via_agent;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Subcommand;

use super::{Failure, Global};
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
    if let Some(socket) = g.agent.as_deref().filter(|_| !via_agent::never_agent(&c)) {
        return via_agent::run(g, socket, c);
    }
    match c {
        CreateKey(a) => keys::create_key(g, a),
        DescribeKey(a) => keys::describe_key(g, a),
        ListKeys(a) => keys::list_keys(g, a),
        ListAliases(a) => keys::list_aliases(g, a),
        CreateAlias(a) => keys::create_alias(g, a),
        UpdateAlias(a) => keys::update_alias(g, a),
        DeleteAlias(a) => keys::delete_alias(g, a),
        EnableKey(a) => keys::enable_key(g, a),
        DisableKey(a) => keys::disable_key(g, a),
        ScheduleKeyDeletion(a) => keys::schedule_key_deletion(g, a),
        CancelKeyDeletion(a) => keys::cancel_key_deletion(g, a),
        EnableKeyRotation(a) => keys::enable_key_rotation(g, a),
        DisableKeyRotation(a) => keys::disable_key_rotation(g, a),
        GetKeyRotationStatus(a) => keys::get_key_rotation_status(g, a),
        RotateKeyOnDemand(a) => keys::rotate_key_on_demand(g, a),
        ListKeyRotations(a) => keys::list_key_rotations(g, a),
        GetParametersForImport(a) => import::get_parameters_for_import(g, a),
        WrapKeyMaterial(a) => import::wrap_key_material(g, a),
        ImportKeyMaterial(a) => import::import_key_material(g, a),
        DeleteImportedKeyMaterial(a) => import::delete_imported_key_material(g, a),
        GenerateDataKey(a) => data::generate_data_key(g, a),
        Encrypt(a) => data::encrypt(g, a),
        Decrypt(a) => data::decrypt(g, a),
        ReEncrypt(a) => data::re_encrypt(g, a),
        GenerateDataKeyWithoutPlaintext(a) => data::generate_data_key_without_plaintext(g, a),
        GenerateRandom(a) => data::generate_random(g, a),
        UpdateKeyDescription(a) => tags::update_key_description(g, a),
        TagResource(a) => tags::tag_resource(g, a),
        UntagResource(a) => tags::untag_resource(g, a),
        ListResourceTags(a) => tags::list_resource_tags(g, a),
        PutKeyPolicy(a) => policies::put_key_policy(g, a),
        GetKeyPolicy(a) => policies::get_key_policy(g, a),
        ListKeyPolicies(a) => policies::list_key_policies(g, a),
        CreateGrant(a) => policies::create_grant(g, a),
        ListGrants(a) => policies::list_grants(g, a),
        ListRetirableGrants(a) => policies::list_retirable_grants(g, a),
        RetireGrant(a) => policies::retire_grant(g, a),
        RevokeGrant(a) => policies::revoke_grant(g, a),
        ExportBackup(a) => store::export_backup(g, a),
        ImportBackup(a) => store::import_backup(g, a),
        ChangePassphrase(a) => store::change_passphrase(g, a),
        Audit(a) => store::audit(g, a),
        GetPublicKey(a) => asym::get_public_key(g, a),
        Sign(a) => asym::sign(g, a),
        Verify(a) => asym::verify(g, a),
        DeriveSharedSecret(a) => asym::derive_shared_secret(g, a),
        GenerateDataKeyPair(a) => asym::generate_data_key_pair(g, a),
        GenerateDataKeyPairWithoutPlaintext(a) => {
            asym::generate_data_key_pair_without_plaintext(g, a)
        }
    }
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
    B64.decode(b64_text.trim())
        .map_err(|_| Failure::NotBase64(what.to_owned()))
}

/// The bytes of a file named in an argument (a path the user gave, so a
/// pipe such as /dev/stdin is fine), at most [`MAX_BLOB_ARG`] bytes.
fn read_arg_file(path: &str, what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    use std::io::Read;
    let fail = |e: std::io::Error| usage(format!("{what}: cannot read {path}: {e}"));
    let f = std::fs::File::open(path).map_err(fail)?;
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
