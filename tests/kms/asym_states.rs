//! Asymmetric keys: AWS's rule of which key spec allows which key usage,
//! describe-key and get-public-key fields, and the key-state table (disabled,
//! pending deletion, no rotation, the wrong key usage).

use crate::common::*;
use crate::support::*;

#[test]
fn create_key_applies_aws_spec_and_usage_rules_and_describes_them() {
    let env = Env::new();
    for (spec, usage, error, code) in [
        (
            "ECC_NIST_P256",
            "ENCRYPT_DECRYPT",
            "ValidationException",
            18,
        ),
        (
            "ECC_SECG_P256K1",
            "KEY_AGREEMENT",
            "ValidationException",
            18,
        ),
        ("RSA_2048", "KEY_AGREEMENT", "ValidationException", 18),
        (
            "SYMMETRIC_DEFAULT",
            "SIGN_VERIFY",
            "ValidationException",
            18,
        ),
        ("RSA_1024", "SIGN_VERIFY", "ValidationException", 18),
        ("RSA_2048", "DECRYPT", "ValidationException", 18),
        (
            "HMAC_256",
            "GENERATE_VERIFY_MAC",
            "UnsupportedOperationException",
            26,
        ),
        (
            "ECC_NIST_EDWARDS25519",
            "SIGN_VERIFY",
            "UnsupportedOperationException",
            26,
        ),
    ] {
        let a = [
            "kms",
            "create-key",
            "--key-spec",
            spec,
            "--key-usage",
            usage,
        ];
        fails(&env, &a, error, code);
    }
    // AWS's default usage is ENCRYPT_DECRYPT, which no ECC key allows.
    let a = ["kms", "create-key", "--key-spec", "ECC_NIST_P384"];
    fails(&env, &a, "ValidationException", 18);
    let a = [
        "kms",
        "create-key",
        "--key-spec",
        "RSA_2048",
        "--origin",
        "EXTERNAL",
    ];
    fails(&env, &a, "UnsupportedOperationException", 26);
    let rsa_sign = [
        "RSASSA_PKCS1_V1_5_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_512",
        "RSASSA_PSS_SHA_256",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_512",
    ];
    for (spec, usage, field, algs) in [
        (
            "RSA_2048",
            "ENCRYPT_DECRYPT",
            "EncryptionAlgorithms",
            &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"][..],
        ),
        (
            "RSA_2048",
            "SIGN_VERIFY",
            "SigningAlgorithms",
            &rsa_sign[..],
        ),
        (
            "ECC_NIST_P521",
            "SIGN_VERIFY",
            "SigningAlgorithms",
            &["ECDSA_SHA_512"][..],
        ),
        (
            "ECC_SECG_P256K1",
            "SIGN_VERIFY",
            "SigningAlgorithms",
            &["ECDSA_SHA_256"][..],
        ),
        (
            "ECC_NIST_P384",
            "KEY_AGREEMENT",
            "KeyAgreementAlgorithms",
            &["ECDH"][..],
        ),
    ] {
        let id = create(&env, spec, usage);
        let m = &json(&env, &["kms", "describe-key", "--key-id", &id])["KeyMetadata"];
        assert_eq!(m["KeySpec"], spec, "{m}");
        assert_eq!(m["CustomerMasterKeySpec"], spec, "{m}");
        assert_eq!(m["KeyUsage"], usage, "{m}");
        assert_eq!(m[field], serde_json::json!(algs), "{m}");
        let others = [
            "EncryptionAlgorithms",
            "SigningAlgorithms",
            "KeyAgreementAlgorithms",
        ];
        for other in others.iter().filter(|f| **f != field) {
            assert!(m.get(*other).is_none(), "{other} in {m}");
        }
        assert!(m.get("CurrentKeyMaterialId").is_none(), "{m}");
        let p = json(&env, &["kms", "get-public-key", "--key-id", &id]);
        assert_eq!(p["KeySpec"], spec);
        assert_eq!(p["KeyUsage"], usage);
        assert_eq!(p[field], serde_json::json!(algs));
        assert_eq!(p["KeyId"], m["Arn"]);
    }
    let sym = json(&env, &["kms", "create-key"]);
    let m = &sym["KeyMetadata"];
    assert_eq!(m["KeySpec"], "SYMMETRIC_DEFAULT");
    assert_eq!(
        m["EncryptionAlgorithms"],
        serde_json::json!(["SYMMETRIC_DEFAULT"])
    );
    assert!(m["CurrentKeyMaterialId"].is_string(), "{m}");
}

/// Every operation of an asymmetric key that its state gates.
fn gated_operations<'a>(
    signer: &'a str,
    rsa: &'a str,
    agreer: &'a str,
    peer: &'a str,
    ct: &'a str,
) -> Vec<Vec<&'a str>> {
    vec![
        vec!["kms", "get-public-key", "--key-id", signer],
        vec![
            "kms",
            "sign",
            "--key-id",
            signer,
            "--message",
            "aGk=",
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ],
        vec![
            "kms",
            "verify",
            "--key-id",
            signer,
            "--message",
            "aGk=",
            "--signature",
            "aGk=",
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ],
        vec![
            "kms",
            "encrypt",
            "--key-id",
            rsa,
            "--plaintext",
            "aGk=",
            "--encryption-algorithm",
            "RSAES_OAEP_SHA_1",
        ],
        vec![
            "kms",
            "decrypt",
            "--key-id",
            rsa,
            "--ciphertext-blob",
            ct,
            "--encryption-algorithm",
            "RSAES_OAEP_SHA_1",
        ],
        vec![
            "kms",
            "derive-shared-secret",
            "--key-id",
            agreer,
            "--key-agreement-algorithm",
            "ECDH",
            "--public-key",
            peer,
        ],
    ]
}

