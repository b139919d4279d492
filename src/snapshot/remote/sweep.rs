//! `snapshot delete` and `snapshot gc`: chunks no manifest refers to are
//! deleted, safely against a push running at the same time (the rule is in
//! docs/FORMAT.md, "Delete and sweep"):
//! (a) every manifest opens, else nothing is deleted; (b) candidates are the
//! chunks none refers to; (c) a live lease means a push runs: nothing is
//! deleted; (d) the manifests are listed again, and a change starts over;
//! (e) deletes are issued only within SWEEP_WINDOW/2 of the lease listing,
//! then back to (c).

use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;

use super::manifest;
use super::store::{ObjectInfo, ObjectStore};
use super::{
    chunk_key, manifest_key, repository, RemoteError, CHUNKS, LEASES, MANIFESTS, MANIFEST_MAX,
    SWEEP_WINDOW,
};
use crate::kms::KeyService;

/// A lease not rewritten for this long (on the store's clock) belongs to a
/// push that died: it is removed and ignored.
pub const LEASE_STALE_SECS: i64 = 3600;
/// Sweeps started over because the manifests changed, at most.
const ATTEMPTS: usize = 3;

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SweepStats {
    pub url: String,
    /// The snapshot `delete` removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
    pub manifests: u64,
    pub chunks_referenced: u64,
    pub chunks_deleted: u64,
    pub bytes_deleted: u64,
    /// Unreferenced chunks left because a push is running.
    pub chunks_kept: u64,
    pub push_running: bool,
    pub stale_leases_removed: u64,
    pub seconds: f64,
}

/// The manifests as listed (key, size, time: a changed one differs).
fn manifests(store: &dyn ObjectStore) -> Result<Vec<ObjectInfo>, RemoteError> {
    Ok(store.list(MANIFESTS)?)
}

fn refuse(e: RemoteError) -> RemoteError {
    let tail = "; the sweep deletes nothing while a manifest does not open";
    match e {
        RemoteError::Damaged { key, what } => RemoteError::Damaged {
            key,
            what: format!("{what}{tail}"),
        },
        RemoteError::Key { what, source } => RemoteError::Key {
            what: format!("{what}{tail}"),
            source,
        },
        e => e,
    }
}

/// Every chunk hash the manifests refer to; each one must open.
fn referenced(
    store: &dyn ObjectStore,
    ks: &dyn KeyService,
    repo: &str,
    listed: &[ObjectInfo],
) -> Result<HashSet<String>, RemoteError> {
    let mut refs = HashSet::new();
    for o in listed {
        let name = o.key.strip_prefix(MANIFESTS).unwrap_or(&o.key);
        let Some(bytes) = store.get(&o.key, MANIFEST_MAX)? else {
            continue; // deleted since the listing: the re-listing sees it
        };
        let m = manifest::open(ks, None, repo, name, &o.key, &bytes).map_err(refuse)?;
        refs.extend(m.chunks().map(|(h, _)| h.to_owned()));
    }
    Ok(refs)
}

/// Remove snapshot `name`'s manifest, then sweep.
pub fn delete(
    store: &dyn ObjectStore,
    ks: &dyn KeyService,
    name: &str,
) -> Result<SweepStats, RemoteError> {
    super::check_name(name)?;
    repository::require(store)?;
    let key = manifest_key(name);
    if store.head(&key)?.is_none() {
        return Err(RemoteError::NotFound(format!(
            "{}/{name}: no such snapshot (no {key})",
            store.url()
        )));
    }
    store.delete(&key)?;
    store.delete(&super::signature::signature_key(name))?;
    let mut s = sweep(store, ks)?;
    s.deleted = Some(name.to_owned());
    Ok(s)
}

/// Delete the chunks no manifest refers to (see the module's rule).
pub fn sweep(store: &dyn ObjectStore, ks: &dyn KeyService) -> Result<SweepStats, RemoteError> {
    let t0 = Instant::now();
    let repo = repository::require(store)?;
    let mut stats = SweepStats {
        url: store.url(),
        ..SweepStats::default()
    };
    'attempt: for _ in 0..ATTEMPTS {
        let listed = manifests(store)?;
        let refs = referenced(store, ks, &repo, &listed)?;
        stats.manifests = listed.len() as u64;
        stats.chunks_referenced = refs.len() as u64;
        let mut candidates: Vec<ObjectInfo> = store
            .list(CHUNKS)?
            .into_iter()
            .filter(|o| o.key.rsplit('/').next().is_some_and(|h| !refs.contains(h)))
            .collect();
        while !candidates.is_empty() {
            let listing = Instant::now();
            if live_leases(store, &mut stats)? > 0 {
                stats.chunks_kept = candidates.len() as u64;
                stats.push_running = true;
                break 'attempt;
            }
            if manifests(store)? != listed {
                continue 'attempt;
            }
            while let Some(o) = candidates.pop() {
                if listing.elapsed() >= SWEEP_WINDOW / 2 {
                    candidates.push(o);
                    break;
                }
                let hash = o.key.rsplit('/').next().unwrap_or_default();
                // Only keys of the chunk layout are deleted.
                if chunk_key(hash) == o.key {
                    store.delete(&o.key)?;
                    stats.chunks_deleted += 1;
                    stats.bytes_deleted += o.size;
                }
            }
        }
        stats.seconds = t0.elapsed().as_secs_f64();
        return Ok(stats);
    }
    if stats.push_running {
        stats.seconds = t0.elapsed().as_secs_f64();
        return Ok(stats);
    }
    Err(RemoteError::Usage(format!(
        "{}: the snapshots changed during each of {ATTEMPTS} sweeps; run `envelopefs snapshot gc {}` again",
        store.url(),
        store.url()
    )))
}

/// The leases of running pushes; stale ones are removed and not counted.
fn live_leases(store: &dyn ObjectStore, stats: &mut SweepStats) -> Result<usize, RemoteError> {
    let leases = store.list(LEASES)?;
    if leases.is_empty() {
        return Ok(0);
    }
    let now = store.now_unix()?;
    let mut live = 0;
    for l in leases {
        if now - l.modified_unix > LEASE_STALE_SECS {
            store.delete(&l.key)?;
            stats.stale_leases_removed += 1;
        } else {
            live += 1;
        }
    }
    Ok(live)
}
