//! `snapshot delete` and `gc`: what no snapshot refers to goes, counted in
//! chunks and bytes; nothing goes while a manifest does not open or a push
//! runs; a push that reused chunks a sweep then deleted puts them back.

use crate::common::{self, Env};
use crate::fixture::*;

/// A volume pushed as s1, then one block of f0 changed and pushed as s2:
/// (repo, volume, s1's summary, s2's summary).
fn two_snapshots(
    env: &Env,
    s1_flags: &[&str],
) -> (
    Repo,
    std::path::PathBuf,
    serde_json::Value,
    serde_json::Value,
) {
    let repo = Repo::new(env, "repo");
    let v = volume_with_data(env, "v", 2, 16 << 20);
    let url = repo.url();
    let mut a = vec![
        "snapshot",
        "push",
        v.to_str().unwrap(),
        &url,
        "--name",
        "s1",
    ];
    a.extend_from_slice(s1_flags);
    let s1 = json(env, &a);
    let m = env.mount(&v, "mnt", &[]);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.p("f0"))
            .unwrap();
        f.write_all_at(&common::pattern(77, 4096), 1 << 20).unwrap();
    }
    m.unmount();
    let s2 = push(env, v.to_str().unwrap(), &repo, "s2");
    (repo, v, s1, s2)
}

#[test]
fn delete_removes_exactly_the_chunks_no_other_snapshot_needs() {
    let t = "sweep::delete_removes_exactly_the_chunks_no_other_snapshot_needs";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let (repo, _, s1, s2) = two_snapshots(&env, &[]);
    let all = repo.list("chunks/").len() as u64;
    assert_eq!(all, n(&s1, "ChunksUploaded") + n(&s2, "ChunksUploaded"));
    let bytes = repo.chunk_bytes();
    let d = json(&env, &["snapshot", "delete", &repo.snap("s1")]);
    assert_eq!(d["Deleted"], "s1");
    // The chunks s2 replaced, as many and as long as the ones it uploaded.
    assert_eq!(n(&d, "ChunksDeleted"), n(&s2, "ChunksUploaded"), "{d}");
    assert_eq!(n(&d, "BytesDeleted"), n(&s2, "BytesUploaded"), "{d}");
    assert_eq!(n(&d, "Manifests"), 1);
    assert_eq!(d["PushRunning"], false);
    assert_eq!(repo.chunk_bytes(), bytes - n(&d, "BytesDeleted"));
    assert!(repo.get("manifests/s1").is_none());
    let g = json(&env, &["snapshot", "gc", &repo.url()]);
    assert_eq!(
        (n(&g, "ChunksDeleted"), n(&g, "BytesDeleted")),
        (0, 0),
        "{g}"
    );
    json(&env, &["snapshot", "verify", &repo.snap("s2")]);
    let d2 = json(&env, &["snapshot", "delete", &repo.snap("s2")]);
    assert_eq!(n(&d2, "ChunksDeleted"), n(&s1, "ChunksUploaded"), "{d2}");
    assert!(repo.list("chunks/").is_empty());
    let l = json(&env, &["snapshot", "list", &repo.url()]);
    assert!(l["Snapshots"].as_array().unwrap().is_empty(), "{l}");
    fails(
        &env,
        &["snapshot", "delete", &repo.snap("s2")],
        16,
        "no such snapshot",
    );
}

