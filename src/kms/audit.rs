//! The audit log: one JSON line per key operation, appended beside the store.
//! It names keys, material versions and encryption contexts, never a secret.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EncryptionContext;

mod chain;
mod seal;
mod time;

pub use chain::{check_head, verify, AuditHead, ChainBreak};
pub use seal::{HeadSealKey, HEAD_FILE};
pub use time::{format_iso, parse_time};

pub const AUDIT_FILE: &str = "audit.log";

/// One audit event. Field names are camelCase, as CloudTrail's events are
/// (`eventTime`, `eventName`, `encryptionContext`); the snake_case names of
/// older logs are still read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    #[serde(rename = "eventTime", alias = "time")]
    pub time: u64,
    #[serde(rename = "eventName", alias = "operation")]
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "key_arn")]
    pub key_arn: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "key_material_id"
    )]
    pub key_material_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "encryption_context"
    )]
    pub encryption_context: Option<EncryptionContext>,
    pub uid: u32,
    pub pid: u32,
    /// The caller's principal, for calls through the key agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    pub outcome: String,
}

/// The caller a call is made for, when not this process (the key agent
/// acting for a client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acting {
    pub uid: u32,
    pub pid: u32,
    pub principal_arn: String,
}

thread_local! {
    static ACTING: std::cell::RefCell<Option<Acting>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with its audit lines naming `who` as the caller.
pub fn acting_for<T>(who: &Acting, f: impl FnOnce() -> T) -> T {
    ACTING.with(|a| *a.borrow_mut() = Some(who.clone()));
    let r = f();
    ACTING.with(|a| *a.borrow_mut() = None);
    r
}

/// Who the current call is made for, if not this process.
pub fn acting() -> Option<Acting> {
    ACTING.with(|a| a.borrow().clone())
}

pub fn audit_path(store_dir: &Path) -> PathBuf {
    store_dir.join(AUDIT_FILE)
}

/// `userIdentity.type`, as CloudTrail names it.
fn identity_type(rec: &AuditRecord) -> &'static str {
    match (rec.uid, &rec.principal_arn) {
        (0, _) => "Root",
        (_, Some(_)) => "IAMUser",
        _ => "Unknown",
    }
}

/// Operations that change nothing.
const READ_ONLY: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateRandom",
    "GenerateMac",
    "VerifyMac",
    "Sign",
    "Verify",
    "GetPublicKey",
    "DescribeKey",
    "ListKeys",
    "ListAliases",
    "ListGrants",
    "ListResourceTags",
    "GetKeyPolicy",
    "GetKeyRotationStatus",
    "ListKeyRotations",
    "ListKeyPolicies",
    "ListRetirableGrants",
    "ReEncrypt",
    "DeriveSharedSecret",
];

/// The CloudTrail-shaped event of a record, chained to the line before it.
/// `outcome`, `uid`, `pid` and `principalArn` stay flat beside it for the
/// readers of older logs.
fn event_json(rec: &AuditRecord, prev_hash: &str, seq: u64) -> serde_json::Value {
    let mut params = serde_json::Map::new();
    if let Some(k) = &rec.key_arn {
        params.insert("keyId".into(), k.clone().into());
    }
    if let Some(m) = &rec.key_material_id {
        params.insert("keyMaterialId".into(), m.clone().into());
    }
    if let Some(c) = &rec.encryption_context {
        params.insert("encryptionContext".into(), serde_json::json!(c));
    }
    let mut identity = serde_json::json!({
        "type": identity_type(rec), "uid": rec.uid, "pid": rec.pid,
    });
    if let Some(p) = &rec.principal_arn {
        identity["arn"] = p.clone().into();
    }
    let mut ev = serde_json::json!({
        "eventVersion": "1.11",
        "eventID": uuid::Uuid::new_v4().to_string(),
        "eventTime": time::format_iso(rec.time),
        "eventSource": "kms.envelopefs",
        "eventName": rec.operation,
        "userIdentity": identity,
        "requestParameters": params,
        "readOnly": READ_ONLY.contains(&rec.operation.as_str()),
        "outcome": rec.outcome,
        "uid": rec.uid,
        "pid": rec.pid,
        "eventSequence": seq,
        "previousEventHash": prev_hash,
    });
    if let Some(p) = &rec.principal_arn {
        ev["principalArn"] = p.clone().into();
    }
    if let Some(k) = &rec.key_arn {
        ev["resources"] = serde_json::json!([{"ARN": k, "type": "AWS::KMS::Key"}]);
    }
    if rec.outcome != "ok" {
        ev["errorCode"] = rec.outcome.split(' ').next().unwrap_or("").into();
        ev["errorMessage"] = rec.outcome.clone().into();
    }
    ev
}

/// The last line of an open log and its place, read from its tail.
fn last_line(f: &mut std::fs::File) -> std::io::Result<(String, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok((chain::ZERO_HASH.into(), 0));
    }
    let mut back = 64 << 10;
    loop {
        let from = len.saturating_sub(back);
        f.seek(SeekFrom::Start(from))?;
        let mut tail = Vec::new();
        f.take(len - from).read_to_end(&mut tail)?;
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
        match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => return Ok(place_of(&body[i + 1..], f)),
            None if from == 0 => return Ok(place_of(body, f)),
            None if back >= MAX_AUDIT_LEN as u64 => {
                return Err(std::io::Error::other("an audit line beyond the cap"))
            }
            None => back *= 4,
        }
    }
}

