//! Asymmetric keys in the local key service, with openssl as the oracle:
//! what `envelopefs kms` signs, openssl verifies against the key from
//! get-public-key; what openssl encrypts with it, `kms decrypt` decrypts; the
//! ECDH secret equals openssl's from the other side; data key pairs match.
//! Where the key service keeps the private key (so openssl cannot act with
//! it), our crypto layer meets openssl's own keys instead.

use crate::common::*;
use crate::support::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use envelopefs::crypto::asym::{self, EncryptionAlgorithm, KeySpec, Message, SigningAlgorithm};

/// Sign through the CLI; the signature is also checked by `kms verify`.
fn kms_sign(env: &Env, id: &str, msg: &std::path::Path, kind: &str, alg: &str) -> Vec<u8> {
    let m = fileb(msg);
    let common = [
        "kms",
        "sign",
        "--key-id",
        id,
        "--message",
        &m,
        "--message-type",
        kind,
        "--signing-algorithm",
        alg,
    ];
    let s = json(env, &common);
    assert_eq!(s["SigningAlgorithm"], alg);
    let sig = b64(&s["Signature"]);
    let sig_b64 = B64.encode(&sig);
    let mut v = common.to_vec();
    v[1] = "verify";
    v.extend_from_slice(&["--signature", &sig_b64]);
    let r = json(env, &v);
    assert_eq!(r["SignatureValid"], true, "{r}");
    sig
}

#[test]
fn kms_signatures_verify_with_openssl_for_every_spec_algorithm_and_message_type() {
    let test = "kms_signatures_verify_with_openssl";
    if !have_openssl(test) {
        return;
    }
    let env = Env::new();
    let msg = b"release-1.0.tar.gz contents, or anything up to 4096 bytes".to_vec();
    let msg_file = write(&env, "msg", &msg);
    for spec in RSA.iter().chain(ECC.iter()) {
        let id = create(&env, spec, "SIGN_VERIFY");
        let pubkey = public_key_file(&env, &id, &format!("{spec}.pub.der"));
        let pubkey = pubkey.to_str().unwrap();
        let algs = KeySpec::parse(spec).unwrap().signing_algorithms();
        for alg in algs.iter().map(|a| a.name()) {
            let dig = write(&env, "digest", &digest_of(alg, &msg));
            for (kind, data) in [("RAW", &msg_file), ("DIGEST", &dig)] {
                let sig = kms_sign(&env, &id, data, kind, alg);
                let sig_file = write(&env, "sig", &sig);
                let sig_path = sig_file.to_str().unwrap();
                assert!(
                    openssl_verifies(alg, pubkey, msg_file.to_str().unwrap(), sig_path, true),
                    "{spec} {alg} {kind}: openssl rejects the signature of the message"
                );
                assert!(
                    openssl_verifies(alg, pubkey, dig.to_str().unwrap(), sig_path, false),
                    "{spec} {alg} {kind}: openssl rejects it as a signature of the digest"
                );
            }
            // Another message's signature: openssl and Verify both refuse it.
            let sig = kms_sign(&env, &id, &dig, "RAW", alg);
            let sig_file = write(&env, "sig", &sig);
            let s = sig_file.to_str().unwrap();
            assert!(!openssl_verifies(
                alg,
                pubkey,
                msg_file.to_str().unwrap(),
                s,
                true
            ));
            let a = [
                "kms",
                "verify",
                "--key-id",
                &id,
                "--message",
                &fileb(&msg_file),
                "--signature",
                &fileb(&sig_file),
                "--signing-algorithm",
                alg,
            ];
            fails(&env, &a, "KMSInvalidSignatureException", 17);
        }
    }
}