#[test]
fn a_sweep_deletes_nothing_while_a_manifest_key_is_disabled() {
    let t = "sweep::a_sweep_deletes_nothing_while_a_manifest_key_is_disabled";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let k2 = create_key(&env, "manifest key");
    let (repo, _, _, s2) = two_snapshots(&env, &["--key", &k2]);
    env.run_ok(&["kms", "disable-key", "--key-id", &k2]);
    let before = repo.list("chunks/");
    let line = fails(&env, &["snapshot", "gc", &repo.url()], 15, "manifests/s1");
    assert!(line.contains("deletes nothing"), "{line}");
    // The disabled key is a key-state failure, not a damaged object.
    fails(
        &env,
        &[
            "snapshot",
            "pull",
            &repo.snap("s1"),
            env.path("r").to_str().unwrap(),
        ],
        15,
        "manifests/s1",
    );
    fails(
        &env,
        &["snapshot", "delete", &repo.snap("s2")],
        15,
        "manifests/s1",
    );
    assert!(
        repo.get("manifests/s2").is_none(),
        "delete removed the manifest before sweeping"
    );
    assert_eq!(repo.list("chunks/"), before, "nothing deleted");
    env.run_ok(&["kms", "enable-key", "--key-id", &k2]);
    let g = json(&env, &["snapshot", "gc", &repo.url()]);
    assert_eq!(n(&g, "ChunksDeleted"), n(&s2, "ChunksUploaded"), "{g}");
}

/// A push of `v` as `name` standing at its pause point (after it listed the
/// chunks it will reuse), and the file whose removal lets it go on.
#[cfg(feature = "fault-check")]
fn paused_push(
    env: &Env,
    repo: &Repo,
    v: &std::path::Path,
    name: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let pause = env.path(&format!("pause-{name}"));
    std::fs::write(&pause, b"").unwrap();
    let child = env
        .cmd()
        .env("ENVELOPEFS_FAULT_PUSH_PAUSE", &pause)
        .args([
            "snapshot",
            "push",
            v.to_str().unwrap(),
            &repo.url(),
            "--name",
            name,
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = env.path(&format!("pause-{name}.reached"));
    let t0 = std::time::Instant::now();
    while !reached.exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the push never reached its pause point"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, pause)
}

#[cfg(feature = "fault-check")]
fn finish(child: std::process::Child, pause: &std::path::Path) -> serde_json::Value {
    std::fs::remove_file(pause).unwrap();
    let out = common::bounded(120, move || child.wait_with_output().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[cfg(feature = "fault-check")]
#[test]
fn a_delete_during_a_push_that_reuses_its_chunks_loses_nothing() {
    let t = "sweep::a_delete_during_a_push_that_reuses_its_chunks_loses_nothing";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = volume_with_data(&env, "v", 2, 12 << 20);
    let s1 = push(&env, v.to_str().unwrap(), &repo, "s1");
    let all = repo.list("chunks/");
    // The push's lease stops the sweep.
    let (child, pause) = paused_push(&env, &repo, &v, "s2");
    assert_eq!(repo.list("leases/").len(), 1);
    let out = env.run(&["snapshot", "delete", &repo.snap("s1"), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (n(&d, "ChunksDeleted"), d["PushRunning"].clone()),
        (0, true.into()),
        "{d}"
    );
    assert_eq!(n(&d, "ChunksKept"), all.len() as u64);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} unreferenced chunks kept: a push is running; run `envelopefs snapshot gc {}` later",
            all.len(),
            repo.url()
        )),
        "{err}"
    );
    assert_eq!(repo.list("chunks/"), all);
    let s2 = finish(child, &pause);
    assert_eq!(
        (n(&s2, "ChunksSkipped"), n(&s2, "ChunksReuploaded")),
        (n(&s1, "ChunksUploaded"), 0),
        "{s2}"
    );

    // A sweep that missed the lease (gone from the listing) deletes the
    // chunks the push reuses; the push's re-check puts them back.
    let (child, pause) = paused_push(&env, &repo, &v, "s3");
    for (key, _) in repo.list("leases/") {
        repo.delete(&key);
    }
    let d = json(&env, &["snapshot", "delete", &repo.snap("s2")]);
    assert_eq!(n(&d, "ChunksDeleted"), all.len() as u64, "{d}");
    assert!(repo.list("chunks/").is_empty());
    let s3 = finish(child, &pause);
    assert_eq!(n(&s3, "ChunksReuploaded"), all.len() as u64, "{s3}");
    assert_eq!(repo.list("chunks/"), all);
    let r = json(&env, &["snapshot", "verify", &repo.snap("s3")]);
    assert!(r["Damaged"].as_array().unwrap().is_empty(), "{r}");
}
