//! `mount` and `umount`: checks, the volume lock and the FUSE session (the
//! daemon around it, its logs and signals: daemon.rs).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::{daemon, Failure, Global};
use crate::error::VolumeError;
use crate::fs::{EnvelopeFs, FsOptions};
use crate::sys;
use crate::volume::config::LOCK_FILE;
use crate::volume::{CacheOptions, Recipient, Volume};

#[derive(Args, Debug)]
pub struct MountArgs {
    /// The volume's backing directory (made by init).
    pub cipherdir: PathBuf,
    /// The empty directory to show the plaintext at.
    pub mountpoint: PathBuf,
    /// Stay in the foreground (serve until unmounted).
    #[arg(long)]
    pub foreground: bool,
    /// Mount read-only (mount(8) option `ro`).
    #[arg(long)]
    pub read_only: bool,
    /// Write-only: mount a volume made with `init --recipient-key` holding
    /// only the recipient's public key. New files and directories can be
    /// made and written; nothing written before this mount can be read
    /// (EACCES) or listed. Needs --recipient-key or --recipient-file.
    #[arg(long, requires = "recipient")]
    pub write_only: bool,
    /// The volume's recipient key in the key service (its public key is
    /// fetched with GetPublicKey; no Decrypt is needed). Never taken from
    /// the cipher directory, which others may write.
    #[arg(long, value_name = "KEY", group = "recipient", requires = "write_only")]
    pub recipient_key: Option<String>,
    /// The volume's recipient public key in a file (DER SubjectPublicKeyInfo,
    /// as `kms get-public-key` gives it, or PEM): no key service is used.
    #[arg(
        long,
        value_name = "FILE",
        group = "recipient",
        requires = "write_only"
    )]
    pub recipient_file: Option<PathBuf>,
    /// Let other users in (implies default_permissions; files they create are theirs).
    #[arg(long)]
    pub allow_other: bool,
    /// Honour device nodes found in the mount (root only). The default is
    /// `nodev`: a device node planted in the cipher directory would open the
    /// device for anyone who can reach the mount. Use only if you trust
    /// everyone who can write the cipher directory.
    #[arg(long)]
    pub dev: bool,
    /// Honour setuid and setgid bits in the mount (root only). The default is
    /// `nosuid`: a setuid bit set on a backing file would run it as its owner.
    /// Use only if you trust everyone who can write the cipher directory.
    #[arg(long)]
    pub suid: bool,
    #[command(flatten)]
    pub daemon: super::daemon::DaemonArgs,
    /// Data keys the cache holds at most.
    #[arg(long, default_value_t = crate::volume::keycache::DEFAULT_CAPACITY)]
    pub key_cache_size: usize,
    /// Seconds a data key stays cached at most.
    #[arg(long, default_value_t = crate::volume::keycache::DEFAULT_MAX_AGE.as_secs())]
    pub key_cache_max_age: u64,
    /// Send each write to the daemon as it is made, instead of through the
    /// kernel's page cache (FUSE writeback caching, on by default): errors
    /// such as ENOSPC then surface at the write rather than at fsync or
    /// close, and changes made to the cipher directory behind the mount are
    /// seen at the next attribute refresh.
    #[arg(long)]
    pub no_writeback_cache: bool,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Requests each CPU's FUSE-over-io_uring queue holds (0 = /dev/fuse
    /// only). Used when the kernel offers it (Linux 6.14+ with
    /// /sys/module/fuse/parameters/enable_uring set to Y).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub io_uring_depth: u16,
    /// Keep the io_uring queue threads in the normal scheduling class. By
    /// default they yield their CPU to the process a reply wakes (the idle
    /// class, with a watchdog that lifts a thread that waits for its CPU).
    #[arg(long)]
    pub io_uring_no_yield: bool,
    /// Debugging: let the daemon stay dumpable, so its owner can attach a
    /// debugger and it may dump core (volume and data keys stay out of core
    /// files; per-request key schedules, the names key and plaintext may not).
    #[arg(long)]
    pub allow_core_dumps: bool,
    /// Longest a snapshot may hold changes, in seconds (default: no limit;
    /// a holder that stops sending heartbeats loses its hold after 30 s).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_hold: Option<u64>,
    /// Mount over a non-empty directory (its files stay hidden while mounted).
    #[arg(long)]
    pub nonempty: bool,
    /// Unmount after no use for this long (90s, 10m, 1h, or seconds); an
    /// open file counts as use.
    #[arg(long, value_name = "DURATION", value_parser = super::options::parse_duration)]
    pub idle: Option<Duration>,
    /// Refuse to run programs from the mount (kernel flag).
    #[arg(long)]
    pub noexec: bool,
    /// Do not update access times (kernel flag).
    #[arg(long)]
    pub noatime: bool,
}

