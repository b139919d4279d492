//! `envelopefs-repository.json`: the repository's id, made by the first
//! push. Unauthenticated by itself: the id is bound into every manifest's
//! encryption context, so a changed id only makes every manifest fail.

use serde::{Deserialize, Serialize};

use super::store::{ObjectStore, PutMode, PutOutcome};
use super::{RemoteError, REPOSITORY_KEY};

pub const FORMAT: &str = "envelopefs-snapshots";
pub const VERSION: u32 = 1;
const MAX_LEN: u64 = 64 << 10;

#[derive(Serialize, Deserialize)]
struct RepositoryFile {
    format: String,
    version: u32,
    repository_id: String,
}

fn parse(bytes: &[u8]) -> Result<String, RemoteError> {
    let damaged = |what: String| RemoteError::Damaged {
        key: REPOSITORY_KEY.into(),
        what,
    };
    let f: RepositoryFile =
        serde_json::from_slice(bytes).map_err(|e| damaged(format!("does not parse: {e}")))?;
    if f.format != FORMAT || f.version != VERSION {
        return Err(damaged(format!(
            "format {} version {} is not {FORMAT} version {VERSION}",
            f.format, f.version
        )));
    }
    if f.repository_id.is_empty() || f.repository_id.len() > 128 {
        return Err(damaged("no usable repository_id".into()));
    }
    Ok(f.repository_id)
}

/// The repository's id, or `None` where no push has made one.
pub fn read(store: &dyn ObjectStore) -> Result<Option<String>, RemoteError> {
    store
        .get(REPOSITORY_KEY, MAX_LEN)?
        .map(|b| parse(&b))
        .transpose()
}

/// The id, made now if there is none (a racing push's wins).
pub fn read_or_create(store: &dyn ObjectStore) -> Result<String, RemoteError> {
    if let Some(id) = read(store)? {
        return Ok(id);
    }
    let f = RepositoryFile {
        format: FORMAT.into(),
        version: VERSION,
        repository_id: uuid::Uuid::new_v4().to_string(),
    };
    let body = serde_json::to_vec(&f).map_err(|e| RemoteError::Usage(e.to_string()))?;
    match store.put(REPOSITORY_KEY, &body, PutMode::IfAbsent)? {
        PutOutcome::Written => Ok(f.repository_id),
        PutOutcome::AlreadyExists => read(store)?.ok_or_else(|| RemoteError::Damaged {
            key: REPOSITORY_KEY.into(),
            what: "exists but cannot be read back".into(),
        }),
    }
}

/// The id of a repository that must exist already.
pub fn require(store: &dyn ObjectStore) -> Result<String, RemoteError> {
    read(store)?.ok_or_else(|| {
        RemoteError::NotFound(format!(
            "{}: no envelopefs snapshot repository there (no {REPOSITORY_KEY})",
            store.url()
        ))
    })
}
