//! The keys of a write-only volume (format 2): the recipient's public key,
//! the writer key W it gives, this mount's own write session (made at the
//! first write-side need, its key sealed once to the recipient), and on a
//! full mount the sessions unsealed so far (one key-service call each,
//! cached for the mount's life). A write-only mount never holds the key of
//! any session but its own.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::crypto::keys::{SessionKey, SubKey, VolumeId};
use crate::crypto::recipient::{
    new_session, RecipientPublicKey, SessionFile, SessionId, UnsealRequest, MAX_SESSION_FILE_LEN,
};
use crate::error::VolumeError;
use crate::kms::KeyService;
use crate::sys;

/// Where a write-only mount takes the recipient's public key from: never
/// from the cipher directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A key of the key service (GetPublicKey).
    KeyService(String),
    /// A file holding the public key: DER SubjectPublicKeyInfo or PEM "PUBLIC KEY".
    File(PathBuf),
}

/// The longest recipient file read.
const MAX_RECIPIENT_FILE_LEN: usize = 16 << 10;

/// Why a session's key is not at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionDenied {
    /// Another session's entry on a write-only mount.
    WriteOnly,
    /// Its session file is missing, garbled, or does not unseal.
    Broken,
}

/// How sessions other than our own are opened.
enum Unsealer {
    /// Write-only: never.
    None,
    /// Full mount: through the key service, on demand.
    KeyService(Arc<dyn KeyService>),
    /// Full mount without a key service kept: the sessions unsealed at open.
    AtOpen,
}

pub struct Sessions {
    root: PathBuf,
    vid: VolumeId,
    recipient_arn: String,
    public: RecipientPublicKey,
    writer: SubKey,
    unsealer: Unsealer,
    own: Mutex<Option<(SessionId, SessionKey)>>,
    /// Full mount: each session met, its key or why it failed (logged once).
    known: Mutex<HashMap<SessionId, Result<SessionKey, String>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("recipient", &self.public)
            .field("write_only", &self.is_write_only())
            .finish_non_exhaustive()
    }
}

/// The recipient's public key, from the key service or a file.
pub fn recipient_public_key(
    ks: Option<&dyn KeyService>,
    recipient: &Recipient,
) -> Result<(RecipientPublicKey, Option<String>), VolumeError> {
    match recipient {
        Recipient::KeyService(key) => {
            let ks = ks.ok_or_else(|| {
                VolumeError::BadOption(format!("the recipient key {key} needs a key service"))
            })?;
            let p = ks.get_public_key(key)?;
            let r = RecipientPublicKey::from_der(&p.der)
                .map_err(|e| VolumeError::BadOption(format!("{key}: {e}")))?;
            Ok((r, Some(p.key_arn)))
        }
        Recipient::File(path) => {
            let raw = sys::read_regular_path(path, MAX_RECIPIENT_FILE_LEN)
                .map_err(|e| VolumeError::io(path, e))?;
            let r = RecipientPublicKey::parse(&raw)
                .map_err(|e| VolumeError::BadOption(format!("{}: {e}", path.display())))?;
            Ok((r, None))
        }
    }
}

impl Sessions {
    fn new(
        root: &Path,
        vid: VolumeId,
        recipient_arn: String,
        public: RecipientPublicKey,
        unsealer: Unsealer,
    ) -> Sessions {
        Sessions {
            root: root.to_owned(),
            vid,
            recipient_arn,
            writer: public.writer_key(&vid),
            public,
            unsealer,
            own: Mutex::new(None),
            known: Mutex::new(HashMap::new()),
        }
    }

    pub fn write_only(root: &Path, vid: VolumeId, arn: String, p: RecipientPublicKey) -> Sessions {
        Self::new(root, vid, arn, p, Unsealer::None)
    }

    /// A full mount that unseals sessions as it meets them.
    pub fn full(
        root: &Path,
        vid: VolumeId,
        arn: String,
        p: RecipientPublicKey,
        ks: Arc<dyn KeyService>,
    ) -> Sessions {
        Self::new(root, vid, arn, p, Unsealer::KeyService(ks))
    }

    /// A full mount that unseals every session present now (the key service
    /// is not kept): one call per session file.
    pub fn full_at_open(
        root: &Path,
        vid: VolumeId,
        arn: String,
        p: RecipientPublicKey,
        ks: &dyn KeyService,
    ) -> Result<Sessions, VolumeError> {
        let s = Self::new(root, vid, arn, p, Unsealer::AtOpen);
        let d = sys::open_user_dir(root).map_err(|e| VolumeError::io(root, e))?;
        for (name, _, _) in sys::list_dir(d.as_fd()).map_err(|e| VolumeError::io(root, e))? {
            if let Some(id) = SessionId::from_file_name(OsStr::from_bytes(&name)) {
                let key = s.unseal(&id, ks);
                s.known.lock().insert(id, key);
            }
        }
        Ok(s)
    }

