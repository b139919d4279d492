//! The volume config (`envelopefs.conf`): settings fixed at creation, the
//! wrapped volume key, and a MAC under the volume key so that an edited
//! config is refused at mount.
//!
//! Format 2 (write-only volumes) has no volume key: the config names the
//! recipient key (ARN, spec, SHA-256 of its public key) and its MAC is keyed
//! from the writer key W, which the public key gives. Each format is parsed
//! strictly (no unknown field), picked by `format_version`.

use std::os::fd::AsFd;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::aead::Cipher;
use crate::crypto::header::{HEADER_LEN, HEADER_V2_LEN};
use crate::crypto::keys::{derive, SubKey, VolumeId, VolumeKey};
use crate::error::VolumeError;

pub const CONFIG_FILE: &str = "envelopefs.conf";
pub const LOCK_FILE: &str = "envelopefs.lock";
pub const FORMAT_VERSION: u32 = 1;
/// Write-only volumes.
pub const FORMAT_VERSION_2: u32 = 2;
pub const NAME_SCHEME_PLAIN: &str = "plaintext";
pub const NAME_SCHEME_SIV: &str = "aes-siv-base64url";
pub const NAME_SCHEME_HMAC_SEALED: &str = "hmac-sealed-v2";

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

/// The settings of a volume. Every field stored is covered by the MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeConfig {
    pub format_version: u32,
    pub volume_id: String,
    pub cipher: String,
    pub block_size: u32,
    pub key_location: KeyLocation,
    pub name_scheme: String,
    /// Format 1 only (format 2 names are 43 bytes; 255 there, not stored).
    pub long_name_max: u32,
    pub key_provider: String,
    /// The key the key service is asked for: format 1's master key, format
    /// 2's recipient key (stored as `recipient_key_arn`).
    pub master_key_arn: String,
    /// Format 1 only ("" in format 2).
    pub master_key_material_id: String,
    /// Format 1 only ("" in format 2: there is no volume key).
    pub wrapped_volume_key: String,
    /// Format 2 only: the recipient key's spec and fingerprint.
    pub recipient: Option<RecipientConfig>,
    pub creation_date: u64,
}

/// What a format 2 config says of its recipient key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientConfig {
    /// AWS's name of the key spec (RSA_2048, ECC_NIST_P256, ...).
    pub key_spec: String,
    /// Lowercase hex of F = SHA-256 of the DER public key.
    pub public_key_sha256: String,
}

/// Format 1 as stored; its field order makes the MAC's canonical bytes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigV1 {
    format_version: u32,
    volume_id: String,
    cipher: String,
    block_size: u32,
    key_location: KeyLocation,
    name_scheme: String,
    long_name_max: u32,
    key_provider: String,
    master_key_arn: String,
    master_key_material_id: String,
    wrapped_volume_key: String,
    creation_date: u64,
}

/// Format 2 as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigV2 {
    format_version: u32,
    volume_id: String,
    cipher: String,
    block_size: u32,
    key_location: KeyLocation,
    name_scheme: String,
    key_provider: String,
    recipient_key_arn: String,
    recipient_key_spec: String,
    recipient_public_key_sha256: String,
    header_length: u32,
    creation_date: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile<C> {
    config: C,
    mac: String,
}

