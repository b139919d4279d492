//! Push and pull back: the restored volume is the pushed one entry by entry
//! (names, bytes, symlinks, xattrs, modes, owners, mtimes, hard links,
//! holes), through a mount and in the backing tree; under another key too.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::{self, Env};
use crate::fixture::*;

/// A volume with one of everything, written through `m`.
fn populate(m: &common::Mount) {
    std::fs::create_dir_all(m.p("d/sub")).unwrap();
    std::fs::write(m.p("big"), common::pattern(7, 9_000_000)).unwrap();
    std::fs::write(m.p("d/small"), b"small file\n").unwrap();
    std::fs::write(m.p("empty"), b"").unwrap();
    std::fs::hard_link(m.p("d/small"), m.p("d/sub/hard")).unwrap();
    std::os::unix::fs::symlink("d/small", m.p("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", m.p("d/dangling")).unwrap();
    // A file with a hole: 12 MiB, data only at its start and end.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.p("sparse"))
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", 12 << 20).unwrap();
    drop(f);
    common::xattr_set(&m.p("d/small"), "user.colour", b"blue");
    common::xattr_set(&m.p("d"), "user.dir", &[0u8, 1, 2, 255]);
    std::fs::set_permissions(m.p("big"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(m.p("d/sub"), std::fs::Permissions::from_mode(0o2750)).unwrap();
    std::os::unix::fs::chown(m.p("d/small"), Some(1234), Some(5678)).unwrap();
    let past = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 123_456_789);
    let f = std::fs::File::open(m.p("big")).unwrap();
    f.set_modified(past).unwrap();
}

/// A backing file of `cipher` whose allocated bytes are far fewer than its size.
fn has_hole(cipher: &Path) -> bool {
    let mut stack = vec![cipher.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let md = std::fs::symlink_metadata(e.as_ref().unwrap().path()).unwrap();
            if md.is_dir() {
                stack.push(e.unwrap().path());
            } else if md.is_file() && md.len() > 12 << 20 && md.blocks() * 512 < 1 << 20 {
                return true;
            }
        }
    }
    false
}

#[test]
fn push_and_pull_give_back_the_same_volume_entry_by_entry() {
    let t = "roundtrip::push_and_pull_give_back_the_same_volume_entry_by_entry";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = env.init("v", &[]);
    let m = env.mount(&v, "mnt", &[]);
    populate(&m);
    let want_plain = describe(&m.mnt, false);
    // Pushed while mounted: the snapshot holds the mount's writers briefly.
    let s1 = push(&env, v.to_str().unwrap(), &repo, "s1");
    assert_eq!(s1["Name"], "s1");
    assert_eq!(s1["Url"], repo.url());
    assert_eq!(n(&s1, "ChunksSkipped"), 0);
    assert!(n(&s1, "ChunksUploaded") >= 3, "{s1}");
    assert_eq!(n(&s1, "BytesUploaded"), repo.chunk_bytes());
    assert!(n(&s1, "BytesScanned") > 21_000_000, "{s1}");
    assert!(repo.list("leases/").is_empty(), "the lease is removed");
    m.unmount();
    let want_raw = describe(&v, true);
    // Pushed again unmounted: nothing new to upload.
    let s2 = push(&env, v.to_str().unwrap(), &repo, "s2");
    assert_eq!(
        (n(&s2, "ChunksUploaded"), n(&s2, "BytesUploaded")),
        (0, 0),
        "{s2}"
    );
    assert_eq!(n(&s2, "ChunksSkipped"), n(&s1, "ChunksUploaded"));

    let listed = json(&env, &["snapshot", "list", &repo.url()]);
    let names: Vec<&str> = listed["Snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s1", "s2"]);

    for (snap, raw) in [("s1", false), ("s2", true)] {
        let dst = env.path(&format!("restored-{snap}"));
        let p = json(
            &env,
            &["snapshot", "pull", &repo.snap(snap), dst.to_str().unwrap()],
        );
        assert_eq!(n(&p, "BytesDownloaded"), repo.chunk_bytes(), "{p}");
        assert_eq!(n(&p, "BytesReused"), 0);
        if raw {
            assert_same(&describe(&dst, true), &want_raw, "backing tree of s2");
        }
        assert!(
            has_hole(&dst),
            "the sparse file's hole is restored as a hole"
        );
        let rm = env.mount(&dst, &format!("mnt-{snap}"), &[]);
        assert_same(&describe(&rm.mnt, false), &want_plain, snap);
        rm.unmount();
    }
    let v2 = json(&env, &["snapshot", "verify", &repo.snap("s2")]);
    assert_eq!(v2["Damaged"].as_array().unwrap().len(), 0);
}

