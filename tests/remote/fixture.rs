//! A repository to push to, and what the tests look at: the objects under
//! it, the commands' JSON summaries, and a tree described entry by entry.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{self, Env};

/// A repository the commands reach by `url()`; its objects are read and
/// changed behind the commands' back by key. A directory (`file://`), or,
/// with `ENVELOPEFS_TEST_REMOTE=s3` in a build with the `s3` feature, a
/// prefix in a local S3 server (moto) shared by the repositories of one
/// test.
pub enum Repo {
    Dir(PathBuf),
    #[cfg(feature = "s3")]
    S3 {
        server: std::sync::Arc<common::s3::S3Server>,
        prefix: String,
    },
}

#[cfg(feature = "s3")]
fn s3_server(env: &Env) -> std::sync::Arc<common::s3::S3Server> {
    use std::sync::{Arc, Mutex, Weak};
    static SERVERS: Mutex<Vec<(PathBuf, Weak<common::s3::S3Server>)>> = Mutex::new(Vec::new());
    let mut all = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(_, w)| w.strong_count() > 0);
    if let Some(s) = all
        .iter()
        .find(|(d, _)| d == env.dir.path())
        .and_then(|(_, w)| w.upgrade())
    {
        return s;
    }
    let Some(server) = common::s3::S3Server::start("remote tests on S3") else {
        panic!("SKIPPED is not allowed here: ENVELOPEFS_TEST_REMOTE=s3 asks for an S3 server");
    };
    let vars: Vec<(String, String)> = server
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.add_env(vars);
    let server = Arc::new(server);
    all.push((env.dir.path().to_owned(), Arc::downgrade(&server)));
    server
}

impl Repo {
    pub fn new(env: &Env, name: &str) -> Repo {
        #[cfg(feature = "s3")]
        if std::env::var("ENVELOPEFS_TEST_REMOTE").as_deref() == Ok("s3") {
            return Repo::S3 {
                server: s3_server(env),
                prefix: name.to_owned(),
            };
        }
        let dir = env.path(name);
        std::fs::create_dir(&dir).unwrap();
        Repo::Dir(dir)
    }

    pub fn url(&self) -> String {
        match self {
            Repo::Dir(dir) => format!("file://{}", dir.display()),
            #[cfg(feature = "s3")]
            Repo::S3 { server, prefix } => server.url(prefix),
        }
    }

    /// The repository's directory, for a `file://` repository.
    pub fn dir_path(&self) -> Option<&Path> {
        match self {
            Repo::Dir(dir) => Some(dir),
            #[cfg(feature = "s3")]
            Repo::S3 { .. } => None,
        }
    }

    pub fn snap(&self, name: &str) -> String {
        format!("{}/{name}", self.url())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Repo::Dir(dir) => std::fs::read(dir.join(key)).ok(),
            #[cfg(feature = "s3")]
            Repo::S3 { server, prefix } => server.get_object(&format!("{prefix}/{key}")),
        }
    }

    pub fn put(&self, key: &str, body: &[u8]) {
        match self {
            Repo::Dir(dir) => {
                let p = dir.join(key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, body).unwrap();
            }
            #[cfg(feature = "s3")]
            Repo::S3 { server, prefix } => server.put_object(&format!("{prefix}/{key}"), body),
        }
    }

    pub fn delete(&self, key: &str) {
        match self {
            Repo::Dir(dir) => std::fs::remove_file(dir.join(key)).unwrap(),
            #[cfg(feature = "s3")]
            Repo::S3 { server, prefix } => server.delete_object(&format!("{prefix}/{key}")),
        }
    }

    /// (key, size) of every object whose key starts with `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        match self {
            Repo::Dir(dir) => list_dir(dir, prefix),
            #[cfg(feature = "s3")]
            Repo::S3 { server, prefix: p } => server
                .list_objects(&format!("{p}/{prefix}"))
                .into_iter()
                .map(|(k, n)| (k[p.len() + 1..].to_owned(), n))
                .collect(),
        }
    }

    pub fn chunk_bytes(&self) -> u64 {
        self.list("chunks/").iter().map(|(_, n)| n).sum()
    }
}

