//! Signed manifests: `push --sign-key`, `pull|verify --signed-by`. A forged,
//! missing or other key's signature is refused in one line naming the
//! signature object when a signature is required; a damaged signature is
//! refused even when none is required.

use crate::common::{self, Env};
use crate::fixture::*;

const DAMAGED: i32 = 36;

fn signing_key(env: &Env, spec: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&env.run_ok(&[
        "kms",
        "create-key",
        "--key-spec",
        spec,
        "--key-usage",
        "SIGN_VERIFY",
    ]))
    .unwrap();
    v["KeyMetadata"]["Arn"].as_str().unwrap().to_owned()
}

fn push(env: &Env, v: &std::path::Path, repo: &Repo, name: &str, sign: Option<&str>) {
    let url = repo.url();
    let mut a = vec![
        "snapshot",
        "push",
        v.to_str().unwrap(),
        &url,
        "--name",
        name,
    ];
    if let Some(k) = sign {
        a.extend(["--sign-key", k]);
    }
    json(env, &a);
}

#[test]
fn signed_manifests_verify_and_forgeries_are_refused() {
    if !common::need_fuse("signed::signed_manifests_verify_and_forgeries_are_refused") {
        return;
    }
    let env = Env::new();
    let v = volume_with_data(&env, "v", 2, 200_000);
    let repo = Repo::new(&env, "repo");
    let ec = signing_key(&env, "ECC_NIST_P256");
    let rsa = signing_key(&env, "RSA_2048");
    push(&env, &v, &repo, "s1", Some(&ec));
    push(&env, &v, &repo, "s2", Some(&rsa));
    push(&env, &v, &repo, "plain", None);

    let r = json(
        &env,
        &["snapshot", "verify", &repo.snap("s1"), "--signed-by", &ec],
    );
    assert_eq!(r["SignedBy"], ec.as_str(), "{r}");
    let r = json(&env, &["snapshot", "verify", &repo.snap("s2")]);
    assert_eq!(r["SignedBy"], rsa.as_str(), "{r}");
    let dst = env.path("restored");
    json(
        &env,
        &[
            "snapshot",
            "pull",
            &repo.snap("s1"),
            dst.to_str().unwrap(),
            "--signed-by",
            &ec,
        ],
    );
    assert!(dst.read_dir().unwrap().count() > 0);

    // Unsigned, when a signature is required.
    fails(
        &env,
        &[
            "snapshot",
            "verify",
            &repo.snap("plain"),
            "--signed-by",
            &ec,
        ],
        DAMAGED,
        "signatures/plain: missing",
    );
    // Signed by another key than the one required.
    fails(
        &env,
        &["snapshot", "verify", &repo.snap("s2"), "--signed-by", &ec],
        DAMAGED,
        "signatures/s2: signed by",
    );
    // Another snapshot's signature moved over: it does not verify.
    let s1_sig = repo.get("signatures/s1").unwrap();
    let sig_of = |name: &str| repo.get(&format!("signatures/{name}")).unwrap();
    push(&env, &v, &repo, "s3", Some(&ec));
    repo.put("signatures/s1", &sig_of("s3"));
    let line = fails(
        &env,
        &["snapshot", "verify", &repo.snap("s1"), "--signed-by", &ec],
        DAMAGED,
        "signatures/s1",
    );
    assert!(line.contains("does not verify"), "{line}");
    // A flipped signature byte: refused even when none is required.
    let mut forged: serde_json::Value = serde_json::from_slice(&s1_sig).unwrap();
    let sig = forged["Signature"].as_str().unwrap().to_owned();
    let first = if sig.starts_with('A') { "B" } else { "A" };
    let flipped = format!("{first}{}", &sig[1..]);
    forged["Signature"] = flipped.into();
    repo.put("signatures/s1", forged.to_string().as_bytes());
    let dst2 = env.path("restored2");
    fails(
        &env,
        &["snapshot", "pull", &repo.snap("s1"), dst2.to_str().unwrap()],
        DAMAGED,
        "signatures/s1",
    );
    assert!(!dst2.exists());
    // Removed: a pull that asks for a signature refuses; one that does not
    // restores the (authenticated) manifest.
    repo.delete("signatures/s1");
    fails(
        &env,
        &[
            "snapshot",
            "pull",
            &repo.snap("s1"),
            dst2.to_str().unwrap(),
            "--signed-by",
            &ec,
        ],
        DAMAGED,
        "missing",
    );
    assert!(!dst2.exists());
    // Delete removes the signature with the manifest.
    json(&env, &["snapshot", "delete", &repo.snap("s2")]);
    assert!(repo.get("signatures/s2").is_none());
}
