//! A volume: its config, its unwrapped volume key, and the encrypted layout
//! of its backing files. The FUSE layer calls this; it never sees ciphertext.

pub mod check;
pub mod config;
pub mod content;
#[cfg(test)]
mod content_fuzz;
pub mod keycache;
pub mod reencrypt;
pub mod sessions;
#[cfg(test)]
mod tamper_fuzz;
pub mod tree;
mod values;
mod writeonly;
#[cfg(test)]
mod writeonly_tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

pub use config::{KeyLocation, VolumeConfig};
pub use content::FileContent;
// What the frontend (fs) needs of the crypto layer, through the volume.
pub use crate::crypto::content::FileCrypto;
pub use crate::crypto::names::{
    BackingName, DirContext, DEFAULT_LONG_NAME_MAX, DIRIV_LEN, DIRIV_NAME, LONGNAME_SUFFIX,
    MIN_LONG_NAME_MAX,
};
pub use crate::crypto::secmem::harden_daemon;
use keycache::KeyCache;
pub use sessions::Recipient;

use crate::crypto::header::FileHeader;
use crate::crypto::keys::{DataKey, FileId, VolumeId, VolumeKey};
use crate::crypto::names::{EncryptedNames, NameTransform, PlaintextNames};
use crate::crypto::offsets::Layout;
use crate::error::VolumeError;
use crate::kms::{EncryptionContext, KeyService};

pub use config::LOCK_FILE as LOCK_FILE_NAME;

/// The xattr of a backing file that holds its header with `--key-location xattr`.
pub const HEADER_XATTR: &[u8] = b"user.envelopefs.header";
/// Prefix of backing xattrs that hold the user's (encrypted) xattrs.
pub const USER_XATTR_PREFIX: &[u8] = b"user.e.";

#[derive(Clone, Debug)]
pub struct InitOptions {
    pub block_size: u32,
    pub key_location: KeyLocation,
    pub plaintext_names: bool,
    pub long_name_max: u32,
    /// A write-only volume (format 2) sealed to this asymmetric key of the
    /// key service: ENCRYPT_DECRYPT RSA or KEY_AGREEMENT NIST ECC.
    pub recipient_key: Option<String>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            block_size: 4096,
            key_location: KeyLocation::Header,
            plaintext_names: false,
            long_name_max: DEFAULT_LONG_NAME_MAX,
            recipient_key: None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    pub capacity: usize,
    pub max_age: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            capacity: keycache::DEFAULT_CAPACITY,
            max_age: keycache::DEFAULT_MAX_AGE,
        }
    }
}

pub struct Volume {
    root: PathBuf,
    config: VolumeConfig,
    vid: VolumeId,
    keys: Keys,
    layout: Layout,
    names: Box<dyn NameTransform>,
    cache: KeyCache,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("root", &self.root)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a volume's content is keyed by.
enum Keys {
    /// Format 1: the volume key.
    Volume(VolumeKey),
    /// Format 2: the recipient's public key and the write sessions.
    Sessions(Box<sessions::Sessions>),
}

/// The key that MACs a new config, by format.
enum ConfigKey {
    Volume(VolumeKey),
    Writer(crate::crypto::keys::SubKey),
}

fn volume_context(volume_id: &str) -> EncryptionContext {
    EncryptionContext::new().with("envelopefs:volume-id", volume_id)
}

impl Volume {
    /// Create a volume in `dir` (empty or missing) under master key `key`,
    /// or with `opts.recipient_key` a write-only volume (format 2) sealed to
    /// that key (`key` is then not used).
    pub fn init(
        dir: &Path,
        ks: &dyn KeyService,
        key: &str,
        opts: &InitOptions,
    ) -> Result<VolumeConfig, VolumeError> {
        config::check_block_size(opts.block_size)?;
        if opts.recipient_key.is_some() && opts.plaintext_names {
            return Err(VolumeError::BadOption(
                "--plaintext-names cannot be used with --recipient-key (a write-only volume's names are keyed hashes)".into(),
            ));
        }
        if !(MIN_LONG_NAME_MAX..=255).contains(&opts.long_name_max) {
            return Err(VolumeError::BadOption(format!(
                "--long-name-max must be from {MIN_LONG_NAME_MAX} to 255"
            )));
        }
        let existed = check_init_target(dir)?;
        // The key first: a wrong key (the commonest mistake) fails before
        // anything is made.
        let (cfg, mac_key) = match &opts.recipient_key {
            Some(r) => Self::config_v2(ks, r, opts)?,
            None => Self::config_v1(ks, key, opts)?,
        };
        let made = if existed {
            None
        } else {
            Some(create_dirs(dir)?)
        };
        let written = (|| {
            if opts.key_location == KeyLocation::Xattr {
                check_user_xattrs(dir)?;
            }
            if cfg.name_scheme != config::NAME_SCHEME_PLAIN {
                write_diriv(dir)?;
            }
            match &mac_key {
                ConfigKey::Volume(vk) => cfg.write_new(dir, vk),
                ConfigKey::Writer(w) => cfg.write_new_with(dir, config::MacKey::Writer(w)),
            }
        })();
        if let Err(e) = written {
            // Nothing left behind: the directories made, or what was
            // written into the empty directory given.
            match made {
                Some(top) => {
                    let _ = std::fs::remove_dir_all(top);
                }
                None => {
                    let _ = std::fs::remove_file(dir.join(config::CONFIG_FILE));
                    let _ = std::fs::remove_file(dir.join(DIRIV_NAME));
                }
            }
            return Err(e);
        }
        Ok(cfg)
    }