/// The key a config's MAC is derived from.
#[derive(Clone, Copy)]
pub enum MacKey<'a> {
    /// Format 1: the volume key.
    Volume(&'a VolumeKey),
    /// Format 2: the writer key W.
    Writer(&'a SubKey),
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

    pub fn is_write_only_format(&self) -> bool {
        self.format_version == FORMAT_VERSION_2
    }

    /// The length of a file header in this format (stored at the start of
    /// the backing file, or as its header xattr).
    pub fn header_length(&self) -> usize {
        if self.is_write_only_format() {
            HEADER_V2_LEN
        } else {
            HEADER_LEN
        }
    }

    fn mac_cipher(key: MacKey<'_>, vid: &VolumeId) -> Cipher {
        let k = match key {
            MacKey::Volume(vk) => derive(vk.expose(), &vid.0, &[b"envelopefs config mac v1"]),
            MacKey::Writer(w) => derive(w.expose(), &vid.0, &[b"envelopefs config mac v2"]),
        };
        Cipher::new(k.expose())
    }

    fn to_v1(&self) -> ConfigV1 {
        ConfigV1 {
            format_version: self.format_version,
            volume_id: self.volume_id.clone(),
            cipher: self.cipher.clone(),
            block_size: self.block_size,
            key_location: self.key_location,
            name_scheme: self.name_scheme.clone(),
            long_name_max: self.long_name_max,
            key_provider: self.key_provider.clone(),
            master_key_arn: self.master_key_arn.clone(),
            master_key_material_id: self.master_key_material_id.clone(),
            wrapped_volume_key: self.wrapped_volume_key.clone(),
            creation_date: self.creation_date,
        }
    }

    fn to_v2(&self) -> Result<ConfigV2, VolumeError> {
        let r = self
            .recipient
            .as_ref()
            .ok_or_else(|| VolumeError::BadConfig("format 2 without a recipient".into()))?;
        Ok(ConfigV2 {
            format_version: self.format_version,
            volume_id: self.volume_id.clone(),
            cipher: self.cipher.clone(),
            block_size: self.block_size,
            key_location: self.key_location,
            name_scheme: self.name_scheme.clone(),
            key_provider: self.key_provider.clone(),
            recipient_key_arn: self.master_key_arn.clone(),
            recipient_key_spec: r.key_spec.clone(),
            recipient_public_key_sha256: r.public_key_sha256.clone(),
            header_length: self.header_length() as u32,
            creation_date: self.creation_date,
        })
    }

    fn from_v1(c: ConfigV1) -> VolumeConfig {
        VolumeConfig {
            format_version: c.format_version,
            volume_id: c.volume_id,
            cipher: c.cipher,
            block_size: c.block_size,
            key_location: c.key_location,
            name_scheme: c.name_scheme,
            long_name_max: c.long_name_max,
            key_provider: c.key_provider,
            master_key_arn: c.master_key_arn,
            master_key_material_id: c.master_key_material_id,
            wrapped_volume_key: c.wrapped_volume_key,
            recipient: None,
            creation_date: c.creation_date,
        }
    }

    fn from_v2(c: ConfigV2) -> Result<VolumeConfig, VolumeError> {
        if c.header_length as usize != HEADER_V2_LEN {
            return Err(VolumeError::BadConfig(format!(
                "header_length {} is not format 2's {HEADER_V2_LEN}",
                c.header_length
            )));
        }
        Ok(VolumeConfig {
            format_version: c.format_version,
            volume_id: c.volume_id,
            cipher: c.cipher,
            block_size: c.block_size,
            key_location: c.key_location,
            name_scheme: c.name_scheme,
            long_name_max: 255,
            key_provider: c.key_provider,
            master_key_arn: c.recipient_key_arn,
            master_key_material_id: String::new(),
            wrapped_volume_key: String::new(),
            recipient: Some(RecipientConfig {
                key_spec: c.recipient_key_spec,
                public_key_sha256: c.recipient_public_key_sha256,
            }),
            creation_date: c.creation_date,
        })
    }

    fn canonical(&self) -> Result<Vec<u8>, VolumeError> {
        let r = if self.is_write_only_format() {
            serde_json::to_vec(&self.to_v2()?)
        } else {
            serde_json::to_vec(&self.to_v1())
        };
        r.map_err(|e| VolumeError::BadConfig(e.to_string()))
    }

    /// Check the fields a reader relies on before any key is involved.
    pub fn validate(&self) -> Result<(), VolumeError> {
        if self.format_version != FORMAT_VERSION && self.format_version != FORMAT_VERSION_2 {
            return Err(VolumeError::BadConfig(format!(
                "format version {} is not supported (this build reads {FORMAT_VERSION} and {FORMAT_VERSION_2})",
                self.format_version
            )));
        }
        if self.is_write_only_format() {
            self.validate_v2()?;
        }
        if self.cipher != "AES-256-GCM" {
            return Err(VolumeError::BadConfig(format!(
                "unknown cipher {}",
                self.cipher
            )));
        }
        let schemes: &[&str] = if self.is_write_only_format() {
            &[NAME_SCHEME_HMAC_SEALED]
        } else {
            &[NAME_SCHEME_PLAIN, NAME_SCHEME_SIV]
        };
        if !schemes.contains(&self.name_scheme.as_str()) {
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

    fn validate_v2(&self) -> Result<(), VolumeError> {
        let r = self
            .recipient
            .as_ref()
            .ok_or_else(|| VolumeError::BadConfig("format 2 without a recipient".into()))?;
        let spec = crate::crypto::asym::KeySpec::parse(&r.key_spec);
        if !spec.is_some_and(|s| s.is_rsa() || s.is_nist_ecc()) {
            return Err(VolumeError::BadConfig(format!(
                "recipient_key_spec {} is not a recipient key spec",
                r.key_spec
            )));
        }
        let hex = &r.public_key_sha256;
        if hex.len() != 64 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(VolumeError::BadConfig(
                "recipient_public_key_sha256 is not 64 lowercase hex digits".into(),
            ));
        }
        if self.master_key_arn.is_empty() {
            return Err(VolumeError::BadConfig("recipient_key_arn is empty".into()));
        }
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
        let bad = |e: serde_json::Error| VolumeError::BadConfig(e.to_string());
        let f: ConfigFile<serde_json::Value> = serde_json::from_slice(raw).map_err(bad)?;
        let version = f.config.get("format_version").and_then(|v| v.as_u64());
        let cfg = if version == Some(FORMAT_VERSION_2.into()) {
            Self::from_v2(serde_json::from_value(f.config).map_err(bad)?)?
        } else {
            Self::from_v1(serde_json::from_value(f.config).map_err(bad)?)
        };
        cfg.validate()?;
        Ok((cfg, f.mac))
    }

    /// Verify the MAC once the volume key is known (format 1).
    pub fn verify(&self, mac: &str, vk: &VolumeKey) -> Result<(), VolumeError> {
        self.verify_with(mac, MacKey::Volume(vk))
    }

    /// Verify the MAC under the key of the config's format.
    pub fn verify_with(&self, mac: &str, key: MacKey<'_>) -> Result<(), VolumeError> {
        if matches!(key, MacKey::Writer(_)) != self.is_write_only_format() {
            return Err(VolumeError::BadConfig(
                "the config's MAC key does not fit its format".into(),
            ));
        }
        let vid = self.volume_id()?;
        let blob = B64
            .decode(mac)
            .map_err(|_| VolumeError::BadConfig("mac is not base64".into()))?;
        let ok = Self::mac_cipher(key, &vid)
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

    fn to_bytes(&self, key: MacKey<'_>) -> Result<Vec<u8>, VolumeError> {
        let vid = self.volume_id()?;
        let mac = B64.encode(Self::mac_cipher(key, &vid).seal_to_vec(&self.canonical()?, b""));
        let r = if self.is_write_only_format() {
            serde_json::to_vec_pretty(&ConfigFile {
                config: self.to_v2()?,
                mac,
            })
        } else {
            serde_json::to_vec_pretty(&ConfigFile {
                config: self.to_v1(),
                mac,
            })
        };
        r.map_err(|e| VolumeError::BadConfig(e.to_string()))
    }

    /// Atomically replace the config (only `rewrap` does this: same settings,
    /// the volume key re-wrapped under newer key material).
    pub fn replace(&self, dir: &Path, vk: &VolumeKey) -> Result<(), VolumeError> {
        self.write(dir, MacKey::Volume(vk), crate::sys::Placement::Replace)
    }

    /// Write the config with its MAC; fails if one exists (settings are
    /// fixed), also against a racing `init`.
    pub fn write_new(&self, dir: &Path, vk: &VolumeKey) -> Result<(), VolumeError> {
        self.write(dir, MacKey::Volume(vk), crate::sys::Placement::Exclusive)
    }

    /// `write_new` under the key of the config's format.
    pub fn write_new_with(&self, dir: &Path, key: MacKey<'_>) -> Result<(), VolumeError> {
        self.write(dir, key, crate::sys::Placement::Exclusive)
    }

    fn write(
        &self,
        dir: &Path,
        key: MacKey<'_>,
        placement: crate::sys::Placement,
    ) -> Result<(), VolumeError> {
        let out = self.to_bytes(key)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> VolumeConfig {
        VolumeConfig {
            format_version: FORMAT_VERSION_2,
            volume_id: "6f1c9d2e-8a47-4b1e-9c3d-2f5a7b8c9d0e".into(),
            cipher: "AES-256-GCM".into(),
            block_size: 4096,
            key_location: KeyLocation::Header,
            name_scheme: NAME_SCHEME_HMAC_SEALED.into(),
            long_name_max: 255,
            key_provider: "local".into(),
            master_key_arn: "arn:envelopefs:kms:local:0:key/r".into(),
            master_key_material_id: String::new(),
            wrapped_volume_key: String::new(),
            recipient: Some(RecipientConfig {
                key_spec: "RSA_2048".into(),
                public_key_sha256: "ab".repeat(32),
            }),
            creation_date: 1,
        }
    }

    fn stored(cfg: &VolumeConfig) -> String {
        let w = SubKey::random();
        String::from_utf8(cfg.to_bytes(MacKey::Writer(&w)).unwrap()).unwrap()
    }

    #[test]
    fn v2_configs_round_trip_with_exactly_their_fields() {
        let cfg = v2();
        let text = stored(&cfg);
        assert_eq!(VolumeConfig::parse(text.as_bytes()).unwrap().0, cfg);
        assert_eq!(cfg.header_length(), 100);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let fields = [
            "format_version",
            "volume_id",
            "cipher",
            "block_size",
            "key_location",
            "name_scheme",
            "key_provider",
            "recipient_key_arn",
            "recipient_key_spec",
            "recipient_public_key_sha256",
            "header_length",
            "creation_date",
        ];
        assert_eq!(json["config"].as_object().unwrap().len(), fields.len());
        // Stored (and MAC'd) in this order.
        let at: Vec<usize> = fields
            .iter()
            .map(|f| text.find(&format!("\"{f}\"")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn v2_configs_are_parsed_strictly() {
        let text = stored(&v2());
        let bad = |from: &str, to: &str| {
            assert!(text.contains(from), "{from}");
            let e = VolumeConfig::parse(text.replace(from, to).as_bytes()).unwrap_err();
            assert!(matches!(e, VolumeError::BadConfig(_)), "{to}: {e}");
        };
        // A format 1 field, an unknown one, and values format 2 does not allow.
        bad(
            "\"creation_date\"",
            "\"wrapped_volume_key\": \"\", \"creation_date\"",
        );
        bad("\"creation_date\"", "\"extra\": 1, \"creation_date\"");
        bad("\"header_length\": 100", "\"header_length\": 84");
        bad("\"RSA_2048\"", "\"ECC_SECG_P256K1\"");
        bad("\"RSA_2048\"", "\"SYMMETRIC_DEFAULT\"");
        bad(&"ab".repeat(32), &"AB".repeat(32));
        bad(&"ab".repeat(32), "ab");
        bad(NAME_SCHEME_HMAC_SEALED, NAME_SCHEME_SIV);
        bad(
            "\"recipient_key_arn\": \"arn:envelopefs:kms:local:0:key/r\"",
            "\"recipient_key_arn\": \"\"",
        );
        bad("\"format_version\": 2", "\"format_version\": 3");
        // Format 1 never takes format 2's names.
        let mut v1 = v2();
        v1.format_version = FORMAT_VERSION;
        v1.recipient = None;
        assert!(matches!(v1.validate(), Err(VolumeError::BadConfig(_))));
    }

    #[test]
    fn a_mac_key_of_the_other_format_is_refused() {
        let cfg = v2();
        let w = SubKey::random();
        let text = cfg.to_bytes(MacKey::Writer(&w)).unwrap();
        let (parsed, mac) = VolumeConfig::parse(&text).unwrap();
        parsed.verify_with(&mac, MacKey::Writer(&w)).unwrap();
        assert!(parsed
            .verify_with(&mac, MacKey::Writer(&SubKey::random()))
            .is_err());
        assert!(parsed.verify(&mac, &VolumeKey::random()).is_err());
    }
}
