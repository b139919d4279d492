//! What a hostile party can make pull, verify and push do, by attacker:
//! a holder of the key service's rights on the repository's key (who can
//! seal a manifest of their own), whoever can write the repository, and
//! whoever can write the cipher directory being pushed.

use std::path::PathBuf;

use envelopefs::kms::local::LocalKeyService;
use envelopefs::snapshot::remote::manifest::{self, ChunkRef, Kind, Manifest};

use crate::common::{self, Env};
use crate::fixture::*;

const DAMAGED: i32 = 36;

/// A volume (never mounted) whose backing tree holds `files` regular files
/// of raw bytes, pushed as snapshot `s1`.
fn pushed(env: &Env, files: &[(&str, Vec<u8>)]) -> (Repo, PathBuf) {
    let repo = Repo::new(env, "repo");
    let v = env.init("v", &[]);
    for (name, bytes) in files {
        std::fs::write(v.join(name), bytes).unwrap();
    }
    push(env, v.to_str().unwrap(), &repo, "s1");
    (repo, v)
}

fn repository_id(repo: &Repo) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&repo.get("envelopefs-repository.json").unwrap()).unwrap();
    v["repository_id"].as_str().unwrap().to_owned()
}

/// Snapshot `name` as the key service's rights let anyone holding them
/// read it.
fn open_manifest(env: &Env, repo: &Repo, name: &str) -> Manifest {
    let ks = LocalKeyService::open(&env.path("ks"), "test passphrase").unwrap();
    let key = format!("manifests/{name}");
    manifest::open(
        &ks,
        None,
        &repository_id(repo),
        name,
        &key,
        &repo.get(&key).unwrap(),
    )
    .unwrap()
}

/// Replace snapshot `name`'s manifest by one `edit` made, sealed under the
/// repository's key as a holder of GenerateDataKey on it can.
fn forge(env: &Env, repo: &Repo, name: &str, edit: impl FnOnce(&mut Manifest)) {
    let mut m = open_manifest(env, repo, name);
    edit(&mut m);
    let ks = LocalKeyService::open(&env.path("ks"), "test passphrase").unwrap();
    let sealed = manifest::seal(&ks, &ks.default_key().unwrap(), &m).unwrap();
    repo.put(&format!("manifests/{name}"), &sealed);
}

fn file_entry(m: &mut Manifest, name: &str) -> usize {
    m.entries
        .iter()
        .position(|e| e.kind == Kind::File && e.path.to_bytes().unwrap() == name.as_bytes())
        .unwrap()
}

/// linux/capability.h
const CAP_SETUID: u32 = 7;

