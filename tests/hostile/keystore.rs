//! The key store file is read before it is authenticated: its Argon2
//! parameters must come from a fixed table, or the command stops at once
//! with the key-store exit code (a tampered store once made the CLI
//! allocate 4 GiB and abort). A new store directory is 0700; a passphrase
//! file others can read draws a warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// `KEYSTORE_CORRUPT` in src/error.rs.
const KEYSTORE_CORRUPT: i32 = 14;

/// Rewrite the store file's (unauthenticated) KDF fields.
fn set_kdf(store: &Path, m: u64, t: u64, p: u64) {
    let raw = std::fs::read(store).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["kdf"]["m_cost_kib"] = m.into();
    v["kdf"]["t_cost"] = t.into();
    v["kdf"]["p_cost"] = p.into();
    std::fs::write(store, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn tampered_kdf_parameters_refused_at_once() {
    let env = Env::new();
    env.run_ok(&["kms", "create-key"]);
    let store = env.path("ks/keystore.json");
    let pristine = std::fs::read(&store).unwrap();
    let ks = env.path("ks");
    // Huge memory, next to no memory, an unlisted time cost, an unlisted
    // parallelism, a weaker time cost.
    for (m, t, p) in [
        (4 * 1024 * 1024, 3, 1),
        (8, 3, 1),
        (64, 1, 1),
        (64 * 1024, 100, 1),
        (64 * 1024, 3, 64),
        (64 * 1024, 1, 1),
    ] {
        std::fs::write(&store, &pristine).unwrap();
        set_kdf(&store, m, t, p);
        let mut cmd = env.cmd();
        cmd.args(["kms", "list-keys"]);
        let t0 = Instant::now();
        let out = bounded(60, move || cmd.output().unwrap());
        let took = t0.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(KEYSTORE_CORRUPT),
            "m={m} t={t} p={p}: {} {stderr}",
            out.status
        );
        assert_eq!(
            stderr,
            format!(
                "envelopefs: the key store at {} is corrupt: Argon2id cost m={m} KiB, t={t}, p={p} \
                 is not an allowed setting (allowed: m=65536 KiB, t=3, p=1)\n",
                ks.display()
            )
        );
        assert!(
            took < Duration::from_secs(3),
            "m={m} t={t} p={p}: took {took:?}"
        );
    }
    // The untouched store still opens.
    std::fs::write(&store, &pristine).unwrap();
    env.run_ok(&["kms", "list-keys"]);
}

#[test]
fn new_store_directory_is_private() {
    let env = Env::new();
    let nested = env.path("a/b/ks");
    let out = env
        .cmd()
        .env("ENVELOPEFS_KEYSTORE", &nested)
        .args(["kms", "create-key"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode_of(&nested), 0o700);
    assert_eq!(mode_of(&nested.join("keystore.json")), 0o600);
    // An existing directory keeps the mode its owner gave it.
    let own = env.path("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = env
        .cmd()
        .env("ENVELOPEFS_KEYSTORE", &own)
        .args(["kms", "create-key"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode_of(&own), 0o750);
}

#[test]
fn passphrase_file_readable_by_others_warns() {
    let env = Env::new();
    let pass = env.path("pass");
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = env.run(&["kms", "create-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "0600: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.run(&["kms", "list-keys"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "0600: no warning");

    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = env.run(&["kms", "list-keys"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "envelopefs: warning: passphrase file {} is readable by group or others \
                 (mode {mode:04o}): chmod 600 it\n",
                pass.display()
            )
        );
    }
}