fn list_dir(root: &Path, prefix: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
                continue;
            }
            let key = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if key.starts_with(prefix) && !e.file_name().to_string_lossy().starts_with('.') {
                out.push((key, md.len()));
            }
        }
    }
    out.sort();
    out
}

/// Run envelopefs; the output whatever the status.
pub fn run(env: &Env, args: &[&str]) -> Output {
    env.run(args)
}

/// Run envelopefs with `--json`; it must succeed; its summary.
pub fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = env.run_ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

pub fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// `snapshot push CIPHERDIR REPO --name NAME --json`, which must succeed.
pub fn push(env: &Env, cipherdir: &str, repo: &Repo, name: &str) -> Value {
    json(
        env,
        &["snapshot", "push", cipherdir, &repo.url(), "--name", name],
    )
}

/// A command that must fail with `code`, saying one line on stderr that
/// contains `part`: that line.
pub fn fails(env: &Env, args: &[&str], code: i32, part: &str) -> String {
    let out = run(env, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("envelopefs: "))
        .collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected: {err}");
    assert!(
        lines[0].contains(part),
        "{args:?}: {err:?} does not say {part:?}"
    );
    lines[0].to_owned()
}

/// A tree as a map from relative path to a line saying everything the tests
/// compare: kind, mode, owner, mtime, size, content hash, symlink target,
/// xattrs (`user.*` through a mount, all in a backing tree) and the first
/// path of its hard-link group. The root's lock file is left out.
pub fn describe(root: &Path, all_xattrs: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_link: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_path) = stack.pop() {
        // Names as `{:?}` shows them: any bytes, one string.
        let rel = rel_path.to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            rel
        } else {
            format!("{rel_path:?}")
        };
        let p = root.join(&rel_path);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let mut line = format!("mode={:o} uid={} gid={}", md.mode(), md.uid(), md.gid());
        // Mounting creates the lock file in the backing root, which the
        // mount's root shows as a new mtime.
        if !rel.is_empty() || all_xattrs {
            line += &format!(" mtime={}.{:09}", md.mtime(), md.mtime_nsec());
        }
        if ft.is_file() {
            let data = std::fs::read(&p).unwrap();
            line += &format!(" size={} sha={:x}", data.len(), Sha256::digest(&data));
            let first = first_link.entry(md.ino()).or_insert_with(|| rel.clone());
            line += &format!(" link={first}");
        } else if ft.is_symlink() {
            line += &format!(" target={:?}", std::fs::read_link(&p).unwrap());
        } else if ft.is_dir() {
            let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| !(rel.is_empty() && n == "envelopefs.lock"))
                .collect();
            names.sort();
            names.reverse();
            for n in names {
                stack.push(rel_path.join(n));
            }
        }
        if !ft.is_symlink() {
            let mut names = common::xattr_list(&p);
            names.retain(|n| all_xattrs || n.starts_with("user."));
            names.sort();
            for x in names {
                let v = common::xattr_get(&p, &x).unwrap_or_default();
                line += &format!(" {x}={:x}", Sha256::digest(&v));
            }
        }
        out.insert(rel, line);
    }
    out
}

/// Assert two descriptions are equal, naming the first entry that differs.
pub fn assert_same(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, what: &str) {
    for (k, v) in want {
        assert_eq!(got.get(k), Some(v), "{what}: entry {k:?}");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {:?}",
        got.keys()
            .filter(|k| !want.contains_key(*k))
            .collect::<Vec<_>>()
    );
}

/// A key made in the test's key store: its key ID.
pub fn create_key(env: &Env, description: &str) -> String {
    let v: Value =
        serde_json::from_str(&env.run_ok(&["kms", "create-key", "--description", description]))
            .unwrap();
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// A volume with `bytes` of random data in `files` files, written through a
/// mount (then unmounted).
pub fn volume_with_data(env: &Env, name: &str, files: usize, bytes: usize) -> PathBuf {
    let v = env.init(name, &[]);
    let m = env.mount(&v, &format!("{name}-mnt"), &[]);
    for i in 0..files {
        std::fs::write(
            m.p(&format!("f{i}")),
            common::pattern(i as u64 + 1, bytes / files),
        )
        .unwrap();
    }
    m.unmount();
    v
}
