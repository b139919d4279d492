//! What the CLI refuses: `init --recipient-key` with a key that cannot be a
//! recipient (symmetric, SIGN_VERIFY, absent) or with --plaintext-names, and
//! `mount --write-only` of a volume that is not format_version 2 or without
//! a recipient. Each: its exit code, one line saying why, nothing written.

use crate::common::*;
use crate::support::*;

/// `init` fails with `code`, one line containing `why`, and leaves no volume.
fn init_refused(env: &Env, name: &str, flags: &[&str], code: i32, why: &str) {
    let c = env.path(name);
    let mut args = vec!["init", c.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = env.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{flags:?}: {err}");
    one_line_error(&format!("{flags:?}"), &err);
    assert!(err.contains(why), "{flags:?}: want {why:?} in {err:?}");
    assert!(out.stdout.is_empty(), "{flags:?} printed on stdout");
    assert!(
        !c.join("envelopefs.conf").exists(),
        "{flags:?} left a config behind"
    );
}

#[test]
fn init_refuses_keys_that_cannot_be_recipients() {
    let env = Env::new();
    let sym = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let rsa_sign = Recipient::create(&env, "RSA_2048", "SIGN_VERIFY");
    let ecc_sign = Recipient::create(&env, "ECC_NIST_P256", "SIGN_VERIFY");
    let absent = "0b5c6e0e-3f6a-4c1e-9d43-1e5a2b7c9f00";
    // The key service's own answers where it gives one (GetPublicKey of a
    // symmetric key: UnsupportedOperationException, exit 26; an absent key:
    // NotFoundException, exit 16); a SIGN_VERIFY key has a public key, so
    // init refuses it as a bad option (exit 2), naming its spec and usage.
    init_refused(&env, "sym", &["--recipient-key", &sym], 26, "symmetric key");
    for (i, k) in [&rsa_sign, &ecc_sign].into_iter().enumerate() {
        init_refused(
            &env,
            &format!("sign{i}"),
            &["--recipient-key", &k.id],
            2,
            &format!("is a {} key with usage SIGN_VERIFY", k.spec),
        );
    }
    init_refused(
        &env,
        "absent",
        &["--recipient-key", absent],
        16,
        "NotFoundException",
    );
    let good = Recipient::rsa(&env);
    init_refused(
        &env,
        "plain",
        &["--recipient-key", &good.id, "--plaintext-names"],
        2,
        "--plaintext-names",
    );
    // The same key makes a volume without the refused option.
    init_v2(&env, "ok", &good);
}

#[test]
fn write_only_mount_refuses_a_v1_volume_and_a_missing_recipient() {
    if !need_fuse("write_only_mount_refuses_a_v1_volume_and_a_missing_recipient") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let der = r.der_file(&env, "r.der");
        let v1 = env.init("v1", &[]);
        for flags in [r.by_key(), Recipient::by_file(&der)] {
            let before = tree_state(&v1);
            let (code, err) = mount_refused(&env, &v1, "w", &strs(&flags));
            assert_eq!(code, 2, "{flags:?}: {err}");
            one_line_error("write-only mount of a v1 volume", &err);
            assert!(
                err.contains("not a write-only volume: made without --recipient-key"),
                "{err}"
            );
            assert_eq!(tree_state(&v1), before, "{flags:?} wrote to the v1 volume");
        }
        let v2 = init_v2(&env, "v2", &r);
        let before = tree_state(&v2);
        let (code, err) = mount_refused(&env, &v2, "w", &["--write-only"]);
        // A usage error (clap's, several lines, is fine) naming both ways.
        assert_eq!(code, 2, "--write-only alone: {err}");
        assert!(err.contains("--recipient-key"), "{err}");
        assert!(err.contains("--recipient-file"), "{err}");
        assert_eq!(tree_state(&v2), before);
    });
}
