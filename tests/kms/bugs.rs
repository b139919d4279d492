//! Issue 18's "Bugs found" that show at the command line, and AWS's openssl
//! recipe for wrapping imported key material.

use crate::common::*;
use crate::support::json;
use serde_json::Value;

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
    // As AWS: one of the two is required.
    fails_with(&env, &with(&[]), "ValidationException");
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

/// AWS's openssl commands for each RSA wrapping algorithm, word for word
/// (importing-keys-encrypt-key-material), run in the directory holding
/// PlaintextKeyMaterial.bin and WrappingPublicKey.der.
const OPENSSL_RSAES_OAEP_SHA_256: &str = "openssl pkeyutl -encrypt -in PlaintextKeyMaterial.bin -inkey WrappingPublicKey.der -keyform DER -pubin -out EncryptedKeyMaterial.bin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256";
const OPENSSL_RSA_AES_KEY_WRAP_SHA_256: &str = r#"
openssl rand -out aes-key.bin 32
openssl enc -id-aes256-wrap-pad -K "$(xxd -p < aes-key.bin | tr -d '\n')" -iv A65959A6 -in PlaintextKeyMaterial.bin -out key-material-wrapped.bin
openssl pkeyutl -encrypt -in aes-key.bin -out aes-key-wrapped.bin -inkey WrappingPublicKey.der -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
cat aes-key-wrapped.bin key-material-wrapped.bin > EncryptedKeyMaterial.bin
"#;

/// The SHA-1 wrapping algorithms: the same commands with SHA-1 for OAEP
/// (openssl's MGF1 hash follows the OAEP hash).
const OPENSSL_RSAES_OAEP_SHA_1: &str = "openssl pkeyutl -encrypt -in PlaintextKeyMaterial.bin -inkey WrappingPublicKey.der -keyform DER -pubin -out EncryptedKeyMaterial.bin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1";
const OPENSSL_RSA_AES_KEY_WRAP_SHA_1: &str = r#"
openssl rand -out aes-key.bin 32
openssl enc -id-aes256-wrap-pad -K "$(xxd -p < aes-key.bin | tr -d '\n')" -iv A65959A6 -in PlaintextKeyMaterial.bin -out key-material-wrapped.bin
openssl pkeyutl -encrypt -in aes-key.bin -out aes-key-wrapped.bin -inkey WrappingPublicKey.der -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1
cat aes-key-wrapped.bin key-material-wrapped.bin > EncryptedKeyMaterial.bin
"#;