#[test]
fn openssl_signatures_and_keys_meet_our_crypto_layer() {
    if !have_openssl("openssl_signatures_and_keys_meet_our_crypto_layer") {
        return;
    }
    let env = Env::new();
    let msg = b"signed by openssl".to_vec();
    let msg_file = write(&env, "msg", &msg);
    for spec in [
        "RSA_2048",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
    ] {
        let (pkcs8, spki, pem) = openssl_key(&env, spec);
        let ks = KeySpec::parse(spec).unwrap();
        assert_eq!(asym::public_key_der(ks, &pkcs8).unwrap(), spki, "{spec}");
        for alg in ks.signing_algorithms() {
            let d = digest_of(alg.name(), &msg);
            let mut a = vec![
                "dgst",
                match sha_name(alg.name()) {
                    "sha256" => "-sha256",
                    "sha384" => "-sha384",
                    _ => "-sha512",
                },
                "-sign",
                &pem,
            ];
            for o in pss_opts(alg.name()) {
                a.extend(["-sigopt", o]);
            }
            a.push(msg_file.to_str().unwrap());
            let sig = openssl_ok(&a);
            asym::verify(ks, &spki, alg, Message::Raw(&msg), &sig)
                .unwrap_or_else(|e| panic!("{spec} {}: {e}", alg.name()));
            asym::verify(ks, &spki, alg, Message::Digest(&d), &sig)
                .unwrap_or_else(|e| panic!("{spec} {} digest: {e}", alg.name()));
            assert!(asym::verify(ks, &spki, alg, Message::Raw(b"other"), &sig).is_err());
        }
        if spec == "RSA_2048" {
            for alg in EncryptionAlgorithm::ALL {
                let md = if alg == EncryptionAlgorithm::RsaesOaepSha1 {
                    "sha1"
                } else {
                    "sha256"
                };
                let pt = vec![0x5a; alg.max_plaintext(ks)];
                let ct = write(&env, "ct", &asym::encrypt(&spki, alg, &pt).unwrap());
                let (oaep_md, mgf1_md) = (format!("rsa_oaep_md:{md}"), format!("rsa_mgf1_md:{md}"));
                let got = openssl_ok(&[
                    "pkeyutl",
                    "-decrypt",
                    "-inkey",
                    &pem,
                    "-in",
                    ct.to_str().unwrap(),
                    "-pkeyopt",
                    "rsa_padding_mode:oaep",
                    "-pkeyopt",
                    &oaep_md,
                    "-pkeyopt",
                    &mgf1_md,
                ]);
                assert_eq!(got, pt, "{}", alg.name());
            }
        }
    }
    // Our signatures with openssl's key verify in openssl (PKCS#8 read both ways).
    let (pkcs8, _, pem) = openssl_key(&env, "ECC_NIST_P384");
    let alg = SigningAlgorithm::EcdsaSha384;
    let sig = asym::sign(KeySpec::EccNistP384, &pkcs8, alg, Message::Raw(&msg)).unwrap();
    let sig_file = write(&env, "sig", &sig);
    let pubder = env.path("p384.pub.der");
    openssl_ok(&[
        "pkey",
        "-in",
        &pem,
        "-pubout",
        "-outform",
        "DER",
        "-out",
        pubder.to_str().unwrap(),
    ]);
    assert!(openssl_verifies(
        alg.name(),
        pubder.to_str().unwrap(),
        msg_file.to_str().unwrap(),
        sig_file.to_str().unwrap(),
        true
    ));
}

