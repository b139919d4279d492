//! `snapshot push|pull|list|verify|delete|gc`: snapshots in an object store
//! (`s3://BUCKET[/PREFIX]`, feature `s3`) or a directory (`file:///PATH`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::copy_cmd::{init_options, OptSettings};
use super::{
    key_service_for_config, key_service_for_key, key_service_for_volume, mount, print_result,
    Failure, Global, Output,
};
use crate::kms::KeyService;
use crate::snapshot::remote::{
    self, pull, push, store::TransferOptions, sweep, verify, RemoteError,
};
use crate::volume::VolumeConfig;

#[derive(clap::Args, Debug, Clone)]
pub struct Transfer {
    /// Transfers in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// At most this many bytes per second over all transfers (suffix K, M or G: powers of 1024).
    #[arg(long, value_name = "BYTES", value_parser = parse_rate)]
    limit_rate: Option<u64>,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a positive number of bytes (suffix K, M or G)"))
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Upload a point-in-time snapshot of CIPHERDIR to the repository URL (only the chunks it lacks).
    Push {
        /// The volume's backing directory (mounted or not).
        cipherdir: PathBuf,
        /// The repository: file:///PATH or s3://BUCKET[/PREFIX].
        url: String,
        /// The snapshot's name (default: the UTC time, YYYYMMDDTHHMMSSZ).
        #[arg(long)]
        name: Option<String>,
        /// Wrap the manifest's data key under this key (default: the volume's master key).
        #[arg(long)]
        key: Option<String>,
        /// Sign the manifest with this asymmetric SIGN_VERIFY key.
        #[arg(long, value_name = "KEY")]
        sign_key: Option<String>,
        #[command(flatten)]
        transfer: Transfer,
        /// Print the summary as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    /// Restore URL/NAME as a new cipher directory DST (checked before it is moved into place).
    Pull {
        /// The snapshot: REPOSITORY_URL/NAME.
        snapshot: String,
        /// The new volume's backing directory (must not exist).
        dst: PathBuf,
        /// Restore under this master key instead (then --mode applies).
        #[arg(long)]
        key: Option<String>,
        /// With --key: rekey (data keys re-wrapped) or reencrypt (every block).
        #[arg(long, value_enum, default_value_t = crate::snapshot::Mode::Rekey, requires = "key")]
        mode: crate::snapshot::Mode,
        #[command(flatten)]
        settings: OptSettings,
        #[command(flatten)]
        manifest: ManifestKey,
        #[command(flatten)]
        signed: SignedBy,
        #[command(flatten)]
        transfer: Transfer,
        /// Print the summary as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    /// The repository's snapshots: name, time stored, manifest size (no key needed).
    List {
        /// The repository: file:///PATH or s3://BUCKET[/PREFIX].
        url: String,
        /// Print the list as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    /// Check URL/NAME without restoring it: the manifest and every chunk it names.
    Verify {
        /// The snapshot: REPOSITORY_URL/NAME.
        snapshot: String,
        #[command(flatten)]
        manifest: ManifestKey,
        #[command(flatten)]
        signed: SignedBy,
        #[command(flatten)]
        transfer: Transfer,
        /// Print the report as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    /// Remove URL/NAME, then delete the chunks no snapshot refers to.
    Delete {
        /// The snapshot: REPOSITORY_URL/NAME.
        snapshot: String,
        #[command(flatten)]
        manifest: ManifestKey,
        /// Print the summary as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
    /// Delete the chunks no snapshot in the repository URL refers to.
    Gc {
        /// The repository: file:///PATH or s3://BUCKET[/PREFIX].
        url: String,
        #[command(flatten)]
        manifest: ManifestKey,
        /// Print the summary as JSON (same as --output json).
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct ManifestKey {
    /// The key service that opens the manifests is the one holding this key
    /// (an AWS KMS key ARN); default: the local key store (or --agent).
    #[arg(long, value_name = "KEY")]
    manifest_key: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SignedBy {
    /// Require the manifest's signature by this SIGN_VERIFY key (an unsigned
    /// or otherwise signed snapshot is refused).
    #[arg(long, value_name = "KEY")]
    signed_by: Option<String>,
}

/// The key service that opens manifests.
fn manifest_service(g: &Global, k: &ManifestKey) -> Result<Box<dyn KeyService>, Failure> {
    match &k.manifest_key {
        Some(key) => Ok(key_service_for_key(g, Some(key))?.0),
        None if g.agent.is_some() => Ok(g.agent_service(crate::kms::local::DEFAULT_ALIAS)),
        None => Ok(Box::new(g.open_store()?)),
    }
}

fn open_store(
    url: &str,
    t: Option<&Transfer>,
) -> Result<Box<dyn remote::store::ObjectStore>, Failure> {
    let mut opts = TransferOptions::default();
    if let Some(t) = t {
        opts.jobs = usize::from(t.jobs);
    }
    Ok(remote::open(url, opts)?)
}

fn is_terminal_err(out: Output) -> bool {
    use std::io::IsTerminal;
    out == Output::Text && std::io::stderr().is_terminal() && std::io::stdout().is_terminal()
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

pub fn run(g: &Global, c: RemoteCommand) -> Result<(), Failure> {
    match c {
        RemoteCommand::Push {
            cipherdir,
            url,
            name,
            key,
            sign_key,
            transfer,
            json,
        } => push_cmd(g, &cipherdir, &url, name, (key, sign_key), &transfer, json),
        RemoteCommand::Pull {
            snapshot,
            dst,
            key,
            mode,
            settings,
            manifest,
            signed,
            transfer,
            json,
        } => pull_cmd(
            g,
            &snapshot,
            &dst,
            key,
            mode,
            &settings,
            (&manifest, &signed),
            &transfer,
            json,
        ),
        RemoteCommand::List { url, json } => {
            let out = if json { Output::Json } else { g.output };
            let store = open_store(&url, None)?;
            let l = verify::list(&*store)?;
            let text: Vec<String> = l
                .iter()
                .map(|s| format!("{}\t{}\t{}", s.name, s.stored, s.manifest_bytes))
                .collect();
            print_result(
                out,
                &json!({ "Url": url, "Snapshots": l }),
                &text.join("\n"),
            );
            Ok(())
        }
        RemoteCommand::Verify {
            snapshot,
            manifest,
            signed,
            transfer,
            json,
        } => verify_cmd(g, snapshot, (&manifest, &signed), &transfer, json),
        RemoteCommand::Delete {
            snapshot,
            manifest,
            json,
        } => {
            let (url, name) = remote::split_snapshot_url(&snapshot)?;
            let store = open_store(&url, None)?;
            let ks = manifest_service(g, &manifest)?;
            let s = sweep::delete(&*store, &*ks, &name)?;
            print_sweep(g, json, &url, &s);
            Ok(())
        }
        RemoteCommand::Gc {
            url,
            manifest,
            json,
        } => {
            let store = open_store(&url, None)?;
            let ks = manifest_service(g, &manifest)?;
            let s = sweep::sweep(&*store, &*ks)?;
            print_sweep(g, json, &url, &s);
            Ok(())
        }
    }
}

fn print_sweep(g: &Global, json: bool, url: &str, s: &sweep::SweepStats) {
    let out = if json { Output::Json } else { g.output };
    let what = match &s.deleted {
        Some(n) => format!("snapshot delete: {n} removed; "),
        None => "snapshot gc: ".to_owned(),
    };
    let mut text = format!(
        "{what}{} chunks ({:.1} MiB) deleted; {} chunks referenced by {} snapshots",
        s.chunks_deleted,
        mib(s.bytes_deleted),
        s.chunks_referenced,
        s.manifests
    );
    if s.push_running {
        let kept = format!(
            "{} unreferenced chunks kept: a push is running; run `envelopefs snapshot gc {url}` later",
            s.chunks_kept
        );
        eprintln!("envelopefs: {kept}");
        text.push_str(&format!("\n{kept}"));
    }
    print_result(out, &serde_json::to_value(s).unwrap_or_default(), &text);
}

fn push_cmd(
    g: &Global,
    cipherdir: &Path,
    url: &str,
    name: Option<String>,
    (key, sign_key): (Option<String>, Option<String>),
    transfer: &Transfer,
    json: bool,
) -> Result<(), Failure> {
    let out = if json { Output::Json } else { g.output };
    let (cfg, _) = VolumeConfig::read_unverified(cipherdir)?;
    let (ks, key) = match key {
        Some(k) => key_service_for_key(g, Some(&k))?,
        None if cfg.is_write_only_format() => {
            return Err(Failure::Usage(format!(
                "{} is a write-only volume (format 2), which has no volume master key to wrap the manifest: name one with --key",
                cipherdir.display()
            )))
        }
        None => (key_service_for_volume(g, cipherdir)?, cfg.master_key_arn.clone()),
    };
    let name = name.unwrap_or_else(|| remote::default_name(crate::sys::now_secs()));
    let store = open_store(url, Some(transfer))?;
    let opts = push::PushOptions {
        name,
        key,
        jobs: usize::from(transfer.jobs),
        limit_rate: transfer.limit_rate,
        progress: is_terminal_err(out),
        sign_key,
    };
    let mp = mount::mountpoint_of(cipherdir);
    let s = push::push(&*store, cipherdir, mp.as_deref(), &*ks, &opts)?;
    print_result(
        out,
        &serde_json::to_value(&s).unwrap_or_default(),
        &format!(
            "snapshot push: {} -> {}/{}: {} entries ({} files, {:.1} MiB scanned); {:.1} MiB uploaded ({} chunks), {:.1} MiB already stored ({} chunks) in {:.2} s",
            cipherdir.display(), s.url, s.name, s.entries, s.files, mib(s.bytes_scanned), mib(s.bytes_uploaded), s.chunks_uploaded, mib(s.bytes_skipped), s.chunks_skipped, s.seconds
        ),
    );
    Ok(())
}

/// Pull into a staging copy, then `snapshot copy` it to `dst` under `key`.
#[allow(clippy::too_many_arguments)]
fn pull_under_key(
    g: &Global,
    store: &dyn remote::store::ObjectStore,
    m: &remote::manifest::Manifest,
    dst: &Path,
    opts: &pull::PullOptions,
    key: &str,
    mode: crate::snapshot::Mode,
    settings: &OptSettings,
) -> Result<pull::PullStats, Failure> {
    let config = remote::manifest::unb64(&m.config).unwrap_or_default();
    let (scfg, _) = VolumeConfig::parse(&config)?;
    let src_ks = key_service_for_config(g, &scfg, &format!("{}/{}", store.url(), m.name))?;
    let init = init_options(&scfg, settings, None);
    crate::volume::config::check_block_size(init.block_size)?;
    let (dst_ks, key) = key_service_for_key(g, Some(key))?;
    let copy_opts = crate::snapshot::CopyOptions {
        key,
        mode,
        init,
        progress: opts.progress,
    };
    let (s, _) = pull::pull_copy(store, m, dst, opts, |tree| {
        crate::snapshot::copy_volume(tree, dst, None, &*src_ks, &*dst_ks, &copy_opts)
    })?;
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
fn pull_cmd(
    g: &Global,
    snapshot: &str,
    dst: &Path,
    key: Option<String>,
    mode: crate::snapshot::Mode,
    settings: &OptSettings,
    (manifest, signed): (&ManifestKey, &SignedBy),
    transfer: &Transfer,
    json: bool,
) -> Result<(), Failure> {
    let out = if json { Output::Json } else { g.output };
    let (url, name) = remote::split_snapshot_url(snapshot)?;
    let store = open_store(&url, Some(transfer))?;
    let ks = manifest_service(g, manifest)?;
    let (m, _) = pull::open_snapshot(
        &*store,
        &*ks,
        manifest.manifest_key.as_deref(),
        signed.signed_by.as_deref(),
        &name,
    )?;
    let opts = pull::PullOptions {
        jobs: usize::from(transfer.jobs),
        limit_rate: transfer.limit_rate,
        progress: is_terminal_err(out),
    };
    let s = match key {
        None => pull::pull(&*store, &m, dst, &opts)?,
        Some(k) => pull_under_key(g, &*store, &m, dst, &opts, &k, mode, settings)?,
    };
    print_result(
        out,
        &serde_json::to_value(&s).unwrap_or_default(),
        &format!(
            "snapshot pull: {url}/{name} -> {}: {} entries ({} files, {:.1} MiB), {:.1} MiB downloaded ({} chunks), {:.1} MiB reused ({} chunks) in {:.2} s",
            dst.display(), s.entries, s.files, mib(s.bytes), mib(s.bytes_downloaded), s.chunks_downloaded, mib(s.bytes_reused), s.chunks_reused, s.seconds
        ),
    );
    Ok(())
}

fn verify_cmd(
    g: &Global,
    snapshot: String,
    (manifest, signed): (&ManifestKey, &SignedBy),
    transfer: &Transfer,
    json: bool,
) -> Result<(), Failure> {
    let out = if json { Output::Json } else { g.output };
    let (url, name) = remote::split_snapshot_url(&snapshot)?;
    let store = open_store(&url, Some(transfer))?;
    let ks = manifest_service(g, manifest)?;
    let r = verify::verify(
        &*store,
        &*ks,
        manifest.manifest_key.as_deref(),
        signed.signed_by.as_deref(),
        &name,
        usize::from(transfer.jobs),
    )?;
    for d in &r.damaged {
        eprintln!("envelopefs: {d}");
    }
    print_result(
        out,
        &serde_json::to_value(&r).unwrap_or_default(),
        &format!(
            "snapshot verify: {url}/{name}: {} entries, {} chunks ({:.1} MiB) checked, {}",
            r.entries,
            r.chunks,
            mib(r.bytes),
            if r.damaged.is_empty() {
                "all intact".to_owned()
            } else {
                format!("{} damaged or missing", r.damaged.len())
            }
        ),
    );
    if r.damaged.is_empty() {
        Ok(())
    } else {
        Err(RemoteError::VerifyFailed {
            count: r.damaged.len(),
            snapshot,
        }
        .into())
    }
}
