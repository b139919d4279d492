//! The volume config (`envelopefs.conf`): settings fixed at creation, the
//! wrapped volume key, and a MAC under the volume key so that an edited
//! config is refused at mount.

use std::os::fd::AsFd;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::aead::Cipher;
use crate::crypto::keys::{derive, VolumeId, VolumeKey};
use crate::error::VolumeError;

pub const CONFIG_FILE: &str = "envelopefs.conf";
pub const LOCK_FILE: &str = "envelopefs.lock";
pub const FORMAT_VERSION: u32 = 1;
pub const NAME_SCHEME_PLAIN: &str = "plaintext";
pub const NAME_SCHEME_SIV: &str = "aes-siv-base64url";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyLocation {
    Header,
    Xattr,
}

impl std::fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyLocation::Header => "header",
            KeyLocation::Xattr => "xattr",
        })
    }
}

/// The longest config the format allows (it is a few hundred bytes).
pub const MAX_CONFIG_LEN: usize = 64 << 10;

/// The settings of a volume. Every field is covered by the MAC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    pub format_version: u32,
    pub volume_id: String,
    pub cipher: String,
    pub block_size: u32,
    pub key_location: KeyLocation,
    pub name_scheme: String,
    pub long_name_max: u32,
    pub key_provider: String,
    pub master_key_arn: String,
    pub master_key_material_id: String,
    pub wrapped_volume_key: String,
    pub creation_date: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    config: VolumeConfig,
    mac: String,
}

pub fn check_block_size(bs: u32) -> Result<(), VolumeError> {
    if !(512..=1 << 20).contains(&bs) || !bs.is_power_of_two() {
        return Err(VolumeError::BadOption(format!(
            "block size {bs} must be a power of two from 512 to 1048576"
        )));
    }
    Ok(())
}

impl VolumeConfig {
    pub fn volume_id(&self) -> Result<VolumeId, VolumeError> {
        uuid::Uuid::parse_str(&self.volume_id)
            .map(|u| VolumeId(*u.as_bytes()))
            .map_err(|_| VolumeError::BadConfig("volume_id is not a UUID".into()))
    }

    pub fn wrapped_key(&self) -> Result<Vec<u8>, VolumeError> {
        B64.decode(&self.wrapped_volume_key)
            .map_err(|_| VolumeError::BadConfig("wrapped_volume_key is not base64".into()))
    }

    fn mac_cipher(vk: &VolumeKey, vid: &VolumeId) -> Cipher {
        Cipher::new(derive(vk.expose(), &vid.0, &[b"envelopefs config mac v1"]).expose())
    }

    fn canonical(&self) -> Result<Vec<u8>, VolumeError> {
        serde_json::to_vec(self).map_err(|e| VolumeError::BadConfig(e.to_string()))
    }

