//! The key service through the CLI, and volumes across key changes.

use std::fs;

use crate::common::*;
use crate::support::json;
use serde_json::Value;

#[test]
fn generate_data_key_is_aws_shaped_and_decrypts() {
    let env = Env::new();
    let k = json(&env, &["kms", "create-key", "--description", "app"]);
    let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    assert_eq!(k["KeyMetadata"]["KeyState"], "Enabled");
    assert!(k["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:envelopefs:kms:local:"));
    env.run_ok(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/app",
        "--target-key-id",
        &id,
    ]);
    let g = json(
        &env,
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            "alias/app",
            "--key-spec",
            "AES_256",
            "--encryption-context",
            "purpose=test",
        ],
    );
    for f in ["CiphertextBlob", "Plaintext", "KeyId", "KeyMaterialId"] {
        assert!(g[f].is_string(), "{f} in {g}");
    }
    let d = json(
        &env,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            g["CiphertextBlob"].as_str().unwrap(),
            "--encryption-context",
            "purpose=test",
        ],
    );
    assert_eq!(d["Plaintext"], g["Plaintext"]);
    assert_eq!(d["KeyId"], g["KeyId"]);
    let out = env.run(&[
        "kms",
        "decrypt",
        "--ciphertext-blob",
        g["CiphertextBlob"].as_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(17));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidCiphertextException"));
    env.run_ok(&["kms", "disable-key", "--key-id", &id]);
    let out = env.run(&["kms", "encrypt", "--key-id", &id, "--plaintext", "aGk="]);
    assert_eq!(out.status.code(), Some(15));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DisabledException"));
    let audit = json(
        &env,
        &["kms", "audit", "--key-id", &id, "--operation", "Encrypt"],
    );
    assert_eq!(audit["Events"][0]["outcome"], "DisabledException");
}

