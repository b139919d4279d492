//! The store as a whole: backups, the passphrase, the audit log.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};

use super::super::{print_aws, Failure, Global};
use super::read_pass;
use crate::kms::audit::AuditFilter;
use crate::kms::local::{KdfCost, LocalKeyService};

#[derive(Args, Debug)]
pub struct ExportBackupArgs {
    /// The backup file to write (must not exist).
    file: PathBuf,
    /// Read the backup passphrase from this file (default: ask).
    #[arg(long, env = "ENVELOPEFS_BACKUP_PASSPHRASE_FILE")]
    backup_passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ImportBackupArgs {
    /// The backup file written by export-backup.
    file: PathBuf,
    /// Read the backup passphrase from this file (default: ask).
    #[arg(long, env = "ENVELOPEFS_BACKUP_PASSPHRASE_FILE")]
    backup_passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ChangePassphraseArgs {
    /// Read the new passphrase from this file (default: ask twice).
    #[arg(long)]
    new_passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only events about this key (key ID or ARN).
    #[arg(long)]
    key_id: Option<String>,
    /// Seconds since the epoch.
    #[arg(long)]
    since: Option<u64>,
    /// Only events of this operation (e.g. Decrypt, GenerateDataKey).
    #[arg(long)]
    operation: Option<String>,
}

pub fn export_backup(g: &Global, a: ExportBackupArgs) -> Result<(), Failure> {
    let ks = g.open_store()?;
    let bp = read_pass(&a.backup_passphrase_file, true)?;
    ks.export_backup(&a.file, &bp)?;
    eprintln!(
        "Wrote the key store backup to {}; keep it and its passphrase apart.",
        a.file.display()
    );
    Ok(())
}

pub fn import_backup(g: &Global, a: ImportBackupArgs) -> Result<(), Failure> {
    let bp = read_pass(&a.backup_passphrase_file, false)?;
    let np = g.passphrase().new_passphrase()?;
    LocalKeyService::import_backup(&g.store_dir(), &a.file, &bp, &np, KdfCost::default())?;
    eprintln!("Imported the backup into {}.", g.store_dir().display());
    Ok(())
}

pub fn change_passphrase(g: &Global, a: ChangePassphraseArgs) -> Result<(), Failure> {
    let mut ks = g.open_store()?;
    let np = read_pass(&a.new_passphrase_file, true)?;
    Ok(ks.change_passphrase(&np)?)
}

pub fn audit(g: &Global, a: AuditArgs) -> Result<(), Failure> {
    let dir = g.store_dir();
    let recs = crate::kms::audit::read(
        &dir,
        &AuditFilter {
            key: a.key_id,
            since: a.since,
            operation: a.operation,
        },
    )
    .map_err(|source| Failure::Io {
        what: crate::kms::audit::audit_path(&dir).display().to_string(),
        source,
    })?;
    let v = serde_json::to_value(&recs).unwrap_or(Value::Null);
    print_aws(g.output, &json!({"Events": v}));
    Ok(())
}
