//! An adversarial review of asymmetric keys and the AWS CLI output
//! machinery: each test is a finding, failing on the code it was found in.

use crate::common::*;
use crate::support::{fails_named as fails, json};
use serde_json::Value;

fn create(env: &Env, extra: &[&str]) -> String {
    let mut args = vec!["kms", "create-key"];
    args.extend_from_slice(extra);
    json(env, &args)["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn list_key_rotations_is_refused_on_asymmetric_keys() {
    // AWS: rotation is for symmetric encryption keys only, and
    // ListKeyRotations names UnsupportedOperationException for the others.
    let env = Env::new();
    for (spec, usage) in [
        ("ECC_NIST_P256", "SIGN_VERIFY"),
        ("ECC_NIST_P384", "KEY_AGREEMENT"),
        ("RSA_2048", "ENCRYPT_DECRYPT"),
    ] {
        let id = create(&env, &["--key-spec", spec, "--key-usage", usage]);
        for extra in [&[][..], &["--limit", "10"][..]] {
            let mut args = vec!["kms", "list-key-rotations", "--key-id", &id];
            args.extend_from_slice(extra);
            fails(&env, &args, 26, "UnsupportedOperationException");
        }
    }
    let sym = create(&env, &[]);
    let r = json(&env, &["kms", "list-key-rotations", "--key-id", &sym]);
    assert_eq!(r, serde_json::json!({"Rotations": []}));
}

fn next_marker(env: &Env, args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--limit", "1"]);
    let page = json(env, &a);
    assert_eq!(page["Truncated"], true, "{page}");
    page["NextMarker"].as_str().unwrap().to_owned()
}

#[test]
fn a_marker_of_one_key_is_refused_on_another() {
    // Markers are positions in one key's list: another key's list would
    // silently start somewhere in the middle and skip items.
    let env = Env::new();
    let a = create(&env, &[]);
    let b = create(&env, &[]);
    for (key, tags) in [(&a, ["m", "n", "o"]), (&b, ["a", "b", "z"])] {
        for t in tags {
            let tag = format!("TagKey={t},TagValue=v");
            env.run_ok(&["kms", "tag-resource", "--key-id", key, "--tags", &tag]);
        }
        env.run_ok(&["kms", "rotate-key-on-demand", "--key-id", key]);
        env.run_ok(&["kms", "rotate-key-on-demand", "--key-id", key]);
    }
    for (alias, key) in [("alias/a1", &a), ("alias/a2", &a), ("alias/b1", &b)] {
        env.run_ok(&[
            "kms",
            "create-alias",
            "--alias-name",
            alias,
            "--target-key-id",
            key,
        ]);
    }
    for list in ["list-resource-tags", "list-key-rotations", "list-aliases"] {
        let m = next_marker(&env, &["kms", list, "--key-id", &a]);
        // Good for the key it came from ...
        let page = json(&env, &["kms", list, "--key-id", &a, "--marker", &m]);
        assert!(page["Truncated"].is_boolean(), "{list}: {page}");
        // ... refused on another.
        fails(
            &env,
            &["kms", list, "--key-id", &b, "--marker", &m],
            18,
            "InvalidMarkerException",
        );
    }
    // list-aliases: a marker of the whole list is not one of a key's.
    let m = next_marker(&env, &["kms", "list-aliases"]);
    fails(
        &env,
        &["kms", "list-aliases", "--key-id", &a, "--marker", &m],
        18,
        "InvalidMarkerException",
    );
    json(&env, &["kms", "list-aliases", "--marker", &m]);
}

#[test]
fn tags_refuse_control_characters_as_aws_does() {
    // AWS's tag pattern is [\p{L}\p{Z}\p{N}_.:/=+\-@]: white space means the
    // Unicode separators, not tabs or line breaks (which would also break
    // the lines of --output text).
    let env = Env::new();
    let id = create(&env, &[]);
    for tag in [
        "TagKey=a\nb,TagValue=v",
        "TagKey=a\tb,TagValue=v",
        "TagKey=a\rb,TagValue=v",
        "TagKey=k,TagValue=v\tw",
        "TagKey=k,TagValue=line\n",
        "TagKey=k,TagValue=\u{85}",
    ] {
        fails(
            &env,
            &["kms", "tag-resource", "--key-id", &id, "--tags", tag],
            18,
            "TagException",
        );
    }
    fails(
        &env,
        &[
            "kms",
            "untag-resource",
            "--key-id",
            &id,
            "--tag-keys",
            "a\tb",
        ],
        18,
        "TagException",
    );
    // Unicode space separators are white space to AWS.
    let spaced = "TagKey=a b\u{a0}c\u{2028}d\u{3000},TagValue=x\u{2029}y";
    env.run_ok(&["kms", "tag-resource", "--key-id", &id, "--tags", spaced]);
    let text = env.run_ok(&[
        "kms",
        "list-resource-tags",
        "--key-id",
        &id,
        "--output",
        "text",
    ]);
    assert_eq!(text, "TAGS\ta b\u{a0}c\u{2028}d\u{3000}\tx\u{2029}y\n");
}

#[test]
fn list_key_rotations_lists_rotations_in_the_order_they_were_made() {
    // Rotations within one second (dates are whole seconds) must still
    // come in the order they were made, the current one last.
    let env = Env::new();
    let id = create(&env, &[]);
    let made: Vec<String> = (0..6)
        .map(|_| {
            let r = json(&env, &["kms", "rotate-key-on-demand", "--key-id", &id]);
            r["KeyMaterialId"].as_str().unwrap().to_owned()
        })
        .collect();
    let listed = json(&env, &["kms", "list-key-rotations", "--key-id", &id]);
    let ids: Vec<&str> = listed["Rotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["KeyMaterialId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, made);
    let last = &listed["Rotations"][5];
    assert_eq!(last["KeyMaterialState"], "CURRENT", "{listed}");
    let mut paged = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut args = vec!["kms", "list-key-rotations", "--key-id", &id, "--limit", "4"];
        if let Some(m) = &marker {
            args.extend(["--marker", m]);
        }
        let page = json(&env, &args);
        for r in page["Rotations"].as_array().unwrap() {
            paged.push(r["KeyMaterialId"].as_str().unwrap().to_owned());
        }
        match page["NextMarker"].as_str() {
            Some(m) => marker = Some(m.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, made);
}

fn b64(v: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn write(env: &Env, name: &str, bytes: &[u8]) -> String {
    let p = env.path(name);
    std::fs::write(&p, bytes).unwrap();
    format!("fileb://{}", p.display())
}

#[test]
fn hostile_peer_keys_and_ciphertexts_get_one_clean_aws_error() {
    let env = Env::new();
    let agree = create(
        &env,
        &[
            "--key-spec",
            "ECC_NIST_P256",
            "--key-usage",
            "KEY_AGREEMENT",
        ],
    );
    let p384 = create(
        &env,
        &[
            "--key-spec",
            "ECC_NIST_P384",
            "--key-usage",
            "KEY_AGREEMENT",
        ],
    );
    let rsa = create(
        &env,
        &["--key-spec", "RSA_2048", "--key-usage", "ENCRYPT_DECRYPT"],
    );
    let public = |k: &str| b64(&json(&env, &["kms", "get-public-key", "--key-id", k])["PublicKey"]);
    let own = public(&agree);
    let mut off_curve = own.clone();
    *off_curve.last_mut().unwrap() ^= 1;
    let derive = |peer: &str| {
        let mut a = vec!["kms", "derive-shared-secret", "--key-id", &agree];
        a.extend(["--key-agreement-algorithm", "ECDH", "--public-key", peer]);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    for (name, peer) in [
        ("other curve", public(&p384)),
        ("rsa", public(&rsa)),
        ("off curve", off_curve),
        ("truncated", own[..30].to_vec()),
        ("raw point", own[own.len() - 65..].to_vec()),
        ("garbage", vec![0x30; 91]),
        ("empty", vec![]),
    ] {
        let file = write(&env, name, &peer);
        let args = derive(&file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&env, &args, 18, "ValidationException");
    }
    // The key's own public key is a peer like any other.
    let args = derive(&write(&env, "own", &own));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(b64(&json(&env, &args)["SharedSecret"]).len(), 32);

    // RSA-OAEP: every failure is the same error, word for word.
    let ct = json(
        &env,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &rsa,
            "--plaintext",
            "aGk=",
            "--encryption-algorithm",
            "RSAES_OAEP_SHA_256",
        ],
    );
    let ct = b64(&ct["CiphertextBlob"]);
    let mut tampered = ct.clone();
    tampered[100] ^= 1;
    let mut longer = ct.clone();
    longer.push(0);
    let mut errors = Vec::new();
    for (name, blob, alg) in [
        ("tampered", tampered, "RSAES_OAEP_SHA_256"),
        ("short", ct[..255].to_vec(), "RSAES_OAEP_SHA_256"),
        ("long", longer, "RSAES_OAEP_SHA_256"),
        ("zeros", vec![0; 256], "RSAES_OAEP_SHA_256"),
        ("ones", vec![0xff; 256], "RSAES_OAEP_SHA_256"),
        ("other hash", ct.clone(), "RSAES_OAEP_SHA_1"),
    ] {
        let file = write(&env, name, &blob);
        let args = [
            "kms",
            "decrypt",
            "--key-id",
            &rsa,
            "--ciphertext-blob",
            &file,
            "--encryption-algorithm",
            alg,
        ];
        fails(&env, &args, 17, "InvalidCiphertextException");
        errors.push(env.run(&args).stderr);
    }
    errors.dedup();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let audit = std::fs::read_to_string(env.path("ks").join("audit.log")).unwrap();
    let decrypts: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"Decrypt\""))
        .collect();
    assert_eq!(decrypts.len(), 12);
    assert!(decrypts
        .iter()
        .all(|l| l.contains("InvalidCiphertextException")));
}

#[test]
fn asymmetric_decrypt_checks_the_ciphertext_length_as_aws_api_does() {
    // CiphertextBlob is 1 to 6144 bytes in AWS's API: outside that it is a
    // ValidationException, before the key is even looked at.
    let env = Env::new();
    let rsa = create(
        &env,
        &["--key-spec", "RSA_2048", "--key-usage", "ENCRYPT_DECRYPT"],
    );
    for (name, len) in [("empty", 0), ("huge", 6145)] {
        let file = write(&env, name, &vec![1; len]);
        let args = [
            "kms",
            "decrypt",
            "--key-id",
            &rsa,
            "--ciphertext-blob",
            &file,
            "--encryption-algorithm",
            "RSAES_OAEP_SHA_1",
        ];
        fails(&env, &args, 18, "ValidationException");
    }
}

#[test]
fn list_key_rotations_takes_a_key_id_or_arn_not_an_alias() {
    // AWS's KeyId of ListKeyRotations is a key ID or key ARN, as
    // ListResourceTags' (which refuses an alias here already).
    let env = Env::new();
    let id = create(&env, &[]);
    env.run_ok(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/r",
        "--target-key-id",
        &id,
    ]);
    for list in ["list-key-rotations", "list-resource-tags"] {
        fails(
            &env,
            &["kms", list, "--key-id", "alias/r"],
            18,
            "ValidationException",
        );
    }
    let arn = json(&env, &["kms", "describe-key", "--key-id", &id])["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    json(&env, &["kms", "list-key-rotations", "--key-id", &arn]);
}
