//! `snapshot copy --mode reencrypt` between ordinary volumes (format 1) and
//! write-only volumes (format 2), both ways and from one recipient to
//! another, and `import --recipient-key`: every byte, name, target, xattr,
//! mode, mtime and hard link kept; a write-only mount of a write-only copy
//! reads none of it and adds to it. `--mode rekey` with a write-only side is
//! refused, and so is a source whose key or write session does not open:
//! one line, no destination.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::*;
use crate::roundtrip::{assert_xattrs, long_name, Xattr};
use crate::support::*;
use crate::tree::*;

const XATTRS: [Xattr; 2] = [
    ("multi", "user.note", b"a file's xattr"),
    ("d", "user.dirnote", b"a directory's xattr"),
];

const REKEY_REFUSED: &str = "envelopefs: --mode rekey cannot copy from or to a write-only volume (format 2): it keeps each file's data key and blocks and re-wraps them under the new volume key, and a write-only volume has no volume key; use --mode reencrypt\n";

/// Writes the tree the copies carry under `root` (a mount of either
/// format, or a plain directory): an empty file, multi-block files, a
/// directory with a file, a 255-byte name, a symlink, a hard link, an
/// xattr on a file and on a directory, a mode and an mtime of its own.
fn write_tree(root: &Path) -> Tree {
    let mut t = Tree::new();
    put(root, &mut t, "empty", Node::File(Vec::new()));
    put(
        root,
        &mut t,
        "multi",
        Node::File(pattern(1, 3 * BLOCK + 17)),
    );
    put(root, &mut t, "big", Node::File(pattern(2, 100_000)));
    put(root, &mut t, "d", Node::Dir);
    put(root, &mut t, "d/inner", Node::File(pattern(3, 5000)));
    put(root, &mut t, &long_name('L'), Node::File(pattern(4, 300)));
    put(root, &mut t, "link", Node::Link("d/inner".into()));
    std::fs::hard_link(root.join("multi"), root.join("d/hard")).unwrap();
    t.insert("d/hard".into(), Node::File(pattern(1, 3 * BLOCK + 17)));
    for (rel, name, value) in XATTRS {
        xattr_set(&root.join(rel), name, value);
    }
    std::fs::set_permissions(root.join("big"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_100_000_000, 456_789);
    std::fs::File::options()
        .write(true)
        .open(root.join("d/inner"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    t
}

/// [`tree_state`] of a mount without its root (a mount's lock file changes
/// the root's times), the inode number of each entry replaced by the first
/// path that has it: copies have other inode numbers, the same hard links.
fn state(mnt: &Path) -> BTreeMap<PathBuf, String> {
    let mut s = tree_state(mnt);
    s.remove(Path::new(""));
    let mut first: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (p, v) in &s {
        let ino = v.split(' ').nth(2).unwrap().to_owned();
        first.entry(ino).or_insert_with(|| p.clone());
    }
    s.into_iter()
        .map(|(p, v)| {
            let mut f: Vec<String> = v.splitn(4, ' ').map(str::to_owned).collect();
            f[2] = format!("links-with:{}", first[&f[2]].display());
            (p, f.join(" "))
        })
        .collect()
}

/// The tree, xattrs and state of a full mount of `cipher`.
fn full_read(env: &Env, cipher: &Path, want: &Tree) -> BTreeMap<PathBuf, String> {
    let m = env.mount(cipher, "m", &[]);
    assert_tree(&m.mnt, want);
    for (rel, node) in want {
        if let Node::Link(target) = node {
            let len = std::fs::symlink_metadata(m.p(rel)).unwrap().len();
            assert_eq!(
                len,
                target.len() as u64,
                "{rel}: a symlink's size is its target's length"
            );
        }
    }
    assert_xattrs(&m.mnt, &XATTRS);
    let s = state(&m.mnt);
    m.unmount();
    s
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn symmetric_key(env: &Env) -> String {
    json(env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `envelopefs ARGS` fails with `code` and one line, and leaves nothing at
/// `dst`, not even a partial copy beside it; its stderr.
fn copy_refused(env: &Env, args: &[&str], code: i32, dst: &Path) -> String {
    let out = env.run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    one_line_error(&format!("{args:?}"), &err);
    assert!(!dst.exists(), "{args:?} left {}", dst.display());
    let parent = dst.parent().unwrap();
    let partials: Vec<String> = names_in(parent)
        .into_iter()
        .filter(|n| n.contains("envelopefs-partial"))
        .collect();
    assert!(partials.is_empty(), "{args:?} left {partials:?}");
    err
}

#[test]
fn write_only_volume_copied_into_an_ordinary_one() {
    if !need_fuse("write_only_volume_copied_into_an_ordinary_one") {
        return;
    }
    bounded(180, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let c = init_v2(&env, "c", &r);
        let w = env.mount(&c, "w", &strs(&r.by_key()));
        let tree = write_tree(&w.mnt);
        w.unmount();
        let want = full_read(&env, &c, &tree);
        assert_eq!(sessions(&c).len(), 1);

        let k = symmetric_key(&env);
        let dst = env.path("v1");
        let stats = json(
            &env,
            &[
                "snapshot",
                "copy",
                s(&c),
                s(&dst),
                "--mode",
                "reencrypt",
                "--key",
                &k,
            ],
        );
        // Distinct inodes: the hard link is linked, not copied.
        assert_eq!(stats["Files"], 5, "{stats}");
        assert_eq!(stats["Skipped"], serde_json::json!([]), "{stats}");
        let info = json(&env, &["info", s(&dst)]);
        assert_eq!(info["FormatVersion"], 1, "{info}");
        assert!(info["MasterKeyArn"].as_str().unwrap().ends_with(&k));
        assert!(sessions(&dst).is_empty(), "no session file in a v1 copy");
        assert_eq!(full_read(&env, &dst, &tree), want, "the v1 copy");

        // A snapshot (same keys) carries the session files with it.
        let snap = env.path("snap");
        env.run_ok(&["snapshot", "create", s(&c), s(&snap)]);
        assert_eq!(sessions(&snap).len(), 1);
        assert_eq!(full_read(&env, &snap, &tree), want, "the snapshot");
    });
}

#[test]
fn ordinary_volume_copied_into_write_only_ones() {
    if !need_fuse("ordinary_volume_copied_into_write_only_ones") {
        return;
    }
    bounded(240, || {
        let env = Env::new();
        let rsa = Recipient::rsa(&env);
        let ecc = Recipient::ecc(&env);
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let mut tree = write_tree(&m.mnt);
        m.unmount();
        let want = full_read(&env, &c, &tree);

        let v2 = env.path("v2");
        let args = [
            "snapshot",
            "copy",
            s(&c),
            s(&v2),
            "--mode",
            "reencrypt",
            "--recipient-key",
            &rsa.id,
        ];
        assert_eq!(json(&env, &args)["Files"], 5);
        let cfg = ConfigFileV2::read(&v2);
        assert_eq!(cfg.config.recipient_key_arn, rsa.arn);
        assert!(cfg.mac_is_valid_for(&rsa.fingerprint()));
        assert_eq!(sessions(&v2).len(), 1, "the copy wrote in one session");
        assert_eq!(full_read(&env, &v2, &tree), want, "the v2 copy");

        // A write-only mount of the copy reads nothing copied, and adds to it.
        let w = env.mount(&v2, "w", &strs(&rsa.by_key()));
        w.expect_log("written by another session: a write-only mount cannot read it")
            .expect_log("symlink of an earlier session: not read by a write-only mount");
        for rel in ["multi", "empty", "d/inner"] {
            let r = std::fs::File::open(w.p(rel));
            assert_eq!(errno(r), Some(libc::EACCES), "{rel}");
        }
        assert_eq!(
            errno(std::fs::read_link(w.p("link"))),
            Some(libc::EACCES),
            "the symlink"
        );
        assert!(names_in(&w.mnt).is_empty(), "lists only its own entries");
        put(&w.mnt, &mut tree, "after", Node::File(pattern(9, 7000)));
        assert_eq!(std::fs::read(w.p("after")).unwrap(), pattern(9, 7000));
        w.unmount();
        assert_eq!(sessions(&v2).len(), 2);
        let m = env.mount(&v2, "m", &[]);
        assert_tree(&m.mnt, &tree);
        m.unmount();
        tree.remove("after");

        // Write-only to write-only, to another recipient.
        let v3 = env.path("v3");
        env.run_ok(&[
            "snapshot",
            "copy",
            s(&c),
            s(&v3),
            "--mode",
            "reencrypt",
            "--recipient-key",
            &ecc.id,
        ]);
        let v4 = env.path("v4");
        env.run_ok(&[
            "snapshot",
            "copy",
            s(&v3),
            s(&v4),
            "--mode",
            "reencrypt",
            "--recipient-key",
            &rsa.id,
        ]);
        assert_eq!(ConfigFileV2::read(&v4).config.recipient_key_arn, rsa.arn);
        assert_eq!(full_read(&env, &v4, &tree), want, "the v2 -> v2 copy");
    });
}

#[test]
fn import_into_a_write_only_volume() {
    if !need_fuse("import_into_a_write_only_volume") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::ecc(&env);
        let plain = env.path("plain");
        std::fs::create_dir(&plain).unwrap();
        let tree = write_tree(&plain);
        let c = env.path("c");
        env.run_ok(&["import", s(&plain), s(&c), "--recipient-key", &r.id]);
        assert_eq!(ConfigFileV2::read(&c).config.recipient_key_arn, r.arn);
        assert_eq!(sessions(&c).len(), 1);
        let m = env.mount(&c, "m", &[]);
        assert_tree(&m.mnt, &tree);
        assert_xattrs(&m.mnt, &XATTRS);
        m.unmount();
    });
}

#[test]
fn rekey_with_a_write_only_side_is_refused() {
    let env = Env::new();
    let r = Recipient::rsa(&env);
    let k = symmetric_key(&env);
    let v1 = env.init("v1", &[]);
    let v2 = init_v2(&env, "v2", &r);
    let dst = env.path("dst");
    let (a, b) = (s(&v1), s(&v2));
    for args in [
        // rekey is the default mode
        vec!["snapshot", "copy", b, s(&dst), "--key", &k],
        vec![
            "snapshot",
            "copy",
            b,
            s(&dst),
            "--key",
            &k,
            "--mode",
            "rekey",
        ],
        vec!["snapshot", "copy", a, s(&dst), "--recipient-key", &r.id],
        vec!["snapshot", "copy", b, s(&dst), "--recipient-key", &r.id],
    ] {
        let err = copy_refused(&env, &args, 2, &dst);
        assert_eq!(err, REKEY_REFUSED, "{args:?}");
    }
}

#[test]
fn copy_of_a_write_only_volume_whose_keys_do_not_open_fails() {
    if !need_fuse("copy_of_a_write_only_volume_whose_keys_do_not_open_fails") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let k = symmetric_key(&env);
        let c = init_v2(&env, "c", &r);
        let w = env.mount(&c, "w", &strs(&r.by_key()));
        std::fs::write(w.p("f"), b"content").unwrap();
        w.unmount();
        let dst = env.path("dst");
        let copy = |src: &Path| {
            vec![
                "snapshot".to_owned(),
                "copy".into(),
                s(src).into(),
                s(&dst).into(),
                "--mode".into(),
                "reencrypt".into(),
                "--key".into(),
                k.clone(),
            ]
        };

        // A garbled session file: its entries would be left out.
        let garbled = env.path("garbled");
        env.run_ok(&["snapshot", "create", s(&c), s(&garbled)]);
        let sess = sessions(&garbled);
        flip(&sess[0].path, (SESSION_FIXED_LEN + 10) as u64);
        let out = env.run(&strs(&copy(&garbled)));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(23), "{err}");
        let last = err.lines().last().unwrap();
        assert_eq!(
            last,
            format!(
                "envelopefs: {}: the write session {} does not open (InvalidCiphertextException: the ciphertext or its encryption context is not valid); a copy would leave out everything it wrote",
                garbled.display(),
                name_of(&sess[0].path)
            )
        );
        assert!(!dst.exists());

        // The recipient key disabled: refused by the key service, one line.
        env.run_ok(&["kms", "disable-key", "--key-id", &r.id]);
        let err = copy_refused(&env, &strs(&copy(&c)), 15, &dst);
        assert!(err.contains("DisabledException"), "{err}");
        let v1 = env.init("v1", &[]);
        let args = [
            "snapshot",
            "copy",
            s(&v1),
            s(&dst),
            "--mode",
            "reencrypt",
            "--recipient-key",
            &r.id,
        ];
        let err = copy_refused(&env, &args, 15, &dst);
        assert!(err.contains("DisabledException"), "{err}");
    });
}