#[test]
fn asymmetric_keys_follow_the_key_state_table_and_never_rotate() {
    let env = Env::new();
    let signer = create(&env, "ECC_NIST_P256", "SIGN_VERIFY");
    let rsa = create(&env, "RSA_2048", "ENCRYPT_DECRYPT");
    let agreer = create(&env, "ECC_NIST_P256", "KEY_AGREEMENT");
    let peer = json(&env, &["kms", "get-public-key", "--key-id", &agreer])["PublicKey"]
        .as_str()
        .unwrap()
        .to_owned();
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
            "RSAES_OAEP_SHA_1",
        ],
    )["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    let ops = gated_operations(&signer, &rsa, &agreer, &peer, &ct);
    let keys = [&signer, &rsa, &agreer];
    // Enabled: all work (verify of a bad signature fails as a signature, not a state).
    for op in &ops {
        if op[1] == "verify" {
            fails(&env, op, "KMSInvalidSignatureException", 17);
        } else {
            json(&env, op);
        }
    }
    for k in keys {
        for op in [
            "enable-key-rotation",
            "disable-key-rotation",
            "rotate-key-on-demand",
        ] {
            fails(
                &env,
                &["kms", op, "--key-id", k],
                "UnsupportedOperationException",
                26,
            );
        }
        let s = json(&env, &["kms", "get-key-rotation-status", "--key-id", k]);
        assert_eq!(s["KeyRotationEnabled"], false);
        fails(
            &env,
            &[
                "kms",
                "generate-data-key",
                "--key-id",
                k,
                "--key-spec",
                "AES_256",
            ],
            "InvalidKeyUsageException",
            26,
        );
        fails(
            &env,
            &["kms", "encrypt", "--key-id", k, "--plaintext", "aGk="],
            "InvalidKeyUsageException",
            26,
        );
    }
    let sym = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    fails(
        &env,
        &["kms", "get-public-key", "--key-id", &sym],
        "UnsupportedOperationException",
        26,
    );
    for k in keys {
        env.run_ok(&["kms", "disable-key", "--key-id", k]);
    }
    for op in &ops {
        fails(&env, op, "DisabledException", 15);
    }
    for k in keys {
        env.run_ok(&[
            "kms",
            "schedule-key-deletion",
            "--key-id",
            k,
            "--pending-window-in-days",
            "7",
        ]);
    }
    for op in &ops {
        fails(&env, op, "KMSInvalidStateException", 15);
    }
    for k in keys {
        env.run_ok(&["kms", "cancel-key-deletion", "--key-id", k]);
    }
    for op in &ops {
        fails(&env, op, "DisabledException", 15);
    }
    for k in keys {
        env.run_ok(&["kms", "enable-key", "--key-id", k]);
    }
    json(&env, &ops[1]);
    // One audit line per operation, with its outcome; no secret in the log.
    let audit = std::fs::read_to_string(env.path("ks").join("audit.log")).unwrap();
    for (name, outcome) in [
        ("Sign", "ok"),
        ("Sign", "DisabledException"),
        ("Verify", "KMSInvalidSignatureException"),
        ("GetPublicKey", "KMSInvalidStateException"),
        ("DeriveSharedSecret", "ok"),
        ("EnableKeyRotation", "UnsupportedOperationException"),
    ] {
        let line = format!("\"eventName\":\"{name}\"");
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&line) && l.contains(&format!("\"outcome\":\"{outcome}\""))),
            "no {name} {outcome} in the audit log"
        );
    }
    assert!(
        !audit.contains(&peer[10..40]),
        "a public key in the audit log"
    );
}

#[test]
fn sign_checks_message_type_length_and_algorithm_as_aws() {
    let env = Env::new();
    let id = create(&env, "ECC_NIST_P256", "SIGN_VERIFY");
    let max = write(&env, "max", &[7u8; 4096]);
    let over = write(&env, "over", &[7u8; 4097]);
    let short_digest = write(&env, "d31", &[7u8; 31]);
    let sign = |msg: &str, kind: &str, alg: &str| -> Vec<String> {
        [
            "kms",
            "sign",
            "--key-id",
            &id,
            "--message",
            msg,
            "--message-type",
            kind,
            "--signing-algorithm",
            alg,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let ok = sign(&fileb(&max), "RAW", "ECDSA_SHA_256");
    json(&env, &ok.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    for (args, error, code) in [
        (
            sign(&fileb(&over), "RAW", "ECDSA_SHA_256"),
            "ValidationException",
            18,
        ),
        (
            sign(&fileb(&short_digest), "DIGEST", "ECDSA_SHA_256"),
            "ValidationException",
            18,
        ),
        (sign("", "RAW", "ECDSA_SHA_256"), "ValidationException", 18),
        (
            sign("aGk=", "EXTERNAL_MU", "ECDSA_SHA_256"),
            "ValidationException",
            18,
        ),
        (
            sign("aGk=", "RAW", "ECDSA_SHA_1"),
            "ValidationException",
            18,
        ),
        (
            sign("aGk=", "RAW", "ECDSA_SHA_384"),
            "InvalidKeyUsageException",
            26,
        ),
        (
            sign("aGk=", "RAW", "RSASSA_PSS_SHA_256"),
            "InvalidKeyUsageException",
            26,
        ),
        (
            sign("aGk=", "RAW", "ED25519_SHA_512"),
            "InvalidKeyUsageException",
            26,
        ),
    ] {
        fails(&env, &args, error, code);
    }
}