fn sh(dir: &std::path::Path, script: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// get-parameters-for-import, then AWS's openssl recipe in `work`, then
/// import-key-material with the result. Returns the import's output.
fn import_with_openssl(
    env: &Env,
    key: &str,
    algorithm: &str,
    spec: &str,
    recipe: &str,
) -> std::process::Output {
    use base64::Engine;
    let p = json(
        env,
        &[
            "kms",
            "get-parameters-for-import",
            "--key-id",
            key,
            "--wrapping-algorithm",
            algorithm,
            "--wrapping-key-spec",
            spec,
        ],
    );
    let work = env.path("work");
    let public = base64::engine::general_purpose::STANDARD
        .decode(p["PublicKey"].as_str().unwrap())
        .unwrap();
    std::fs::write(work.join("WrappingPublicKey.der"), public).unwrap();
    // The public key is DER SubjectPublicKeyInfo of the asked size.
    let text = sh(
        &work,
        "openssl pkey -pubin -inform DER -in WrappingPublicKey.der -noout -text",
    );
    let bits = spec.trim_start_matches("RSA_");
    assert!(
        text.contains(&format!("Public-Key: ({bits} bit)")),
        "{text}"
    );
    sh(&work, recipe);
    let blob = format!(
        "fileb://{}",
        work.join("EncryptedKeyMaterial.bin").display()
    );
    env.run(&[
        "kms",
        "import-key-material",
        "--key-id",
        key,
        "--import-token",
        p["ImportToken"].as_str().unwrap(),
        "--encrypted-key-material",
        &blob,
        "--expiration-model",
        "KEY_MATERIAL_DOES_NOT_EXPIRE",
    ])
}

#[test]
fn aws_openssl_recipes_wrap_key_material_for_import() {
    let have = |tool: &str, arg: &str| {
        std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("openssl", "version") || !have("xxd", "-v") {
        missing_prerequisite(
            "aws_openssl_recipes_wrap_key_material_for_import",
            "needs openssl and xxd",
        );
        return;
    }
    let env = Env::new();
    let work = env.path("work");
    std::fs::create_dir(&work).unwrap();
    sh(&work, "openssl rand -out PlaintextKeyMaterial.bin 32");
    let k = new_key(&env, "EXTERNAL");
    let out = import_with_openssl(
        &env,
        &k,
        "RSAES_OAEP_SHA_256",
        "RSA_2048",
        OPENSSL_RSAES_OAEP_SHA_256,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = json(
        &env,
        &["kms", "encrypt", "--key-id", &k, "--plaintext", "aGk="],
    )["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    // The other recipe must bring the very same bytes back: re-import after
    // deleting the material accepts only the material the key had.
    env.run_ok(&["kms", "delete-imported-key-material", "--key-id", &k]);
    for spec in ["RSA_3072", "RSA_4096"] {
        let out = import_with_openssl(
            &env,
            &k,
            "RSA_AES_KEY_WRAP_SHA_256",
            spec,
            OPENSSL_RSA_AES_KEY_WRAP_SHA_256,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let d = json(&env, &["kms", "decrypt", "--ciphertext-blob", &blob]);
    assert_eq!(d["Plaintext"], "aGk=");
    // Other material is refused, and so is a blob wrapped for the other algorithm.
    sh(&work, "openssl rand -out PlaintextKeyMaterial.bin 32");
    let out = import_with_openssl(
        &env,
        &k,
        "RSAES_OAEP_SHA_256",
        "RSA_2048",
        OPENSSL_RSAES_OAEP_SHA_256,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("IncorrectKeyMaterialException"));
    let out = import_with_openssl(
        &env,
        &k,
        "RSA_AES_KEY_WRAP_SHA_256",
        "RSA_2048",
        OPENSSL_RSAES_OAEP_SHA_256,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidCiphertextException"));
}

#[test]
fn aws_openssl_recipes_wrap_key_material_for_import_with_sha_1() {
    let have = |tool: &str, arg: &str| {
        std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("openssl", "version") || !have("xxd", "-v") {
        missing_prerequisite(
            "aws_openssl_recipes_wrap_key_material_for_import_with_sha_1",
            "needs openssl and xxd",
        );
        return;
    }
    let env = Env::new();
    let work = env.path("work");
    std::fs::create_dir(&work).unwrap();
    sh(&work, "openssl rand -out PlaintextKeyMaterial.bin 32");
    let k = new_key(&env, "EXTERNAL");
    let mut blob = None;
    for (alg, spec, recipe) in [
        ("RSAES_OAEP_SHA_1", "RSA_4096", OPENSSL_RSAES_OAEP_SHA_1),
        (
            "RSA_AES_KEY_WRAP_SHA_1",
            "RSA_2048",
            OPENSSL_RSA_AES_KEY_WRAP_SHA_1,
        ),
    ] {
        let out = import_with_openssl(&env, &k, alg, spec, recipe);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{alg}: {err}");
        // The first import's ciphertext decrypts after the re-import.
        let b = blob.get_or_insert_with(|| {
            json(
                &env,
                &["kms", "encrypt", "--key-id", &k, "--plaintext", "aGk="],
            )["CiphertextBlob"]
                .as_str()
                .unwrap()
                .to_owned()
        });
        let d = json(&env, &["kms", "decrypt", "--ciphertext-blob", b]);
        assert_eq!(d["Plaintext"], "aGk=");
        env.run_ok(&["kms", "delete-imported-key-material", "--key-id", &k]);
    }
    // SHA-256 wrapping under a SHA-1 algorithm's parameters is refused.
    let out = import_with_openssl(
        &env,
        &k,
        "RSAES_OAEP_SHA_1",
        "RSA_2048",
        OPENSSL_RSAES_OAEP_SHA_256,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InvalidCiphertextException"), "{err}");
}

#[test]
fn bad_wrapping_arguments_are_validation_exceptions() {
    let env = Env::new();
    let k = new_key(&env, "EXTERNAL");
    let gpi = |alg: &str, spec: &str| -> Vec<String> {
        let mut a: Vec<String> = ["kms", "get-parameters-for-import", "--key-id", &k]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--wrapping-algorithm".into(), alg.into()]);
        if !spec.is_empty() {
            a.extend(["--wrapping-key-spec".into(), spec.into()]);
        }
        a
    };
    for (alg, spec) in [
        ("RSAES_PKCS1_V1_5", "RSA_2048"),
        ("RSAES_OAEP_SHA_256", "RSA_1024"),
        ("HPKE_X25519_HKDF_SHA256_AES_256_GCM", "RSA_2048"),
    ] {
        let a = gpi(alg, spec);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        fails_with(&env, &a, "ValidationException");
    }
}

/// HPKE-wrap `material` (a file name in the env) for `key` and import it.
fn import_hpke(env: &Env, key: &str, material: &str, import_type: &str) -> std::process::Output {
    let p = json(env, &["kms", "get-parameters-for-import", "--key-id", key]);
    let w = json(
        env,
        &[
            "kms",
            "wrap-key-material",
            "--key-id",
            key,
            "--public-key",
            p["PublicKey"].as_str().unwrap(),
            "--key-material-file",
            env.path(material).to_str().unwrap(),
        ],
    );
    env.run(&[
        "kms",
        "import-key-material",
        "--key-id",
        key,
        "--import-token",
        p["ImportToken"].as_str().unwrap(),
        "--encrypted-key-material",
        w["EncryptedKeyMaterial"].as_str().unwrap(),
        "--import-type",
        import_type,
        "--output",
        "json",
    ])
}

#[test]
fn imported_keys_rotate_with_new_key_material() {
    let env = Env::new();
    std::fs::write(env.path("m1"), [1u8; 32]).unwrap();
    std::fs::write(env.path("m2"), [2u8; 32]).unwrap();
    let k = new_key(&env, "EXTERNAL");
    let out = import_hpke(&env, &k, "m1", "EXISTING_KEY_MATERIAL");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fails_with(
        &env,
        &["kms", "rotate-key-on-demand", "--key-id", &k],
        "UnsupportedOperationException",
    );
    let out = import_hpke(&env, &k, "m2", "NEW_KEY_MATERIAL");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["KeyMaterialId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = json(&env, &["kms", "rotate-key-on-demand", "--key-id", &k]);
    assert_eq!(r["KeyMaterialId"], new_id.as_str());
    let e = json(
        &env,
        &["kms", "encrypt", "--key-id", &k, "--plaintext", "aGk="],
    );
    assert_eq!(e["KeyMaterialId"], new_id.as_str());
    let out = import_hpke(&env, &k, "m2", "BOGUS");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ValidationException"));
}
