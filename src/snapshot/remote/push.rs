//! `snapshot push`: a local point-in-time snapshot beside the volume (the
//! mount held only while it is taken), its chunks uploaded where the
//! repository lacks them, the sealed manifest, then the re-check that makes
//! a concurrent sweep safe (docs/FORMAT.md, "Delete and sweep").

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use super::manifest::{self, b64, ChunkRef, Manifest};
use super::rate::RateLimit;
use super::store::{ObjectStore, PutMode, PutOutcome};
use super::tree::{self, Scan};
use super::{
    chunk_key, manifest_key, repository, RemoteError, CHUNKS, LEASES, MANIFEST_MAX, SWEEP_WINDOW,
};
use crate::kms::KeyService;
use crate::snapshot::partial::{self, Partial};
use crate::snapshot::progress::Progress;

/// How often a running push rewrites its lease.
pub const LEASE_REFRESH: Duration = Duration::from_secs(60);

pub struct PushOptions {
    pub name: String,
    /// The key the manifest's data key is wrapped under.
    pub key: String,
    pub jobs: usize,
    pub limit_rate: Option<u64>,
    pub progress: bool,
    /// Sign the manifest with this SIGN_VERIFY key.
    pub sign_key: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PushStats {
    pub name: String,
    pub url: String,
    pub entries: u64,
    pub files: u64,
    /// Bytes of the files read (first links only).
    pub bytes_scanned: u64,
    /// Chunk bytes sent to the store.
    pub bytes_uploaded: u64,
    /// Chunk bytes the store already held (all-zero pieces are in neither).
    pub bytes_skipped: u64,
    pub chunks_uploaded: u64,
    pub chunks_skipped: u64,
    /// Chunks a concurrent sweep removed and the re-check put back.
    pub chunks_reuploaded: u64,
    /// Entries not stored (special files), with why.
    pub skipped: Vec<String>,
    pub seconds: f64,
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicU64,
    skipped: AtomicU64,
    chunks_uploaded: AtomicU64,
    chunks_skipped: AtomicU64,
    done: AtomicU64,
    files_done: AtomicU64,
}

/// The hashes of every chunk in the repository.
pub fn stored_chunks(store: &dyn ObjectStore) -> Result<HashSet<String>, RemoteError> {
    Ok(store
        .list(CHUNKS)?
        .into_iter()
        .filter_map(|o| o.key.rsplit('/').next().map(str::to_owned))
        .collect())
}

fn exists(store: &dyn ObjectStore, name: &str) -> RemoteError {
    RemoteError::Usage(format!(
        "{}/{name} exists: snapshot names are written once (delete it, or push under another --name)",
        store.url()
    ))
}

fn lease_body(name: &str) -> Vec<u8> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    serde_json::json!({
        "name": name,
        "host": host.trim(),
        "pid": std::process::id(),
        "start": crate::kms::audit::format_iso(crate::sys::now_secs()),
    })
    .to_string()
    .into_bytes()
}

/// Rewrite the lease every LEASE_REFRESH until `stop` is raised.
fn refresh(store: &dyn ObjectStore, key: &str, body: &[u8], stop: &(Mutex<bool>, Condvar)) {
    let mut stopped = stop.0.lock();
    while !*stopped {
        if stop.1.wait_for(&mut stopped, LEASE_REFRESH).timed_out() && !*stopped {
            if let Err(e) = store.put(key, body, PutMode::Overwrite) {
                eprintln!("envelopefs: cannot refresh the push's lease: {e}");
            }
        }
    }
}

/// Push the volume at `cipherdir` (mounted at `mountpoint`, if it is) as
/// snapshot `opts.name`.
pub fn push(
    store: &dyn ObjectStore,
    cipherdir: &Path,
    mountpoint: Option<&Path>,
    ks: &dyn KeyService,
    opts: &PushOptions,
) -> Result<PushStats, RemoteError> {
    let t0 = Instant::now();
    super::check_name(&opts.name)?;
    let repo = repository::read_or_create(store)?;
    if store.head(&manifest_key(&opts.name))?.is_some() {
        return Err(exists(store, &opts.name));
    }
    let lease = format!("{LEASES}{}", uuid::Uuid::new_v4());
    let body = lease_body(&opts.name);
    if store.put(&lease, &body, PutMode::IfAbsent)? == PutOutcome::AlreadyExists {
        return Err(RemoteError::Usage(format!("{lease} exists already")));
    }
    let landed = Instant::now();
    let stop = (Mutex::new(false), Condvar::new());
    let r = std::thread::scope(|s| {
        s.spawn(|| refresh(store, &lease, &body, &stop));
        let r = staged(store, cipherdir, mountpoint, ks, opts, &repo, landed);
        *stop.0.lock() = true;
        stop.1.notify_all();
        r
    });
    if let Err(e) = store.delete(&lease) {
        eprintln!("envelopefs: cannot remove the push's lease {lease} (sweeps wait for it to be an hour old): {e}");
    }
    let mut stats = r?;
    stats.url = store.url();
    stats.seconds = t0.elapsed().as_secs_f64();
    Ok(stats)
}

