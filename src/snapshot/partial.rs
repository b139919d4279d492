//! The partial copy a destination is built in, beside it:
//! `.NAME.envelopefs-partial.RANDOM`. The run building it holds an flock on
//! the directory itself from before it carries that name until after it is
//! renamed into place, so a later run can tell a partial left by a killed run
//! (nobody holds it: removed) from one still being built (held: left alone).
//! A PID in the name would not tell: the system reuses PIDs.

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
    /// The flock that says the partial is in use; released when dropped.
    _lock: OwnedFd,
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
        let locked = sys::openat(
            parent.as_fd(),
            &unlocked,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .and_then(|fd| sys::flock_nb(fd.as_fd(), true).map(|()| fd))
        .and_then(|fd| {
            // The lock follows the directory to its matched name.
            sys::renameat2(
                parent.as_fd(),
                &unlocked,
                parent.as_fd(),
                &name,
                libc::RENAME_NOREPLACE,
            )
            .map(|()| fd)
        });
        match locked {
            Ok(lock) => Ok(Partial {
                parent,
                parent_path,
                name,
                dst_name,
                _lock: lock,
            }),
            Err(e) => {
                let _ = sys::unlinkat(parent.as_fd(), &unlocked, true);
                Err(io(e))
            }
        }
    }

    /// Where the copy is built.
    pub fn path(&self) -> PathBuf {
        self.parent_path.join(&self.name)
    }

    /// Move the finished copy to its destination (never over an existing
    /// entry), still locked; on failure the partial is still there.
    pub fn finish(&self) -> std::io::Result<()> {
        sys::renameat2(
            self.parent.as_fd(),
            &self.name,
            self.parent.as_fd(),
            &self.dst_name,
            libc::RENAME_NOREPLACE,
        )
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

/// Remove the partials of `dst` that no run holds (left by runs killed
/// outright: SIGKILL, a second Ctrl-C, a crash), saying so on stderr. A
/// symlink or file with a partial's name, a partial being built, and
/// partials of other destinations are left alone. Best effort: a partial
/// that cannot be removed is named on stderr and the copy goes on.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_partials_stay_and_unheld_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("vol");
        let p = Partial::create(&dst).unwrap();
        std::fs::create_dir(p.path().join("sub")).unwrap();
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
        p.finish().unwrap();
        assert!(dst.is_dir());
        let q = Partial::create(&dst).unwrap();
        assert!(q.finish().is_err(), "the destination exists");
        let qp = q.path();
        q.discard().unwrap();
        assert!(!qp.exists());
        assert!(dst.is_dir());
    }
}
