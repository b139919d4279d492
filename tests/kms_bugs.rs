//! Issue 18's "Bugs found" that show at the command line, and AWS's openssl
//! recipe for wrapping imported key material.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use common::*;
use serde_json::Value;

fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--output", "json"]);
    serde_json::from_str(&env.run_ok(&a)).unwrap()
}

/// The command fails with this AWS error name on stderr and nothing on stdout.
fn fails_with(env: &Env, args: &[&str], error: &str) {
    let out = env.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        stderr.contains(error),
        "{args:?}: want {error}, got {stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
}

fn new_key(env: &Env, origin: &str) -> String {
    let k = json(env, &["kms", "create-key", "--origin", origin]);
    k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

#[test]
fn generate_data_key_length_arguments_are_validated() {
    let env = Env::new();
    let k = new_key(&env, "AWS_KMS");
    let gdk = ["kms", "generate-data-key", "--key-id", k.as_str()];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut a = gdk.to_vec();
        a.extend_from_slice(extra);
        a
    };
    fails_with(
        &env,
        &with(&["--key-spec", "BOGUS", "--number-of-bytes", "16"]),
        "ValidationException",
    );
    fails_with(
        &env,
        &with(&["--key-spec", "AES_256", "--number-of-bytes", "16"]),
        "ValidationException",
    );
    fails_with(&env, &with(&["--key-spec", "BOGUS"]), "ValidationException");
    for (extra, len) in [
        (&["--key-spec", "AES_256"][..], 32),
        (&["--key-spec", "AES_128"][..], 16),
        (&["--number-of-bytes", "16"][..], 16),
    ] {
        let mut a = with(extra);
        a.extend_from_slice(&["--output", "json"]);
        let g: Value = serde_json::from_str(&env.run_ok(&a)).unwrap();
        use base64::Engine;
        let pt = base64::engine::general_purpose::STANDARD
            .decode(g["Plaintext"].as_str().unwrap())
            .unwrap();
        assert_eq!(pt.len(), len, "{extra:?}");
    }
}

#[test]
fn an_empty_encryption_context_key_is_a_validation_exception() {
    let env = Env::new();
    let k = new_key(&env, "AWS_KMS");
    for c in ["=v", r#"{"": "v"}"#] {
        fails_with(
            &env,
            &[
                "kms",
                "encrypt",
                "--key-id",
                &k,
                "--plaintext",
                "aGk=",
                "--encryption-context",
                c,
            ],
            "ValidationException",
        );
    }
}

#[test]
fn bad_alias_names_are_invalid_alias_name_exceptions() {
    let env = Env::new();
    let k = new_key(&env, "AWS_KMS");
    for bad in ["alias/a:b", "alias/aws/x", "alias/envelopefs/x", "noprefix"] {
        fails_with(
            &env,
            &[
                "kms",
                "create-alias",
                "--alias-name",
                bad,
                "--target-key-id",
                &k,
            ],
            "InvalidAliasNameException",
        );
    }
}

#[test]
fn parallel_first_uses_of_a_new_store_all_succeed_with_one_store() {
    let env = Env::new();
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.cmd()
                .args(["kms", "create-key", "--output", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut created = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        created += stderr.matches("Created key store").count();
    }
    assert_eq!(created, 1, "one store is created");
    let keys = json(&env, &["kms", "list-keys"]);
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 20, "{keys}");
}
