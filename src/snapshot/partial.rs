//! The partial copy a destination is built in, beside it:
//! `.NAME.envelopefs-partial.RANDOM`. The run building it holds an flock on
//! the directory itself from before it carries that name until after it is
//! renamed into place, so a later run can tell a partial left by a killed run
//! (nobody holds it: removed) from one still being built (held: left alone).
//! A PID in the name would not tell: the system reuses PIDs.
//!
//! A name proves nothing (in a world-writable directory anyone can rename
//! another user's tree to it), so a partial is a directory holding the
//! regular file `envelopefs.partial` (the marker) and the copy itself in
//! `tree`, both made before the partial carries its name; a cleaner removes
//! only a partial whose directory and marker belong to its effective uid.
//! The copy sits one level down so that the marker never meets a volume's
//! entries (`init` wants an empty directory; with plaintext names any name
//! can be a user's entry) and never travels to the destination.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::CopyError;
use crate::error::VolumeError;
use crate::sys;

/// What every partial of a destination named `dst_name` starts with.
fn prefix(dst_name: &OsStr) -> Vec<u8> {
    let mut p = b".".to_vec();
    p.extend_from_slice(dst_name.as_bytes());
    p.extend_from_slice(b".envelopefs-partial.");
    p
}

/// While created and not yet locked, a partial carries this suffix, which
/// cleaners skip: they never see an unlocked partial of a live run.
const UNLOCKED_SUFFIX: &[u8] = b".new";

/// The regular file in a partial that says this user's run made it.
const MARKER: &str = "envelopefs.partial";

/// The directory in a partial the copy is built in.
const TREE: &str = "tree";

/// The directory `dst` goes into, its path as the user named it, and the
/// destination's name.
fn parent_of(dst: &Path) -> Result<(OwnedFd, PathBuf, OsString), CopyError> {
    let parent_path = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let (fd, name) =
        sys::open_parent(dst).map_err(|e| CopyError::Volume(VolumeError::io(&parent_path, e)))?;
    Ok((fd, parent_path, name))
}

