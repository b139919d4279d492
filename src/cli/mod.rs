//! The command line: `envelopefs SUBCOMMAND`, results as text or JSON, the
//! key store in `--keystore`/`ENVELOPEFS_KEYSTORE`, passphrases from a
//! program, a file, a systemd credential, the terminal or standard input.

mod agent;
mod copy_cmd;
mod daemon;
mod docs;
mod idle;
mod kms_api;
mod kms_cmd;
mod logging;
mod mount;
mod options;
mod output;
mod remote_cmd;
mod umount;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::error::exitcodes;
pub use crate::error::Failure;
use crate::kms::local::{default_store_dir, LocalKeyService};
use crate::kms::passphrase::PassphraseSource;
use crate::kms::{KeyService, KmsError};
use crate::volume::{InitOptions, KeyLocation, Recipient, Volume, VolumeConfig};

use output::OutputFormat;
pub use output::{print_aws, print_result, Output};

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Key store directory.
    #[arg(long, global = true, env = "ENVELOPEFS_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// Read the key store passphrase from this file (`-`: standard input).
    #[arg(long, global = true, env = "ENVELOPEFS_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Run this program (without a shell) and use its output as the key store
    /// passphrase; takes precedence over --passphrase-file. Given once, the
    /// value is split at spaces; given several times, each is one argument.
    #[arg(
        long,
        global = true,
        value_name = "PROGRAM",
        env = "ENVELOPEFS_EXTPASS"
    )]
    pub extpass: Vec<std::ffi::OsString>,
    /// Result format: json, the default of kms commands (as the AWS CLI
    /// prints it), or text: the AWS CLI's tab-separated text form of that
    /// JSON for kms commands, each command's own text (the default) for
    /// the others.
    #[arg(long = "output", global = true, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormat>,
    /// Print only this part of the JSON result, as the AWS CLI's --query
    /// (JMESPath): field names joined by dots, each optionally followed by
    /// [N], [*] or [] (KeyMetadata.Arn, Keys[*].KeyId). Other commands
    /// then print JSON.
    #[arg(long, global = true, value_name = "EXPRESSION")]
    pub query: Option<String>,
    /// Use the key agent serving this socket instead of opening the key
    /// store (the store's passphrase is then not needed).
    #[arg(long, global = true, value_name = "SOCKET", env = "ENVELOPEFS_AGENT")]
    pub agent: Option<PathBuf>,
    /// How results print, from --output, --query and the command.
    #[arg(skip)]
    pub output: Output,
}

/// The key service a key name belongs to, and the key to pass it (the local
/// default key when none is named).
pub fn key_service_for_key(
    g: &Global,
    key: Option<&str>,
) -> Result<(Box<dyn KeyService>, String), Failure> {
    match key {
        Some(k) if is_aws_key(k) => Ok((aws_service(k)?, k.to_owned())),
        Some(k) if g.agent_for(Some(k)).is_some() => Ok((g.agent_service(k), k.to_owned())),
        None if g.agent.is_some() => {
            let k = crate::kms::local::DEFAULT_ALIAS;
            Ok((g.agent_service(k), k.to_owned()))
        }
        Some(k) => Ok((Box::new(store_for_key(g, k)?), k.to_owned())),
        None => {
            let ks = g.open_or_create_store()?;
            let k = ks.default_key()?;
            Ok((Box::new(ks), k))
        }
    }
}

/// The local store, for a key named on the command line. A new store holds
/// only its default key, so for any other key it is not created: the
/// command fails as it would with the store, and leaves no store behind.
fn store_for_key(g: &Global, key: &str) -> Result<LocalKeyService, KmsError> {
    use crate::kms::local::DEFAULT_ALIAS;
    let default = key == DEFAULT_ALIAS || key.ends_with(&format!(":{DEFAULT_ALIAS}"));
    if !default && !LocalKeyService::exists(&g.store_dir()) {
        return Err(KmsError::NotFound(if key.contains("alias/") {
            format!("Alias {key} is not found.")
        } else {
            format!("Key '{key}' does not exist")
        }));
    }
    g.open_or_create_store()
}

/// The key service that holds a volume's master key.
pub fn key_service_for_volume(g: &Global, dir: &Path) -> Result<Box<dyn KeyService>, Failure> {
    let (cfg, _) = VolumeConfig::read_unverified(dir)?;
    key_service_for_config(g, &cfg, &dir.display().to_string())
}