#[test]
fn openssl_oaep_ciphertexts_decrypt_with_kms_decrypt_within_aws_size_limits() {
    if !have_openssl("openssl_oaep_ciphertexts_decrypt_with_kms_decrypt") {
        return;
    }
    let env = Env::new();
    for (spec, limits) in RSA.iter().zip([[214, 190], [342, 318], [470, 446]]) {
        let id = create(&env, spec, "ENCRYPT_DECRYPT");
        let pubkey = public_key_file(&env, &id, "rsa.pub.der");
        for ((alg, md), max) in [
            ("RSAES_OAEP_SHA_1", "sha1"),
            ("RSAES_OAEP_SHA_256", "sha256"),
        ]
        .into_iter()
        .zip(limits)
        {
            let pt = write(&env, "pt", &vec![0xa5; max]);
            let ct = env.path("ct");
            let (oaep_md, mgf1_md) = (format!("rsa_oaep_md:{md}"), format!("rsa_mgf1_md:{md}"));
            openssl_ok(&[
                "pkeyutl",
                "-encrypt",
                "-pubin",
                "-keyform",
                "DER",
                "-inkey",
                pubkey.to_str().unwrap(),
                "-in",
                pt.to_str().unwrap(),
                "-out",
                ct.to_str().unwrap(),
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                &oaep_md,
                "-pkeyopt",
                &mgf1_md,
            ]);
            let dec = [
                "kms",
                "decrypt",
                "--key-id",
                &id,
                "--ciphertext-blob",
                &fileb(&ct),
                "--encryption-algorithm",
                alg,
            ];
            let d = json(&env, &dec);
            assert_eq!(b64(&d["Plaintext"]), vec![0xa5; max], "{spec} {alg}");
            assert_eq!(d["EncryptionAlgorithm"], alg);
            assert!(d["KeyId"].as_str().unwrap().ends_with(&id));
            // Our own encryption at the limit round-trips; one byte more is refused.
            let enc = [
                "kms",
                "encrypt",
                "--key-id",
                &id,
                "--plaintext",
                &fileb(&pt),
                "--encryption-algorithm",
                alg,
            ];
            let e = json(&env, &enc);
            assert_eq!(e["EncryptionAlgorithm"], alg);
            let ours = write(&env, "ours", &b64(&e["CiphertextBlob"]));
            assert_eq!(
                b64(&e["CiphertextBlob"]).len(),
                max + 2 * if md == "sha1" { 20 } else { 32 } + 2
            );
            let mut dec2 = dec;
            let ours_arg = fileb(&ours);
            dec2[5] = &ours_arg;
            assert_eq!(b64(&json(&env, &dec2)["Plaintext"]), vec![0xa5; max]);
            let long = write(&env, "long", &vec![1; max + 1]);
            let mut enc2 = enc;
            let long_arg = fileb(&long);
            enc2[5] = &long_arg;
            fails(&env, &enc2, "ValidationException", 18);
        }
    }
    let id = create(&env, "RSA_2048", "ENCRYPT_DECRYPT");
    let e = json(
        &env,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &id,
            "--plaintext",
            "aGk=",
            "--encryption-algorithm",
            "RSAES_OAEP_SHA_256",
        ],
    );
    let ct = e["CiphertextBlob"].as_str().unwrap();
    let dec = |extra: &[&str]| -> Vec<String> {
        ["kms", "decrypt", "--ciphertext-blob", ct]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    // The other OAEP hash does not decrypt it.
    let a = dec(&[
        "--key-id",
        &id,
        "--encryption-algorithm",
        "RSAES_OAEP_SHA_1",
    ]);
    fails(&env, &a, "InvalidCiphertextException", 17);
    // Asymmetric ciphertext needs KeyId and EncryptionAlgorithm.
    fails(
        &env,
        &dec(&["--encryption-algorithm", "RSAES_OAEP_SHA_256"]),
        "ValidationException",
        18,
    );
    fails(
        &env,
        &dec(&["--key-id", &id]),
        "InvalidKeyUsageException",
        26,
    );
    // No encryption context with asymmetric keys.
    let a = dec(&[
        "--key-id",
        &id,
        "--encryption-algorithm",
        "RSAES_OAEP_SHA_256",
        "--encryption-context",
        "a=b",
    ]);
    fails(&env, &a, "ValidationException", 18);
    let enc = |alg: &str, key: &str| {
        let v = [
            "kms",
            "encrypt",
            "--key-id",
            key,
            "--plaintext",
            "aGk=",
            "--encryption-algorithm",
            alg,
        ];
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let a = enc("RSAES_OAEP_SHA_256", &id);
    let mut with_ctx: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    with_ctx.extend_from_slice(&["--encryption-context", "a=b"]);
    fails(&env, &with_ctx, "ValidationException", 18);
    // Not one of AWS's encryption algorithms; one no key here allows.
    fails(
        &env,
        &enc("RSAES_PKCS1_V1_5", &id),
        "ValidationException",
        18,
    );
    fails(&env, &enc("SM2PKE", &id), "InvalidKeyUsageException", 26);
    // The wrong algorithm for the key, either way round.
    fails(
        &env,
        &enc("SYMMETRIC_DEFAULT", &id),
        "InvalidKeyUsageException",
        26,
    );
    let sym = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    fails(
        &env,
        &enc("RSAES_OAEP_SHA_256", &sym),
        "InvalidKeyUsageException",
        26,
    );
    let a = [
        "kms",
        "sign",
        "--key-id",
        &id,
        "--message",
        "aGk=",
        "--signing-algorithm",
        "RSASSA_PSS_SHA_256",
    ];
    fails(&env, &a, "InvalidKeyUsageException", 26);
}

#[test]
fn derive_shared_secret_equals_openssls_derive_from_the_other_side() {
    if !have_openssl("derive_shared_secret_equals_openssls_derive") {
        return;
    }
    let env = Env::new();
    for spec in ["ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"] {
        let id = create(&env, spec, "KEY_AGREEMENT");
        let ours = public_key_file(&env, &id, "ours.der");
        let (_, peer_spki, peer_pem) = openssl_key(&env, spec);
        let peer = write(&env, "peer.der", &peer_spki);
        let args = [
            "kms",
            "derive-shared-secret",
            "--key-id",
            &id,
            "--key-agreement-algorithm",
            "ECDH",
            "--public-key",
            &fileb(&peer),
        ];
        let r = json(&env, &args);
        assert_eq!(r["KeyAgreementAlgorithm"], "ECDH");
        assert_eq!(r["KeyOrigin"], "AWS_KMS");
        let theirs = openssl_ok(&[
            "pkeyutl",
            "-derive",
            "-inkey",
            &peer_pem,
            "-peerkey",
            ours.to_str().unwrap(),
            "-peerform",
            "DER",
        ]);
        assert_eq!(b64(&r["SharedSecret"]), theirs, "{spec}");
        let mut a = args;
        a[5] = "ECDH_COFACTOR";
        fails(&env, &a, "ValidationException", 18);
    }
    // A peer key on another curve, or not SPKI, is refused.
    let id = create(&env, "ECC_NIST_P256", "KEY_AGREEMENT");
    let (_, p384, _) = openssl_key(&env, "ECC_NIST_P384");
    for bad in [p384, b"not a key".to_vec()] {
        let b = B64.encode(&bad);
        let a = [
            "kms",
            "derive-shared-secret",
            "--key-id",
            &id,
            "--key-agreement-algorithm",
            "ECDH",
            "--public-key",
            &b,
        ];
        fails(&env, &a, "ValidationException", 18);
    }
    // The key's usage decides the operations.
    let a = [
        "kms",
        "sign",
        "--key-id",
        &id,
        "--message",
        "aGk=",
        "--signing-algorithm",
        "ECDSA_SHA_256",
    ];
    fails(&env, &a, "InvalidKeyUsageException", 26);
    let signer = create(&env, "ECC_NIST_P256", "SIGN_VERIFY");
    let p = json(&env, &["kms", "get-public-key", "--key-id", &id])["PublicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = [
        "kms",
        "derive-shared-secret",
        "--key-id",
        &signer,
        "--key-agreement-algorithm",
        "ECDH",
        "--public-key",
        &p,
    ];
    fails(&env, &a, "InvalidKeyUsageException", 26);
}

#[test]
fn data_key_pairs_decrypt_to_a_private_key_that_matches_their_public_key() {
    if !have_openssl("data_key_pairs_decrypt_to_a_private_key") {
        return;
    }
    let env = Env::new();
    let key = json(&env, &["kms", "create-key"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    for (i, spec) in RSA.iter().chain(ECC.iter()).enumerate() {
        let with_plaintext = i % 2 == 0;
        let op = if with_plaintext {
            "generate-data-key-pair"
        } else {
            "generate-data-key-pair-without-plaintext"
        };
        let p = json(
            &env,
            &[
                "kms",
                op,
                "--key-id",
                &key,
                "--key-pair-spec",
                spec,
                "--encryption-context",
                "app=x",
            ],
        );
        assert_eq!(p["KeyPairSpec"], *spec);
        assert!(p["KeyId"].as_str().unwrap().ends_with(&key));
        assert!(p["KeyMaterialId"].is_string());
        assert_eq!(
            p.get("PrivateKeyPlaintext").is_some(),
            with_plaintext,
            "{op}: {p}"
        );
        let blob = p["PrivateKeyCiphertextBlob"].as_str().unwrap();
        let d = json(
            &env,
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                blob,
                "--encryption-context",
                "app=x",
            ],
        );
        let private = b64(&d["Plaintext"]);
        if with_plaintext {
            assert_eq!(b64(&p["PrivateKeyPlaintext"]), private);
        }
        let der = write(&env, "private.der", &private);
        let public = openssl_ok(&[
            "pkey",
            "-inform",
            "DER",
            "-in",
            der.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        assert_eq!(public, b64(&p["PublicKey"]), "{spec}");
        // The context is bound to the private key's ciphertext.
        fails(
            &env,
            &["kms", "decrypt", "--ciphertext-blob", blob],
            "InvalidCiphertextException",
            17,
        );
    }
    let a = [
        "kms",
        "generate-data-key-pair",
        "--key-id",
        &key,
        "--key-pair-spec",
        "RSA_1024",
    ];
    fails(&env, &a, "ValidationException", 18);
    let a = [
        "kms",
        "generate-data-key-pair",
        "--key-id",
        &key,
        "--key-pair-spec",
        "SM2",
    ];
    fails(&env, &a, "UnsupportedOperationException", 26);
    let asym_key = create(&env, "ECC_NIST_P256", "SIGN_VERIFY");
    let a = [
        "kms",
        "generate-data-key-pair",
        "--key-id",
        &asym_key,
        "--key-pair-spec",
        "ECC_NIST_P256",
    ];
    fails(&env, &a, "InvalidKeyUsageException", 26);
}