/// The staging copy's destination: beside the volume, so that a snapshot
/// can use reflinks; never moved into place.
fn staging_dst(cipherdir: &Path) -> Result<PathBuf, RemoteError> {
    let canon = cipherdir
        .canonicalize()
        .map_err(|e| RemoteError::io(cipherdir.display(), e))?;
    let name = canon.file_name().ok_or_else(|| {
        RemoteError::Usage(format!("{}: not a volume directory", cipherdir.display()))
    })?;
    let mut staged = name.to_owned();
    staged.push(".envelopefs-push");
    Ok(canon.with_file_name(staged))
}

fn staged(
    store: &dyn ObjectStore,
    cipherdir: &Path,
    mountpoint: Option<&Path>,
    ks: &dyn KeyService,
    opts: &PushOptions,
    repo: &str,
    landed: Instant,
) -> Result<PushStats, RemoteError> {
    let dst = staging_dst(cipherdir)?;
    partial::remove_stale(&dst);
    let part = Partial::create(&dst)?;
    let snap = part.tree().join("snapshot");
    let r = crate::snapshot::snapshot_create(cipherdir, &snap, mountpoint, false)
        .map_err(RemoteError::from)
        .and_then(|_| upload(store, &snap, ks, opts, repo, landed));
    let path = part.path();
    if let Err(e) = part.discard() {
        eprintln!(
            "envelopefs: cannot remove the push's staging copy {}: {e}",
            path.display()
        );
    }
    r
}

fn upload(
    store: &dyn ObjectStore,
    snap: &Path,
    ks: &dyn KeyService,
    opts: &PushOptions,
    repo: &str,
    landed: Instant,
) -> Result<PushStats, RemoteError> {
    let present = stored_chunks(store)?;
    crate::fault::pause_point("ENVELOPEFS_FAULT_PUSH_PAUSE");
    let mut scan = tree::scan(snap)?;
    let counters = Counters::default();
    let rate = RateLimit::new(opts.limit_rate);
    let results: Vec<Mutex<Option<ChunkRef>>> =
        scan.pieces.iter().map(|_| Mutex::new(None)).collect();
    let claimed: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let progress = Progress::new(opts.progress, scan.bytes, scan.files);
    let r = tree::run_parallel(opts.jobs, scan.pieces.len(), |i| {
        let p = &scan.pieces[i];
        let data = tree::read_piece(p, &path_bytes(&scan.entries, p.entry))?;
        let c = if tree::is_zero(&data) {
            ChunkRef::Zero { zero: p.len }
        } else {
            let hash = tree::sha256_hex(&data);
            let first = !present.contains(&hash) && claimed.lock().insert(hash.clone());
            let sent = first && {
                RateLimit::take(rate.as_ref(), p.len);
                store.put(&chunk_key(&hash), &data, PutMode::IfAbsent)? == PutOutcome::Written
            };
            let (bytes, chunks) = if sent {
                (&counters.uploaded, &counters.chunks_uploaded)
            } else {
                (&counters.skipped, &counters.chunks_skipped)
            };
            bytes.fetch_add(p.len, Ordering::Relaxed);
            chunks.fetch_add(1, Ordering::Relaxed);
            ChunkRef::Data {
                sha256: hash,
                len: p.len,
            }
        };
        *results[i].lock() = Some(c);
        let done = counters.done.fetch_add(p.len, Ordering::Relaxed) + p.len;
        let last_piece = p.offset + p.len == scan.entries[p.entry].size.unwrap_or(0);
        let files = counters
            .files_done
            .fetch_add(u64::from(last_piece), Ordering::Relaxed);
        progress.update(done, files + u64::from(last_piece));
        Ok(())
    });
    match &r {
        Ok(()) => progress.finish(scan.bytes),
        Err(_) => progress.clear(),
    }
    r?;
    for (p, c) in scan.pieces.iter().zip(results) {
        let c = c
            .into_inner()
            .ok_or_else(|| RemoteError::Io("a piece was not read".into()))?;
        if let Some(list) = scan.entries[p.entry].chunks.as_mut() {
            list.push(c);
        }
    }
    let m = Manifest {
        version: manifest::MANIFEST_VERSION,
        repository_id: repo.to_owned(),
        name: opts.name.clone(),
        created: crate::kms::audit::format_iso(crate::sys::now_secs()),
        config: b64(&read_config(snap)?),
        entries: std::mem::take(&mut scan.entries),
    };
    store_manifest(store, ks, opts, &m)?;
    let reuploaded = recheck(store, &scan, &m, landed)?;
    Ok(PushStats {
        name: opts.name.clone(),
        entries: m.entries.len() as u64,
        files: scan.files,
        bytes_scanned: scan.bytes,
        bytes_uploaded: counters.uploaded.into_inner(),
        bytes_skipped: counters.skipped.into_inner(),
        chunks_uploaded: counters.chunks_uploaded.into_inner(),
        chunks_skipped: counters.chunks_skipped.into_inner(),
        chunks_reuploaded: reuploaded,
        skipped: std::mem::take(&mut scan.skipped),
        ..PushStats::default()
    })
}

