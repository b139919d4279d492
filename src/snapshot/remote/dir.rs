//! A repository in a local directory (`file:///PATH`): a backup disk, a
//! network mount, or a test's directory. Same semantics as the S3 store:
//! `IfAbsent` puts never replace an object (`O_EXCL` temporary file, then a
//! no-replace rename or a link), every put is atomic (temporary file, fsync,
//! rename), listings are sorted, times are the files' mtimes and the local
//! clock.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::store::{ObjectInfo, ObjectStore, PutMode, PutOutcome, StoreError, StoreErrorKind};
use crate::sys;

pub struct DirStore {
    root: OwnedFd,
    path: PathBuf,
}

fn kind_of(e: &io::Error) -> StoreErrorKind {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => StoreErrorKind::AccessDenied,
        Some(libc::EIO) | Some(libc::ETIMEDOUT) | Some(libc::ENOTCONN) | Some(libc::ESTALE) => {
            StoreErrorKind::Unavailable
        }
        _ => StoreErrorKind::Other,
    }
}

/// The components of an object key: no empty, `.`, `..` or hidden component
/// (temporary files of puts in flight start with a dot).
fn components(key: &str) -> io::Result<Vec<&OsStr>> {
    let parts: Vec<&OsStr> = key.split('/').map(OsStr::new).collect();
    for p in &parts {
        sys::check_component(p)?;
        if p.as_bytes().starts_with(b".") {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
    }
    Ok(parts)
}

fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

impl DirStore {
    /// The repository in the existing directory `path`.
    pub fn open(path: &Path) -> Result<DirStore, StoreError> {
        let root = sys::open_dir_path(path).map_err(|e| {
            let kind = if is_absent(&e) {
                StoreErrorKind::NoSuchBucket
            } else {
                kind_of(&e)
            };
            StoreError::new(
                kind,
                format!(
                    "cannot open the repository directory {}: {e}",
                    path.display()
                ),
            )
        })?;
        Ok(DirStore {
            root,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, op: &str, key: &str, e: io::Error) -> StoreError {
        StoreError::new(kind_of(&e), format!("{op} {key} in {}: {e}", self.url()))
    }

    /// The directory holding `parts[..n-1]` (made on the way when `create`).
    fn parent(&self, dirs: &[&OsStr], create: bool) -> io::Result<OwnedFd> {
        let mut fd = sys::reopen(self.root.as_fd(), libc::O_PATH | libc::O_DIRECTORY)?;
        for d in dirs {
            let flags = libc::O_PATH | libc::O_DIRECTORY;
            fd = match sys::openat(fd.as_fd(), d, flags, 0) {
                Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                    match sys::mkdirat(fd.as_fd(), d, 0o700) {
                        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                        _ => sys::openat(fd.as_fd(), d, flags, 0)?,
                    }
                }
                r => r?,
            };
        }
        Ok(fd)
    }

    fn put_io(&self, key: &str, body: &[u8], mode: PutMode) -> io::Result<PutOutcome> {
        let parts = components(key)?;
        let (name, dirs) = parts
            .split_last()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let dir = self.parent(dirs, true)?;
        let placement = match mode {
            PutMode::Overwrite => sys::Placement::Replace,
            PutMode::IfAbsent => sys::Placement::Exclusive,
        };
        match sys::write_new_file(dir.as_fd(), name, body, 0o600, placement) {
            Ok(()) => Ok(PutOutcome::Written),
            Err(e) if mode == PutMode::IfAbsent && e.raw_os_error() == Some(libc::EEXIST) => {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(e),
        }
    }

    /// `(directory, name)` of an object's key, `None` if a directory on the way is missing.
    fn locate(&self, key: &str) -> io::Result<Option<(OwnedFd, String)>> {
        let parts = components(key)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let name = name.as_bytes().to_vec();
        match self.parent(dirs, false) {
            Ok(d) => Ok(Some((d, String::from_utf8_lossy(&name).into_owned()))),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn info(key: String, st: &libc::stat) -> ObjectInfo {
        ObjectInfo {
            key,
            size: st.st_size.max(0) as u64,
            modified_unix: st.st_mtime,
        }
    }

    fn list_into(
        &self,
        dir: &OwnedFd,
        key_prefix: &str,
        filter: &str,
        out: &mut Vec<ObjectInfo>,
    ) -> io::Result<()> {
        for (n, _, _) in sys::list_dir(dir.as_fd())? {
            let Ok(name) = std::str::from_utf8(&n) else {
                continue;
            };
            if name.starts_with('.') || !name.starts_with(filter) {
                continue;
            }
            let st = match sys::fstatat(dir.as_fd(), OsStr::new(name)) {
                Err(e) if is_absent(&e) => continue,
                r => r?,
            };
            let key = format!("{key_prefix}{name}");
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    let sub = sys::openat(
                        dir.as_fd(),
                        OsStr::new(name),
                        libc::O_PATH | libc::O_DIRECTORY,
                        0,
                    )?;
                    self.list_into(&sub, &format!("{key}/"), "", out)?;
                }
                libc::S_IFREG => out.push(Self::info(key, &st)),
                _ => {}
            }
        }
        Ok(())
    }
}

impl ObjectStore for DirStore {
    fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    fn put(&self, key: &str, body: &[u8], mode: PutMode) -> Result<PutOutcome, StoreError> {
        self.put_io(key, body, mode)
            .map_err(|e| self.err("put", key, e))
    }

    fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((dir, name)) = self.locate(key).map_err(|e| self.err("get", key, e))? else {
            return Ok(None);
        };
        let max = usize::try_from(max_len).unwrap_or(usize::MAX);
        match sys::read_regular(dir.as_fd(), OsStr::new(&name), max) {
            Ok(b) => Ok(Some(b)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e)
                if e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("longer") =>
            {
                Err(StoreError::new(
                    StoreErrorKind::Other,
                    format!("get {key} in {}: larger than {max_len} bytes", self.url()),
                ))
            }
            Err(e) => Err(self.err("get", key, e)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let Some((dir, name)) = self.locate(key).map_err(|e| self.err("head", key, e))? else {
            return Ok(None);
        };
        match sys::fstatat(dir.as_fd(), OsStr::new(&name)) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                Ok(Some(Self::info(key.to_owned(), &st)))
            }
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.err("head", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let (dirs, filter) = match prefix.rsplit_once('/') {
            Some((d, f)) => (d, f),
            None => ("", prefix),
        };
        let mut out = Vec::new();
        let r = (|| {
            let parts = if dirs.is_empty() {
                Vec::new()
            } else {
                components(dirs)?
            };
            let dir = match self.parent(&parts, false) {
                Err(e) if is_absent(&e) => return Ok(()),
                r => r?,
            };
            let key_prefix = if dirs.is_empty() {
                String::new()
            } else {
                format!("{dirs}/")
            };
            self.list_into(&dir, &key_prefix, filter, &mut out)
        })();
        r.map_err(|e| self.err("list", prefix, e))?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let Some((dir, name)) = self.locate(key).map_err(|e| self.err("delete", key, e))? else {
            return Ok(());
        };
        match sys::unlinkat(dir.as_fd(), OsStr::new(&name), false) {
            Err(e) if !is_absent(&e) => Err(self.err("delete", key, e)),
            _ => Ok(()),
        }
    }

    fn now_unix(&self) -> Result<i64, StoreError> {
        Ok(sys::now_secs() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_gets_lists_and_deletes() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(d.path()).unwrap();
        assert_eq!(
            s.put("chunks/ab/abc", b"one", PutMode::IfAbsent).unwrap(),
            PutOutcome::Written
        );
        assert_eq!(
            s.put("chunks/ab/abc", b"two", PutMode::IfAbsent).unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(s.get("chunks/ab/abc", 10).unwrap().unwrap(), b"one");
        s.put("chunks/ab/abc", b"three", PutMode::Overwrite)
            .unwrap();
        assert_eq!(s.get("chunks/ab/abc", 10).unwrap().unwrap(), b"three");
        assert!(s
            .get("chunks/ab/abc", 2)
            .unwrap_err()
            .message
            .contains("larger than 2 bytes"));
        s.put("chunks/cd/cde", b"x", PutMode::IfAbsent).unwrap();
        s.put("manifests/m1", b"m", PutMode::IfAbsent).unwrap();
        let keys: Vec<String> = s
            .list("chunks/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["chunks/ab/abc", "chunks/cd/cde"]);
        assert_eq!(s.list("manifests/m").unwrap()[0].size, 1);
        assert!(s.list("leases/").unwrap().is_empty());
        assert_eq!(s.head("manifests/m1").unwrap().unwrap().size, 1);
        assert!(s.head("manifests/m2").unwrap().is_none());
        assert!(s.get("nothing/here", 5).unwrap().is_none());
        s.delete("chunks/ab/abc").unwrap();
        s.delete("chunks/ab/abc").unwrap();
        assert!(s.get("chunks/ab/abc", 10).unwrap().is_none());
        assert!(s.put("../x", b"", PutMode::IfAbsent).is_err());
        assert!(s.put("a/.hidden", b"", PutMode::IfAbsent).is_err());
        let all = s.list("").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            DirStore::open(&d.path().join("missing"))
                .err()
                .unwrap()
                .kind,
            StoreErrorKind::NoSuchBucket
        );
    }
}