/// A file capability (VFS_CAP_REVISION_2, effective) granting CAP_SETUID.
fn cap_setuid() -> Vec<u8> {
    let mut v = 0x0200_0001u32.to_le_bytes().to_vec();
    for word in [1u32 << CAP_SETUID, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

#[test]
fn a_sealed_manifest_cannot_give_a_pulled_file_capabilities_or_other_namespaces() {
    if !common::need_root(
        "hostile::a_sealed_manifest_cannot_give_a_pulled_file_capabilities_or_other_namespaces",
    ) {
        return;
    }
    let env = Env::new();
    let (repo, _) = pushed(&env, &[("tool", b"#!/bin/sh\nid\n".to_vec())]);
    for (name, value) in [
        ("security.capability", cap_setuid()),
        ("trusted.overlay.opaque", b"y".to_vec()),
    ] {
        forge(&env, &repo, "s1", |m| {
            let i = file_entry(m, "tool");
            m.entries[i].mode = 0o755;
            m.entries[i].xattrs.clear();
            m.entries[i]
                .xattrs
                .insert(name.to_owned(), manifest::b64(&value));
        });
        let dst = env.path("dst");
        let line = fails(
            &env,
            &["snapshot", "pull", &repo.snap("s1"), dst.to_str().unwrap()],
            DAMAGED,
            "manifests/s1",
        );
        assert!(line.contains("xattr") && line.contains("/tool"), "{line}");
        assert!(!dst.exists(), "{name}: {} made", dst.display());
    }
}

#[test]
fn push_stores_only_the_backing_xattrs_of_the_format() {
    if !common::need_root("hostile::push_stores_only_the_backing_xattrs_of_the_format") {
        return;
    }
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = env.init("v", &[]);
    std::fs::write(v.join("f"), b"raw").unwrap();
    common::xattr_set(&v.join("f"), "user.e.kept", b"1");
    common::xattr_set(&v.join("f"), "trusted.host-label", b"2");
    push(&env, v.to_str().unwrap(), &repo, "s1");
    let mut m = open_manifest(&env, &repo, "s1");
    let i = file_entry(&mut m, "f");
    let names: Vec<&String> = m.entries[i].xattrs.keys().collect();
    assert_eq!(names, ["user.e.kept"]);
    let dst = env.path("dst");
    json(
        &env,
        &["snapshot", "pull", &repo.snap("s1"), dst.to_str().unwrap()],
    );
    assert_eq!(
        common::xattr_get(&dst.join("f"), "user.e.kept").unwrap(),
        b"1"
    );
    assert_eq!(
        common::xattr_get(&dst.join("f"), "trusted.host-label"),
        None
    );
}

#[test]
fn verify_refuses_a_chunk_longer_than_a_chunk_can_be_before_reading_it() {
    let env = Env::new();
    let (repo, _) = pushed(&env, &[("big", common::pattern(7, 5000))]);
    let huge: u64 = 1 << 40;
    let mut hash = String::new();
    forge(&env, &repo, "s1", |m| {
        let i = file_entry(m, "big");
        let e = &mut m.entries[i];
        if let Some(ChunkRef::Data { sha256, len }) = e.chunks.as_mut().unwrap().first_mut() {
            *len = huge;
            hash = sha256.clone();
        }
        e.size = Some(huge);
    });
    // The repository's writer makes the object as long (a sparse file).
    let key = format!("chunks/{}/{hash}", &hash[..2]);
    // (An S3 test server keeps objects in memory: there the manifest alone
    // says it.)
    if let Some(dir) = repo.dir_path() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.join(&key))
            .unwrap();
        f.set_len(huge).unwrap();
    }
    let mut verify = env.cmd();
    verify.args(["snapshot", "verify", &repo.snap("s1")]);
    let out = common::bounded(120, move || verify.output().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(DAMAGED), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("envelopefs: "))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("manifests/s1") && lines[0].contains("/big"),
        "{err}"
    );
}

/// A chain of `depth` directories with 255-byte names below `root`, made
/// from descriptors (the path is far longer than PATH_MAX).
fn deep_chain(root: &std::path::Path, depth: usize) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let name = std::ffi::CString::new("d".repeat(255)).unwrap();
    let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C strings; each descriptor is owned once.
    let mut dir = unsafe { OwnedFd::from_raw_fd(libc::open(c.as_ptr(), libc::O_PATH)) };
    for _ in 0..depth {
        unsafe {
            assert_eq!(libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700), 0);
            let fd = libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_PATH);
            assert!(fd >= 0);
            dir = OwnedFd::from_raw_fd(fd);
        }
    }
}

#[test]
fn a_push_refuses_a_manifest_longer_than_a_pull_reads() {
    // Whoever can write the cipher directory (or make directories through
    // the mount) makes deep paths: every entry carries its whole path.
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = env.init("v", &[]);
    deep_chain(&v, 1600);
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
        "larger than the 256 MiB",
    );
    assert!(repo.list("manifests/").is_empty(), "{:?}", repo.list(""));
    assert!(repo.list("leases/").is_empty(), "{:?}", repo.list(""));
}

#[test]
fn an_mtime_past_2262_is_clamped_not_wrapped_to_1901() {
    // Anyone who may set a file's times (through the mount too) can pick
    // one that nanoseconds in an i64 do not hold.
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, UNIX_EPOCH};
    let env = Env::new();
    let repo = Repo::new(&env, "repo");
    let v = env.init("v", &[]);
    std::fs::write(v.join("f"), b"raw").unwrap();
    let year_2300 = UNIX_EPOCH + Duration::new(10_413_792_000, 5);
    std::fs::File::options()
        .write(true)
        .open(v.join("f"))
        .unwrap()
        .set_modified(year_2300)
        .unwrap();
    push(&env, v.to_str().unwrap(), &repo, "s1");
    let dst = env.path("dst");
    json(
        &env,
        &["snapshot", "pull", &repo.snap("s1"), dst.to_str().unwrap()],
    );
    let md = std::fs::symlink_metadata(dst.join("f")).unwrap();
    assert_eq!(
        (md.mtime(), md.mtime_nsec()),
        (i64::MAX / 1_000_000_000, i64::MAX % 1_000_000_000)
    );
}