    fn config_v1(
        ks: &dyn KeyService,
        key: &str,
        opts: &InitOptions,
    ) -> Result<(VolumeConfig, ConfigKey), VolumeError> {
        let volume_id = uuid::Uuid::new_v4().to_string();
        let g = ks.generate_data_key(key, 32, &volume_context(&volume_id))?;
        let vk = VolumeKey::from_slice(&g.plaintext)
            .ok_or_else(|| VolumeError::VolumeKey("the key service returned a bad key".into()))?;
        let cfg = VolumeConfig {
            format_version: config::FORMAT_VERSION,
            volume_id,
            cipher: "AES-256-GCM".into(),
            block_size: opts.block_size,
            key_location: opts.key_location,
            name_scheme: if opts.plaintext_names {
                config::NAME_SCHEME_PLAIN
            } else {
                config::NAME_SCHEME_SIV
            }
            .into(),
            long_name_max: opts.long_name_max,
            key_provider: ks.provider().into(),
            master_key_arn: g.key_arn,
            master_key_material_id: g.key_material_id,
            wrapped_volume_key: B64.encode(&g.ciphertext_blob),
            recipient: None,
            creation_date: crate::sys::now_secs(),
        };
        Ok((cfg, ConfigKey::Volume(vk)))
    }

    /// Open a volume: unwrap its volume key (one key-service call) and verify the config.
    pub fn open(
        dir: &Path,
        ks: &dyn KeyService,
        cache: CacheOptions,
    ) -> Result<Volume, VolumeError> {
        let (cfg, mac) = VolumeConfig::read_unverified(dir)?;
        check_provider(&cfg, ks)?;
        if cfg.is_write_only_format() {
            return Self::open_full_v2(dir, cfg, &mac, ks, None, cache);
        }
        let blob = cfg.wrapped_key()?;
        let d = ks
            .decrypt(
                &blob,
                &volume_context(&cfg.volume_id),
                Some(&cfg.master_key_arn),
            )
            .map_err(|e| match e {
                crate::kms::KmsError::InvalidCiphertext => VolumeError::BadConfig(
                    "the wrapped volume key does not decrypt under its master key (edited config?)"
                        .into(),
                ),
                e => VolumeError::MasterKey(cfg.master_key_arn.clone(), e),
            })?;
        let vk = VolumeKey::from_slice(&d.plaintext)
            .ok_or_else(|| VolumeError::VolumeKey("unwrapped key has a bad length".into()))?;
        cfg.verify(&mac, &vk)?;
        let vid = cfg.volume_id()?;
        let names: Box<dyn NameTransform> = if cfg.name_scheme == config::NAME_SCHEME_PLAIN {
            Box::new(PlaintextNames)
        } else {
            Box::new(EncryptedNames::new(&vk, &vid, cfg.long_name_max))
        };
        Ok(Self::assemble(
            dir,
            cfg,
            vid,
            Keys::Volume(vk),
            names,
            cache,
        ))
    }