/// A line's hash and place: its `eventSequence`, or (a line of an older
/// log) the count of the log's lines.
fn place_of(line: &[u8], f: &mut std::fs::File) -> (String, u64) {
    let seq = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["eventSequence"].as_u64());
    let seq = seq.unwrap_or_else(|| {
        use std::io::{Read, Seek, SeekFrom};
        let mut all = Vec::new();
        let _ = f
            .seek(SeekFrom::Start(0))
            .and_then(|_| f.take(MAX_AUDIT_LEN as u64).read_to_end(&mut all));
        chain::head_of(&all).lines
    });
    (chain::line_hash(line), seq)
}

/// Append one record, chained to the last line under an exclusive lock on
/// the log (the agent, the CLI and mounts all write it); an audit failure
/// is logged, not fatal to the operation.
pub fn append(store_dir: &Path, rec: &AuditRecord) {
    append_sealed(store_dir, rec, None);
}

/// Append one record and, for a holder of the store key, seal the new head
/// beside the log under the same lock.
pub fn append_sealed(store_dir: &Path, rec: &AuditRecord, seal: Option<&HeadSealKey>) {
    let p = audit_path(store_dir);
    let r = crate::sys::open_log_rw(&p).and_then(|mut f| {
        use std::os::fd::AsFd;
        crate::sys::flock_wait(f.as_fd())?;
        let (prev, seq) = last_line(&mut f)?;
        let line = serde_json::to_string(&event_json(rec, &prev, seq + 1))?;
        f.write_all(format!("{line}\n").as_bytes())?;
        match seal {
            Some(k) => seal::write(
                store_dir,
                k,
                &AuditHead {
                    last_hash: chain::line_hash(line.as_bytes()),
                    lines: seq + 1,
                },
            ),
            None => Ok(()),
        }
    });
    if let Err(e) = r {
        log::warn!("cannot append to the audit log {}: {e}", p.display());
    }
}

/// The head sealed beside the log, checked with the store's key.
pub fn sealed_head(store_dir: &Path, key: &HeadSealKey) -> Result<Option<AuditHead>, String> {
    seal::read(store_dir, key)
}

/// The head of the log now, for the store to anchor; None without a log.
pub fn head(store_dir: &Path) -> Option<AuditHead> {
    let p = audit_path(store_dir);
    let mut f = crate::sys::open_log_rw(&p).ok()?;
    use std::os::fd::AsFd;
    crate::sys::flock_wait(f.as_fd()).ok()?;
    let (last_hash, lines) = last_line(&mut f).ok()?;
    Some(AuditHead { last_hash, lines })
}

/// Filters of `envelopefs kms audit`.
#[derive(Default, Debug, Clone)]
pub struct AuditFilter {
    /// Matches a key ID or ARN (the record's ARN ends with it or equals it).
    pub key: Option<String>,
    pub since: Option<u64>,
    pub operation: Option<String>,
    /// The caller's principal ARN (or its uid, as a number).
    pub principal: Option<String>,
    /// Events before this time (seconds), inclusive.
    pub until: Option<u64>,
}

impl AuditFilter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.key.as_ref().is_none_or(|k| {
            r.key_arn
                .as_ref()
                .is_some_and(|a| a == k || a.ends_with(&format!("/{k}")))
        }) && self.since.is_none_or(|s| r.time >= s)
            && self.until.is_none_or(|s| r.time <= s)
            && self
                .operation
                .as_ref()
                .is_none_or(|o| r.operation.eq_ignore_ascii_case(o))
            && self.principal.as_ref().is_none_or(|p| {
                r.principal_arn.as_deref() == Some(p.as_str()) || r.uid.to_string() == *p
            })
    }
}

/// The audit log is read whole; a planted endless file is not.
const MAX_AUDIT_LEN: usize = 256 << 20;

/// The log's bytes, empty when there is none.
pub fn read_raw(store_dir: &Path) -> std::io::Result<Vec<u8>> {
    match crate::sys::read_regular_path(&audit_path(store_dir), MAX_AUDIT_LEN) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A record of a line, of either shape (CloudTrail's, or the flat one of
/// older logs with a number for `eventTime`).
fn record_of(v: &serde_json::Value) -> Option<AuditRecord> {
    let mut flat = v.clone();
    let o = flat.as_object_mut()?;
    if let Some(t) = v["eventTime"].as_str() {
        o.insert("eventTime".into(), time::parse_time(t)?.into());
    }
    let params = &v["requestParameters"];
    for (from, to) in [
        ("keyId", "keyArn"),
        ("keyMaterialId", "keyMaterialId"),
        ("encryptionContext", "encryptionContext"),
    ] {
        if !params[from].is_null() {
            o.insert(to.into(), params[from].clone());
        }
    }
    if v["outcome"].is_null() {
        let out = v["errorMessage"].as_str().unwrap_or("ok");
        o.insert("outcome".into(), out.into());
    }
    if v["principalArn"].is_null() && v["userIdentity"]["arn"].is_string() {
        o.insert("principalArn".into(), v["userIdentity"]["arn"].clone());
    }
    for k in ["uid", "pid"] {
        if v[k].is_null() {
            o.insert(k.into(), v["userIdentity"][k].clone());
        }
    }
    serde_json::from_value(flat).ok()
}

/// The events that pass `f`, each as written (older lines as they were).
pub fn read_events(
    store_dir: &Path,
    f: &AuditFilter,
) -> std::io::Result<Vec<(AuditRecord, serde_json::Value)>> {
    let text = read_raw(store_dir)?;
    Ok(text
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter_map(|v| record_of(&v).map(|r| (r, v)))
        .filter(|(r, _)| f.matches(r))
        .collect())
}

pub fn read(store_dir: &Path, f: &AuditFilter) -> std::io::Result<Vec<AuditRecord>> {
    Ok(read_events(store_dir, f)?
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

#[cfg(test)]
mod tests;