#[test]
fn twenty_concurrent_create_key_calls_all_land() {
    let env = Env::new();
    env.run_ok(&["kms", "create-key"]);
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.cmd()
                .args(["kms", "create-key", "--output", "json"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.insert(v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 20);
    let listed = json(&env, &["kms", "list-keys"]);
    let listed: std::collections::BTreeSet<String> = listed["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyId"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.is_subset(&listed));
    assert_eq!(listed.len(), 21);
}

#[test]
fn volumes_across_rotation_disable_rewrap_and_backup() {
    bounded(180, || {
        let env = Env::new();
        let k = json(&env, &["kms", "create-key"]);
        let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let c = env.init("c", &["--key", &id]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("data"), b"before rotation").unwrap();
        m.unmount();
        let first = json(&env, &["info", c.to_str().unwrap()])["MasterKeyMaterialId"]
            .as_str()
            .unwrap()
            .to_owned();
        // Rotate: the volume still mounts; rewrap moves it to the new material.
        let r = json(&env, &["kms", "rotate-key-on-demand", "--key-id", &id]);
        let newmat = r["KeyMaterialId"].as_str().unwrap().to_owned();
        assert_ne!(newmat, first);
        let rot = json(&env, &["kms", "list-key-rotations", "--key-id", &id]);
        assert_eq!(rot["Rotations"].as_array().unwrap().len(), 1);
        let m = env.mount(&c, "m", &[]);
        assert_eq!(fs::read(m.p("data")).unwrap(), b"before rotation");
        m.unmount();
        let rw = json(&env, &["rewrap", c.to_str().unwrap()]);
        assert_eq!(rw["KeyMaterialId"], newmat.as_str());
        assert_eq!(
            json(&env, &["info", c.to_str().unwrap()])["MasterKeyMaterialId"],
            newmat.as_str()
        );
        let m = env.mount(&c, "m", &[]);
        assert_eq!(fs::read(m.p("data")).unwrap(), b"before rotation");
        // A mounted volume keeps working when its key is disabled.
        env.run_ok(&["kms", "disable-key", "--key-id", &id]);
        fs::write(m.p("more"), b"still works").unwrap();
        assert_eq!(fs::read(m.p("more")).unwrap(), b"still works");
        m.unmount();
        // A disabled key blocks the next mount, naming the key and its state.
        let mnt = env.path("m");
        let out = env.run(&["mount", c.to_str().unwrap(), mnt.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(15));
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(&id) && e.contains("disabled"), "{e}");
        // Pending deletion: the date is named.
        env.run_ok(&["kms", "enable-key", "--key-id", &id]);
        env.run_ok(&[
            "kms",
            "schedule-key-deletion",
            "--key-id",
            &id,
            "--pending-window-in-days",
            "7",
        ]);
        let out = env.run(&["mount", c.to_str().unwrap(), mnt.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(15));
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            e.contains("pending deletion") && e.contains("deletion date"),
            "{e}"
        );
        env.run_ok(&["kms", "cancel-key-deletion", "--key-id", &id]);
        env.run_ok(&["kms", "enable-key", "--key-id", &id]);
        // A backup imported into an empty store elsewhere mounts the same volume.
        fs::write(env.path("bpass"), "backup passphrase").unwrap();
        let backup = env.path("backup.json");
        let out = env
            .cmd()
            .args([
                "kms",
                "export-backup",
                backup.to_str().unwrap(),
                "--backup-passphrase-file",
                env.path("bpass").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "export-backup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(fs::metadata(&backup).unwrap().len() > 0, "a backup file");
        let store2 = env.path("ks2");
        let out = env
            .cmd()
            .env("ENVELOPEFS_KEYSTORE", &store2)
            .args([
                "kms",
                "import-backup",
                backup.to_str().unwrap(),
                "--backup-passphrase-file",
                env.path("bpass").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import-backup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = env
            .cmd()
            .env("ENVELOPEFS_KEYSTORE", &store2)
            .args(["mount", c.to_str().unwrap(), mnt.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "{}",
            String::from_utf8_lossy(&child.stderr)
        );
        assert_eq!(fs::read(mnt.join("more")).unwrap(), b"still works");
        env.run_ok(&["umount", mnt.to_str().unwrap()]);
        // The mount's unwrap is in the audit log.
        let audit = json(&env, &["kms", "audit", "--operation", "Decrypt"]);
        assert!(audit["Events"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |e| e["requestParameters"]["encryptionContext"]["envelopefs:volume-id"].is_string()
            ));
    });
}

/// The seed example, as AWS documents it: `generate-data-key` with
/// no output flag prints the AWS CLI's JSON (four-space indent, the key's
/// ARN in KeyId), not a bare blob; `--output text` is the AWS CLI's
/// tab-separated line of the same fields in key order, and `--query` picks
/// one field (quoted in JSON, bare in text).
#[test]
fn seed_example_generate_data_key_prints_aws_json_by_default() {
    let env = Env::new();
    let k = json(&env, &["kms", "create-key"]);
    let arn = k["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    env.run_ok(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/ExampleAlias",
        "--target-key-id",
        &id,
    ]);
    let seed = [
        "kms",
        "generate-data-key",
        "--key-id",
        "alias/ExampleAlias",
        "--key-spec",
        "AES_256",
    ];
    let out = env.run_ok(&seed);
    assert!(out.starts_with("{\n    \""), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let fields: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        fields,
        ["CiphertextBlob", "KeyId", "KeyMaterialId", "Plaintext"],
        "{out}"
    );
    assert_eq!(v["KeyId"], arn.as_str());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pt = b64.decode(v["Plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(pt.len(), 32);
    // The same result as AWS's text form: one line, fields in key order.
    let mut text_args = seed.to_vec();
    text_args.extend(["--output", "text"]);
    let line = env.run_ok(&text_args);
    let cols: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
    assert_eq!(cols.len(), 4, "{line:?}");
    assert!(b64.decode(cols[0]).unwrap().len() > 32, "{line:?}");
    assert_eq!(cols[1], arn, "{line:?}");
    assert_eq!(b64.decode(cols[3]).unwrap().len(), 32, "{line:?}");
    assert_eq!(line.lines().count(), 1, "{line:?}");
    // --query: one field, quoted in JSON, bare in text.
    let mut q = seed.to_vec();
    q.extend(["--query", "KeyId"]);
    assert_eq!(env.run_ok(&q), format!("\"{arn}\"\n"));
    q.extend(["--output", "text"]);
    assert_eq!(env.run_ok(&q), format!("{arn}\n"));
}

/// `--query` forms outside the supported subset are a usage error before
/// the command runs; describe-key's text form is the AWS CLI's.
#[test]
fn query_and_text_output_of_kms_commands() {
    let env = Env::new();
    let k = json(&env, &["kms", "create-key"]);
    let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let out = env.run(&["kms", "create-key", "--query", "KeyMetadata | KeyId"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        out.stdout.is_empty() && err.starts_with("envelopefs: --query "),
        "{err}"
    );
    assert_eq!(
        json(&env, &["kms", "list-keys"])["Keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let q = [
        "kms",
        "list-keys",
        "--query",
        "Keys[*].KeyId",
        "--output",
        "text",
    ];
    assert_eq!(env.run_ok(&q), format!("{id}\n"));
    let q = ["kms", "list-keys", "--query", "Keys[0].KeyId"];
    assert_eq!(env.run_ok(&q), format!("\"{id}\"\n"));
    let text = env.run_ok(&["kms", "describe-key", "--key-id", &id, "--output", "text"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1], "ENCRYPTIONALGORITHMS\tSYMMETRIC_DEFAULT",
        "{text}"
    );
    assert!(lines[0].starts_with("KEYMETADATA\t"), "{text}");
    assert!(
        lines[0].split('\t').any(|c| c == id) && lines[0].contains("\tTrue\t"),
        "{text}"
    );
    // Other commands: their own text, or JSON when asked or queried.
    let c = env.init("c", &[]);
    let info = env.run_ok(&["info", c.to_str().unwrap()]);
    assert!(info.starts_with("cipher dir:"), "{info}");
    let q = ["info", c.to_str().unwrap(), "--query", "BlockSize"];
    assert_eq!(env.run_ok(&q), "4096\n");
    let out = env.run(&[
        "info",
        c.to_str().unwrap(),
        "--query",
        "BlockSize",
        "--output",
        "text",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
