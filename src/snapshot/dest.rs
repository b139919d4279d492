//! Where a copy may go: never inside what it copies. A snapshot written into
//! the mount of its own volume waits for its own hold (and every writer with
//! it); one written into the tree it reads copies itself until it runs out of
//! descriptors. Decided by device and inode along the destination's real
//! path, so symlinks, bind mounts and `..` change nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::CopyError;

/// What a destination must stay out of.
pub enum Forbidden<'a> {
    /// A directory tree (the cipher directory, a plain source tree).
    Tree(&'a Path, &'static str),
    /// A whole mounted filesystem (the mount of the volume).
    Mount(&'a Path),
}

/// The nearest existing directory at or above `dst`'s parent, resolved.
fn existing_parent(dst: &Path) -> Result<PathBuf, CopyError> {
    let abs = if dst.is_absolute() {
        dst.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| CopyError::Refused(format!("current directory: {e}")))?
            .join(dst)
    };
    let mut p = abs.parent();
    while let Some(d) = p {
        if let Ok(c) = d.canonicalize() {
            return Ok(c);
        }
        p = d.parent();
    }
    Ok(PathBuf::from("/"))
}

/// Refuses `dst` if it lies inside anything in `forbidden`.
pub fn refuse_inside(dst: &Path, forbidden: &[Forbidden<'_>]) -> Result<(), CopyError> {
    let mut trees = Vec::new();
    let mut mounts = Vec::new();
    for f in forbidden {
        match f {
            Forbidden::Tree(p, what) => {
                if let Ok(m) = std::fs::metadata(p) {
                    trees.push(((m.dev(), m.ino()), *p, *what));
                }
            }
            Forbidden::Mount(p) => {
                if let Ok(m) = std::fs::metadata(p) {
                    mounts.push((m.dev(), *p));
                }
            }
        }
    }
    let inside = |what: &str, p: &Path| {
        CopyError::DestinationInside(format!(
            "{} lies inside {what} {}; choose a destination outside it",
            dst.display(),
            p.display()
        ))
    };
    let parent = existing_parent(dst)?;
    for a in parent.ancestors() {
        let m = std::fs::metadata(a)
            .map_err(|e| CopyError::Refused(format!("{}: {e}", a.display())))?;
        if let Some((_, p)) = mounts.iter().find(|(dev, _)| *dev == m.dev()) {
            return Err(inside("the mount of the volume at", p));
        }
        if let Some((_, p, what)) = trees.iter().find(|(id, ..)| *id == (m.dev(), m.ino())) {
            return Err(inside(what, p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_by_identity_not_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::os::unix::fs::symlink(&tree, dir.path().join("alias")).unwrap();
        let f = [Forbidden::Tree(&tree, "the tree")];
        for inside in ["tree/x", "tree/sub/x", "tree/sub/missing/x", "alias/sub/x"] {
            let r = refuse_inside(&dir.path().join(inside), &f);
            assert!(
                matches!(r, Err(CopyError::DestinationInside(_))),
                "{inside}"
            );
        }
        // A sibling whose name starts like the tree is outside it.
        std::fs::create_dir(dir.path().join("tree2")).unwrap();
        for outside in ["tree2/x", "x", "missing/x"] {
            assert!(
                refuse_inside(&dir.path().join(outside), &f).is_ok(),
                "{outside}"
            );
        }
    }
}
