//! Write-only volumes (format 2): creating one sealed to a recipient key,
//! opening it as a full mount (the key service unseals each write session
//! once) or as a write-only mount (the recipient's public key only, from
//! the key service or a file, never from the cipher directory), and the
//! session-sealed names, symlink targets and directory xattrs.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::config::{self, MacKey, RecipientConfig};
use super::sessions::{recipient_public_key, Recipient, SessionDenied, Sessions};
use super::{check_provider, CacheOptions, ConfigKey, Keys, Volume, VolumeConfig};
use crate::crypto::asym::KeySpec;
use crate::crypto::keys::{SessionKey, VolumeId};
use crate::crypto::names::{BackingName, DirContext};
use crate::crypto::names_v2::{self, HmacNames};
use crate::crypto::recipient::{open_blob, seal_blob, RecipientPublicKey, SessionId};
use crate::error::VolumeError;
use crate::kms::{KeyService, PublicKey};

/// Longest plaintext symlink target of format 2: its sealed form (16 bytes
/// longer than format 1's) still fits a backing symlink in base64url.
pub const MAX_SYMLINK_TARGET_V2: usize = Volume::MAX_SYMLINK_TARGET - 16;

/// A kind of small session-sealed value: its key label and associated data.
pub(super) struct Sealed {
    label: &'static [u8],
    aad: &'static [u8],
}

pub(super) const SYMLINK: Sealed = Sealed {
    label: b"envelopefs symlink v2",
    aad: b"symlink",
};
pub(super) const DIR_XATTR: Sealed = Sealed {
    label: b"envelopefs dir xattr v2",
    aad: b"xattr",
};

const NOT_WRITE_ONLY: &str =
    "not a write-only volume: made without --recipient-key (drop the recipient options)";

/// The key of session `id`, as a volume error.
pub(super) fn session_key(s: &Sessions, id: &SessionId) -> Result<SessionKey, VolumeError> {
    s.key(id).map_err(|d| match d {
        SessionDenied::WriteOnly => VolumeError::WriteOnly(
            "written by another session: a write-only mount cannot read it".into(),
        ),
        SessionDenied::Broken => VolumeError::Corrupt(
            "its write session's file is missing, garbled or does not unseal".into(),
        ),
    })
}

pub(super) fn seal(
    s: &Sessions,
    vid: &VolumeId,
    what: Sealed,
    plain: &[u8],
) -> Result<Vec<u8>, VolumeError> {
    let (id, key) = s.own()?;
    Ok(seal_blob(&key, &id, vid, what.label, what.aad, plain))
}