#[test]
fn pull_under_another_key_rekey_and_reencrypt() {
    let t = "roundtrip::pull_under_another_key_rekey_and_reencrypt";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = env.init("v", &[]);
    let m = env.mount(&v, "mnt", &[]);
    populate(&m);
    let want = describe(&m.mnt, false);
    m.unmount();
    push(&env, v.to_str().unwrap(), &repo, "s1");
    let k2 = create_key(&env, "second");
    for mode in ["rekey", "reencrypt"] {
        let dst = env.path(mode);
        json(
            &env,
            &[
                "snapshot",
                "pull",
                &repo.snap("s1"),
                dst.to_str().unwrap(),
                "--key",
                &k2,
                "--mode",
                mode,
            ],
        );
        let conf = std::fs::read_to_string(dst.join("envelopefs.conf")).unwrap();
        assert!(
            conf.contains(&k2),
            "{mode}: the copy is under the other key: {conf}"
        );
        let names: Vec<String> = std::fs::read_dir(env.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.contains("envelopefs-restore") || n.contains("partial")),
            "staging left: {names:?}"
        );
        let rm = env.mount(&dst, &format!("mnt-{mode}"), &[]);
        let got = describe(&rm.mnt, false);
        rm.unmount();
        // Owners, modes, times, xattrs, links and bytes, through the new key.
        assert_same(&got, &want, mode);
    }
}

#[test]
fn refusals_are_one_line_with_their_exit_codes() {
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = env.init("v", &[]);
    push(&env, v.to_str().unwrap(), &repo, "s1");
    fails(
        &env,
        &[
            "snapshot",
            "push",
            v.to_str().unwrap(),
            &repo.url(),
            "--name",
            "s1",
        ],
        2,
        "s1 exists",
    );
    fails(
        &env,
        &[
            "snapshot",
            "push",
            v.to_str().unwrap(),
            &repo.url(),
            "--name",
            ".bad",
        ],
        2,
        "is not a snapshot name",
    );
    let dst = env.path("dst");
    fails(
        &env,
        &[
            "snapshot",
            "pull",
            &repo.snap("nope"),
            dst.to_str().unwrap(),
        ],
        16,
        "no such snapshot",
    );
    fails(
        &env,
        &["snapshot", "pull", &repo.snap("s1"), v.to_str().unwrap()],
        2,
        "exists",
    );
    let missing = format!("file://{}", env.path("no-such-dir").display());
    fails(
        &env,
        &["snapshot", "list", &missing],
        35,
        "cannot open the repository directory",
    );
    #[cfg(not(feature = "s3"))]
    fails(
        &env,
        &["snapshot", "list", "s3://bucket/prefix"],
        26,
        "built without S3 support",
    );
    #[cfg(feature = "s3")]
    if let Repo::S3 { .. } = &repo {
        fails(
            &env,
            &["snapshot", "list", "s3://no-such-bucket/prefix"],
            35,
            "NoSuchBucket",
        );
    }
    fails(
        &env,
        &["snapshot", "list", "file://relative/path"],
        2,
        "absolute path",
    );
    assert!(!dst.exists());
}

/// Plaintext names may be any bytes: a name that is not UTF-8 survives.
#[test]
fn names_that_are_not_utf8_round_trip() {
    let t = "roundtrip::names_that_are_not_utf8_round_trip";
    if !common::need_fuse(t) {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = env.init("v", &["--plaintext-names"]);
    let m = env.mount(&v, "mnt", &[]);
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9-\xff");
    std::fs::create_dir(m.mnt.join(odd)).unwrap();
    std::fs::write(m.mnt.join(odd).join(odd), b"latin-1").unwrap();
    std::os::unix::fs::symlink(odd, m.p("to-odd")).unwrap();
    m.unmount();
    let want = describe(&v, true);
    push(&env, v.to_str().unwrap(), &repo, "s1");
    let dst = env.path("r");
    json(
        &env,
        &["snapshot", "pull", &repo.snap("s1"), dst.to_str().unwrap()],
    );
    assert_same(&describe(&dst, true), &want, "backing tree");
    assert!(!std::fs::read(dst.join(odd).join(odd)).unwrap().is_empty());
    let rm = env.mount(&dst, "mnt-r", &[]);
    assert_eq!(
        std::fs::read(rm.mnt.join(odd).join(odd)).unwrap(),
        b"latin-1"
    );
    assert_eq!(std::fs::read_link(rm.p("to-odd")).unwrap().as_os_str(), odd);
    rm.unmount();
}

/// A write-only volume has no master key of its own to wrap the manifest:
/// push needs --key; with one, the snapshot restores to the same volume.
#[test]
fn a_write_only_volume_is_pushed_under_a_named_key() {
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let out = env.run_ok(&[
        "kms",
        "create-key",
        "--key-spec",
        "ECC_NIST_P256",
        "--key-usage",
        "KEY_AGREEMENT",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let recipient = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let vol = env.init("v", &["--recipient-key", &recipient]);
    let url = repo.url();
    let push = [
        "snapshot",
        "push",
        vol.to_str().unwrap(),
        &url,
        "--name",
        "s1",
    ];
    fails(&env, &push, 2, "write-only volume (format 2)");
    assert!(repo.list("manifests/").is_empty());
    let k = create_key(&env, "manifests");
    let mut with_key = push.to_vec();
    with_key.extend_from_slice(&["--key", &k]);
    json(&env, &with_key);
    let dst = env.path("r");
    json(
        &env,
        &["snapshot", "pull", &repo.snap("s1"), dst.to_str().unwrap()],
    );
    assert_same(
        &describe(&dst, true),
        &describe(&vol, true),
        "write-only volume",
    );
}