/// The key service that holds the master key of a volume configured as
/// `cfg` (found at `place`, for messages).
pub fn key_service_for_config(
    g: &Global,
    cfg: &VolumeConfig,
    place: &str,
) -> Result<Box<dyn KeyService>, Failure> {
    if cfg.key_provider == "local" {
        if g.agent_for(Some(&cfg.master_key_arn)).is_some() {
            return Ok(g.agent_service(&cfg.master_key_arn));
        }
        Ok(Box::new(g.open_store()?))
    } else if cfg.key_provider == "aws-kms" {
        aws_service(&cfg.master_key_arn)
    } else {
        Err(Failure::UnknownKeyProvider {
            provider: cfg.key_provider.clone(),
            dir: place.to_owned(),
        })
    }
}

/// `--extpass` as an argument vector: one value is split at spaces (as
/// gocryptfs does), several are one argument each.
fn extpass_argv(given: &[std::ffi::OsString]) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    match given {
        [one] => one
            .as_bytes()
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .map(|w| std::ffi::OsString::from_vec(w.to_vec()))
            .collect(),
        many => many.to_vec(),
    }
}

fn is_aws_key(k: &str) -> bool {
    k.starts_with("arn:aws") || k.starts_with("aws-kms:")
}

#[cfg(feature = "aws-kms")]
fn aws_service(key: &str) -> Result<Box<dyn KeyService>, Failure> {
    let region = crate::kms::aws::AwsKms::region_of(key);
    Ok(Box::new(crate::kms::aws::AwsKms::new(region)?))
}

#[cfg(not(feature = "aws-kms"))]
fn aws_service(key: &str) -> Result<Box<dyn KeyService>, Failure> {
    Err(Failure::Usage(format!("{key} is an AWS KMS key, and this envelopefs was built without the aws-kms feature (cargo build --features aws-kms)")))
}

/// The store ID a local key's ARN names (`arn:envelopefs:kms:local:ID:...`).
fn store_id_of_arn(key: &str) -> Option<&str> {
    key.strip_prefix("arn:envelopefs:kms:local:")?
        .split(':')
        .next()
}

/// The ID of the store at `dir`, read from its outer fields (unauthenticated:
/// it only picks a route), if this user can read it.
fn readable_store_id(dir: &Path) -> Option<String> {
    let raw = crate::kms::store::read_store(&LocalKeyService::store_path(dir)).ok()?;
    crate::kms::store::parse_store_file(&raw)
        .ok()
        .map(|f| f.store_id)
}

impl Global {
    /// The key agent to use for `key`: the one `--agent`/`ENVELOPEFS_AGENT`
    /// names; else the default agent when the key's ARN names a store this
    /// user cannot open and that agent's socket exists.
    pub fn agent_for(&self, key: Option<&str>) -> Option<PathBuf> {
        if let Some(a) = &self.agent {
            return Some(a.clone());
        }
        let id = store_id_of_arn(key?)?;
        if readable_store_id(&self.store_dir()).as_deref() == Some(id) {
            return None;
        }
        let default = crate::kms::agent::default_socket();
        default.exists().then_some(default)
    }

    /// The key agent's key service for `key` (see [`Global::agent_for`]).
    pub fn agent_service(&self, key: &str) -> Box<dyn KeyService> {
        let socket = self
            .agent_for(Some(key))
            .unwrap_or_else(crate::kms::agent::default_socket);
        Box::new(crate::kms::agent::client::AgentKeyService::new(
            &socket,
            Some(&self.store_dir()),
        ))
    }

    pub fn store_dir(&self) -> PathBuf {
        self.keystore.clone().unwrap_or_else(default_store_dir)
    }