pub(super) fn open(
    s: &Sessions,
    vid: &VolumeId,
    what: Sealed,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VolumeError> {
    let bad = || VolumeError::Corrupt("a sealed value does not decrypt".into());
    let id = SessionId::of_blob(blob).ok_or_else(bad)?;
    let key = session_key(s, &id)?;
    open_blob(&key, vid, what.label, what.aad, blob).ok_or_else(bad)
}

/// The recipient key of a new write-only volume, if its spec and usage let
/// it seal sessions as the key service can unseal them.
fn check_recipient(key: &str, p: &PublicKey) -> Result<RecipientPublicKey, VolumeError> {
    let spec = KeySpec::parse(&p.key_spec);
    let fits = match spec {
        Some(s) if s.is_rsa() => p.key_usage == "ENCRYPT_DECRYPT",
        Some(s) if s.is_nist_ecc() => p.key_usage == "KEY_AGREEMENT",
        _ => false,
    };
    if !fits {
        return Err(VolumeError::BadOption(format!(
            "the recipient key {key} is a {} key with usage {}: a write-only volume needs an ENCRYPT_DECRYPT RSA key (RSA_2048, RSA_3072, RSA_4096) or a KEY_AGREEMENT ECC key (ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521)",
            p.key_spec, p.key_usage
        )));
    }
    let r = RecipientPublicKey::from_der(&p.der)
        .map_err(|e| VolumeError::BadOption(format!("{key}: {e}")))?;
    if Some(r.spec()) != spec {
        return Err(VolumeError::BadOption(format!(
            "{key}: the public key is not a {} key",
            p.key_spec
        )));
    }
    Ok(r)
}

/// Check a format 2 config against a recipient's public key: its F first
/// (a config swapped to another key is refused by name), then its MAC.
fn check_config(cfg: &VolumeConfig, mac: &str, r: &RecipientPublicKey) -> Result<(), VolumeError> {
    let stored = cfg
        .recipient
        .as_ref()
        .map(|c| c.public_key_sha256.as_str())
        .unwrap_or("");
    if stored != r.fingerprint_hex() {
        return Err(VolumeError::BadConfig(format!(
            "the volume is sealed to the public key with SHA-256 {stored}, not to the recipient given ({})",
            r.fingerprint_hex()
        )));
    }
    let vid = cfg.volume_id()?;
    cfg.verify_with(mac, MacKey::Writer(&r.writer_key(&vid)))
}

impl Volume {
    pub(super) fn config_v2(
        ks: &dyn KeyService,
        recipient_key: &str,
        opts: &super::InitOptions,
    ) -> Result<(VolumeConfig, ConfigKey), VolumeError> {
        let p = ks.get_public_key(recipient_key)?;
        let r = check_recipient(recipient_key, &p)?;
        let volume_id = uuid::Uuid::new_v4().to_string();
        let cfg = VolumeConfig {
            format_version: config::FORMAT_VERSION_2,
            volume_id,
            cipher: "AES-256-GCM".into(),
            block_size: opts.block_size,
            key_location: opts.key_location,
            name_scheme: config::NAME_SCHEME_HMAC_SEALED.into(),
            long_name_max: 255,
            key_provider: ks.provider().into(),
            master_key_arn: p.key_arn,
            master_key_material_id: String::new(),
            wrapped_volume_key: String::new(),
            recipient: Some(RecipientConfig {
                key_spec: r.spec().name().into(),
                public_key_sha256: r.fingerprint_hex(),
            }),
            creation_date: crate::sys::now_secs(),
        };
        let w = r.writer_key(&cfg.volume_id()?);
        Ok((cfg, ConfigKey::Writer(w)))
    }

    /// A full mount of a format 2 volume: the recipient's public key from
    /// the key service (its F must be the config's), the config's MAC, and
    /// sessions unsealed on demand (`shared`) or all at open.
    pub(super) fn open_full_v2(
        dir: &Path,
        cfg: VolumeConfig,
        mac: &str,
        ks: &dyn KeyService,
        shared: Option<Arc<dyn KeyService>>,
        cache: CacheOptions,
    ) -> Result<Volume, VolumeError> {
        let arn = cfg.master_key_arn.clone();
        let p = ks
            .get_public_key(&arn)
            .map_err(|e| VolumeError::MasterKey(arn.clone(), e))?;
        let r = RecipientPublicKey::from_der(&p.der)
            .map_err(|e| VolumeError::BadConfig(format!("the recipient key {arn}: {e}")))?;
        check_config(&cfg, mac, &r)?;
        let vid = cfg.volume_id()?;
        let sessions = match shared {
            Some(ks) => Sessions::full(dir, vid, arn, r, ks),
            None => Sessions::full_at_open(dir, vid, arn, r, ks)?,
        };
        Ok(Self::assemble_v2(dir, cfg, vid, sessions, cache))
    }

    fn assemble_v2(
        dir: &Path,
        cfg: VolumeConfig,
        vid: VolumeId,
        sessions: Sessions,
        cache: CacheOptions,
    ) -> Volume {
        let names = Box::new(HmacNames::new(sessions.writer_key(), &vid));
        Self::assemble(
            dir,
            cfg,
            vid,
            Keys::Sessions(Box::new(sessions)),
            names,
            cache,
        )
    }

    /// Open a volume keeping the key service: as [`Volume::open`], but a
    /// write-only volume's sessions are unsealed as they are met (one
    /// key-service call per session, cached), not all at open. The mount
    /// uses this.
    pub fn open_shared(
        dir: &Path,
        ks: Arc<dyn KeyService>,
        cache: CacheOptions,
    ) -> Result<Volume, VolumeError> {
        let (cfg, mac) = VolumeConfig::read_unverified(dir)?;
        if !cfg.is_write_only_format() {
            return Volume::open(dir, &*ks, cache);
        }
        check_provider(&cfg, &*ks)?;
        Self::open_full_v2(dir, cfg, &mac, &*ks.clone(), Some(ks), cache)
    }

    /// A write-only mount: only the recipient's public key, from `recipient`
    /// (never from the cipher directory). Refuses a format 1 volume, and a
    /// config whose recipient fingerprint or MAC does not match; writes
    /// nothing before its first write.
    pub fn open_write_only(
        dir: &Path,
        ks: Option<&dyn KeyService>,
        recipient: &Recipient,
        cache: CacheOptions,
    ) -> Result<Volume, VolumeError> {
        let (cfg, mac) = VolumeConfig::read_unverified(dir)?;
        if !cfg.is_write_only_format() {
            return Err(VolumeError::BadOption(NOT_WRITE_ONLY.into()));
        }
        let (r, _) = recipient_public_key(ks, recipient)?;
        check_config(&cfg, &mac, &r)?;
        let vid = cfg.volume_id()?;
        let arn = cfg.master_key_arn.clone();
        let sessions = Sessions::write_only(dir, vid, arn, r);
        Ok(Self::assemble_v2(dir, cfg, vid, sessions, cache))
    }

    pub(crate) fn sessions(&self) -> Option<&Sessions> {
        match &self.keys {
            Keys::Sessions(s) => Some(s),
            Keys::Volume(_) => None,
        }
    }

    /// Format 2: the side file of a new entry, sealed under this mount's
    /// session (made on first use); None for a name without one.
    pub(crate) fn seal_side(&self, b: &BackingName) -> Result<Option<Vec<u8>>, VolumeError> {
        let (Some(s), Some(plain)) = (self.sessions(), &b.plain_for_side) else {
            return Ok(None);
        };
        let (id, key) = s.own()?;
        Ok(Some(names_v2::seal_side(
            &key,
            &id,
            &self.vid,
            &plain.dir,
            &b.name,
            &plain.name,
        )))
    }

    /// Format 2: the name in an entry's side file. `Err(WriteOnly)` for an
    /// entry of another session on a write-only mount; `Ok(None)` when it
    /// does not open or (full mount) is not the name the entry is filed under.
    pub(crate) fn open_side_v2(
        &self,
        ctx: &DirContext,
        backing: &OsStr,
        side: &[u8],
    ) -> Result<Option<OsString>, VolumeError> {
        let Some(s) = self.sessions() else {
            return Ok(None);
        };
        let Some(id) = SessionId::of_blob(side) else {
            return Ok(None);
        };
        let key = match session_key(s, &id) {
            Ok(k) => k,
            Err(VolumeError::Corrupt(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(name) = names_v2::open_side(&key, &self.vid, ctx, backing, side) else {
            return Ok(None);
        };
        // A side file moved beside another entry opens (same directory) but
        // names another backing entry.
        let filed = self.names().to_backing(ctx, &name).map(|b| b.name);
        Ok((filed.as_deref() == Ok(backing)).then_some(name))
    }

    /// Test support only (a write-only daemon's memory is scanned for any
    /// key that opens an earlier session): through this full volume, the
    /// keys behind the backing file `fd` of a format 2 volume — its
    /// session's key S, the keys derived from S for names, symlink targets,
    /// directory xattrs and this file's header, and the file's data key.
    #[doc(hidden)]
    pub fn session_keys_for_memory_scan_test(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Vec<[u8; 32]>, VolumeError> {
        use crate::crypto::keys::derive;
        let s = self
            .sessions()
            .ok_or_else(|| VolumeError::Unsupported("not a write-only volume".into()))?;
        let h = super::FileContent::header_of(self, fd)
            .map_err(|e| VolumeError::Corrupt(e.to_string()))?
            .ok_or_else(|| VolumeError::Corrupt("no header".into()))?;
        let id = h
            .session()
            .ok_or_else(|| VolumeError::Corrupt("not a format 2 header".into()))?;
        let sk = session_key(s, &id)?;
        let dk = self.open_header(&h)?;
        let vid = &self.vid.0;
        let mut keys = vec![*sk.expose(), *dk.expose()];
        for label in [&b"envelopefs names v2"[..], SYMLINK.label, DIR_XATTR.label] {
            keys.push(*derive(sk.expose(), vid, &[label]).expose());
        }
        let wrap = derive(
            sk.expose(),
            vid,
            &[b"envelopefs data-key wrap v2", &h.file_id.0],
        );
        keys.push(*wrap.expose());
        Ok(keys)
    }
}