    pub fn is_write_only(&self) -> bool {
        matches!(self.unsealer, Unsealer::None)
    }

    pub fn public_key(&self) -> &RecipientPublicKey {
        &self.public
    }

    pub fn writer_key(&self) -> &SubKey {
        &self.writer
    }

    /// This mount's session, made (and its file written) on first use.
    pub fn own(&self) -> Result<(SessionId, SessionKey), VolumeError> {
        let mut own = self.own.lock();
        if let Some((id, key)) = &*own {
            return Ok((*id, key.clone()));
        }
        let s = new_session(&self.public, &self.vid)
            .map_err(|e| VolumeError::BadOption(e.to_string()))?;
        let name = s.id.file_name();
        let r = sys::open_user_dir(&self.root).and_then(|d| {
            sys::write_new_file(
                d.as_fd(),
                name.as_ref(),
                &s.file,
                0o400,
                sys::Placement::Exclusive,
            )
        });
        r.map_err(|e| VolumeError::io(&self.root.join(&name), e))?;
        *own = Some((s.id, s.key.clone()));
        Ok((s.id, s.key))
    }

    /// The key of session `id`: our own, or (full mount) unsealed once.
    pub fn key(&self, id: &SessionId) -> Result<SessionKey, SessionDenied> {
        if let Some((own, key)) = &*self.own.lock() {
            if own == id {
                return Ok(key.clone());
            }
        }
        let ks = match &self.unsealer {
            Unsealer::None => return Err(SessionDenied::WriteOnly),
            Unsealer::KeyService(ks) => Some(ks),
            Unsealer::AtOpen => None,
        };
        let mut known = self.known.lock();
        if let Some(k) = known.get(id) {
            return k.clone().map_err(|_| SessionDenied::Broken);
        }
        // Unsealed under the lock: one call per session even when many
        // requests meet a new session at once.
        let key = match ks {
            Some(ks) => self.unseal(id, &**ks),
            None => {
                let why = "a session not present when the volume was opened";
                log::error!("{}: {why}", self.root.join(id.file_name()).display());
                Err(why.to_owned())
            }
        };
        known.insert(*id, key.clone());
        key.map_err(|_| SessionDenied::Broken)
    }

    /// Read one session file and check it against the recipient's public key.
    fn read_file(&self, id: &SessionId) -> Result<SessionFile, String> {
        let d = sys::open_user_dir(&self.root).map_err(|e| e.to_string())?;
        let raw = sys::read_regular(d.as_fd(), id.file_name().as_ref(), MAX_SESSION_FILE_LEN)
            .map_err(|e| e.to_string())?;
        SessionFile::parse(&raw, id, &self.public).map_err(|e| e.to_string())
    }

    /// Every session file in the root, and what is wrong with it: one that
    /// does not parse against the recipient's public key, or (full volume)
    /// did not unseal.
    pub fn check_all(&self) -> Result<Vec<(String, Option<String>)>, VolumeError> {
        let d = sys::open_user_dir(&self.root).map_err(|e| VolumeError::io(&self.root, e))?;
        let list = sys::list_dir(d.as_fd()).map_err(|e| VolumeError::io(&self.root, e))?;
        let mut out = Vec::new();
        for (name, _, _) in list {
            let name = OsStr::from_bytes(&name);
            let Some(id) = SessionId::from_file_name(name) else {
                continue;
            };
            let problem = match self.read_file(&id) {
                Err(e) => Some(e),
                Ok(_) if self.is_write_only() => None,
                Ok(_) => self.key(&id).err().map(|_| {
                    self.known
                        .lock()
                        .get(&id)
                        .and_then(|k| k.as_ref().err().cloned())
                        .unwrap_or_else(|| "it does not unseal".into())
                }),
            };
            out.push((name.to_string_lossy().into_owned(), problem));
        }
        out.sort();
        Ok(out)
    }

    /// Read, check and unseal one session file; a failure is logged (once:
    /// the caller caches it) with the backing path.
    fn unseal(&self, id: &SessionId, ks: &dyn KeyService) -> Result<SessionKey, String> {
        let path = self.root.join(id.file_name());
        let r = (|| {
            let f = self.read_file(id)?;
            let answer = match f.request() {
                UnsealRequest::RsaOaepSha256(ct) => {
                    ks.decrypt_rsa_oaep_sha256(&self.recipient_arn, ct)
                }
                UnsealRequest::Ecdh(peer) => ks.derive_shared_secret(&self.recipient_arn, peer),
            }
            .map_err(|e| e.to_string())?;
            f.finish(&answer, &self.vid).map_err(|e| e.to_string())
        })();
        if let Err(e) = &r {
            log::error!(
                "{}: the write session does not open, its entries read as I/O errors: {e}",
                path.display()
            );
        }
        r
    }
}
