//! `snapshot create`, `snapshot copy` and `import`: their arguments, and
//! the summary each prints.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::{
    key_service_for_key, key_service_for_volume, mount, print_result, Failure, Global, Output,
    Settings,
};
use crate::volume::{InitOptions, KeyLocation, VolumeConfig};

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// A consistent copy of CIPHERDIR at SNAPDIR with the same keys (also while mounted).
    Create {
        /// The volume's backing directory (mounted or not).
        cipherdir: PathBuf,
        /// Where the snapshot goes (must not exist).
        snapdir: PathBuf,
        /// Print the summary as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    /// A new volume at DST under KEY (or sealed to a recipient key) with SRC's content.
    ///
    /// SRC and DST may each be an ordinary or a write-only volume: a
    /// write-only SRC is read through the key service, which must hold the
    /// recipient's private key; a write-only side needs --mode reencrypt.
    Copy {
        /// The source volume's backing directory (mounted or not).
        src: PathBuf,
        /// The new volume's backing directory (must not exist).
        dst: PathBuf,
        /// Master key of the copy: key ID, key ARN, alias name or alias ARN.
        #[arg(long, required_unless_present = "recipient_key")]
        key: Option<String>,
        /// Make the copy a write-only volume (format 2) sealed to this
        /// asymmetric key (RSA ENCRYPT_DECRYPT or ECC KEY_AGREEMENT), as
        /// `init --recipient-key`; needs --mode reencrypt.
        #[arg(long, value_name = "KEY", conflicts_with = "key")]
        recipient_key: Option<String>,
        /// rekey: data keys re-wrapped under KEY, blocks copied as they are; reencrypt: every block re-encrypted.
        #[arg(long, value_enum, default_value_t = crate::snapshot::Mode::Rekey)]
        mode: crate::snapshot::Mode,
        #[command(flatten)]
        settings: OptSettings,
        /// Print the summary as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Remote(super::remote_cmd::RemoteCommand),
}

/// The key of a new volume made by `import`.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// Master key: key ID, key ARN, alias name or alias ARN (default alias/envelopefs/default).
    #[arg(long)]
    key: Option<String>,
    /// Make a write-only volume (format 2) sealed to this asymmetric key
    /// (RSA ENCRYPT_DECRYPT or ECC KEY_AGREEMENT), as `init --recipient-key`.
    #[arg(long, value_name = "KEY", conflicts_with = "key")]
    recipient_key: Option<String>,
}

/// Settings of a copy: each defaults to the source's.
#[derive(clap::Args, Debug, Clone)]
pub struct OptSettings {
    /// Plaintext block size of the copy in bytes (needs --mode reencrypt).
    #[arg(long)]
    block_size: Option<u32>,
    /// Where each file's wrapped data key lives in the copy.
    #[arg(long, value_enum)]
    key_location: Option<KeyLocation>,
    /// Names in the clear in the copy.
    #[arg(long)]
    plaintext_names: bool,
    /// Encrypted names in the copy (when the source has plain names).
    #[arg(long, conflicts_with = "plaintext_names")]
    encrypted_names: bool,
    /// Encoded names longer than this become hashed names in the copy (64..255).
    #[arg(long)]
    long_name_max: Option<u32>,
}

/// The settings of a copy of a volume configured as `scfg`: each as given,
/// else the source's.
pub fn init_options(
    scfg: &VolumeConfig,
    settings: &OptSettings,
    recipient_key: Option<String>,
) -> InitOptions {
    InitOptions {
        block_size: settings.block_size.unwrap_or(scfg.block_size),
        key_location: settings.key_location.unwrap_or(scfg.key_location),
        // A write-only copy's names are keyed hashes: plain only
        // when asked for (and then refused).
        plaintext_names: if settings.plaintext_names {
            true
        } else if settings.encrypted_names || recipient_key.is_some() {
            false
        } else {
            scfg.name_scheme == crate::volume::config::NAME_SCHEME_PLAIN
        },
        long_name_max: settings.long_name_max.unwrap_or(scfg.long_name_max),
        recipient_key,
    }
}

