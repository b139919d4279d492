//! The log's head sealed beside it (`audit.head`) after every event written
//! by a holder of the store's key: a MAC under a key derived from the store
//! key over the line count and the last line's hash. It shows a tail cut off
//! or a last line edited after the last store write, which the head anchored
//! in the store cannot; events written without the key (a failed unlock) are
//! sealed by the next holder's event or store write.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::chain::AuditHead;

pub const HEAD_FILE: &str = "audit.head";

/// The head file is a few hundred bytes; a planted endless file is not.
const MAX_HEAD_LEN: usize = 4096;

/// The MAC key of the sealed head, derived from the store key.
pub struct HeadSealKey(Zeroizing<[u8; 32]>);

impl HeadSealKey {
    pub fn derive(store_key: &[u8; 32]) -> HeadSealKey {
        let k = crate::crypto::keys::hmac(store_key, &[b"envelopefs audit head seal v1"]);
        HeadSealKey(Zeroizing::new(k))
    }

    fn mac(&self, h: &AuditHead) -> String {
        let m = crate::crypto::keys::hmac(
            &self.0,
            &[
                h.lines.to_string().as_bytes(),
                b"\n",
                h.last_hash.as_bytes(),
            ],
        );
        super::chain::hex(&m)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedHead {
    last_hash: String,
    lines: u64,
    mac: String,
}

pub fn head_path(store_dir: &Path) -> PathBuf {
    store_dir.join(HEAD_FILE)
}

/// Replace the sealed head (the caller holds the log's lock).
pub fn write(store_dir: &Path, key: &HeadSealKey, h: &AuditHead) -> std::io::Result<()> {
    let sealed = SealedHead {
        last_hash: h.last_hash.clone(),
        lines: h.lines,
        mac: key.mac(h),
    };
    let bytes = serde_json::to_vec(&sealed)?;
    let p = head_path(store_dir);
    let (dir, name) = crate::sys::open_parent(&p)?;
    use std::os::fd::AsFd;
    crate::sys::write_new_file(
        dir.as_fd(),
        &name,
        &bytes,
        0o600,
        crate::sys::Placement::Replace,
    )
}

/// The sealed head, `None` when there is none; an error (one line) when it
/// is unreadable or its MAC is not this store's.
pub fn read(store_dir: &Path, key: &HeadSealKey) -> Result<Option<AuditHead>, String> {
    let p = head_path(store_dir);
    let raw = match crate::sys::read_regular_path(&p, MAX_HEAD_LEN) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let forged = || format!("{} is not sealed by this key store (forged)", p.display());
    let s: SealedHead = serde_json::from_slice(&raw).map_err(|_| forged())?;
    let h = AuditHead {
        last_hash: s.last_hash,
        lines: s.lines,
    };
    let want = key.mac(&h);
    if !same_bytes(want.as_bytes(), s.mac.as_bytes()) {
        return Err(forged());
    }
    Ok(Some(h))
}

/// Equal without an early exit on the first differing byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
