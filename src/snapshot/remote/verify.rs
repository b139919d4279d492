//! `snapshot verify` (the manifest authenticated, every chunk fetched and
//! hashed, nothing restored) and `snapshot list` (no key needed).

use std::collections::BTreeMap;
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

use super::pull::{fetch_chunk, open_snapshot};
use super::store::ObjectStore;
use super::{repository, tree, RemoteError, MANIFESTS};
use crate::kms::KeyService;

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyReport {
    pub name: String,
    pub url: String,
    pub entries: u64,
    /// Distinct stored chunks the manifest refers to, and their bytes.
    pub chunks: u64,
    pub bytes: u64,
    /// One line per damaged or missing object: `KEY: what is wrong`.
    pub damaged: Vec<String>,
    /// The key whose signature was checked, when the snapshot is signed.
    pub signed_by: Option<String>,
    pub seconds: f64,
}

pub fn verify(
    store: &dyn ObjectStore,
    ks: &dyn KeyService,
    expected_key: Option<&str>,
    signed_by: Option<&str>,
    name: &str,
    jobs: usize,
) -> Result<VerifyReport, RemoteError> {
    let t0 = Instant::now();
    let (m, signer) = open_snapshot(store, ks, expected_key, signed_by, name)?;
    for e in m.entries.iter().filter(|e| e.chunks.is_some()) {
        let path = e.path.to_bytes().unwrap_or_default();
        super::pull::check_chunks(&m, e, &path)?;
    }
    let chunks: BTreeMap<&str, u64> = m.chunks().collect();
    let list: Vec<(&str, u64)> = chunks.iter().map(|(h, l)| (*h, *l)).collect();
    let damaged = Mutex::new(Vec::new());
    tree::run_parallel(jobs, list.len(), |i| {
        let (hash, len) = list[i];
        match fetch_chunk(store, hash, len) {
            Ok(_) => Ok(()),
            Err(e @ RemoteError::Damaged { .. }) => {
                damaged.lock().push(e.to_string());
                Ok(())
            }
            Err(e) => Err(e),
        }
    })?;
    let mut damaged = damaged.into_inner();
    damaged.sort();
    Ok(VerifyReport {
        name: name.to_owned(),
        url: store.url(),
        entries: m.entries.len() as u64,
        chunks: list.len() as u64,
        bytes: list.iter().map(|(_, l)| l).sum(),
        damaged,
        signed_by: signer,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Listed {
    pub name: String,
    /// When the store received the manifest (its clock), ISO 8601 UTC.
    pub stored: String,
    pub manifest_bytes: u64,
}

/// The repository's snapshots, by name.
pub fn list(store: &dyn ObjectStore) -> Result<Vec<Listed>, RemoteError> {
    repository::require(store)?;
    Ok(store
        .list(MANIFESTS)?
        .into_iter()
        .filter_map(|o| {
            let name = o.key.strip_prefix(MANIFESTS)?.to_owned();
            super::check_name(&name).ok()?;
            Some(Listed {
                name,
                stored: crate::kms::audit::format_iso(o.modified_unix.max(0) as u64),
                manifest_bytes: o.size,
            })
        })
        .collect())
}
