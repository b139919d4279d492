//! The command line: `envelopefs SUBCOMMAND`, results as text or JSON, the
//! key store in `--keystore`/`ENVELOPEFS_KEYSTORE`, passphrases from a prompt
//! or `--passphrase-file`.

mod kms_cmd;
mod mount;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::error::{exitcodes, kms_exit_code, volume_exit_code, VolumeError};
use crate::kms::local::{default_store_dir, LocalKeyService};
use crate::kms::passphrase::PassphraseSource;
use crate::kms::KmsError;
use crate::volume::{InitOptions, KeyLocation, Volume, VolumeConfig};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Key store directory.
    #[arg(long, global = true, env = "ENVELOPEFS_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// Read the key store passphrase from this file.
    #[arg(long, global = true, env = "ENVELOPEFS_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Result format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl Global {
    pub fn store_dir(&self) -> PathBuf {
        self.keystore.clone().unwrap_or_else(default_store_dir)
    }

    pub fn passphrase(&self) -> PassphraseSource {
        PassphraseSource {
            file: self.passphrase_file.clone(),
        }
    }

    /// Unlock the existing store.
    pub fn open_store(&self) -> Result<LocalKeyService, KmsError> {
        let dir = self.store_dir();
        if !LocalKeyService::exists(&dir) {
            return Err(KmsError::NoStore(dir.display().to_string()));
        }
        LocalKeyService::open(&dir, &self.passphrase().existing()?)
    }

    /// Unlock the store, creating it on first use.
    pub fn open_or_create_store(&self) -> Result<LocalKeyService, KmsError> {
        let dir = self.store_dir();
        let (s, created) = LocalKeyService::open_or_create(&dir, &self.passphrase())?;
        if created {
            eprintln!(
                "Created key store {} — it holds the only copy of your master keys: back it up.",
                dir.display()
            );
        }
        Ok(s)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "envelopefs",
    version,
    about = "Encrypted FUSE filesystem with envelope encryption"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a volume in CIPHERDIR (settings are fixed at creation).
    Init {
        cipherdir: PathBuf,
        /// Master key: key ID, key ARN, alias name or alias ARN (default alias/envelopefs/default).
        #[arg(long)]
        key: Option<String>,
        /// Plaintext block size in bytes (a power of two, 512..1048576).
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
        /// Where each file's wrapped data key lives.
        #[arg(long, value_enum, default_value_t = KeyLocation::Header)]
        key_location: KeyLocation,
        /// Keep file names in the clear (contents stay encrypted).
        #[arg(long)]
        plaintext_names: bool,
        /// Encoded names longer than this become hashed names with a side file (64..255).
        #[arg(long, default_value_t = crate::crypto::names::DEFAULT_LONG_NAME_MAX)]
        long_name_max: u32,
    },
    /// Print a volume's settings.
    Info { cipherdir: PathBuf },
    /// Mount CIPHERDIR at MOUNTPOINT; returns once the mount is ready.
    Mount(mount::MountArgs),
    /// Re-wrap the volume key under its master key's current material (after a rotation).
    Rewrap { cipherdir: PathBuf },
    /// Unmount a mount point.
    Umount { mountpoint: PathBuf },
    /// The key service (mirrors `aws kms`).
    #[command(subcommand)]
    Kms(kms_cmd::KmsCommand),
}

/// A failure with its exit code; printed as one line.
pub struct Failure {
    pub code: i32,
    pub msg: String,
}

impl From<VolumeError> for Failure {
    fn from(e: VolumeError) -> Self {
        Failure {
            code: volume_exit_code(&e),
            msg: e.to_string(),
        }
    }
}

impl From<KmsError> for Failure {
    fn from(e: KmsError) -> Self {
        Failure {
            code: kms_exit_code(&e),
            msg: e.to_string(),
        }
    }
}

pub fn print_result(out: Output, value: &serde_json::Value, text: &str) {
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        ),
        Output::Text => println!("{text}"),
    }
}