    /// Check the fields a reader relies on before any key is involved.
    pub fn validate(&self) -> Result<(), VolumeError> {
        if self.format_version != FORMAT_VERSION {
            return Err(VolumeError::BadConfig(format!(
                "format version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            )));
        }
        if self.cipher != "AES-256-GCM" {
            return Err(VolumeError::BadConfig(format!(
                "unknown cipher {}",
                self.cipher
            )));
        }
        if self.name_scheme != NAME_SCHEME_PLAIN && self.name_scheme != NAME_SCHEME_SIV {
            return Err(VolumeError::BadConfig(format!(
                "unknown name scheme {}",
                self.name_scheme
            )));
        }
        check_block_size(self.block_size).map_err(|_| {
            VolumeError::BadConfig(format!("block size {} is invalid", self.block_size))
        })?;
        if !(crate::crypto::names::MIN_LONG_NAME_MAX..=255).contains(&self.long_name_max) {
            return Err(VolumeError::BadConfig(format!(
                "long_name_max {} is out of range",
                self.long_name_max
            )));
        }
        self.volume_id()?;
        Ok(())
    }

    /// Read a config without any key (for `info`). Not yet authenticated.
    /// Only a regular file of at most [`MAX_CONFIG_LEN`] bytes is read: a
    /// planted symlink, fifo or device gives `BadConfig` at once, never a
    /// hang or an endless read.
    pub fn read_unverified(dir: &Path) -> Result<(VolumeConfig, String), VolumeError> {
        let p = dir.join(CONFIG_FILE);
        let raw = crate::sys::open_user_dir(dir).and_then(|d| {
            crate::sys::read_regular(d.as_fd(), CONFIG_FILE.as_ref(), MAX_CONFIG_LEN)
        });
        let raw = match raw {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VolumeError::NotAVolume(dir.display().to_string()))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::InvalidData
                    || e.raw_os_error() == Some(libc::ELOOP) =>
            {
                return Err(VolumeError::BadConfig(format!("{}: {e}", p.display())))
            }
            Err(e) => return Err(VolumeError::io(&p, e)),
        };
        Self::parse(&raw).map_err(|e| match e {
            VolumeError::BadConfig(m) => VolumeError::BadConfig(format!("{}: {m}", p.display())),
            e => e,
        })
    }

    /// Parse and validate config bytes (untrusted input).
    pub fn parse(raw: &[u8]) -> Result<(VolumeConfig, String), VolumeError> {
        let f: ConfigFile =
            serde_json::from_slice(raw).map_err(|e| VolumeError::BadConfig(e.to_string()))?;
        f.config.validate()?;
        Ok((f.config, f.mac))
    }

    /// Verify the MAC once the volume key is known.
    pub fn verify(&self, mac: &str, vk: &VolumeKey) -> Result<(), VolumeError> {
        let vid = self.volume_id()?;
        let blob = B64
            .decode(mac)
            .map_err(|_| VolumeError::BadConfig("mac is not base64".into()))?;
        let ok = Self::mac_cipher(vk, &vid)
            .open_from_slice(&self.canonical()?, &blob)
            .map(|p| p.is_empty())
            .unwrap_or(false);
        if !ok {
            return Err(VolumeError::BadConfig(
                "the config failed authentication: it was edited or damaged".into(),
            ));
        }
        Ok(())
    }

    fn to_bytes(&self, vk: &VolumeKey) -> Result<Vec<u8>, VolumeError> {
        let vid = self.volume_id()?;
        let mac = B64.encode(Self::mac_cipher(vk, &vid).seal_to_vec(&self.canonical()?, b""));
        let f = ConfigFile {
            config: self.clone(),
            mac,
        };
        serde_json::to_vec_pretty(&f).map_err(|e| VolumeError::BadConfig(e.to_string()))
    }

    /// Atomically replace the config (only `rewrap` does this: same settings,
    /// the volume key re-wrapped under newer key material).
    pub fn replace(&self, dir: &Path, vk: &VolumeKey) -> Result<(), VolumeError> {
        self.write(dir, vk, crate::sys::Placement::Replace)
    }

    /// Write the config with its MAC; fails if one exists (settings are
    /// fixed), also against a racing `init`.
    pub fn write_new(&self, dir: &Path, vk: &VolumeKey) -> Result<(), VolumeError> {
        self.write(dir, vk, crate::sys::Placement::Exclusive)
    }

    fn write(
        &self,
        dir: &Path,
        vk: &VolumeKey,
        placement: crate::sys::Placement,
    ) -> Result<(), VolumeError> {
        let out = self.to_bytes(vk)?;
        let p = dir.join(CONFIG_FILE);
        let r = crate::sys::open_user_dir(dir).and_then(|d| {
            crate::sys::write_new_file(d.as_fd(), CONFIG_FILE.as_ref(), &out, 0o644, placement)
        });
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(VolumeError::BadOption(
                format!("{} is already a volume", dir.display()),
            )),
            r => r.map_err(|e| VolumeError::io(&p, e)),
        }
    }
}