fn random_suffix() -> Result<String, CopyError> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| CopyError::Refused(format!("random name: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A partial copy being built, locked by this run.
pub struct Partial {
    parent: OwnedFd,
    parent_path: PathBuf,
    name: OsString,
    dst_name: OsString,
    /// The partial itself, whose flock says it is in use (released when
    /// dropped).
    dir: OwnedFd,
}

/// Lock the new directory `unlocked` in `parent`, mark it, make its `tree`,
/// and give it its partial's name `name`.
fn lock_mark_and_name(
    parent: &OwnedFd,
    unlocked: &OsStr,
    name: &OsStr,
) -> std::io::Result<OwnedFd> {
    let dir = sys::openat(
        parent.as_fd(),
        unlocked,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    sys::flock_nb(dir.as_fd(), true)?;
    sys::create_new(dir.as_fd(), OsStr::new(MARKER), libc::O_WRONLY, 0o600)?;
    sys::mkdirat(dir.as_fd(), OsStr::new(TREE), 0o700)?;
    // The lock follows the directory to its matched name.
    sys::renameat2(
        parent.as_fd(),
        unlocked,
        parent.as_fd(),
        name,
        libc::RENAME_NOREPLACE,
    )?;
    Ok(dir)
}

impl Partial {
    /// A new, empty, locked partial beside `dst` (mode 0700 while built).
    pub fn create(dst: &Path) -> Result<Partial, CopyError> {
        let (parent, parent_path, dst_name) = parent_of(dst)?;
        let mut name = prefix(&dst_name);
        name.extend_from_slice(random_suffix()?.as_bytes());
        let name = OsString::from_vec(name);
        let mut unlocked = name.as_bytes().to_vec();
        unlocked.extend_from_slice(UNLOCKED_SUFFIX);
        let unlocked = OsString::from_vec(unlocked);
        let io = |e| CopyError::Volume(VolumeError::io(&parent_path.join(&unlocked), e));
        sys::mkdirat(parent.as_fd(), &unlocked, 0o700).map_err(io)?;
        match lock_mark_and_name(&parent, &unlocked, &name) {
            Ok(dir) => Ok(Partial {
                parent,
                parent_path,
                name,
                dst_name,
                dir,
            }),
            Err(e) => {
                let _ = remove_tree(&parent, &unlocked);
                Err(io(e))
            }
        }
    }

    /// The partial (what is removed if the copy fails).
    pub fn path(&self) -> PathBuf {
        self.parent_path.join(&self.name)
    }

    /// Where the copy is built.
    pub fn tree(&self) -> PathBuf {
        self.path().join(TREE)
    }

    /// Move the finished copy to its destination (never over an existing
    /// entry), still locked; on failure the partial is still there. The
    /// emptied partial is then removed (if that fails, it stays marked and
    /// unlocked: the next run removes it).
    pub fn finish(&self) -> std::io::Result<()> {
        sys::renameat2(
            self.dir.as_fd(),
            OsStr::new(TREE),
            self.parent.as_fd(),
            &self.dst_name,
            libc::RENAME_NOREPLACE,
        )?;
        let _ = sys::unlinkat(self.dir.as_fd(), OsStr::new(MARKER), false)
            .and_then(|()| sys::unlinkat(self.parent.as_fd(), &self.name, true));
        Ok(())
    }

    /// Remove the partial (still locked while it goes).
    pub fn discard(self) -> std::io::Result<()> {
        remove_tree(&self.parent, &self.name)
    }
}

/// Remove `name` in `parent` and everything below it, following no symlink:
/// the path goes through the directory's descriptor (/proc/self/fd/N), and
/// std's remove_dir_all never follows a symlink.
fn remove_tree(parent: &OwnedFd, name: &OsStr) -> std::io::Result<()> {
    let dir = PathBuf::from(OsStr::from_bytes(sys::proc_path(parent.as_fd()).as_bytes()));
    std::fs::remove_dir_all(dir.join(name))
}

/// Whether the directory `dir` is a partial this user's runs made: owned by
/// the effective uid and holding the marker, a regular file owned likewise
/// (looked at without following a symlink).
fn is_ours(dir: &OwnedFd) -> bool {
    let euid = sys::geteuid();
    let owned = |st: &libc::stat, kind| st.st_mode & libc::S_IFMT == kind && st.st_uid == euid;
    let dir_ok = sys::fstat(dir.as_fd()).is_ok_and(|st| owned(&st, libc::S_IFDIR));
    dir_ok
        && sys::openat(dir.as_fd(), OsStr::new(MARKER), libc::O_PATH, 0)
            .and_then(|m| sys::fstat(m.as_fd()))
            .is_ok_and(|st| owned(&st, libc::S_IFREG))
}

/// Remove the partials of `dst` that no run holds (left by runs killed
/// outright: SIGKILL, a second Ctrl-C, a crash), saying so on stderr. A
/// symlink or file with a partial's name, a partial being built, partials
/// of other destinations, and directories not marked as this user's
/// partials (named on stderr) are left alone. Best effort: a partial that
/// cannot be removed is named on stderr and the copy goes on.
pub fn remove_stale(dst: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    // Unreadable parent: the copy's own creation reports it.
    let Ok((parent, parent_path, dst_name)) = parent_of(dst) else {
        return removed;
    };
    let prefix = prefix(&dst_name);
    let Ok(entries) = sys::list_dir(parent.as_fd()) else {
        return removed;
    };
    for (n, _, _) in entries {
        if !n.starts_with(&prefix) || n.ends_with(UNLOCKED_SUFFIX) {
            continue;
        }
        let name = OsStr::from_bytes(&n);
        // O_NOFOLLOW|O_DIRECTORY: a symlink or a file is not opened.
        let Ok(fd) = sys::openat(parent.as_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        else {
            continue;
        };
        if sys::flock_nb(fd.as_fd(), true).is_err() {
            continue; // a running copy holds it
        }
        // Still the entry we locked (not renamed away and replaced).
        let same = match (sys::fstat(fd.as_fd()), sys::fstatat(parent.as_fd(), name)) {
            (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
            _ => false,
        };
        if !same {
            continue;
        }
        let path = parent_path.join(name);
        if !is_ours(&fd) {
            eprintln!(
                "envelopefs: left alone (named like a partial copy, but not one made by this user's runs): {}",
                path.display()
            );
            continue;
        }
        match remove_tree(&parent, name) {
            Ok(()) => {
                eprintln!(
                    "envelopefs: removed a partial copy left by an interrupted run: {}",
                    path.display()
                );
                removed.push(path);
            }
            Err(e) => eprintln!(
                "envelopefs: cannot remove a partial copy left by an interrupted run: {}: {e}",
                path.display()
            ),
        }
    }
    removed
}

/// A partial left by a killed run, locked by this run so that nothing
/// removes it while its pieces are reused; [`Claimed::remove`] removes it.
pub struct Claimed {
    parent: OwnedFd,
    name: OsString,
    tree: PathBuf,
    _lock: OwnedFd,
}

impl Claimed {
    /// Where the killed run was building its copy.
    pub fn tree(&self) -> &Path {
        &self.tree
    }

    pub fn remove(self) {
        let _ = remove_tree(&self.parent, &self.name);
    }
}

/// The partials of `dst` that no run holds and this user's runs made,
/// locked, for a run that resumes their work (then removes them).
pub fn claim_stale(dst: &Path) -> Vec<Claimed> {
    let mut claimed = Vec::new();
    let Ok((parent, parent_path, dst_name)) = parent_of(dst) else {
        return claimed;
    };
    let prefix = prefix(&dst_name);
    let Ok(entries) = sys::list_dir(parent.as_fd()) else {
        return claimed;
    };
    for (n, _, _) in entries {
        if !n.starts_with(&prefix) || n.ends_with(UNLOCKED_SUFFIX) {
            continue;
        }
        let name = OsStr::from_bytes(&n);
        let Ok(fd) = sys::openat(parent.as_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        else {
            continue;
        };
        if sys::flock_nb(fd.as_fd(), true).is_err() || !is_ours(&fd) {
            continue;
        }
        let Ok(pfd) = sys::reopen(parent.as_fd(), libc::O_PATH | libc::O_DIRECTORY) else {
            continue;
        };
        claimed.push(Claimed {
            parent: pfd,
            name: name.to_owned(),
            tree: parent_path.join(name).join(TREE),
            _lock: fd,
        });
    }
    claimed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_partials_stay_and_unheld_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("vol");
        let p = Partial::create(&dst).unwrap();
        std::fs::create_dir(p.tree().join("sub")).unwrap();
        let name = p.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".vol.envelopefs-partial."), "{name}");
        assert!(!name.ends_with(".new"));
        // Held by `p`: another run leaves it.
        assert!(remove_stale(&dst).is_empty());
        assert!(p.path().exists());
        // Dropped without discard (as a killed run): the next run removes it.
        let path = p.path();
        drop(p);
        assert_eq!(remove_stale(&dst), vec![path.clone()]);
        assert!(!path.exists());
    }

    #[test]
    fn finish_moves_the_partial_into_place_and_never_over_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("vol");
        let p = Partial::create(&dst).unwrap();
        std::fs::write(p.tree().join("f"), b"x").unwrap();
        p.finish().unwrap();
        assert!(dst.is_dir());
        // The copy alone, without the marker; the emptied partial is gone.
        let names: Vec<_> = std::fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("f")]);
        assert!(!p.path().exists());
        let q = Partial::create(&dst).unwrap();
        assert!(q.finish().is_err(), "the destination exists");
        let qp = q.path();
        q.discard().unwrap();
        assert!(!qp.exists());
        assert!(dst.is_dir());
    }
}
