//! `envelopefs umount`: only envelopefs mounts, found by mount point or by
//! cipher directory; says who keeps a busy mount busy, and what to do about
//! a stale mount whose daemon has died.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::mount::{answer_by, mountpoint_of, mounts, open_lock, MountEntry, ANSWER_LIMIT};
use super::Failure;
use crate::sys;
use crate::volume::VolumeConfig;

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mount point, or the cipher directory of a mounted volume.
    pub path: PathBuf,
    /// Detach now, even if busy or stale; the daemon exits once the last
    /// process using the mount lets go (MNT_DETACH).
    #[arg(long, short = 'l')]
    pub lazy: bool,
}

/// An envelopefs mount: type `fuse.envelopefs`, or type `fuse` (a root
/// mount made without the subtype, or by an older daemon) whose source is a
/// volume's cipher directory.
/// The config is read within `ANSWER_LIMIT`: the source may lie on another
/// filesystem whose daemon never answers.
fn is_envelopefs(m: &MountEntry) -> bool {
    if m.fstype == "fuse.envelopefs" {
        return true;
    }
    if m.fstype != "fuse" || !m.source.starts_with('/') {
        return false;
    }
    let src = PathBuf::from(&m.source);
    let read = answer_by(Instant::now() + ANSWER_LIMIT, move || {
        VolumeConfig::read_unverified(&src).is_ok()
    });
    read() == Some(true)
}

/// The mount at `p` (the top one), by path: a stale mount point cannot be
/// resolved (its stat fails with ENOTCONN), so it is matched as written.
fn mount_at(p: &Path) -> (Option<MountEntry>, Option<std::io::Error>) {
    let (path, err) = match p.canonicalize() {
        Ok(c) => (c, None),
        Err(e) => (std::path::absolute(p).unwrap_or(p.to_path_buf()), Some(e)),
    };
    let path: PathBuf = path.components().collect();
    (mounts().into_iter().rev().find(|m| m.point == path), err)
}

/// The envelopefs mount `p` names, as mount point or as cipher directory.
fn find(p: &Path) -> Result<(MountEntry, bool), Failure> {
    let (at, err) = mount_at(p);
    let stale = err
        .as_ref()
        .is_some_and(|e| matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)));
    if let Some(m) = at.as_ref().filter(|m| is_envelopefs(m)) {
        return Ok((m.clone(), stale || is_stale(&m.point)));
    }
    if let Some(mp) = mountpoint_of(p) {
        if let (Some(m), _) = mount_at(&mp) {
            if is_envelopefs(&m) {
                let stale = is_stale(&m.point);
                return Ok((m, stale));
            }
        }
    }
    match (at, err) {
        (Some(m), _) => Err(Failure::MountPoint(format!(
            "{} is a {} mount, not an envelopefs mount; left alone (use umount(8) for it)",
            p.display(),
            m.fstype
        ))),
        (None, Some(e)) => Err(Failure::MountPoint(format!("{}: {e}", p.display()))),
        (None, None) => Err(Failure::MountPoint(format!(
            "{} is not mounted (neither an envelopefs mount point nor the cipher directory of a mounted volume)",
            p.display()
        ))),
    }
}

/// Unmount `point`; an unprivileged owner goes through fusermount3.
pub(super) fn unmount(point: &Path, lazy: bool) -> std::io::Result<()> {
    match sys::umount(point, lazy) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let flag = if lazy { "-uz" } else { "-u" };
            let ok = ["fusermount3", "fusermount"].iter().any(|b| {
                std::process::Command::new(b)
                    .arg(flag)
                    .arg(point)
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if ok {
                Ok(())
            } else {
                Err(e)
            }
        }
        r => r,
    }
}

/// How long a busy mount that no process holds is tried again: our own
/// staleness probe may still be waiting for a slow daemon's answer.
const PROBE_GRACE: Duration = Duration::from_secs(5);

