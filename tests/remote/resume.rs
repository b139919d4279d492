//! kill -9 during a push or a pull, then a rerun: it finishes the job
//! without sending again the chunks the killed push stored, nor fetching
//! again the chunks the killed pull wrote.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{self, Env};
use crate::fixture::*;

/// Wait (at most 60 s) until `ready()`.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Names in `dir` containing `part`.
fn names_with(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

/// Bytes allocated to the files under `dir`.
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    env.cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_push_killed_midway_is_finished_by_a_rerun_without_resending() {
    let t = "resume::a_push_killed_midway_is_finished_by_a_rerun_without_resending";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = volume_with_data(&env, "v", 4, 48 << 20);
    let url = repo.url();
    let args = [
        "snapshot",
        "push",
        v.to_str().unwrap(),
        &url,
        "--name",
        "s1",
    ];
    let mut slow = args.to_vec();
    slow.extend_from_slice(&["--limit-rate", "4M"]);
    let mut child = spawn(&env, &slow);
    wait_for("3 chunks stored", || repo.list("chunks/").len() >= 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let stored = repo.list("chunks/");
    let killed = stored.len() as u64;
    assert!(
        repo.get("manifests/s1").is_none(),
        "the killed push wrote no manifest"
    );
    assert_eq!(
        names_with(&env.path(""), "envelopefs-push").len(),
        1,
        "the killed push's staging copy"
    );
    let s = json(&env, &args);
    let total = repo.list("chunks/").len() as u64;
    assert!(
        killed < total,
        "the push was killed midway: {killed} of {total}"
    );
    assert_eq!(n(&s, "ChunksSkipped"), killed, "{s}");
    assert_eq!(n(&s, "ChunksUploaded"), total - killed, "{s}");
    assert_eq!(
        n(&s, "BytesSkipped"),
        stored.iter().map(|(_, b)| b).sum::<u64>(),
        "{s}"
    );
    assert!(
        names_with(&env.path(""), "envelopefs-push").is_empty(),
        "staging left"
    );
    // The killed push's lease stays until it is an hour old.
    assert_eq!(repo.list("leases/").len(), 1);
    let r = json(&env, &["snapshot", "verify", &repo.snap("s1")]);
    assert!(r["Damaged"].as_array().unwrap().is_empty(), "{r}");
}

#[test]
fn a_pull_killed_midway_is_finished_by_a_rerun_without_refetching() {
    let t = "resume::a_pull_killed_midway_is_finished_by_a_rerun_without_refetching";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = volume_with_data(&env, "v", 4, 48 << 20);
    push(&env, v.to_str().unwrap(), &repo, "s1");
    let dst = env.path("dst");
    let snap = repo.snap("s1");
    let mut child = spawn(
        &env,
        &[
            "snapshot",
            "pull",
            &snap,
            dst.to_str().unwrap(),
            "--jobs",
            "1",
            "--limit-rate",
            "4M",
        ],
    );
    let top = env.path("");
    wait_for("12 MiB written", || {
        names_with(&top, ".dst.envelopefs-partial.")
            .iter()
            .map(|n| allocated(&top.join(n)))
            .sum::<u64>()
            >= 12 << 20
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dst.exists());
    let p = json(&env, &["snapshot", "pull", &snap, dst.to_str().unwrap()]);
    assert!(n(&p, "ChunksReused") >= 2, "{p}");
    assert!(n(&p, "BytesReused") >= 8 << 20, "{p}");
    assert_eq!(
        n(&p, "BytesReused") + n(&p, "BytesDownloaded"),
        repo.chunk_bytes(),
        "{p}"
    );
    assert!(n(&p, "BytesDownloaded") < repo.chunk_bytes(), "{p}");
    assert!(
        names_with(&top, "envelopefs-partial").is_empty(),
        "the killed run's partial is removed"
    );
    let m = env.mount(&dst, "mnt", &[]);
    for i in 0..4 {
        let got = std::fs::read(m.p(&format!("f{i}"))).unwrap();
        assert!(got == common::pattern(i + 1, 12 << 20), "f{i} differs");
    }
    m.unmount();
}
