//! A full mount writes a tree, a write-only mount adds to it (new files and
//! directories, also inside the earlier ones; writes, appends, rewrites in
//! the middle and reads of its own files), and a full mount reads all of it
//! back byte-exact. With an RSA recipient named by key, and an ECC one given
//! as a PEM file; the key-service calls of each mount are counted.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::common::*;
use crate::support::*;
use crate::tree::*;

/// An xattr the tests set: (entry, name, value).
pub type Xattr = (&'static str, &'static str, &'static [u8]);

pub const EARLIER_XATTRS: [Xattr; 2] = [
    ("multi", "user.note", b"earlier xattr value"),
    ("docs", "user.dirnote", b"earlier dir xattr"),
];

pub const OWN_XATTRS: [Xattr; 2] = [
    ("new1.txt", "user.mine", b"own xattr"),
    ("newdir", "user.minedir", b"own dir xattr"),
];

pub fn long_name(first: char) -> String {
    let mut s = String::from(first);
    s.push_str(&"o".repeat(254));
    assert_eq!(s.len(), 255);
    s
}

/// The tree a first (full) mount writes: files of 0, 1, 4096, 4097,
/// 3 blocks + 17 and 100,000 bytes, nested directories, a symlink, a name of
/// 255 bytes, and an xattr on a file and on a directory.
pub fn write_earlier(root: &Path) -> Tree {
    let mut t = Tree::new();
    for (i, (name, len)) in [
        ("empty", 0),
        ("one", 1),
        ("block", BLOCK),
        ("blockplus", BLOCK + 1),
        ("multi", 3 * BLOCK + 17),
        ("big", 100_000),
    ]
    .into_iter()
    .enumerate()
    {
        put(root, &mut t, name, Node::File(pattern(i as u64 + 1, len)));
    }
    put(root, &mut t, "docs", Node::Dir);
    put(
        root,
        &mut t,
        "docs/readme.txt",
        Node::File(pattern(20, 5000)),
    );
    put(root, &mut t, "docs/sub", Node::Dir);
    put(
        root,
        &mut t,
        "docs/sub/deep.bin",
        Node::File(pattern(21, 12_288)),
    );
    put(root, &mut t, "link", Node::Link("docs/readme.txt".into()));
    put(root, &mut t, &long_name('L'), Node::File(pattern(22, 300)));
    for (rel, name, value) in EARLIER_XATTRS {
        xattr_set(&root.join(rel), name, value);
    }
    t
}

/// Each xattr is the only one of its entry, with its value.
pub fn assert_xattrs(root: &Path, xattrs: &[Xattr]) {
    for (rel, name, value) in xattrs {
        let p = root.join(rel);
        assert_eq!(xattr_list(&p), vec![name.to_string()], "{rel}");
        assert_eq!(xattr_get(&p, name).as_deref(), Some(*value), "{rel} {name}");
    }
}

/// What a write-only mount does with its own files; returns the top-level
/// names it made.
pub fn write_own(root: &Path, t: &mut Tree) -> Vec<String> {
    // Write, append through another descriptor, rewrite across a block
    // boundary, and read it all back through the first descriptor.
    let mut data = pattern(30, 10_000);
    let p = root.join("new1.txt");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    f.write_all_at(&data, 0).unwrap();
    let tail = pattern(31, 3000);
    OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(&tail)
        .unwrap();
    data.extend_from_slice(&tail);
    let middle = pattern(32, 500);
    f.write_all_at(&middle, 3900).unwrap();
    data[3900..4400].copy_from_slice(&middle);
    let mut back = vec![0u8; data.len() + 10];
    let n = f.read_at(&mut back, 0).unwrap();
    assert_eq!(
        &back[..n],
        &data[..],
        "own file read back through its descriptor"
    );
    drop(f);
    let mut again = Vec::new();
    std::fs::File::open(&p)
        .unwrap()
        .read_to_end(&mut again)
        .unwrap();
    assert_eq!(again, data, "own file read back through a new open");
    t.insert("new1.txt".into(), Node::File(data));

    put(
        root,
        t,
        "docs/new2.bin",
        Node::File(pattern(33, 2 * BLOCK + 1)),
    );
    put(root, t, "docs/sub/new5", Node::File(vec![0x5a]));
    put(root, t, "newdir", Node::Dir);
    put(root, t, "newdir/new3", Node::File(Vec::new()));
    put(root, t, "newdir/deeper", Node::Dir);
    put(
        root,
        t,
        "newdir/deeper/n4",
        Node::File(pattern(34, BLOCK + 1)),
    );
    put(root, t, "newlink", Node::Link("new1.txt".into()));
    assert_eq!(
        std::fs::read_link(root.join("newlink")).unwrap(),
        Path::new("new1.txt")
    );
    let own_long = long_name('W');
    put(root, t, &own_long, Node::File(pattern(35, 4500)));
    assert_eq!(
        std::fs::read(root.join(&own_long)).unwrap(),
        pattern(35, 4500)
    );

    // Shrink its own file.
    let shrink = pattern(36, 9000);
    std::fs::write(root.join("shrink"), &shrink).unwrap();
    OpenOptions::new()
        .write(true)
        .open(root.join("shrink"))
        .unwrap()
        .set_len(5000)
        .unwrap();
    assert_eq!(std::fs::read(root.join("shrink")).unwrap(), &shrink[..5000]);
    t.insert("shrink".into(), Node::File(shrink[..5000].to_vec()));

    for (rel, name, value) in OWN_XATTRS {
        xattr_set(&root.join(rel), name, value);
    }
    assert_xattrs(root, &OWN_XATTRS);
    let mut top = vec![
        "new1.txt".to_owned(),
        "newdir".into(),
        "newlink".into(),
        own_long,
        "shrink".into(),
    ];
    top.sort();
    top
}

/// The whole round trip with `r` as recipient; `write_only` are the flags
/// of the write-only mount and `wo_calls` the key-service calls it makes.
fn round_trip(env: &Env, r: &Recipient, write_only: &[String], wo_calls: &[(&str, usize)]) {
    let c = init_v2(env, "c", r);
    let cfg = ConfigFileV2::read(&c);
    assert_eq!(cfg.config.format_version, 2);
    assert_eq!(cfg.config.header_length, HEADER_LEN as u32);
    assert_eq!(cfg.config.recipient_key_arn, r.arn);
    assert_eq!(cfg.config.recipient_key_spec, r.spec);
    assert_eq!(
        cfg.config.recipient_public_key_sha256,
        hex(&r.fingerprint())
    );
    assert!(cfg.mac_is_valid_for(&r.fingerprint()), "the config MAC");
    assert!(sessions(&c).is_empty(), "init makes no session");

    // First session: a full mount writes the earlier tree.
    let mark = audit_mark(env);
    let m = env.mount(&c, "m", &[]);
    let mut tree = write_earlier(&m.mnt);
    assert_tree(&m.mnt, &tree);
    assert_xattrs(&m.mnt, &EARLIER_XATTRS);
    m.unmount();
    assert_eq!(audit_since(env, mark), ops(&[("GetPublicKey", 1)]));
    let first = sessions(&c);
    assert_eq!(first.len(), 1, "one session per writing mount");

    // Second session: write-only.
    let mark = audit_mark(env);
    let w = env.mount(&c, "w", &strs(write_only));
    let own_top = write_own(&w.mnt, &mut tree);
    assert_eq!(
        names_in(&w.mnt),
        own_top,
        "a write-only mount lists its own"
    );
    w.unmount();
    assert_eq!(audit_since(env, mark), ops(wo_calls));
    let both = sessions(&c);
    assert_eq!(both.len(), 2, "the write-only mount made one session");
    for s in &both {
        assert_eq!(s.fingerprint, r.fingerprint(), "sealed to the recipient");
        check_session_body(r, s);
    }

    // A full mount reads everything, one unseal per session.
    let mark = audit_mark(env);
    let m = env.mount(&c, "m", &[]);
    assert_tree(&m.mnt, &tree);
    assert_xattrs(&m.mnt, &EARLIER_XATTRS);
    assert_xattrs(&m.mnt, &OWN_XATTRS);
    let own_sid = both.iter().find(|s| s.id != first[0].id).unwrap().id;
    for (rel, sid) in [("big", first[0].id), ("new1.txt", own_sid)] {
        let h = header_of(&cfg.config, &backing_path(&c, &m.p(rel)));
        assert_eq!(header_session(&h), sid, "{rel}'s header names its session");
    }
    m.unmount();
    assert_eq!(
        audit_since(env, mark),
        ops(&[("GetPublicKey", 1), (r.unseal_op(), 2)])
    );
    assert_eq!(sessions(&c).len(), 2, "reading makes no session");
}

/// The body's shape: RSA-OAEP ciphertext as long as the modulus, or
/// len | P_e | nonce | AES-GCM(K) | tag for ECDH.
fn check_session_body(r: &Recipient, s: &SessionFile) {
    match r.spec.as_str() {
        "RSA_2048" => {
            assert_eq!(s.alg, 1);
            assert_eq!(s.body.len(), 256);
        }
        "ECC_NIST_P256" => {
            assert_eq!(s.alg, 2);
            let len = u16::from_be_bytes([s.body[0], s.body[1]]) as usize;
            assert_eq!(len, 91, "a P-256 SubjectPublicKeyInfo");
            assert_eq!(s.body.len(), 2 + len + 12 + 32 + 16);
        }
        other => panic!("no body shape for {other}"),
    }
}

#[test]
fn rsa_round_trip_full_then_write_only_then_full() {
    if !need_fuse("rsa_round_trip_full_then_write_only_then_full") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        round_trip(&env, &r, &r.by_key(), &[("GetPublicKey", 1)]);
    });
}

