//! The audit log: one JSON line per key operation, appended beside the store.
//! It names keys, material versions and encryption contexts, never a secret.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EncryptionContext;

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

/// Append one record; an audit failure is logged, not fatal to the operation.
pub fn append(store_dir: &Path, rec: &AuditRecord) {
    let p = audit_path(store_dir);
    let line = match serde_json::to_string(rec) {
        Ok(l) => l,
        Err(_) => return,
    };
    let r = crate::sys::open_log(&p).and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = r {
        log::warn!("cannot append to the audit log {}: {e}", p.display());
    }
}

/// Filters of `envelopefs kms audit`.
#[derive(Default, Debug, Clone)]
pub struct AuditFilter {
    /// Matches a key ID or ARN (the record's ARN ends with it or equals it).
    pub key: Option<String>,
    pub since: Option<u64>,
    pub operation: Option<String>,
}

/// The audit log is read whole; a planted endless file is not.
const MAX_AUDIT_LEN: usize = 256 << 20;

pub fn read(store_dir: &Path, f: &AuditFilter) -> std::io::Result<Vec<AuditRecord>> {
    let p = audit_path(store_dir);
    let text = match crate::sys::read_regular_path(&p, MAX_AUDIT_LEN) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
        .filter(|r| {
            f.key.as_ref().is_none_or(|k| {
                r.key_arn
                    .as_ref()
                    .is_some_and(|a| a == k || a.ends_with(&format!("/{k}")))
            }) && f.since.is_none_or(|s| r.time >= s)
                && f.operation
                    .as_ref()
                    .is_none_or(|o| r.operation.eq_ignore_ascii_case(o))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_camel_case_and_old_snake_case_lines_still_read() {
        let old = r#"{"time":5,"operation":"Decrypt","key_arn":"k","encryption_context":{"a":"b"},"uid":0,"pid":1,"outcome":"ok"}"#;
        let rec: AuditRecord = serde_json::from_str(old).unwrap();
        assert_eq!(rec.key_arn.as_deref(), Some("k"));
        let new = serde_json::to_value(&rec).unwrap();
        let keys: Vec<&str> = new
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for k in [
            "eventTime",
            "eventName",
            "keyArn",
            "encryptionContext",
            "uid",
            "pid",
            "outcome",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }
        assert!(keys.iter().all(|k| !k.contains('_')), "{keys:?}");
    }
}
