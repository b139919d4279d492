//! Keys, aliases and rotation.

use clap::Args;

use super::pages::PageArgs;

#[derive(Args, Debug)]
pub struct CreateKeyArgs {
    /// A description of the key (shown by describe-key and list-keys).
    #[arg(long, default_value = "")]
    pub(super) description: String,
    /// AWS_KMS (material made here) or EXTERNAL (imported material; symmetric keys only here).
    #[arg(long, default_value = "AWS_KMS")]
    pub(super) origin: String,
    /// SYMMETRIC_DEFAULT, RSA_2048|3072|4096, ECC_NIST_P256|P384|P521 or
    /// ECC_SECG_P256K1 (AWS's HMAC, ML-DSA, Ed25519 and SM2 specs are not implemented here).
    #[arg(long, default_value = "SYMMETRIC_DEFAULT")]
    pub(super) key_spec: String,
    /// ENCRYPT_DECRYPT (RSA, symmetric), SIGN_VERIFY (RSA, ECC) or
    /// KEY_AGREEMENT (NIST ECC); fixed for the key's life.
    #[arg(long, default_value = "ENCRYPT_DECRYPT")]
    pub(super) key_usage: String,
    /// The key policy (JSON, or file://FILE); by default AWS's default key
    /// policy (the store's root principal may do everything).
    #[arg(long)]
    pub(super) policy: Option<String>,
    /// Create the key with a policy that would not let root change it
    /// through the key agent.
    #[arg(long)]
    pub(super) bypass_policy_lockout_safety_check: bool,
}

/// The one key a subcommand acts on.
#[derive(Args, Debug)]
pub struct KeyArg {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
}

#[derive(Args, Debug)]
pub struct ListKeysArgs {
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct ListAliasesArgs {
    /// Only the aliases of this key (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: Option<String>,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct ListKeyRotationsArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct CreateAliasArgs {
    /// The new alias, starting with alias/.
    #[arg(long)]
    pub(super) alias_name: String,
    /// The key it names (key ID or key ARN).
    #[arg(long)]
    pub(super) target_key_id: String,
}

#[derive(Args, Debug)]
pub struct UpdateAliasArgs {
    /// The alias to change, starting with alias/.
    #[arg(long)]
    pub(super) alias_name: String,
    /// The key it is to name (key ID or key ARN).
    #[arg(long)]
    pub(super) target_key_id: String,
}

#[derive(Args, Debug)]
pub struct DeleteAliasArgs {
    /// The alias to delete, starting with alias/.
    #[arg(long)]
    pub(super) alias_name: String,
}

#[derive(Args, Debug)]
pub struct ScheduleKeyDeletionArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    /// Days until the key is deleted (7..30, default 30).
    #[arg(long)]
    pub(super) pending_window_in_days: Option<u32>,
}

#[derive(Args, Debug)]
pub struct EnableKeyRotationArgs {
    /// Key ID, key ARN, alias name or alias ARN.
    #[arg(long)]
    pub(super) key_id: String,
    /// Days between rotations (90..2560, default 365).
    #[arg(long)]
    pub(super) rotation_period_in_days: Option<u32>,
}