    pub fn passphrase(&self) -> PassphraseSource {
        PassphraseSource {
            file: self.passphrase_file.clone(),
            program: extpass_argv(&self.extpass),
            credential: true,
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

// The features built in, for `--version` (concat! takes only literals, so
// each combination is its own macro).
#[cfg(all(feature = "aws-kms", feature = "rustcrypto"))]
macro_rules! built_features {
    () => {
        "aws-kms, rustcrypto"
    };
}
#[cfg(all(feature = "aws-kms", not(feature = "rustcrypto")))]
macro_rules! built_features {
    () => {
        "aws-kms"
    };
}
#[cfg(all(not(feature = "aws-kms"), feature = "rustcrypto"))]
macro_rules! built_features {
    () => {
        "rustcrypto"
    };
}
#[cfg(not(any(feature = "aws-kms", feature = "rustcrypto")))]
macro_rules! built_features {
    () => {
        "none"
    };
}
#[cfg(feature = "rustcrypto")]
macro_rules! aead_backend {
    () => {
        "RustCrypto aes-gcm"
    };
}
#[cfg(not(feature = "rustcrypto"))]
macro_rules! aead_backend {
    () => {
        "ring"
    };
}

/// `envelopefs --version`: the version, the cargo features built in and
/// who implements the ciphers.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (features: ",
    built_features!(),
    "; AES-256-GCM: ",
    aead_backend!(),
    "; AES-SIV, HKDF-SHA256, Argon2id: RustCrypto; HPKE X25519: hpke)"
);

#[derive(Parser, Debug)]
#[command(
    name = "envelopefs",
    version = VERSION,
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
        /// The backing directory to create the volume in (missing or empty).
        cipherdir: PathBuf,
        /// Master key: key ID, key ARN, alias name or alias ARN (default alias/envelopefs/default).
        #[arg(long)]
        key: Option<String>,
        /// Make a write-only volume (format 2) sealed to this asymmetric key
        /// (RSA ENCRYPT_DECRYPT or ECC KEY_AGREEMENT): `mount --write-only`
        /// then needs only its public key, and a full mount its private key
        /// through the key service.
        #[arg(long, value_name = "KEY", conflicts_with = "key")]
        recipient_key: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print a volume's settings.
    Info {
        /// The volume's backing directory.
        cipherdir: PathBuf,
    },
    /// Mount CIPHERDIR at MOUNTPOINT; returns once the mount is ready.
    ///
    /// Also takes mount(8)'s `-o name[=value],...` (and is run by mount.fuse3 as
    /// `envelopefs CIPHERDIR MOUNTPOINT -o ...` for type fuse.envelopefs).
    Mount(mount::MountArgs),
    /// Re-wrap the volume key under its master key's current material (after a rotation).
    Rewrap {
        /// The volume's backing directory.
        cipherdir: PathBuf,
    },
    /// Unmount an envelopefs mount, by mount point or cipher directory.
    Umount(umount::UmountArgs),
    /// Snapshots of volumes, and copies under other keys or settings.
    #[command(subcommand)]
    Snapshot(copy_cmd::SnapshotCommand),
    /// Encrypt a plain directory tree into a new volume (without mounting).
    Import {
        /// The plain directory tree to encrypt (left unchanged).
        plaindir: PathBuf,
        /// The new volume's backing directory (must not exist).
        cipherdir: PathBuf,
        #[command(flatten)]
        key: copy_cmd::KeyArgs,
        #[command(flatten)]
        settings: Settings,
        /// Print the summary as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    /// Verify a volume: config, names, headers, blocks, symlinks, xattrs.
    ///
    /// A write-only volume is checked fully through the key service (which
    /// must hold the recipient's private key), or with --recipient-key or
    /// --recipient-file as far as its public key allows: config, write
    /// sessions, structure, headers and sizes, but no content, name,
    /// symlink target or xattr.
    Fsck {
        /// The volume's backing directory (mounted or not).
        cipherdir: PathBuf,
        /// Check a write-only volume with only the public half of this key
        /// of the key service (GetPublicKey; no Decrypt).
        #[arg(long, value_name = "KEY", group = "recipient")]
        recipient_key: Option<String>,
        /// Check a write-only volume with only this public key (DER or PEM):
        /// no key service is used.
        #[arg(long, value_name = "FILE", group = "recipient")]
        recipient_file: Option<PathBuf>,
        /// Same as --output json.
        #[arg(long)]
        json: bool,
    },
    /// Serve the key store to this machine's users on a Unix socket (the key agent).
    Agent(agent::AgentArgs),
    /// The key service (mirrors `aws kms`).
    #[command(subcommand)]
    Kms(kms_cmd::KmsCommand),
    /// Print a shell completion script on stdout.
    ///
    /// For example `envelopefs completions bash > /usr/share/bash-completion/completions/envelopefs`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages into DIR.
    ///
    /// envelopefs.1 and one page per subcommand, nested ones named by their
    /// path (envelopefs-kms-create-key.1).
    Man {
        /// The directory to write them to (made if missing; older pages replaced).
        dir: PathBuf,
    },
}

/// Creation-time settings of a new volume.
#[derive(clap::Args, Debug, Clone)]
struct Settings {
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
    #[arg(long, default_value_t = crate::volume::DEFAULT_LONG_NAME_MAX)]
    long_name_max: u32,
}

impl Settings {
    /// Checked before the key store is asked for a passphrase.
    fn options(&self) -> Result<InitOptions, Failure> {
        crate::volume::config::check_block_size(self.block_size)?;
        if !(crate::volume::MIN_LONG_NAME_MAX..=255).contains(&self.long_name_max) {
            return Err(Failure::Usage(
                "--long-name-max must be from 64 to 255".into(),
            ));
        }
        Ok(InitOptions {
            recipient_key: None,
            block_size: self.block_size,
            key_location: self.key_location,
            plaintext_names: self.plaintext_names,
            long_name_max: self.long_name_max,
        })
    }
}

fn config_json(cfg: &VolumeConfig, dir: &Path) -> serde_json::Value {
    let mut v = json!({
        "CipherDir": dir.display().to_string(),
        "FormatVersion": cfg.format_version,
        "VolumeId": cfg.volume_id,
        "Cipher": cfg.cipher,
        "BlockSize": cfg.block_size,
        "KeyLocation": cfg.key_location.to_string(),
        "NameScheme": cfg.name_scheme,
        "KeyProvider": cfg.key_provider,
        "HeaderLength": cfg.header_length(),
        "CreationDate": cfg.creation_date,
    });
    match &cfg.recipient {
        Some(r) => {
            v["RecipientKeyArn"] = json!(cfg.master_key_arn);
            v["RecipientKeySpec"] = json!(r.key_spec);
            v["RecipientPublicKeySha256"] = json!(r.public_key_sha256);
        }
        None => {
            v["LongNameMax"] = json!(cfg.long_name_max);
            v["MasterKeyArn"] = json!(cfg.master_key_arn);
            v["MasterKeyMaterialId"] = json!(cfg.master_key_material_id);
        }
    }
    v
}

fn config_text(cfg: &VolumeConfig, dir: &Path) -> String {
    let common = format!(
        "cipher dir:     {}\nvolume id:      {}\nformat:         {}\ncipher:         {}\nblock size:     {}\nkey location:   {}\nkey provider:   {}",
        dir.display(),
        cfg.volume_id,
        cfg.format_version,
        cfg.cipher,
        cfg.block_size,
        cfg.key_location,
        cfg.key_provider,
    );
    match &cfg.recipient {
        Some(r) => format!(
            "{common}\nnames:          {} (keyed-hash lookup names, sealed to the recipient)\nrecipient key:  {} ({})\npublic key:     SHA-256 {}\nwrite-only:     mount --write-only --recipient-key KEY or --recipient-file FILE",
            cfg.name_scheme, cfg.master_key_arn, r.key_spec, r.public_key_sha256
        ),
        None => format!(
            "{common}\nnames:          {} (long names over {} bytes)\nmaster key:     {}\nkey material:   {}",
            cfg.name_scheme, cfg.long_name_max, cfg.master_key_arn, cfg.master_key_material_id
        ),
    }
}

fn run_cmd(mut cli: Cli) -> Result<(), Failure> {
    let kms = matches!(cli.cmd, Command::Kms(_));
    cli.global.output = Output::resolve(cli.global.output_format, kms, cli.global.query.is_some())?;
    output::set_query(cli.global.query.as_deref())?;
    let g = &cli.global;
    match cli.cmd {
        Command::Init {
            cipherdir,
            key,
            recipient_key,
            settings,
        } => init(
            g,
            &cipherdir,
            key.or(recipient_key.clone()).as_deref(),
            recipient_key,
            &settings,
        ),
        Command::Info { cipherdir } => info(g, &cipherdir),
        Command::Mount(a) => mount::mount(g, a),
        Command::Umount(a) => umount::umount(g.output, &a),
        Command::Rewrap { cipherdir } => rewrap(g, &cipherdir),
        Command::Kms(c) => kms_cmd::run(g, c),
        Command::Agent(a) => agent::agent(g, a),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { dir } => docs::man(&dir),
        Command::Snapshot(c) => copy_cmd::snapshot(g, c),
        Command::Import {
            plaindir,
            cipherdir,
            key,
            settings,
            json,
        } => copy_cmd::import(g, &plaindir, &cipherdir, key, &settings, json),
        Command::Fsck {
            cipherdir,
            recipient_key,
            recipient_file,
            json,
        } => {
            let recipient = match (recipient_key, recipient_file) {
                (Some(k), _) => Some(Recipient::KeyService(k)),
                (None, Some(f)) => Some(Recipient::File(f)),
                (None, None) => None,
            };
            fsck(g, &cipherdir, recipient.as_ref(), json)
        }
    }
}

fn init(
    g: &Global,
    cipherdir: &Path,
    key: Option<&str>,
    recipient_key: Option<String>,
    settings: &Settings,
) -> Result<(), Failure> {
    let mut opts = settings.options()?;
    opts.recipient_key = recipient_key;
    crate::volume::check_init_target(cipherdir)?;
    let (ks, key) = key_service_for_key(g, key)?;
    let cfg = Volume::init(cipherdir, &*ks, &key, &opts)?;
    print_result(
        g.output,
        &config_json(&cfg, cipherdir),
        &format!(
            "{}\nCreated {}volume {} under {} (key store {}; back it up).",
            config_text(&cfg, cipherdir),
            if cfg.recipient.is_some() {
                "write-only "
            } else {
                ""
            },
            cipherdir.display(),
            cfg.master_key_arn,
            if cfg.key_provider == "local" {
                g.store_dir().display().to_string()
            } else {
                "AWS KMS".into()
            }
        ),
    );
    Ok(())
}

fn info(g: &Global, cipherdir: &Path) -> Result<(), Failure> {
    let (cfg, _) = VolumeConfig::read_unverified(cipherdir)?;
    print_result(
        g.output,
        &config_json(&cfg, cipherdir),
        &config_text(&cfg, cipherdir),
    );
    Ok(())
}

fn rewrap(g: &Global, cipherdir: &Path) -> Result<(), Failure> {
    let ks = key_service_for_volume(g, cipherdir)?;
    let (old, new) = Volume::rewrap(cipherdir, &*ks)?;
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

fn fsck(
    g: &Global,
    cipherdir: &Path,
    recipient: Option<&Recipient>,
    json: bool,
) -> Result<(), Failure> {
    let ks = match recipient {
        Some(Recipient::File(_)) => None,
        _ => Some(key_service_for_volume(g, cipherdir)?),
    };
    let r = crate::snapshot::fsck::fsck(cipherdir, ks.as_deref(), recipient)?;
    let out = if json { Output::Json } else { g.output };
    let mut text: Vec<String> = r
        .problems
        .iter()
        .map(|p| match &p.path {
            Some(pp) => format!("{pp} ({}): {}", p.backing_path, p.problem),
            None => format!("backing {}: {}", p.backing_path, p.problem),
        })
        .collect();
    text.extend(r.warnings.iter().map(|w| {
        format!(
            "warning: {} ({}): {}",
            w.path.as_deref().unwrap_or("?"),
            w.backing_path,
            w.problem
        )
    }));
    if r.scope == crate::snapshot::fsck::Scope::PublicKey {
        text.push(
            "checked with the public key only: structure, write sessions, headers and sizes; no content, name, symlink target or xattr was authenticated".into(),
        );
    }
    text.push(format!(
        "{}: {} directories, {} files, {} symlinks, {:.1} MiB checked; {} problems, {} warnings",
        if r.clean { "clean" } else { "NOT CLEAN" },
        r.directories,
        r.files,
        r.symlinks,
        r.bytes as f64 / 1048576.0,
        r.problems.len(),
        r.warnings.len()
    ));
    print_result(
        out,
        &serde_json::to_value(&r).unwrap_or_default(),
        &text.join("\n"),
    );
    if r.clean {
        Ok(())
    } else {
        Err(Failure::FsckProblems {
            problems: r.problems.len(),
            dir: cipherdir.display().to_string(),
        })
    }
}

/// Entry point of the binary; returns the exit code.
pub fn run() -> i32 {
    let args = match options::rewrite(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(f) => return f.tell(),
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return crate::error::clap_exit_code(&e);
        }
    };
    logging::init();
    match run_cmd(cli) {
        Ok(()) => exitcodes::OK,
        Err(f) => f.tell(),
    }
}

/// The command tree as clap sees it (for help checks, completions and man pages).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}
