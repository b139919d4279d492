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
    /// Only events about the key this alias names.
    #[arg(long)]
    alias: Option<String>,
    /// Seconds since the epoch.
    #[arg(long)]
    since: Option<u64>,
    /// Only events from this time on (ISO 8601 UTC, or seconds).
    #[arg(long, value_parser = parse_time)]
    start_time: Option<u64>,
    /// Only events up to this time (ISO 8601 UTC, or seconds).
    #[arg(long, value_parser = parse_time)]
    end_time: Option<u64>,
    /// Only events of this operation (e.g. Decrypt, GenerateDataKey).
    #[arg(long, visible_alias = "event-name")]
    operation: Option<String>,
    /// Only events of this caller (principal ARN, or uid).
    #[arg(long)]
    principal: Option<String>,
    /// Check the hash chain and the head anchored in the key store instead.
    #[arg(long)]
    verify: bool,
}

pub(super) fn parse_time(s: &str) -> Result<u64, String> {
    crate::kms::audit::parse_time(s)
        .ok_or_else(|| format!("not an ISO 8601 UTC time or seconds: {s}"))
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
    let io = |source| Failure::Io {
        what: crate::kms::audit::audit_path(&dir).display().to_string(),
        source,
    };
    if a.verify {
        return verify_audit(g, &dir, io);
    }
    let key = match &a.alias {
        Some(alias) => {
            let ks = g.open_store()?;
            Some(ks.describe(alias)?.key_id)
        }
        None => a.key_id,
    };
    let events = crate::kms::audit::read_events(
        &dir,
        &AuditFilter {
            key,
            since: a.since.max(a.start_time),
            operation: a.operation,
            principal: a.principal,
            until: a.end_time,
        },
    )
    .map_err(io)?;
    let v: Vec<Value> = events.into_iter().map(|(_, v)| v).collect();
    print_aws(g.output, &json!({"Events": v}));
    Ok(())
}

/// `audit --verify`: the whole chain, then the head the store anchored at
/// its last write and the head sealed beside the log at the last event.
fn verify_audit(
    g: &Global,
    dir: &std::path::Path,
    io: impl Fn(std::io::Error) -> Failure,
) -> Result<(), Failure> {
    use crate::kms::audit;
    let text = audit::read_raw(dir).map_err(&io)?;
    let store = g.open_store()?;
    let anchor = store.audit_anchor();
    let sealed = audit::sealed_head(dir, &store.head_seal_key()).map_err(Failure::AuditTampered)?;
    let tampered = |b: audit::ChainBreak| Failure::AuditTampered(b.to_string());
    let n = audit::verify(&text, anchor.as_ref()).map_err(tampered)?;
    if let Some(h) = &sealed {
        audit::check_head(&text, h, audit::HEAD_FILE).map_err(tampered)?;
    }
    let anchored = anchor.map_or(0, |h| h.lines);
    let sealed = sealed.map_or(0, |h| h.lines);
    println!(
        "audit log intact: {n} events, chain verified, {anchored} anchored in the key store, {sealed} sealed in {}",
        audit::HEAD_FILE
    );
    Ok(())
}
