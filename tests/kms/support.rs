//! Helpers of the key-service tests: the CLI in JSON, exact AWS errors,
//! and openssl as the oracle.

use std::path::PathBuf;
use std::process::Command;

use aws_lc_rs::digest;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

use crate::common::{missing_prerequisite, Env};

pub const RSA: [&str; 3] = ["RSA_2048", "RSA_3072", "RSA_4096"];
pub const ECC: [&str; 4] = [
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
];

pub fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--output", "json"]);
    serde_json::from_str(&env.run_ok(&a)).unwrap()
}

/// The command fails with exactly this AWS error and exit code, and prints nothing.
pub fn fails<S: AsRef<str>>(env: &Env, args: &[S], error: &str, code: i32) {
    let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
    let out = env.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(error), "{args:?}: want {error}, got {err}");
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
}

/// Runs a kms command that must fail: this exit code, nothing on stdout,
/// one line on stderr starting with the AWS error `name`.
pub fn fails_named(env: &Env, args: &[&str], code: i32, name: &str) {
    let out = env.run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("envelopefs: {name}")),
        "{args:?}: want {name}, got {err}"
    );
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
}

pub fn create(env: &Env, spec: &str, usage: &str) -> String {
    let k = json(
        env,
        &[
            "kms",
            "create-key",
            "--key-spec",
            spec,
            "--key-usage",
            usage,
        ],
    );
    k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

pub fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

pub fn write(env: &Env, name: &str, bytes: &[u8]) -> PathBuf {
    let p = env.path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub fn fileb(p: &std::path::Path) -> String {
    format!("fileb://{}", p.display())
}

/// True when openssl runs; otherwise the skip is recorded (a failure under CI=true).
pub fn have_openssl(test: &str) -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing_prerequisite(test, "needs the openssl command");
    }
    ok
}

pub fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).output().unwrap()
}

pub fn openssl_ok(args: &[&str]) -> Vec<u8> {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// get-public-key's DER, written to a file; openssl must read it as SPKI.
pub fn public_key_file(env: &Env, id: &str, name: &str) -> PathBuf {
    let p = json(env, &["kms", "get-public-key", "--key-id", id]);
    let path = write(env, name, &b64(&p["PublicKey"]));
    let s = path.to_str().unwrap();
    openssl_ok(&["pkey", "-pubin", "-inform", "DER", "-in", s, "-noout"]);
    path
}

pub fn sha_name(alg: &str) -> &'static str {
    match &alg[alg.len() - 3..] {
        "256" => "sha256",
        "384" => "sha384",
        _ => "sha512",
    }
}

pub fn digest_of(alg: &str, msg: &[u8]) -> Vec<u8> {
    let a = match sha_name(alg) {
        "sha256" => &digest::SHA256,
        "sha384" => &digest::SHA384,
        _ => &digest::SHA512,
    };
    digest::digest(a, msg).as_ref().to_vec()
}

/// The -pkeyopt/-sigopt settings of AWS's RSA-PSS (salt = hash length).
pub fn pss_opts(alg: &str) -> Vec<&'static str> {
    if alg.starts_with("RSASSA_PSS") {
        vec!["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"]
    } else {
        vec![]
    }
}

/// openssl's verdict on a signature of a message (RAW) or of a digest.
pub fn openssl_verifies(alg: &str, pubkey: &str, data: &str, sig: &str, raw: bool) -> bool {
    let mut a: Vec<&str> = if raw {
        let d = match sha_name(alg) {
            "sha256" => "-sha256",
            "sha384" => "-sha384",
            _ => "-sha512",
        };
        vec![
            "dgst",
            d,
            "-verify",
            pubkey,
            "-keyform",
            "DER",
            "-signature",
            sig,
        ]
    } else {
        vec![
            "pkeyutl", "-verify", "-pubin", "-inkey", pubkey, "-keyform", "DER", "-in", data,
            "-sigfile", sig, "-pkeyopt",
        ]
    };
    let digest_opt = format!("digest:{}", sha_name(alg));
    let opt = if raw { "-sigopt" } else { "-pkeyopt" };
    if !raw {
        a.push(&digest_opt);
    }
    for o in pss_opts(alg) {
        a.extend_from_slice(&[opt, o]);
    }
    if raw {
        a.push(data);
    }
    let out = openssl(&a);
    let said = String::from_utf8_lossy(&out.stdout);
    out.status.success() && (said.contains("Verified Successfully") || said.contains("Verified OK"))
}

/// openssl's own key of `spec`: (PKCS#8 DER, SPKI DER, PEM path).
pub fn openssl_key(env: &Env, spec: &str) -> (Vec<u8>, Vec<u8>, String) {
    let pem = env.path(&format!("{spec}.pem"));
    let pem_s = pem.to_str().unwrap().to_owned();
    let gen: Vec<&str> = match spec {
        "RSA_2048" => vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "ECC_NIST_P256" => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "ECC_NIST_P384" => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "ECC_NIST_P521" => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
        _ => vec![
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
        ],
    };
    let mut a = vec!["genpkey"];
    a.extend(gen);
    a.extend(["-out", &pem_s]);
    openssl_ok(&a);
    let pkcs8 = openssl_ok(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", &pem_s, "-outform", "DER",
    ]);
    let spki = openssl_ok(&["pkey", "-in", &pem_s, "-pubout", "-outform", "DER"]);
    (pkcs8, spki, pem_s)
}