#[test]
fn ecc_round_trip_named_by_key() {
    if !need_fuse("ecc_round_trip_named_by_key") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::ecc(&env);
        round_trip(&env, &r, &r.by_key(), &[("GetPublicKey", 1)]);
    });
}

#[test]
fn ecc_round_trip_with_a_pem_recipient_file() {
    if !need_fuse("ecc_round_trip_with_a_pem_recipient_file") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::ecc(&env);
        let pem = r.pem_file(&env, "recipient.pem");
        // Given the public key, the write-only mount asks the key service nothing.
        round_trip(&env, &r, &Recipient::by_file(&pem), &[]);
    });
}

/// The oracle itself: the tree, the own writes and the checks hold on an
/// ordinary volume, so a failure above is the write-only volume's.
#[test]
fn round_trip_model_holds_on_an_ordinary_volume() {
    if !need_fuse("round_trip_model_holds_on_an_ordinary_volume") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let mut tree = write_earlier(&m.mnt);
        m.unmount();
        let m = env.mount(&c, "m", &[]);
        write_own(&m.mnt, &mut tree);
        m.unmount();
        // The audit oracle sees a daemon's calls: one Decrypt of the volume key.
        let mark = audit_mark(&env);
        let m = env.mount(&c, "m", &[]);
        assert_tree(&m.mnt, &tree);
        assert_xattrs(&m.mnt, &EARLIER_XATTRS);
        assert_xattrs(&m.mnt, &OWN_XATTRS);
        m.unmount();
        assert_eq!(audit_since(&env, mark), ops(&[("Decrypt", 1)]));
    });
}
