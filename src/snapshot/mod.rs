//! Snapshots and copies of volumes: `snapshot create` (a consistent copy with
//! the same keys), `snapshot copy --mode rekey|reencrypt` (a new volume under
//! another key), `import` (a plain tree into a new volume) and `fsck`.
//!
//! Copies are crash-safe: the destination is built under a temporary name
//! beside it and renamed into place at the end; an existing destination is
//! refused; the source is only read. Ctrl-C or SIGTERM stops a copy and
//! removes its partial; the partial of a run killed outright is removed by
//! the next run to the same destination.

pub mod control;
mod copy;
mod dest;
pub mod fsck;
mod fsck_public;
mod interrupt;
mod partial;
mod progress;
pub mod remote;
mod xattrs;

use std::path::Path;

use crate::error::VolumeError;
use crate::kms::KeyService;
use crate::volume::{CacheOptions, InitOptions, Volume, VolumeConfig};
use copy::{Copier, Source};
use dest::{refuse_inside, Forbidden};
use interrupt::Interrupt;
use partial::Partial;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// New volume key; every data key re-wrapped, blocks carried over unchanged.
    Rekey,
    /// New data keys and file IDs; every block re-encrypted.
    Reencrypt,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stats {
    pub files: u64,
    pub entries: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Volume(#[from] VolumeError),
    #[error("{0}")]
    Entry(String),
    #[error("{0}")]
    Refused(String),
    /// The destination lies inside what is copied (or its mount).
    #[error("{0}")]
    DestinationInside(String),
    /// The mount daemon dropped the snapshot's hold before the copy ended.
    #[error("{0}")]
    HoldLost(String),
    /// Stopped by this signal (SIGINT, SIGTERM); the partial copy is removed.
    #[error("interrupted by {}; the partial copy was removed", signal_hook::low_level::signal_name(*.0).unwrap_or("a signal"))]
    Interrupted(i32),
}

fn refuse_existing(dst: &Path) -> Result<(), CopyError> {
    if dst.symlink_metadata().is_ok() {
        return Err(CopyError::Refused(format!(
            "{} exists; a copy goes to a new place",
            dst.display()
        )));
    }
    Ok(())
}

/// Build a copy with `build` in a locked partial beside `dst` (after
/// removing partials of `dst` that no run holds), then move it into place
/// (never over an existing entry). A failed or interrupted build leaves
/// nothing behind and never carries the destination's name.
fn build_then_move(
    dst: &Path,
    build: impl FnOnce(&Path, &Interrupt) -> Result<Stats, CopyError>,
) -> Result<Stats, CopyError> {
    let interrupt = Interrupt::catch()?;
    partial::remove_stale(dst);
    let part = Partial::create(dst)?;
    let built = build(&part.tree(), &interrupt).and_then(|s| interrupt.check().map(|()| s));
    let moved = built.and_then(|s| {
        part.finish().map(|()| s).map_err(|e| {
            CopyError::Refused(format!(
                "cannot move the finished copy to {}: {e}",
                dst.display()
            ))
        })
    });
    match moved {
        Ok(s) => Ok(s),
        Err(e) => {
            let path = part.path();
            match part.discard() {
                Ok(()) => Err(e),
                Err(r) => Err(CopyError::Entry(format!(
                    "{e}; and the partial copy {} could not be removed: {r}",
                    path.display()
                ))),
            }
        }
    }
}

/// A point-in-time copy of a volume's backing tree (same keys), holding the
/// running mount's changes for the duration of the copy if it is mounted.
pub fn snapshot_create(
    cipherdir: &Path,
    snapdir: &Path,
    mountpoint: Option<&Path>,
    progress: bool,
) -> Result<Stats, CopyError> {
    VolumeConfig::read_unverified(cipherdir)?;
    refuse_existing(snapdir)?;
    let canon = cipherdir
        .canonicalize()
        .map_err(|e| VolumeError::io(cipherdir, e))?;
    // Before the hold: stat-ing the mount is a request to its daemon.
    let mut forbidden = vec![Forbidden::Tree(&canon, "the cipher directory")];
    forbidden.extend(mountpoint.map(Forbidden::Mount));
    refuse_inside(snapdir, &forbidden)?;
    if let Some(mp) = mountpoint {
        control::flush_mount(mp).map_err(|e| {
            CopyError::Entry(format!(
                "cannot flush the mount {} before the snapshot: {e}",
                mp.display()
            ))
        })?;
    }
    let hold = control::Hold::acquire(&canon)
        .map_err(|e| CopyError::Refused(format!("the mount daemon did not hold writes: {e}")))?;
    if mountpoint.is_some() && hold.is_none() {
        return Err(CopyError::Refused(
            "the volume is mounted but its daemon has no control socket; unmount it or retry"
                .into(),
        ));
    }
    build_then_move(snapdir, move |tmp, interrupt| {
        let lost = hold.as_ref().map(|h| h.lost_flag());
        let r = Copier::new(Source::Raw, None, progress)
            .cancelled_by(lost)
            .interrupted_by(interrupt)
            .run(&canon, tmp);
        // Consistent only if the hold lasted until the copy was done.
        let lasted = hold.is_none_or(|h| h.release());
        if let Err(CopyError::Interrupted(s)) = r {
            return Err(CopyError::Interrupted(s));
        }
        if !lasted {
            return Err(CopyError::HoldLost(
                "the mount daemon dropped the snapshot's hold before the copy ended (no heartbeat for 30 s, or past the mount's --max-hold); the partial copy was removed".into(),
            ));
        }
        r
    })
}

/// Options of `snapshot copy` and `import`.
pub struct CopyOptions {
    pub key: String,
    pub mode: Mode,
    pub init: InitOptions,
    pub progress: bool,
}

/// `--mode rekey` keeps every data key and block and re-wraps the data keys
/// from one volume key to another: a write-only volume has none.
const REKEY_WRITE_ONLY: &str = "--mode rekey cannot copy from or to a write-only volume (format 2): it keeps each file's data key and blocks and re-wraps them under the new volume key, and a write-only volume has no volume key; use --mode reencrypt";

fn refuse_rekey_write_only(src: &VolumeConfig, opts: &CopyOptions) -> Result<(), CopyError> {
    let write_only = src.is_write_only_format() || opts.init.recipient_key.is_some();
    if opts.mode == Mode::Rekey && write_only {
        return Err(CopyError::Refused(REKEY_WRITE_ONLY.into()));
    }
    Ok(())
}

/// A write-only source whose write session does not open (its file garbled,
/// or the key service refused to unseal it) would lose everything that
/// session wrote: the copy fails instead.
fn refuse_unopened_sessions(src: &Path, sv: &Volume) -> Result<(), CopyError> {
    let broken = sv
        .check_sessions()?
        .into_iter()
        .find(|s| s.problem.is_some());
    match broken {
        Some(s) => Err(CopyError::Entry(format!(
            "{}: the write session {} does not open ({}); a copy would leave out everything it wrote",
            src.display(),
            s.file_name,
            s.problem.unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// A new volume at `dst` under `opts.key` with the content of the volume `src`.
/// `src_mount` is where `src` is mounted, if it is.
pub fn copy_volume(
    src: &Path,
    dst: &Path,
    src_mount: Option<&Path>,
    src_ks: &dyn KeyService,
    dst_ks: &dyn KeyService,
    opts: &CopyOptions,
) -> Result<Stats, CopyError> {
    let (scfg, _) = VolumeConfig::read_unverified(src)?;
    refuse_rekey_write_only(&scfg, opts)?;
    let sv = Volume::open(src, src_ks, CacheOptions::default())?;
    refuse_unopened_sessions(src, &sv)?;
    refuse_existing(dst)?;
    let mut forbidden = vec![Forbidden::Tree(sv.root(), "the cipher directory")];
    forbidden.extend(src_mount.map(Forbidden::Mount));
    refuse_inside(dst, &forbidden)?;
    if opts.mode == Mode::Rekey && opts.init.block_size != sv.config().block_size {
        return Err(CopyError::Refused(format!(
            "--mode rekey carries blocks over unchanged, so it cannot change the block size ({} -> {}); use --mode reencrypt",
            sv.config().block_size,
            opts.init.block_size
        )));
    }
    build_then_move(dst, |tmp, interrupt| {
        Volume::init(tmp, dst_ks, &opts.key, &opts.init)?;
        let dv = Volume::open(tmp, dst_ks, CacheOptions::default())?;
        Copier::new(Source::Volume(&sv, opts.mode), Some(&dv), opts.progress)
            .interrupted_by(interrupt)
            .run(sv.root(), tmp)
    })
}

/// Encrypt a plain directory tree into a new volume at `dst`.
pub fn import_plain(
    plain: &Path,
    dst: &Path,
    ks: &dyn KeyService,
    opts: &CopyOptions,
) -> Result<Stats, CopyError> {
    let meta = std::fs::metadata(plain).map_err(|e| VolumeError::io(plain, e))?;
    if !meta.is_dir() {
        return Err(CopyError::Refused(format!(
            "{} is not a directory",
            plain.display()
        )));
    }
    refuse_existing(dst)?;
    refuse_inside(
        dst,
        &[Forbidden::Tree(plain, "the directory being imported")],
    )?;
    build_then_move(dst, |tmp, interrupt| {
        Volume::init(tmp, ks, &opts.key, &opts.init)?;
        let dv = Volume::open(tmp, ks, CacheOptions::default())?;
        Copier::new(Source::Plain, Some(&dv), opts.progress)
            .interrupted_by(interrupt)
            .run(plain, tmp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::FileContent;
    use std::os::fd::AsFd;

    fn data_keys(vol: &Volume) -> Vec<[u8; 32]> {
        let mut keys = Vec::new();
        for e in std::fs::read_dir(vol.root()).unwrap() {
            let p = e.unwrap().path();
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            if n.contains('.') {
                continue;
            }
            let f = std::fs::File::open(&p).unwrap();
            vol.key_cache().flush();
            let c = FileContent::new();
            keys.push(*c.crypto(vol, f.as_fd()).unwrap().data_key().expose());
        }
        keys.sort();
        keys
    }

    #[test]
    fn reencrypt_shares_no_data_key_and_rekey_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let ks = crate::kms::local::test_store(&dir.path().join("ks"));
        let k1 = ks.default_key().unwrap();
        let k2 = ks.create_key("other", "AWS_KMS").unwrap().key_id;
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        for i in 0..10 {
            std::fs::write(plain.join(format!("f{i}")), vec![i as u8; 10_000]).unwrap();
        }
        let opts = |key: &str, mode| CopyOptions {
            key: key.to_owned(),
            mode,
            init: InitOptions::default(),
            progress: false,
        };
        let src = dir.path().join("src");
        import_plain(&plain, &src, &ks, &opts(&k1, Mode::Reencrypt)).unwrap();
        let re = dir.path().join("re");
        let rk = dir.path().join("rk");
        copy_volume(&src, &re, None, &ks, &ks, &opts(&k2, Mode::Reencrypt)).unwrap();
        copy_volume(&src, &rk, None, &ks, &ks, &opts(&k2, Mode::Rekey)).unwrap();
        let open = |p: &Path| Volume::open(p, &ks, CacheOptions::default()).unwrap();
        let (s, r, k) = (
            data_keys(&open(&src)),
            data_keys(&open(&re)),
            data_keys(&open(&rk)),
        );
        assert_eq!(s.len(), 10);
        assert!(
            r.iter().all(|x| !s.contains(x)),
            "reencrypt reuses no data key"
        );
        assert_eq!(s, k, "rekey keeps every data key");
        assert_ne!(
            open(&src).volume_key().unwrap().expose(),
            open(&rk).volume_key().unwrap().expose()
        );
    }

    /// A symlink target that fits format 1 but not format 2 (whose sealed
    /// targets are longer) is skipped and listed by a write-only copy.
    #[test]
    fn write_only_copy_skips_a_target_too_long_for_format_2() {
        let dir = tempfile::tempdir().unwrap();
        let ks = crate::kms::local::test_store(&dir.path().join("ks"));
        let r = ks
            .create_key_with_spec("r", "AWS_KMS", "ECC_NIST_P256", "KEY_AGREEMENT")
            .unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let fits = "f".repeat(Volume::MAX_SYMLINK_TARGET - 16);
        let too_long = "t".repeat(Volume::MAX_SYMLINK_TARGET);
        std::os::unix::fs::symlink(&fits, plain.join("fits")).unwrap();
        std::os::unix::fs::symlink(&too_long, plain.join("long")).unwrap();
        let opts = CopyOptions {
            key: r.key_id.clone(),
            mode: Mode::Reencrypt,
            init: InitOptions {
                recipient_key: Some(r.key_id),
                ..InitOptions::default()
            },
            progress: false,
        };
        let dst = dir.path().join("v2");
        let s = import_plain(&plain, &dst, &ks, &opts).unwrap();
        assert_eq!(
            s.skipped,
            vec!["long: symlink target too long to encrypt; not copied".to_owned()]
        );
        let v = Volume::open(&dst, &ks, CacheOptions::default()).unwrap();
        let root = crate::sys::open_dir_path(&dst).unwrap();
        let ctx = v.dir_ctx(root.as_fd(), true).unwrap();
        let (good, bad) = v.list_dir(root.as_fd(), &ctx).unwrap();
        assert!(bad.is_empty());
        assert_eq!(good.len(), 1);
        let raw = crate::sys::readlinkat(root.as_fd(), &good[0].backing).unwrap();
        assert_eq!(v.open_symlink(&raw).unwrap(), fits.as_bytes());
    }
}