fn config_json(cfg: &VolumeConfig, dir: &std::path::Path) -> serde_json::Value {
    json!({
        "CipherDir": dir.display().to_string(),
        "FormatVersion": cfg.format_version,
        "VolumeId": cfg.volume_id,
        "Cipher": cfg.cipher,
        "BlockSize": cfg.block_size,
        "KeyLocation": cfg.key_location.to_string(),
        "NameScheme": cfg.name_scheme,
        "LongNameMax": cfg.long_name_max,
        "KeyProvider": cfg.key_provider,
        "MasterKeyArn": cfg.master_key_arn,
        "MasterKeyMaterialId": cfg.master_key_material_id,
        "CreationDate": cfg.creation_date,
    })
}

fn config_text(cfg: &VolumeConfig, dir: &std::path::Path) -> String {
    format!(
        "cipher dir:     {}\nvolume id:      {}\nformat:         {}\ncipher:         {}\nblock size:     {}\nkey location:   {}\nnames:          {} (long names over {} bytes)\nkey provider:   {}\nmaster key:     {}\nkey material:   {}",
        dir.display(),
        cfg.volume_id,
        cfg.format_version,
        cfg.cipher,
        cfg.block_size,
        cfg.key_location,
        cfg.name_scheme,
        cfg.long_name_max,
        cfg.key_provider,
        cfg.master_key_arn,
        cfg.master_key_material_id
    )
}

fn run_cmd(cli: Cli) -> Result<(), Failure> {
    let g = &cli.global;
    match cli.cmd {
        Command::Init {
            cipherdir,
            key,
            block_size,
            key_location,
            plaintext_names,
            long_name_max,
        } => {
            crate::volume::config::check_block_size(block_size)?;
            if !(crate::crypto::names::MIN_LONG_NAME_MAX..=255).contains(&long_name_max) {
                return Err(Failure {
                    code: exitcodes::USAGE,
                    msg: "--long-name-max must be from 64 to 255".into(),
                });
            }
            let ks = g.open_or_create_store()?;
            let key = match key {
                Some(k) => k,
                None => ks.default_key()?,
            };
            let cfg = Volume::init(
                &cipherdir,
                &ks,
                &key,
                &InitOptions {
                    block_size,
                    key_location,
                    plaintext_names,
                    long_name_max,
                },
            )?;
            print_result(
                g.output,
                &config_json(&cfg, &cipherdir),
                &format!(
                    "{}\nCreated volume {} under {} (key store {}; back it up).",
                    config_text(&cfg, &cipherdir),
                    cipherdir.display(),
                    cfg.master_key_arn,
                    g.store_dir().display()
                ),
            );
            Ok(())
        }
        Command::Info { cipherdir } => {
            let (cfg, _) = VolumeConfig::read_unverified(&cipherdir)?;
            print_result(
                g.output,
                &config_json(&cfg, &cipherdir),
                &config_text(&cfg, &cipherdir),
            );
            Ok(())
        }
        Command::Mount(a) => mount::mount(g, a),
        Command::Umount { mountpoint } => mount::umount(&mountpoint),
        Command::Rewrap { cipherdir } => {
            let ks = g.open_store()?;
            let (old, new) = Volume::rewrap(&cipherdir, &ks)?;
            print_result(
                g.output,
                &json!({
                    "CipherDir": cipherdir.display().to_string(),
                    "MasterKeyArn": new.master_key_arn,
                    "SourceKeyMaterialId": old.master_key_material_id,
                    "KeyMaterialId": new.master_key_material_id,
                }),
                &format!(
                    "re-wrapped the volume key of {} under {} material {} (was {})",
                    cipherdir.display(),
                    new.master_key_arn,
                    new.master_key_material_id,
                    old.master_key_material_id
                ),
            );
            Ok(())
        }
        Command::Kms(c) => kms_cmd::run(g, c),
    }
}

/// Entry point of the binary; returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exitcodes::USAGE
            } else {
                exitcodes::OK
            };
            let _ = e.print();
            return code;
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,fuser=error"))
        .format_timestamp_millis()
        .init();
    match run_cmd(cli) {
        Ok(()) => exitcodes::OK,
        Err(f) => {
            eprintln!("envelopefs: {}", f.msg);
            f.code
        }
    }
}