    fn assemble(
        dir: &Path,
        cfg: VolumeConfig,
        vid: VolumeId,
        keys: Keys,
        names: Box<dyn NameTransform>,
        cache: CacheOptions,
    ) -> Volume {
        let header_len = match cfg.key_location {
            KeyLocation::Header => cfg.header_length() as u64,
            KeyLocation::Xattr => 0,
        };
        Volume {
            root: dir.to_owned(),
            layout: Layout::new(cfg.block_size, header_len),
            config: cfg,
            vid,
            keys,
            names,
            cache: KeyCache::new(cache.capacity, cache.max_age),
        }
    }

    /// Re-wrap the volume key in place under the master key's current
    /// material (KMS ReEncrypt). Touches the config only; the settings,
    /// including the master key, stay as they are.
    pub fn rewrap(
        dir: &Path,
        ks: &dyn KeyService,
    ) -> Result<(VolumeConfig, VolumeConfig), VolumeError> {
        let vol = Volume::open(dir, ks, CacheOptions::default())?;
        let vk = vol.volume_key()?;
        let old = vol.config.clone();
        let ctx = volume_context(&old.volume_id);
        let r = ks.re_encrypt(&old.wrapped_key()?, &ctx, &old.master_key_arn, &ctx)?;
        let mut new = old.clone();
        new.wrapped_volume_key = B64.encode(&r.ciphertext_blob);
        new.master_key_material_id = r.key_material_id;
        new.replace(dir, vk)?;
        Ok((old, new))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &VolumeConfig {
        &self.config
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn names(&self) -> &dyn NameTransform {
        &*self.names
    }

    pub fn key_cache(&self) -> &KeyCache {
        &self.cache
    }

    pub fn volume_id(&self) -> &VolumeId {
        &self.vid
    }

    /// The volume key of a format 1 volume; a write-only volume has none.
    pub(crate) fn volume_key(&self) -> Result<&VolumeKey, VolumeError> {
        match &self.keys {
            Keys::Volume(vk) => Ok(vk),
            Keys::Sessions(_) => Err(VolumeError::Unsupported(
                "this is a write-only volume (format 2): it has no volume key, and this operation does not support it yet".into(),
            )),
        }
    }

    /// Whether this is a write-only mount (format 2 opened with only the
    /// recipient's public key).
    pub fn is_write_only(&self) -> bool {
        matches!(&self.keys, Keys::Sessions(s) if s.is_write_only())
    }

    /// A new file's header, wrapping `key`: under the volume key, or under
    /// this mount's write session (made on first use).
    pub(crate) fn seal_header(
        &self,
        fid: FileId,
        key: &DataKey,
    ) -> Result<FileHeader, VolumeError> {
        match &self.keys {
            Keys::Volume(vk) => Ok(FileHeader::seal(vk, &self.vid, fid, key)),
            Keys::Sessions(s) => {
                let (id, sk) = s.own()?;
                Ok(FileHeader::seal_v2(&sk, id, &self.vid, fid, key))
            }
        }
    }

    /// A header's data key; `WriteOnly` for another session's file on a
    /// write-only mount.
    pub(crate) fn open_header(&self, h: &FileHeader) -> Result<DataKey, VolumeError> {
        let auth = |e: crate::crypto::header::HeaderError| VolumeError::Corrupt(e.to_string());
        match &self.keys {
            Keys::Volume(vk) => h.open(vk, &self.vid).map_err(auth),
            Keys::Sessions(s) => {
                let id = h
                    .session()
                    .ok_or_else(|| VolumeError::Corrupt("not a format 2 header".into()))?;
                let sk = writeonly::session_key(s, &id)?;
                h.open_v2(&sk, &self.vid).map_err(auth)
            }
        }
    }

    /// Plaintext size of a backing file, from its size alone (torn tails floored).
    pub fn plain_size(&self, cipher_size: u64) -> u64 {
        if crate::fault::planted("mount-daemon-error") {
            log::error!("planted fault: an error logged for every size");
        }
        self.layout.plain_size_lenient(cipher_size)
    }

    /// The largest plaintext file size: its backing file must stay within
    /// the largest file offset (EFBIG past it, as the kernel says).
    pub fn max_file_size(&self) -> u64 {
        self.layout.plain_size_lenient(i64::MAX as u64)
    }
}

fn check_provider(cfg: &VolumeConfig, ks: &dyn KeyService) -> Result<(), VolumeError> {
    if cfg.key_provider != ks.provider() {
        return Err(VolumeError::BadConfig(format!(
            "the volume's key provider is {}, not {}",
            cfg.key_provider,
            ks.provider()
        )));
    }
    Ok(())
}

/// Write a new directory IV file into the backing directory `dir`.
pub fn write_diriv(dir: &Path) -> Result<(), VolumeError> {
    let fd = crate::sys::open_dir_path(dir).map_err(|e| VolumeError::io(dir, e))?;
    write_diriv_at(std::os::fd::AsFd::as_fd(&fd)).map_err(|e| VolumeError::io(dir, e))
}

/// Write a new directory IV into the directory behind `dir` (an fd).
pub fn write_diriv_at(dir: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    let iv: [u8; DIRIV_LEN] = crate::crypto::random_array();
    write_diriv_bytes(dir, &iv)
}

pub fn write_diriv_bytes(dir: std::os::fd::BorrowedFd<'_>, iv: &[u8]) -> std::io::Result<()> {
    let f = crate::sys::create_new(dir, std::ffi::OsStr::new(DIRIV_NAME), libc::O_WRONLY, 0o400)?;
    crate::sys::pwrite_all(std::os::fd::AsFd::as_fd(&f), iv, 0)?;
    crate::sys::fsync(std::os::fd::AsFd::as_fd(&f), false)
}

/// Read the IV of the backing directory behind `dir`.
pub fn read_diriv(dir: std::os::fd::BorrowedFd<'_>) -> std::io::Result<[u8; DIRIV_LEN]> {
    let raw = crate::sys::read_regular(dir, std::ffi::OsStr::new(DIRIV_NAME), DIRIV_LEN)?;
    raw.try_into()
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EIO))
}

/// Whether `dir`, the place of a new volume, exists (then it must be an
/// empty directory). `init` checks it before it asks for a key, so a
/// mistaken directory creates no key store either.
pub fn check_init_target(dir: &Path) -> Result<bool, VolumeError> {
    if !dir.exists() {
        return Ok(false);
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| VolumeError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(VolumeError::BadOption(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if dir.join(config::CONFIG_FILE).exists() {
        return Err(VolumeError::BadOption(format!(
            "{} is already a volume",
            dir.display()
        )));
    }
    let mut it = std::fs::read_dir(dir).map_err(|e| VolumeError::io(dir, e))?;
    if it.next().is_some() {
        return Err(VolumeError::BadOption(format!(
            "{} is not empty (import a plain tree with `envelopefs import`)",
            dir.display()
        )));
    }
    Ok(true)
}

/// Create `dir` and its missing parents; returns the topmost one made.
fn create_dirs(dir: &Path) -> Result<std::path::PathBuf, VolumeError> {
    let top = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && a.symlink_metadata().is_err())
        .last()
        .unwrap_or(dir)
        .to_path_buf();
    std::fs::create_dir_all(dir).map_err(|e| VolumeError::io(dir, e))?;
    Ok(top)
}

fn check_user_xattrs(dir: &Path) -> Result<(), VolumeError> {
    use std::os::fd::AsFd;
    let name = format!(
        ".envelopefs-xattr-probe.{:016x}",
        u64::from_le_bytes(crate::crypto::random_array())
    );
    let probe = dir.join(&name);
    let d = crate::sys::open_user_dir(dir).map_err(|e| VolumeError::io(dir, e))?;
    let f = crate::sys::create_exclusive(d.as_fd(), name.as_ref(), 0o600)
        .map_err(|e| VolumeError::io(&probe, e))?;
    let r = crate::sys::fsetxattr(f.as_fd(), b"user.envelopefs.probe", b"1", 0);
    drop(f);
    let _ = crate::sys::unlinkat(d.as_fd(), name.as_ref(), false);
    r.map_err(|e| {
        VolumeError::BadOption(format!(
            "--key-location xattr needs user xattrs on {}: {e}",
            dir.display()
        ))
    })
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub struct TestVolume {
        /// Keeps the temporary directory alive for the volume's lifetime.
        pub _dir: tempfile::TempDir,
        pub vol: Volume,
    }

    /// A new file `name` in the volume's backing root, read-write, made as
    /// the daemon makes files there (sys::create_new: never through a
    /// planted name).
    pub fn create_in_root(vol: &Volume, name: &str) -> std::fs::File {
        use std::os::fd::AsFd;
        let root = crate::sys::open_dir_path(vol.root()).unwrap();
        let fd = crate::sys::create_new(root.as_fd(), name.as_ref(), libc::O_RDWR, 0o600).unwrap();
        std::fs::File::from(fd)
    }

    /// Another read-write handle to `name` in the backing root.
    pub fn reopen_in_root(vol: &Volume, name: &str) -> std::fs::File {
        use std::os::fd::AsFd;
        let root = crate::sys::open_dir_path(vol.root()).unwrap();
        let fd = crate::sys::openat(root.as_fd(), name.as_ref(), libc::O_RDWR, 0).unwrap();
        std::fs::File::from(fd)
    }

    pub fn volume(opts: InitOptions) -> TestVolume {
        let dir = tempfile::tempdir().unwrap();
        let ks = crate::kms::local::test_store(&dir.path().join("ks"));
        let key = ks.default_key().unwrap();
        let vdir = dir.path().join("vol");
        Volume::init(&vdir, &ks, &key, &opts).unwrap();
        let vol = Volume::open(&vdir, &ks, CacheOptions::default()).unwrap();
        TestVolume { _dir: dir, vol }
    }

    /// A new empty file `name` in the volume's backing root, its header
    /// written: a file as the frontend would create it.
    pub fn new_file(tv: &TestVolume, name: &str) -> (std::fs::File, content::FileContent) {
        use std::os::fd::AsFd;
        let f = create_in_root(&tv.vol, name);
        let c = content::FileContent::new();
        c.create(&tv.vol, f.as_fd()).unwrap();
        (f, c)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn edited_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ks = crate::kms::local::test_store(&dir.path().join("ks"));
        let key = ks.default_key().unwrap();
        let vdir = dir.path().join("vol");
        Volume::init(&vdir, &ks, &key, &InitOptions::default()).unwrap();
        let p = vdir.join(config::CONFIG_FILE);
        let orig = std::fs::read_to_string(&p).unwrap();
        for (from, to) in [
            ("\"block_size\": 4096", "\"block_size\": 8192"),
            (
                "\"key_location\": \"header\"",
                "\"key_location\": \"xattr\"",
            ),
        ] {
            assert!(orig.contains(from), "{from}");
            std::fs::write(&p, orig.replace(from, to)).unwrap();
            let e = Volume::open(&vdir, &ks, CacheOptions::default()).unwrap_err();
            assert!(matches!(e, VolumeError::BadConfig(_)), "{e}");
        }
        std::fs::write(&p, "{garbage").unwrap();
        assert!(matches!(
            Volume::open(&vdir, &ks, CacheOptions::default()),
            Err(VolumeError::BadConfig(_))
        ));
        std::fs::write(&p, &orig).unwrap();
        Volume::open(&vdir, &ks, CacheOptions::default()).unwrap();
        assert!(matches!(
            Volume::open(dir.path(), &ks, CacheOptions::default()),
            Err(VolumeError::NotAVolume(_))
        ));
        // init refuses an existing volume and a non-empty directory.
        assert!(Volume::init(&vdir, &ks, &key, &InitOptions::default()).is_err());
    }

    #[test]
    fn symlink_targets_round_trip() {
        let tv = volume(InitOptions::default());
        let t = vec![b'x'; Volume::MAX_SYMLINK_TARGET];
        let enc = tv.vol.encrypt_symlink(&t).unwrap();
        assert!(enc.len() <= 4095);
        assert_eq!(tv.vol.decrypt_symlink(&enc).unwrap(), t);
        assert!(matches!(
            tv.vol.open_symlink(b"garbage"),
            Err(VolumeError::Corrupt(_))
        ));
        assert!(tv.vol.decrypt_symlink(b"garbage").is_none());
    }
}