/// Unmount; EBUSY while no process holds the mount is our own probe (see
/// `is_stale`), which lets go once the daemon answers, so it is tried again.
fn unmount_when_free(point: &Path, lazy: bool) -> std::io::Result<()> {
    let deadline = Instant::now() + PROBE_GRACE;
    loop {
        match unmount(point, lazy) {
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && Instant::now() < deadline
                    && holders(point).is_empty() =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// The daemon of the mount at `point` has died: opening and reading its
/// root answers ENOTCONN (a stat may be answered from the attribute cache),
/// or ECONNABORTED while the kernel is still aborting the connection (on
/// io_uring the dead daemon's ring is torn down after its descriptors close).
/// Bounded: a live daemon may never answer.
fn is_stale(point: &Path) -> bool {
    let p = point.to_path_buf();
    let listed = answer_by(Instant::now() + Duration::from_secs(2), move || {
        let r = std::fs::read_dir(p).and_then(|mut d| d.next().transpose());
        r.err().and_then(|e| e.raw_os_error())
    });
    matches!(listed(), Some(Some(libc::ENOTCONN | libc::ECONNABORTED)))
}

/// Processes whose working directory, root or an open file lies under
/// `point`: "pid 123 (bash)".
fn holders(point: &Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let dir = p.path();
        let under = |l: &Path| std::fs::read_link(l).is_ok_and(|t| t.starts_with(point));
        let what = if under(&dir.join("cwd")) {
            Some("working directory")
        } else if under(&dir.join("root")) {
            Some("root directory")
        } else {
            std::fs::read_dir(dir.join("fd"))
                .ok()
                .and_then(|fds| fds.flatten().find(|f| under(&f.path())))
                .map(|_| "open file")
        };
        if let Some(what) = what {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({}, {what})", comm.trim()));
        }
    }
    found
}

pub fn umount(out: super::Output, a: &UmountArgs) -> Result<(), Failure> {
    let (m, stale) = find(&a.path)?;
    let shown = m.point.display();
    if let Err(e) = unmount_when_free(&m.point, a.lazy) {
        let stale = stale
            || is_stale(&m.point)
            || matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED));
        return Err(Failure::MountPoint(failure_text(
            &m.point,
            &e,
            &holders(&m.point),
            stale,
        )));
    }
    if stale {
        eprintln!("envelopefs: {shown}: removed the stale mount of a daemon that had died");
    } else {
        // Named by cipher directory, the volume must be unmounted now: a lock
        // still held by a mount of ours means we unmounted another one.
        let by_cipherdir = std::path::absolute(&a.path).is_ok_and(|p| p != m.point);
        if !wait_for_daemon(&m, a.lazy) && !a.lazy && by_cipherdir {
            if let Some(still) = mountpoint_of(Path::new(&m.source)) {
                return Err(Failure::MountPoint(format!(
                    "unmounted {shown}, but {} is still mounted at {}",
                    m.source,
                    still.display()
                )));
            }
        }
    }
    // Text mode says nothing, as umount(8) does.
    if out == super::Output::Json {
        super::print_result(
            out,
            &serde_json::json!({
                "MountPoint": m.point.display().to_string(),
                "CipherDir": m.source,
                "Lazy": a.lazy,
                "Stale": stale,
            }),
            "",
        );
    }
    Ok(())
}

/// What a failed unmount tells the user: who keeps it busy, and that
/// `--lazy` detaches a busy mount or clears a stale one.
fn failure_text(point: &Path, e: &std::io::Error, busy: &[String], stale: bool) -> String {
    let shown = point.display();
    let lazy = format!("`envelopefs umount --lazy {shown}`");
    match (stale, busy.is_empty()) {
        (true, false) => format!(
            "{shown} is a stale mount (its daemon has died) still in use by {}; {lazy} clears it",
            busy.join(", ")
        ),
        (true, true) => {
            format!("{shown} is a stale mount (its daemon has died): umount: {e}; {lazy} clears it")
        }
        (false, false) if e.raw_os_error() == Some(libc::EBUSY) => format!(
            "{shown} is busy: in use by {}; stop them, or {lazy} detaches it now (the daemon exits once they let go)",
            busy.join(", ")
        ),
        _ => format!("umount {shown}: {e}"),
    }
}

/// Wait (bounded) for the daemon to let go of the volume lock, so that a
/// mount right after this one does not find it held. False if it still
/// holds it.
fn wait_for_daemon(m: &MountEntry, lazy: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(if lazy { 2 } else { 10 });
    while Instant::now() < deadline {
        match open_lock(Path::new(&m.source), false) {
            Ok(f) if sys::flock_nb(f.as_fd(), true).is_ok() => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if lazy {
        eprintln!(
            "envelopefs: {} is detached; its daemon exits once the last process using it lets go",
            m.point.display()
        );
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fstype: &str, source: &str) -> MountEntry {
        MountEntry {
            point: PathBuf::from("/mnt"),
            source: source.to_owned(),
            fstype: fstype.to_owned(),
            dev: "0:99".into(),
            fuse: fstype.starts_with("fuse"),
            owner: None,
        }
    }

    #[test]
    fn envelopefs_mounts_by_type_or_by_a_volume_source() {
        let tv = crate::volume::testutil::volume(Default::default());
        let vol = tv.vol.root().display().to_string();
        let other = tempfile::tempdir().unwrap();
        let other = other.path().display().to_string();
        assert!(is_envelopefs(&entry("fuse.envelopefs", "anything")));
        // A root mount without the subtype, or one by an older daemon.
        assert!(is_envelopefs(&entry("fuse", &vol)));
        assert!(!is_envelopefs(&entry("fuse", &other)));
        assert!(!is_envelopefs(&entry("fuse.sshfs", &vol)));
        assert!(!is_envelopefs(&entry("tmpfs", &vol)));
        assert!(!is_envelopefs(&entry("fuse", "user@host:/srv")));
    }
}
