//! `fsck` of a write-only volume: fully through the key service (the
//! recipient's private key), and with the public key alone (by key or by
//! file) as far as that allows. Clean volumes are clean in both; each planted
//! fault is named by its backing path, by exactly the checks able to see it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
use crate::support::*;
use crate::tree::*;

/// An fsck run: exit code and its JSON report.
fn fsck(env: &Env, cipher: &Path, flags: &[&str]) -> (i32, Value) {
    let mut args = vec!["fsck", cipher.to_str().unwrap(), "--json"];
    args.extend_from_slice(flags);
    let out = env.run(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck {flags:?}: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The (backing path, problem) pairs of a report.
fn problems(r: &Value) -> Vec<(String, String)> {
    r["Problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let b = p["BackingPath"].as_str().unwrap().to_owned();
            (b, p["Problem"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The report (exit code 30) names each backing path with a problem
/// containing its part.
fn assert_names(code: i32, r: &Value, want: &[(&str, &str)]) {
    assert_eq!(code, 30, "{r}");
    for (backing, part) in want {
        let found = problems(r)
            .iter()
            .any(|(b, p)| b.ends_with(backing) && p.contains(part));
        assert!(found, "{backing}: {part}: {r:#}");
    }
}

fn rel(cipher: &Path, p: &Path) -> String {
    p.strip_prefix(cipher).unwrap().display().to_string()
}

#[test]
fn fsck_checks_a_write_only_volume_fully_and_with_its_public_key() {
    if !need_fuse("fsck_checks_a_write_only_volume_fully_and_with_its_public_key") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let c = init_v2(&env, "c", &r);
        let der = r.der_file(&env, "r.der");
        let mut tree = Tree::new();
        let w = env.mount(&c, "w", &strs(&r.by_key()));
        for (name, len) in [("blk", 3 * BLOCK + 100), ("ok1", 10), ("empty", 0)] {
            put(&w.mnt, &mut tree, name, Node::File(pattern(7, len)));
        }
        put(&w.mnt, &mut tree, "dir", Node::Dir);
        put(
            &w.mnt,
            &mut tree,
            "dir/torn",
            Node::File(pattern(8, 2 * BLOCK)),
        );
        put(
            &w.mnt,
            &mut tree,
            &"l".repeat(250),
            Node::File(b"x".to_vec()),
        );
        put(&w.mnt, &mut tree, "link", Node::Link("dir/torn".into()));
        xattr_set(&w.p("dir"), "user.note", b"dir xattr");
        xattr_set(&w.p("ok1"), "user.note", b"file xattr");
        w.unmount();
        let w = env.mount(&c, "w", &strs(&Recipient::by_file(&der)));
        std::fs::write(w.p("z1"), b"second session").unwrap();
        w.unmount();

        let by_key = ["--recipient-key", r.id.as_str()];
        let by_file = ["--recipient-file", der.to_str().unwrap()];
        let (code, full) = fsck(&env, &c, &[]);
        assert_eq!((code, &full["Clean"]), (0, &Value::Bool(true)), "{full}");
        assert_eq!(full["Scope"], "Full");
        for flags in [&by_key[..], &by_file[..]] {
            let (code, public) = fsck(&env, &c, flags);
            assert_eq!(
                (code, &public["Clean"]),
                (0, &Value::Bool(true)),
                "{public}"
            );
            assert_eq!(public["Scope"], "PublicKey");
            for field in ["Sessions", "Directories", "Files", "Symlinks", "Bytes"] {
                assert_eq!(public[field], full[field], "{field}");
            }
        }
        assert_eq!(
            (full["Sessions"].as_u64(), full["Files"].as_u64()),
            (Some(2), Some(6))
        );
        let text = env.run_ok(&["fsck", c.to_str().unwrap(), by_key[0], by_key[1]]);
        assert!(text.contains("public key only"), "{text}");
        assert!(
            text.contains("clean: 2 directories, 6 files, 1 symlinks"),
            "{text}"
        );

        // Another key's public half, or an ordinary volume: refused.
        let other = Recipient::rsa(&env).der_file(&env, "other.der");
        let v1 = env.init("v1", &[]);
        for (dir, flags) in [
            (&c, ["--recipient-file", other.to_str().unwrap()]),
            (&v1, by_key),
        ] {
            let mut args = vec!["fsck", dir.to_str().unwrap()];
            args.extend_from_slice(&flags);
            let out = env.run(&args);
            assert_ne!(out.status.code(), Some(0));
            assert!(out.stdout.is_empty());
            one_line_error(
                "fsck with the wrong recipient",
                &String::from_utf8_lossy(&out.stderr),
            );
        }

        // Where each fault goes.
        let m = env.mount(&c, "m", &[]);
        let b = |name: &str| backing_path(&c, &m.p(name));
        let (blk, ok1, torn, z1) = (b("blk"), b("ok1"), b("dir/torn"), b("z1"));
        m.unmount();
        let z1_session = header_session(&header_of(&ConfigFileV2::read(&c).config, &z1));
        let second = sessions(&c)
            .into_iter()
            .find(|s| s.id == z1_session)
            .unwrap();
        // A block's ciphertext: only the private key can see it.
        flip(&blk, (HEADER_LEN + BLOCK + BLOCK_OVERHEAD + 100) as u64);
        let ok1_side = PathBuf::from(format!("{}.name", ok1.display()));
        std::fs::remove_file(&ok1_side).unwrap();
        // The recipient fingerprint in a session file, which the public key
        // checks (its sealed body only the private key can).
        flip(&second.path, 30);
        std::fs::write(c.join("planted"), b"x").unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&torn).unwrap();
        f.set_len((HEADER_LEN + BLOCK + BLOCK_OVERHEAD + 20) as u64)
            .unwrap();
        drop(f);

        let (code, full) = fsck(&env, &c, &[]);
        let (blk, ok1, torn, z1) = (rel(&c, &blk), rel(&c, &ok1), rel(&c, &torn), rel(&c, &z1));
        let session = rel(&c, &second.path);
        assert_names(
            code,
            &full,
            &[
                (&blk, "block 1 fails authentication"),
                (&ok1, "name does not decrypt"),
                (&session, "write session"),
                (&z1, "name does not decrypt"),
                ("planted", "name does not decrypt"),
                (&torn, "torn tail"),
            ],
        );
        for flags in [&by_key[..], &by_file[..]] {
            let (code, public) = fsck(&env, &c, flags);
            assert_names(
                code,
                &public,
                &[
                    (&ok1, "no side file"),
                    (&session, "write session"),
                    (&z1, "which is missing or damaged"),
                    ("planted", "not a name this volume makes"),
                    (&torn, "torn tail"),
                ],
            );
            assert!(
                !problems(&public).iter().any(|(b, _)| *b == blk),
                "a block's content is beyond the public key: {public:#}"
            );
        }
    });
}
