//! A second push uploads only what changed: one 4 KiB block of one file in
//! a 64 MiB volume costs at most 8 MB, not the file or the volume.

use std::os::unix::fs::FileExt;

use crate::common::{self, Env};
use crate::fixture::*;

#[test]
fn one_changed_block_uploads_at_most_8_mb() {
    let t = "incremental::one_changed_block_uploads_at_most_8_mb";
    if !common::need_fuse(t) {
        return;
    }
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = volume_with_data(&env, "v", 4, 64 << 20);
    let s1 = push(&env, v.to_str().unwrap(), &repo, "s1");
    assert!(n(&s1, "BytesScanned") >= 64 << 20, "{s1}");
    assert_eq!(n(&s1, "BytesUploaded"), repo.chunk_bytes());
    let before = repo.chunk_bytes();
    let total_chunks = n(&s1, "ChunksUploaded");
    assert!(total_chunks >= 16, "{s1}");

    let m = env.mount(&v, "mnt", &[]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.p("f2"))
        .unwrap();
    f.write_all_at(&common::pattern(1234, 4096), 5 << 20)
        .unwrap();
    drop(f);
    m.unmount();

    let s2 = push(&env, v.to_str().unwrap(), &repo, "s2");
    let up = n(&s2, "BytesUploaded");
    assert!(
        up <= 8_000_000,
        "one block changed, {up} bytes uploaded: {s2}"
    );
    assert!((1..=2).contains(&n(&s2, "ChunksUploaded")), "{s2}");
    assert_eq!(
        n(&s2, "ChunksUploaded") + n(&s2, "ChunksSkipped"),
        total_chunks,
        "{s2}"
    );
    assert_eq!(
        n(&s2, "BytesUploaded") + n(&s2, "BytesSkipped"),
        n(&s1, "BytesUploaded"),
        "{s2}"
    );
    assert_eq!(
        repo.chunk_bytes() - before,
        up,
        "the store grew by what was uploaded"
    );
    // Both snapshots restore, each with its own content of f2.
    for (snap, want_changed) in [("s1", false), ("s2", true)] {
        let dst = env.path(&format!("r-{snap}"));
        json(
            &env,
            &["snapshot", "pull", &repo.snap(snap), dst.to_str().unwrap()],
        );
        let rm = env.mount(&dst, &format!("mnt-{snap}"), &[]);
        let got = std::fs::read(rm.p("f2")).unwrap();
        let mut want = common::pattern(3, 16 << 20);
        if want_changed {
            want[5 << 20..(5 << 20) + 4096].copy_from_slice(&common::pattern(1234, 4096));
        }
        assert!(got == want, "{snap}: f2 differs");
        rm.unmount();
    }
}