/// Progress bars (on stderr) only for a person at a terminal: none when
/// the output or stderr goes to a pipe or a file.
fn is_terminal_err() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::io::stdout().is_terminal()
}

fn print_stats(out: Output, what: &str, s: &crate::snapshot::Stats, dst: &std::path::Path) {
    let rate = s.bytes as f64 / s.seconds.max(0.001) / 1048576.0;
    print_result(
        out,
        &json!({"Operation": what, "Destination": dst.display().to_string(), "Files": s.files, "Entries": s.entries, "Bytes": s.bytes, "Seconds": s.seconds, "Skipped": s.skipped}),
        &format!(
            "{what}: {} entries ({} files, {:.1} MiB) in {:.2} s ({rate:.1} MiB/s) -> {}{}",
            s.entries,
            s.files,
            s.bytes as f64 / 1048576.0,
            s.seconds,
            dst.display(),
            if s.skipped.is_empty() {
                String::new()
            } else {
                // The result, not a log: plaintext names go to the user who
                // asked for the copy, never to a log line.
                format!(
                    "; {} entries skipped:\n  {}",
                    s.skipped.len(),
                    s.skipped.join("\n  ")
                )
            }
        ),
    );
}

pub fn snapshot(g: &Global, c: SnapshotCommand) -> Result<(), Failure> {
    match c {
        SnapshotCommand::Remote(r) => super::remote_cmd::run(g, r),
        SnapshotCommand::Create {
            cipherdir,
            snapdir,
            json,
        } => {
            let out = if json { Output::Json } else { g.output };
            let mp = mount::mountpoint_of(&cipherdir);
            let progress = is_terminal_err() && out == Output::Text;
            let s = crate::snapshot::snapshot_create(&cipherdir, &snapdir, mp.as_deref(), progress)
                .map_err(Failure::Copy)?;
            print_stats(out, "snapshot create", &s, &snapdir);
            Ok(())
        }
        SnapshotCommand::Copy {
            src,
            dst,
            key,
            recipient_key,
            mode,
            settings,
            json,
        } => {
            let out = if json { Output::Json } else { g.output };
            let (scfg, _) = VolumeConfig::read_unverified(&src)?;
            let init = init_options(&scfg, &settings, recipient_key.clone());
            crate::volume::config::check_block_size(init.block_size)?;
            let src_ks = key_service_for_volume(g, &src)?;
            let (dst_ks, key) = key_service_for_key(g, key.or(recipient_key).as_deref())?;
            let opts = crate::snapshot::CopyOptions {
                key,
                mode,
                init,
                progress: is_terminal_err() && out == Output::Text,
            };
            let src_mount = mount::mountpoint_of(&src);
            let s = crate::snapshot::copy_volume(
                &src,
                &dst,
                src_mount.as_deref(),
                &*src_ks,
                &*dst_ks,
                &opts,
            )
            .map_err(Failure::Copy)?;
            print_stats(
                out,
                &format!(
                    "snapshot copy --mode {}",
                    format!("{mode:?}").to_lowercase()
                ),
                &s,
                &dst,
            );
            Ok(())
        }
    }
}

pub fn import(
    g: &Global,
    plaindir: &Path,
    cipherdir: &Path,
    key: KeyArgs,
    settings: &Settings,
    json: bool,
) -> Result<(), Failure> {
    let out = if json { Output::Json } else { g.output };
    let mut init = settings.options()?;
    init.recipient_key = key.recipient_key.clone();
    let (ks, key) = key_service_for_key(g, key.key.or(key.recipient_key).as_deref())?;
    let opts = crate::snapshot::CopyOptions {
        key,
        mode: crate::snapshot::Mode::Reencrypt,
        init,
        progress: is_terminal_err() && out == Output::Text,
    };
    let s =
        crate::snapshot::import_plain(plaindir, cipherdir, &*ks, &opts).map_err(Failure::Copy)?;
    print_stats(out, "import", &s, cipherdir);
    Ok(())
}