/// Seal `m` and store it (its signature first) under its name, never over
/// an existing snapshot.
fn store_manifest(
    store: &dyn ObjectStore,
    ks: &dyn KeyService,
    opts: &PushOptions,
    m: &Manifest,
) -> Result<(), RemoteError> {
    let sealed = manifest::seal(ks, &opts.key, m)?;
    // A manifest no pull reads back would be a snapshot that cannot be
    // restored, and one that stops every sweep.
    if sealed.len() as u64 > MANIFEST_MAX {
        return Err(RemoteError::Usage(format!(
            "{}/{}: the manifest would be {} bytes, larger than the {} MiB a pull reads (too many entries or too deep paths); no snapshot made (`snapshot gc` removes its chunks)",
            store.url(),
            opts.name,
            sealed.len(),
            MANIFEST_MAX >> 20
        )));
    }
    // The signature lands first, so a visible manifest has its signature.
    if let Some(k) = &opts.sign_key {
        let sig = super::signature::sign(ks, k, &sealed)?;
        store.put(
            &super::signature::signature_key(&opts.name),
            &sig,
            PutMode::Overwrite,
        )?;
    }
    if store.put(&manifest_key(&opts.name), &sealed, PutMode::IfAbsent)?
        == PutOutcome::AlreadyExists
    {
        return Err(exists(store, &opts.name));
    }
    Ok(())
}

fn path_bytes(entries: &[manifest::Entry], entry: usize) -> Vec<u8> {
    entries
        .get(entry)
        .and_then(|e| e.path.to_bytes())
        .unwrap_or_default()
}

fn read_config(snap: &Path) -> Result<Vec<u8>, RemoteError> {
    let dir = crate::sys::open_dir_path(snap).map_err(|e| RemoteError::io(snap.display(), e))?;
    let conf = crate::volume::config::CONFIG_FILE;
    crate::sys::read_regular(dir.as_fd(), OsStr::new(conf), 1 << 20)
        .map_err(|e| RemoteError::io(format!("staging tree: {conf}"), e))
}

/// At least SWEEP_WINDOW after the lease landed (after the last delete a
/// sweep that missed the lease could issue), put back every chunk the
/// manifest needs that is gone. The number put back.
fn recheck(
    store: &dyn ObjectStore,
    scan: &Scan,
    m: &Manifest,
    landed: Instant,
) -> Result<u64, RemoteError> {
    let due = landed + SWEEP_WINDOW;
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
    let present = stored_chunks(store)?;
    let mut source: HashMap<&str, &tree::Piece> = HashMap::new();
    // Pieces were made in entry order, as the chunk lists are.
    let chunks = m.entries.iter().filter_map(|e| e.chunks.as_ref()).flatten();
    for (p, c) in scan.pieces.iter().zip(chunks) {
        if let ChunkRef::Data { sha256, .. } = c {
            if !present.contains(sha256) {
                source.entry(sha256).or_insert(p);
            }
        }
    }
    let mut count = 0;
    for (hash, p) in source {
        let data = tree::read_piece(p, &path_bytes(&m.entries, p.entry))?;
        if tree::sha256_hex(&data) != hash {
            return Err(RemoteError::Io(format!(
                "staging tree: the piece of chunk {hash} changed"
            )));
        }
        store.put(&chunk_key(hash), &data, PutMode::IfAbsent)?;
        count += 1;
    }
    Ok(count)
}