/// One line of /proc/self/mountinfo.
#[derive(Clone)]
pub(super) struct MountEntry {
    pub(super) point: PathBuf,
    pub(super) source: String,
    /// The filesystem type: `fuse.envelopefs`, or `fuse` for mounts the
    /// fuser fork made without the subtype.
    pub(super) fstype: String,
    /// "major:minor", also the name of the mount's backing device info in /sys/class/bdi.
    pub(super) dev: String,
    /// A FUSE mount (type `fuse` or `fuse.*`).
    pub(super) fuse: bool,
    /// The user who made a FUSE mount (`user_id=` of its super options): any
    /// user may name a mount after someone else's cipher directory.
    pub(super) owner: Option<u32>,
}

/// Mount points listed in /proc/self/mountinfo, with their sources.
pub(super) fn mounts() -> Vec<MountEntry> {
    let Ok(s) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mp = f.get(4)?;
            let sep = f.iter().position(|x| *x == "-")?;
            let src = f.get(sep + 2)?;
            Some(MountEntry {
                point: PathBuf::from(unescape(mp)),
                source: unescape(src),
                dev: f.get(2)?.to_string(),
                fstype: unescape(f.get(sep + 1)?),
                fuse: f
                    .get(sep + 1)
                    .is_some_and(|t| *t == "fuse" || t.starts_with("fuse.")),
                owner: f.get(sep + 3).and_then(|o| {
                    o.split(',')
                        .find_map(|kv| kv.strip_prefix("user_id="))
                        .and_then(|n| n.parse().ok())
                }),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn check_mountpoint(mp: &Path, nonempty: bool) -> Result<PathBuf, Failure> {
    let meta = std::fs::metadata(mp)
        .map_err(|e| Failure::MountPoint(format!("mount point {}: {e}", mp.display())))?;
    if !meta.is_dir() {
        return Err(Failure::MountPoint(format!(
            "mount point {} is not a directory",
            mp.display()
        )));
    }
    let canon = mp
        .canonicalize()
        .map_err(|e| Failure::MountPoint(format!("{}: {e}", mp.display())))?;
    if mounts().iter().any(|m| m.point == canon) {
        return Err(Failure::MountPoint(format!(
            "mount point {} is already in use",
            mp.display()
        )));
    }
    // Mounting over files hides them (gocryptfs refuses too).
    let has_entries = std::fs::read_dir(&canon)
        .map_err(|e| Failure::MountPoint(format!("{}: {e}", mp.display())))?
        .next()
        .is_some();
    if has_entries && !nonempty {
        return Err(Failure::MountPoint(format!(
            "mount point {} is not empty (the mount would hide its files); pass --nonempty (-o nonempty) to mount over them",
            mp.display()
        )));
    }
    Ok(canon)
}

/// Modes and owners of backing entries are not authenticated: whoever can
/// write the cipher directory can widen who reads a file through an
/// `--allow-other` mount (a `chmod 644` on a backing file).
fn warn_if_others_write(cipherdir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::metadata(cipherdir) else {
        return;
    };
    let who = if md.uid() != 0 {
        Some(format!("its owner (uid {})", md.uid()))
    } else if md.mode() & 0o002 != 0 {
        Some("every user".to_owned())
    } else if md.mode() & 0o020 != 0 {
        Some(format!("group {}", md.gid()))
    } else {
        None
    };
    if let Some(who) = who {
        log::warn!(
            "{} is writable by {who}: with --allow-other, whoever writes it can change the modes and owners that decide who reads each file (they are not authenticated)",
            cipherdir.display()
        );
    }
}

/// The volume lock file, opened only if it is a regular file: a planted
/// fifo, device or symlink is an error at once, never a hang.
pub(super) fn open_lock(cipherdir: &Path, create: bool) -> std::io::Result<OwnedFd> {
    let dir = sys::open_user_dir(cipherdir)?;
    let name = std::ffi::OsStr::new(LOCK_FILE);
    let r = if create {
        sys::open_or_create_regular(dir.as_fd(), name, libc::O_RDONLY, 0o600)
    } else {
        sys::open_regular(dir.as_fd(), name, libc::O_RDONLY)
    };
    r.map(|(fd, _)| fd)
}

/// The volume lock, held by a read-write mount's daemon. A daemon whose
/// mount is no longer listed is going away (unmounted with umount(8), as
/// fstab, systemd and scripts do: it exits once it notices), so a mount
/// waits for its lock up to 10 s; one whose mount is listed still serves
/// it, and the mount is refused at once.
fn take_lock(cipherdir: &Path) -> Result<File, Failure> {
    const HANDOVER: Duration = Duration::from_secs(10);
    let p = cipherdir.join(LOCK_FILE);
    let f = open_lock(cipherdir, true)
        .map(File::from)
        .map_err(|e| Failure::from(VolumeError::io(&p, e)))?;
    let locked = || Failure::from(VolumeError::Locked(cipherdir.display().to_string()));
    let deadline = Instant::now() + HANDOVER;
    loop {
        match sys::flock_nb(f.as_fd(), true) {
            Ok(()) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
            Err(_) => return Err(locked()),
        }
        if !mounts_of(cipherdir).is_empty() || Instant::now() >= deadline {
            return Err(locked());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The volume, opened with every key (`mount`) or with the recipient's
/// public key only (`mount --write-only`).
fn open_volume(g: &Global, a: &MountArgs, cipherdir: &Path) -> Result<Volume, Failure> {
    let cache = CacheOptions {
        capacity: a.key_cache_size,
        max_age: Duration::from_secs(a.key_cache_max_age),
    };
    if a.write_only && a.read_only {
        return Err(Failure::Usage(
            "--write-only and --read-only exclude each other".into(),
        ));
    }
    if let Some(file) = &a.recipient_file {
        let recipient = Recipient::File(file.clone());
        return Ok(Volume::open_write_only(cipherdir, None, &recipient, cache)?);
    }
    let ks = super::key_service_for_volume(g, cipherdir)?;
    Ok(match &a.recipient_key {
        Some(key) => {
            let recipient = Recipient::KeyService(key.clone());
            Volume::open_write_only(cipherdir, Some(&*ks), &recipient, cache)?
        }
        // A write-only volume's sessions are unsealed as the mount meets
        // them: it keeps the key service (an ordinary volume drops it).
        None => Volume::open_shared(cipherdir, Arc::from(ks), cache)?,
    })
}

pub fn mount(g: &Global, a: MountArgs) -> Result<(), Failure> {
    // First, while single-threaded: it changes the environment.
    let notify = daemon::Notifier::take_from_env();
    daemon::set_log_level(&a.daemon);
    if !a.allow_core_dumps {
        // Before the key store is unlocked, not only once serving.
        let _ = sys::set_dumpable(false);
    }
    let cipherdir = a
        .cipherdir
        .canonicalize()
        .map_err(|e| Failure::NotAVolume(format!("{}: {e}", a.cipherdir.display())))?;
    if (a.dev || a.suid) && sys::geteuid() != 0 {
        return Err(Failure::Usage(
            "--dev and --suid need root (only root may honour device nodes and setuid bits)".into(),
        ));
    }
    // Refuse a non-volume before asking for any passphrase.
    crate::volume::VolumeConfig::read_unverified(&cipherdir)?;
    let mountpoint = check_mountpoint(&a.mountpoint, a.nonempty)?;
    if mountpoint.starts_with(&cipherdir) {
        return Err(Failure::MountPoint(
            "the mount point must not lie inside the cipher directory".into(),
        ));
    }
    if a.allow_other && sys::geteuid() == 0 {
        warn_if_others_write(&cipherdir);
    }
    let vol = open_volume(g, &a, &cipherdir)?;
    let lock = if a.read_only {
        None
    } else {
        Some(take_lock(&cipherdir)?)
    };
    // A refused log file is an error here, and a missing syslog socket is
    // said on the terminal, before detaching.
    let logs = daemon::LogTarget::choose(&a.daemon, a.foreground, &mountpoint)?;
    if a.foreground {
        return serve(
            vol,
            &a,
            &mountpoint,
            daemon::Ready::foreground(notify, logs),
            lock,
        );
    }
    // A mount point handed over as `/dev/fd/N` (mount.fuse3's
    // drop_privileges) is an inherited descriptor the daemon keeps.
    let keep: Vec<i32> = a
        .mountpoint
        .to_str()
        .and_then(|p| p.strip_prefix("/dev/fd/"))
        .and_then(|n| n.parse().ok())
        .into_iter()
        .collect();
    let pid = daemon::daemonize(&mountpoint, logs, &keep, |ready| {
        serve(vol, &a, &mountpoint, ready, lock)
    })?;
    // Text mode says nothing, as mount(8) does; JSON says what serves where.
    if g.output == super::Output::Json {
        super::print_result(
            g.output,
            &serde_json::json!({
                "MountPoint": mountpoint.display().to_string(),
                "CipherDir": cipherdir.display().to_string(),
                "Pid": pid,
                "ReadOnly": a.read_only,
                "WriteOnly": a.write_only,
            }),
            "",
        );
    }
    Ok(())
}

fn serve(
    vol: Volume,
    a: &MountArgs,
    mountpoint: &Path,
    ready: daemon::Ready,
    lock: Option<File>,
) -> Result<(), Failure> {
    let root = vol.root().to_owned();
    crate::volume::harden_daemon(a.allow_core_dumps);
    let r = (|| -> Result<fuser::Session<EnvelopeFs>, Failure> {
        sys::umask(0);
        let limit = sys::raise_nofile_limit();
        if limit < 65536 {
            log::warn!("open-file limit {limit}: the daemon holds one descriptor per file in use by the kernel; large trees may hit EMFILE");
        }
        let source = vol.root().display().to_string();
        let fs = EnvelopeFs::new(
            Arc::new(vol),
            FsOptions {
                read_only: a.read_only,
                // A read-only mount writes nothing, and under writeback
                // caching the kernel would keep its own size and mtime of a
                // cached file, blind to a read-write mount's changes.
                // A write-only mount may not read what partial-page
                // writeback would need, nor serve reads from pages.
                writeback_cache: !a.no_writeback_cache && !a.read_only && !a.write_only,
                write_only: a.write_only,
            },
        )
        .map_err(|source| Failure::Io {
            what: "cannot open the cipher directory".into(),
            source,
        })?;
        let mut opts = vec![
            fuser::MountOption::FSName(source),
            fuser::MountOption::Subtype("envelopefs".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        if a.read_only {
            opts.push(fuser::MountOption::RO);
        }
        opts.push(if a.dev {
            fuser::MountOption::Dev
        } else {
            fuser::MountOption::NoDev
        });
        opts.push(if a.suid {
            fuser::MountOption::Suid
        } else {
            fuser::MountOption::NoSuid
        });
        opts.extend(super::options::kernel_flags(a));
        let mut cfg = fuser::Config::default();
        cfg.mount_options = opts;
        cfg.acl = if a.allow_other {
            fuser::SessionACL::All
        } else {
            fuser::SessionACL::Owner
        };
        cfg.n_threads = Some(a.threads.clamp(1, 64));
        cfg.clone_fd = true;
        cfg.io_uring_depth = usize::from(a.io_uring_depth);
        cfg.io_uring_yield = !a.io_uring_no_yield;
        let hold = fs.hold_lock();
        let cipherdir = fs.volume().root().to_owned();
        let shared = fs.clone();
        let session = fuser::Session::new(fs, mountpoint, &cfg)
            .map_err(|e| Failure::MountFailed(format!("mount failed: {e}")))?;
        shared.set_notifier(session.notifier());
        if !a.read_only {
            let max_hold = a.max_hold.map(Duration::from_secs);
            if let Err(e) = crate::snapshot::control::serve(&cipherdir, hold, max_hold) {
                log::warn!("no control socket (snapshots will not hold writes): {e}");
            }
        }
        Ok(session)
    })();
    let session = match r {
        Ok(s) => s,
        Err(f) => {
            ready.failed(&f);
            return Err(f);
        }
    };
    run_session(session, a, mountpoint, ready, &root, lock)
}

fn run_session(
    mut session: fuser::Session<EnvelopeFs>,
    a: &MountArgs,
    mountpoint: &Path,
    ready: daemon::Ready,
    root: &Path,
    lock: Option<File>,
) -> Result<(), Failure> {
    raise_readahead(mountpoint);
    super::idle::watch(a.idle, mountpoint);
    let serving = daemon::serving(session.unmount_callable(), mountpoint, ready);
    let r = session.run();
    if crate::fault::planted("mount-daemon-panic") {
        panic!("planted fault: the daemon panics as its session ends");
    }
    serving.ended();
    if !a.read_only {
        let _ = std::fs::remove_file(crate::snapshot::control::socket_path(root));
    }
    drop(lock);
    r.map_err(|e| Failure::Process(format!("session ended: {e}")))
}

/// Readahead for the mount, in KiB: one max_write. The kernel offers FUSE
/// only its default (128 KiB) at INIT, so a sequential read would go in
/// 128 KiB requests; the mount's bdi takes more (root only). README has
/// the A/B.
const READAHEAD_KB: u32 = 1024;

fn raise_readahead(mountpoint: &Path) {
    // Found in mountinfo: a stat of the mount point would be a FUSE request
    // to this not-yet-running session.
    let Some(dev) = mounts()
        .into_iter()
        .rev()
        .find(|m| m.point == mountpoint)
        .map(|m| m.dev)
    else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    let set = OpenOptions::new()
        .write(true)
        .open(&knob)
        .and_then(|mut f| f.write_all(READAHEAD_KB.to_string().as_bytes()));
    if let Err(e) = set {
        log::debug!("readahead stays at the kernel's default ({knob}: {e})");
    }
}

/// The mount point of the cipher directory `c`, if mounted: the newest of
/// the caller's own mounts; root falls back to another user's mount only
/// when it has none of its own.
pub fn mountpoint_of(c: &Path) -> Option<PathBuf> {
    let found = mounts_of(c);
    let me = sys::geteuid();
    let own = found.iter().position(|m| m.owner == Some(me));
    match own {
        Some(i) => Some(found[i].point.clone()),
        None if me == 0 => found.into_iter().next().map(|m| m.point),
        None => None,
    }
}

/// How long a stat or read on another filesystem may take: its daemon may
/// never answer (another user's FUSE mount), and then it does not match.
pub(super) const ANSWER_LIMIT: Duration = Duration::from_secs(1);

/// `f` on a thread of its own, its answer awaited until `deadline`; a call
/// that never returns leaves only that thread waiting.
pub(super) fn answer_by<T: Send + 'static>(
    deadline: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> impl FnOnce() -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .spawn(move || {
            let _ = tx.send(f());
        })
        .is_ok();
    move || {
        if !spawned {
            return None;
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }
}

/// FUSE mounts of the cipher directory `c`, newest first: by the source
/// string the daemon mounted with, or else by identity (the cipher
/// directory reached through a bind mount or another path), each source
/// asked within `ANSWER_LIMIT`.
fn mounts_of(c: &Path) -> Vec<MountEntry> {
    use std::os::unix::fs::MetadataExt;
    let Ok(canon) = c.canonicalize() else {
        return Vec::new();
    };
    let fuse: Vec<MountEntry> = mounts().into_iter().rev().filter(|m| m.fuse).collect();
    let by_name: Vec<MountEntry> = fuse
        .iter()
        .filter(|m| Path::new(&m.source) == canon)
        .cloned()
        .collect();
    if !by_name.is_empty() {
        return by_name;
    }
    let Ok(md) = std::fs::metadata(&canon) else {
        return Vec::new();
    };
    let deadline = Instant::now() + ANSWER_LIMIT;
    let asked: Vec<_> = fuse
        .into_iter()
        .filter(|m| m.source.starts_with('/'))
        .map(|m| {
            let src = PathBuf::from(&m.source);
            let id = answer_by(deadline, move || {
                std::fs::metadata(src).map(|s| (s.dev(), s.ino())).ok()
            });
            (m, id)
        })
        .collect();
    asked
        .into_iter()
        .filter_map(|(m, id)| (id().flatten() == Some((md.dev(), md.ino()))).then_some(m))
        .collect()
}
