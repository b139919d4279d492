//! Issue 18's acceptance audit, where no test could fail before: every
//! blob and plaintext argument taken as base64, `fileb://` (raw bytes) and
//! `file://` (base64 text) alike, as the AWS CLI takes them; the paging of
//! list-retirable-grants; AWS's import token saved as a file, base64 over
//! several lines, `~` and `$HOME` in file paths, an ISO 8601 `--valid-to`
//! (each of these four failed before its fix).

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

use crate::common::*;
use crate::support::{b64, create, json, write};

/// One value as an argument in the three forms the AWS CLI takes.
struct Forms {
    base64: String,
    fileb: String,
    file: String,
}

fn forms(env: &Env, name: &str, bytes: &[u8]) -> Forms {
    let raw: PathBuf = write(env, &format!("{name}.bin"), bytes);
    let text = write(
        env,
        &format!("{name}.b64"),
        format!("{}\n", B64.encode(bytes)).as_bytes(),
    );
    Forms {
        base64: B64.encode(bytes),
        fileb: format!("fileb://{}", raw.display()),
        file: format!("file://{}", text.display()),
    }
}

impl Forms {
    fn all(&self) -> [&str; 3] {
        [&self.base64, &self.fileb, &self.file]
    }
}

/// `args` with `{}` replaced by `value`, run as JSON.
fn run_with(env: &Env, args: &[&str], value: &str) -> Value {
    let a: Vec<&str> = args
        .iter()
        .map(|s| if *s == "{}" { value } else { s })
        .collect();
    json(env, &a)
}

