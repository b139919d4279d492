//! A plaintext tree as a model: what the tests write, and a whole mount read
//! back and compared with it entry by entry and byte by byte.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::support::hex;

#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir,
    Link(String),
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::File(b) => write!(
                f,
                "file {} bytes sha256 {}",
                b.len(),
                &hex(&Sha256::digest(b))[..16]
            ),
            Node::Dir => f.write_str("dir"),
            Node::Link(t) => write!(f, "symlink -> {t}"),
        }
    }
}

/// Relative path ("dir/file") to node.
pub type Tree = BTreeMap<String, Node>;

/// Writes `node` at `rel` under `root` and records it in `tree`.
pub fn put(root: &Path, tree: &mut Tree, rel: &str, node: Node) {
    let p = root.join(rel);
    match &node {
        Node::File(b) => std::fs::write(&p, b),
        Node::Dir => std::fs::create_dir(&p),
        Node::Link(t) => std::os::unix::fs::symlink(t, &p),
    }
    .unwrap_or_else(|e| panic!("creating {rel}: {e}"));
    tree.insert(rel.to_owned(), node);
}

/// Everything under `root` (a mount), not following symlinks.
pub fn read_tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let d = root.join(&dir);
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("readdir {dir:?}: {e}")) {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let p = root.join(&rel);
            let ft = std::fs::symlink_metadata(&p)
                .unwrap_or_else(|e| panic!("lstat {rel}: {e}"))
                .file_type();
            let node = if ft.is_dir() {
                stack.push(rel.clone());
                Node::Dir
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).unwrap_or_else(|e| panic!("readlink {rel}: {e}"));
                Node::Link(t.to_string_lossy().into_owned())
            } else {
                Node::File(std::fs::read(&p).unwrap_or_else(|e| panic!("read {rel}: {e}")))
            };
            out.insert(rel, node);
        }
    }
    out
}

/// The mount at `root` holds exactly `want`: the same entries, kinds, bytes
/// and targets.
pub fn assert_tree(root: &Path, want: &Tree) {
    let got = read_tree(root);
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: missing {missing:?}, unexpected {extra:?}",
        root.display()
    );
    for (k, w) in want {
        assert_eq!(&got[k], w, "{k}");
    }
}

/// The names directly in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
