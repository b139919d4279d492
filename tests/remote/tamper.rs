//! Every way the repository's owner can change a snapshot: a flipped chunk,
//! a missing chunk, manifests swapped between two snapshots, a manifest
//! from another repository. A pull names the object in one line, exits 36
//! and leaves nothing at its destination; verify names the same object.

use std::path::Path;

use crate::common::{self, Env};
use crate::fixture::*;

const DAMAGED: i32 = 36;

/// Nothing at `dst` and no partial copy beside it.
fn nothing_at(dst: &Path) {
    assert!(!dst.exists(), "{} exists", dst.display());
    let parent = dst.parent().unwrap();
    let left: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("envelopefs-partial") || n.contains("envelopefs-restore"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn pull_fails(env: &Env, repo: &Repo, snap: &str, part: &str) -> String {
    let dst = env.path("dst");
    let line = fails(
        env,
        &["snapshot", "pull", &repo.snap(snap), dst.to_str().unwrap()],
        DAMAGED,
        part,
    );
    nothing_at(&dst);
    line
}

/// verify exits 36 and names `part` on standard error.
fn verify_names(env: &Env, repo: &Repo, snap: &str, part: &str) {
    let out = env.run(&["snapshot", "verify", &repo.snap(snap)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(DAMAGED), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("envelopefs: ") && l.contains(part)),
        "{err}"
    );
}

/// A repository with snapshots s1 and s2 of a volume that changed between
/// them; the chunks s1 refers to.
fn two_snapshots(env: &Env) -> (Repo, std::path::PathBuf, Vec<(String, u64)>) {
    let repo = Repo::new(env, "repo");
    let v = volume_with_data(env, "v", 3, 9_000_000);
    push(env, v.to_str().unwrap(), &repo, "s1");
    let s1_chunks = repo.list("chunks/");
    let m = env.mount(&v, "mnt", &[]);
    std::fs::write(m.p("f0"), common::pattern(99, 3_000_000)).unwrap();
    m.unmount();
    push(env, v.to_str().unwrap(), &repo, "s2");
    (repo, v, s1_chunks)
}

#[test]
fn a_flipped_or_missing_chunk_is_named_and_nothing_is_restored() {
    if !common::need_fuse("tamper::a_flipped_or_missing_chunk_is_named_and_nothing_is_restored") {
        return;
    }
    let env = Env::new();
    let (repo, _, chunks) = two_snapshots(&env);
    // The largest chunk: which one sits where in the listing is random (the
    // keys are), and small chunks (the config, a directory's IV) are short.
    let (key, _) = chunks.iter().max_by_key(|(_, n)| *n).unwrap();
    let good = repo.get(key).unwrap();
    let mut bad = good.clone();
    bad[1000] ^= 0x01;
    repo.put(key, &bad);
    let line = pull_fails(&env, &repo, "s1", key);
    assert!(line.contains("does not match its hash"), "{line}");
    verify_names(&env, &repo, "s1", key);
    // Shorter, and longer, than the manifest says.
    repo.put(key, &good[..good.len() - 1]);
    pull_fails(&env, &repo, "s1", key);
    repo.put(key, &[&good[..], b"x"].concat());
    let line = pull_fails(&env, &repo, "s1", key);
    assert!(line.contains("longer than the manifest says"), "{line}");
    verify_names(&env, &repo, "s1", key);
    repo.delete(key);
    let line = pull_fails(&env, &repo, "s1", key);
    assert!(line.contains("missing from the repository"), "{line}");
    verify_names(&env, &repo, "s1", key);
    repo.put(key, &good);
    let v = json(&env, &["snapshot", "verify", &repo.snap("s1")]);
    assert!(v["Damaged"].as_array().unwrap().is_empty(), "{v}");
    json(
        &env,
        &[
            "snapshot",
            "pull",
            &repo.snap("s1"),
            env.path("ok").to_str().unwrap(),
        ],
    );
}

#[test]
fn swapped_manifests_do_not_open_under_each_others_names() {
    if !common::need_fuse("tamper::swapped_manifests_do_not_open_under_each_others_names") {
        return;
    }
    let env = Env::new();
    let (repo, _, _) = two_snapshots(&env);
    let m1 = repo.get("manifests/s1").unwrap();
    let m2 = repo.get("manifests/s2").unwrap();
    repo.put("manifests/s1", &m2);
    repo.put("manifests/s2", &m1);
    for snap in ["s1", "s2"] {
        let key = format!("manifests/{snap}");
        let line = pull_fails(&env, &repo, snap, &key);
        assert!(line.contains("does not authenticate"), "{line}");
        fails(
            &env,
            &["snapshot", "verify", &repo.snap(snap)],
            DAMAGED,
            &key,
        );
    }
    // A copy under a new name does not open either.
    repo.put("manifests/s3", &m1);
    pull_fails(&env, &repo, "s3", "manifests/s3");
}

#[test]
fn a_manifest_from_another_repository_does_not_open() {
    if !common::need_fuse("tamper::a_manifest_from_another_repository_does_not_open") {
        return;
    }
    let env = Env::new();
    let (repo, v, _) = two_snapshots(&env);
    let other = Repo::new(&env, "other");
    push(&env, v.to_str().unwrap(), &other, "s1");
    // Its chunks are all here already: only the manifest tells them apart.
    repo.put("manifests/s1", &other.get("manifests/s1").unwrap());
    let line = pull_fails(&env, &repo, "s1", "manifests/s1");
    assert!(line.contains("does not authenticate"), "{line}");
    fails(
        &env,
        &["snapshot", "verify", &repo.snap("s1")],
        DAMAGED,
        "manifests/s1",
    );
    // A flipped byte in a manifest, and one cut short.
    let mut m2 = repo.get("manifests/s2").unwrap();
    let last = m2.len() - 1;
    m2[last] ^= 0x80;
    repo.put("manifests/s2", &m2);
    pull_fails(&env, &repo, "s2", "manifests/s2");
    repo.put("manifests/s2", &m2[..20]);
    pull_fails(&env, &repo, "s2", "manifests/s2");
}