/// A new EXTERNAL key's ID.
fn external_key(env: &Env) -> String {
    json(env, &["kms", "create-key", "--origin", "EXTERNAL"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Import parameters for `ext`, and `material` wrapped with them.
fn parameters_and_wrapped(env: &Env, ext: &str, material: &std::path::Path) -> (Value, Value) {
    let p = json(env, &["kms", "get-parameters-for-import", "--key-id", ext]);
    let w = json(
        env,
        &[
            "kms",
            "wrap-key-material",
            "--key-id",
            ext,
            "--public-key",
            p["PublicKey"].as_str().unwrap(),
            "--key-material-file",
            material.to_str().unwrap(),
        ],
    );
    (p, w)
}

#[test]
fn every_blob_and_plaintext_argument_takes_base64_fileb_and_file() {
    let env = Env::new();
    let sym = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not valid UTF-8 and with a NUL: a raw file is not text.
    let secret = b"\x00\xffplain\nbytes\x80".to_vec();
    let pt = forms(&env, "pt", &secret);
    let decrypt = ["kms", "decrypt", "--ciphertext-blob", "{}"];
    // Each form of each argument at least once, paired off (a process per
    // call is slow): plaintext form i, then the blob made from it in others.
    for (i, form) in pt.all().into_iter().enumerate() {
        let args = ["kms", "encrypt", "--key-id", &sym, "--plaintext", "{}"];
        let e = run_with(&env, &args, form);
        let ct = forms(&env, "ct", &b64(&e["CiphertextBlob"]));
        let c = ct.all()[(i + 1) % 3];
        let d = run_with(&env, &decrypt, c);
        assert_eq!(b64(&d["Plaintext"]), secret, "{form} {c}");
        let re = ["kms", "re-encrypt", "--ciphertext-blob", "{}"];
        let re = [&re[..], &["--destination-key-id", &sym]].concat();
        let r = run_with(&env, &re, ct.all()[(i + 2) % 3]);
        let back = B64.encode(b64(&r["CiphertextBlob"]));
        assert_eq!(b64(&run_with(&env, &decrypt, &back)["Plaintext"]), secret);
    }
    // RSA-OAEP: plaintext and ciphertext blob.
    let rsa = create(&env, "RSA_2048", "ENCRYPT_DECRYPT");
    let alg = ["--encryption-algorithm", "RSAES_OAEP_SHA_256"];
    for (i, form) in pt.all().into_iter().enumerate() {
        let args = [
            &["kms", "encrypt", "--key-id", &rsa, "--plaintext", "{}"][..],
            &alg,
        ]
        .concat();
        let ct = forms(
            &env,
            "rsa-ct",
            &b64(&run_with(&env, &args, form)["CiphertextBlob"]),
        );
        let c = ct.all()[(i + 1) % 3];
        let d = [&decrypt[..], &["--key-id", &rsa], &alg].concat();
        assert_eq!(
            b64(&run_with(&env, &d, c)["Plaintext"]),
            secret,
            "{form} {c}"
        );
    }
    // Sign and verify: the message and the signature.
    let signer = create(&env, "ECC_NIST_P256", "SIGN_VERIFY");
    let ecdsa = ["--signing-algorithm", "ECDSA_SHA_256"];
    for (i, form) in pt.all().into_iter().enumerate() {
        let s = [
            &["kms", "sign", "--key-id", &signer, "--message", "{}"][..],
            &ecdsa,
        ]
        .concat();
        let sig = forms(&env, "sig", &b64(&run_with(&env, &s, form)["Signature"]));
        let (m, g) = (pt.all()[(i + 1) % 3], sig.all()[(i + 2) % 3]);
        let v = [
            "kms",
            "verify",
            "--key-id",
            &signer,
            "--message",
            m,
            "--signature",
            g,
            ecdsa[0],
            ecdsa[1],
        ];
        assert_eq!(json(&env, &v)["SignatureValid"], true, "{form} {m} {g}");
    }
    // Derive-shared-secret: the peer's public key.
    let ours = create(&env, "ECC_NIST_P256", "KEY_AGREEMENT");
    let theirs = create(&env, "ECC_NIST_P256", "KEY_AGREEMENT");
    let public = b64(&json(&env, &["kms", "get-public-key", "--key-id", &theirs])["PublicKey"]);
    let peer = forms(&env, "peer", &public);
    let derive = [
        "kms",
        "derive-shared-secret",
        "--key-id",
        &ours,
        "--key-agreement-algorithm",
        "ECDH",
        "--public-key",
        "{}",
    ];
    let secrets: Vec<Value> = peer
        .all()
        .iter()
        .map(|p| run_with(&env, &derive, p)["SharedSecret"].clone())
        .collect();
    assert!(secrets.iter().all(|s| *s == secrets[0]), "{secrets:?}");
    // Import: wrap-key-material's public key, import-key-material's blob.
    let material = write(&env, "material", &[5u8; 32]);
    let ext = external_key(&env);
    let mut first_material = None;
    for i in 0..3 {
        let p = json(
            &env,
            &["kms", "get-parameters-for-import", "--key-id", &ext],
        );
        let pk = forms(&env, "wrapping", &b64(&p["PublicKey"]));
        let m = material.to_str().unwrap();
        let wrap = [
            "kms",
            "wrap-key-material",
            "--key-id",
            &ext,
            "--public-key",
            "{}",
        ];
        let wrap = [&wrap[..], &["--key-material-file", m]].concat();
        let w = run_with(&env, &wrap, pk.all()[i]);
        let blob = forms(&env, "wrapped", &b64(&w["EncryptedKeyMaterial"]));
        let token = p["ImportToken"].as_str().unwrap();
        let import = [
            "kms",
            "import-key-material",
            "--key-id",
            &ext,
            "--import-token",
            token,
            "--encrypted-key-material",
            "{}",
        ];
        let got = run_with(&env, &import, blob.all()[i])["KeyMaterialId"].clone();
        assert_eq!(*first_material.get_or_insert(got.clone()), got, "form {i}");
        env.run_ok(&["kms", "delete-imported-key-material", "--key-id", &ext]);
    }
}

#[test]
fn import_key_material_takes_the_import_token_as_a_blob_as_aws_recipe_does() {
    // AWS's recipe saves the token as ImportToken.bin and imports with
    // `--import-token fileb://ImportToken.bin`; here that is
    // InvalidImportTokenException (the token must be given as base64 text).
    let env = Env::new();
    let ext = external_key(&env);
    let material = write(&env, "material", &[6u8; 32]);
    for form in 0..3 {
        let (p, w) = parameters_and_wrapped(&env, &ext, &material);
        let token = forms(&env, "token", &b64(&p["ImportToken"]));
        let import = [
            "kms",
            "import-key-material",
            "--key-id",
            &ext,
            "--import-token",
            token.all()[form],
            "--encrypted-key-material",
            w["EncryptedKeyMaterial"].as_str().unwrap(),
        ];
        json(&env, &import);
        env.run_ok(&["kms", "delete-imported-key-material", "--key-id", &ext]);
    }
}

#[test]
fn a_file_argument_takes_base64_text_as_base64_writes_it() {
    // `base64 ct.bin > ct.b64` wraps at 76 columns; the AWS CLI decodes
    // blobs with Python's base64.b64decode, which skips the line breaks
    // (awscli/customizations/binaryformat.py). Here: InvalidCiphertextException.
    let env = Env::new();
    let sym = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = json(
        &env,
        &["kms", "encrypt", "--key-id", &sym, "--plaintext", "aGk="],
    );
    let text = B64.encode(b64(&e["CiphertextBlob"]));
    assert!(text.len() > 76, "the blob fits one line: {text}");
    let wrapped: Vec<&str> = text
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let p = write(
        &env,
        "ct.b64",
        format!("{}\n", wrapped.join("\n")).as_bytes(),
    );
    let arg = format!("file://{}", p.display());
    let d = json(&env, &["kms", "decrypt", "--ciphertext-blob", &arg]);
    assert_eq!(d["Plaintext"], "aGk=");
}

#[test]
fn list_retirable_grants_pages_by_limit_and_marker() {
    let env = Env::new();
    let k = json(&env, &["kms", "create-key"]);
    let key = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let account = k["KeyMetadata"]["AWSAccountId"].as_str().unwrap();
    let user = |n: &str| format!("arn:envelopefs:iam::{account}:user/{n}");
    let (alice, bob) = (user("alice"), user("bob"));
    let mut made: Vec<String> = ["Decrypt", "Encrypt", "DescribeKey", "ReEncryptFrom"]
        .iter()
        .map(|op| {
            let g = json(
                &env,
                &[
                    "kms",
                    "create-grant",
                    "--key-id",
                    &key,
                    "--grantee-principal",
                    &alice,
                    "--retiring-principal",
                    &bob,
                    "--operations",
                    op,
                ],
            );
            g["GrantId"].as_str().unwrap().to_owned()
        })
        .collect();
    // Another principal's grant is not in bob's list.
    json(
        &env,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &key,
            "--grantee-principal",
            &bob,
            "--retiring-principal",
            &alice,
            "--operations",
            "Decrypt",
        ],
    );
    let list = ["kms", "list-retirable-grants", "--retiring-principal", &bob];
    let whole = json(&env, &list);
    assert!(whole.get("Truncated").is_none(), "{whole}");
    assert_eq!(whole["Grants"].as_array().unwrap().len(), 4, "{whole}");
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    for page_no in 0.. {
        let mut a = [&list[..], &["--limit", "3"]].concat();
        if let Some(m) = &marker {
            a.extend(["--marker", m]);
        }
        let page = json(&env, &a);
        let grants = page["Grants"].as_array().unwrap();
        seen.extend(
            grants
                .iter()
                .map(|g| g["GrantId"].as_str().unwrap().to_owned()),
        );
        if page_no == 0 {
            assert_eq!(grants.len(), 3, "{page}");
            assert_eq!(page["Truncated"], true, "{page}");
            marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(grants.len(), 1, "{page}");
            assert_eq!(page["Truncated"], false, "{page}");
            assert!(page.get("NextMarker").is_none(), "{page}");
            break;
        }
    }
    seen.sort();
    made.sort();
    assert_eq!(seen, made);
    // A marker of another list is refused, not a page from mid-list.
    json(&env, &["kms", "create-key"]);
    let other = json(&env, &["kms", "list-keys", "--limit", "1"]);
    let m = other["NextMarker"].as_str().unwrap();
    let a = [&list[..], &["--marker", m]].concat();
    crate::support::fails_named(&env, &a, 18, "InvalidMarkerException");
    let a = [&list[..], &["--marker", "not-a-marker"]].concat();
    crate::support::fails_named(&env, &a, 18, "InvalidMarkerException");
}

#[test]
fn a_file_argument_expands_the_home_directory_as_the_aws_cli_does() {
    // awscli/paramfile.py opens os.path.expandvars(os.path.expanduser(path)):
    // `fileb://~/key.bin` is a file in $HOME (the shell leaves a ~ inside a
    // word alone). Here: "cannot read ~/pt.bin", exit 2.
    let env = Env::new();
    let sym = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    write(&env, "pt.bin", b"hi");
    for arg in ["fileb://~/pt.bin", "fileb://$HOME/pt.bin"] {
        let out = env
            .cmd()
            .env("HOME", env.dir.path())
            .args(["kms", "encrypt", "--key-id", &sym, "--plaintext", arg])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{arg}: {err}");
    }
}

#[test]
fn import_key_material_takes_valid_to_as_an_iso_8601_timestamp() {
    // AWS's import example: `--expiration-model KEY_MATERIAL_EXPIRES
    // --valid-to 2023-06-17T12:00:00-08:00` (the AWS CLI takes ISO 8601 or
    // epoch seconds for a timestamp). Here: a usage error, exit 2.
    let env = Env::new();
    let ext = external_key(&env);
    let material = write(&env, "material", &[7u8; 32]);
    // Noon at UTC-8, 30 days from now (AWS takes ValidTo within 365 days).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expected = (now / 86_400 + 30) * 86_400 + 20 * 3600;
    let day = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{expected}"), "+%Y-%m-%d"])
        .output()
        .unwrap();
    let valid_to = format!(
        "{}T12:00:00-08:00",
        String::from_utf8(day.stdout).unwrap().trim()
    );
    let (p, w) = parameters_and_wrapped(&env, &ext, &material);
    json(
        &env,
        &[
            "kms",
            "import-key-material",
            "--key-id",
            &ext,
            "--import-token",
            p["ImportToken"].as_str().unwrap(),
            "--encrypted-key-material",
            w["EncryptedKeyMaterial"].as_str().unwrap(),
            "--expiration-model",
            "KEY_MATERIAL_EXPIRES",
            "--valid-to",
            &valid_to,
        ],
    );
    let m = json(&env, &["kms", "describe-key", "--key-id", &ext]);
    assert_eq!(m["KeyMetadata"]["ValidTo"], expected, "{m}");
}
