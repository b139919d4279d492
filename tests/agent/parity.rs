//! Every `kms` operation over the agent's socket is the one on the store:
//! the same JSON and the same errors (both go through one request path);
//! key management through the agent is decided by the key policy (and,
//! for creating keys and aliases, kept to the store's owner); a plain
//! `kms` command naming a key of a store the user cannot open goes to the
//! default agent.

use std::process::{Command, Output};

use serde_json::Value;

use crate::common::users::TestUser;
use crate::common::*;
use crate::*;

fn json_of(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The same command on the store and through the agent: identical stdout,
/// stderr and exit code.
fn same_both_ways(env: &Env, agent: &Agent, args: &[&str]) -> Output {
    let direct = env.run(args);
    let through = via_agent(env, agent, args);
    assert_eq!(
        (
            direct.status.code(),
            String::from_utf8_lossy(&direct.stderr)
        ),
        (
            through.status.code(),
            String::from_utf8_lossy(&through.stderr)
        ),
        "{args:?}: exit and stderr on the store, then through the agent"
    );
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        String::from_utf8_lossy(&through.stdout),
        "{args:?}: output on the store, then through the agent"
    );
    direct
}

/// Root creates, names, tags, rotates, signs and imports through the agent
/// (none of which the agent served before), and every read answer and
/// error is byte for byte what the store gives.
#[test]
fn every_kms_operation_gives_the_same_answer_through_the_agent() {
    if !need_root("every_kms_operation_gives_the_same_answer_through_the_agent") {
        return;
    }
    let env = Env::shared();
    store_with_key(&env);
    let agent = Agent::start(&env, &[]);
    let made = |args: &[&str]| json_of(&via_agent(&env, &agent, args), &format!("{args:?}"));
    let key = made(&["kms", "create-key", "--description", "through the agent"]);
    let key = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let k = key.as_str();
    let signer = made(&[
        "kms",
        "create-key",
        "--key-spec",
        "ECC_NIST_P256",
        "--key-usage",
        "SIGN_VERIFY",
    ]);
    let signer = signer["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let external = made(&["kms", "create-key", "--origin", "EXTERNAL"]);
    let external = external["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    for args in [
        &[
            "kms",
            "create-alias",
            "--alias-name",
            "alias/parity",
            "--target-key-id",
            k,
        ][..],
        &[
            "kms",
            "update-alias",
            "--alias-name",
            "alias/parity",
            "--target-key-id",
            k,
        ],
        &[
            "kms",
            "create-alias",
            "--alias-name",
            "alias/gone",
            "--target-key-id",
            k,
        ],
        &["kms", "delete-alias", "--alias-name", "alias/gone"],
        &[
            "kms",
            "enable-key-rotation",
            "--key-id",
            k,
            "--rotation-period-in-days",
            "90",
        ],
        &["kms", "rotate-key-on-demand", "--key-id", k],
        &[
            "kms",
            "tag-resource",
            "--key-id",
            k,
            "--tags",
            "TagKey=team,TagValue=ops",
        ],
        &[
            "kms",
            "tag-resource",
            "--key-id",
            k,
            "--tags",
            "TagKey=tmp,TagValue=1",
        ],
        &["kms", "untag-resource", "--key-id", k, "--tag-keys", "tmp"],
        &[
            "kms",
            "update-key-description",
            "--key-id",
            k,
            "--description",
            "renamed",
        ],
    ] {
        made(args);
    }
    let message = base64_encode(b"release 1.0");
    let sig = made(&[
        "kms",
        "sign",
        "--key-id",
        &signer,
        "--message",
        &message,
        "--signing-algorithm",
        "ECDSA_SHA_256",
    ]);
    let sig = sig["Signature"].as_str().unwrap().to_owned();
    let params = made(&[
        "kms",
        "get-parameters-for-import",
        "--key-id",
        &external,
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_256",
        "--wrapping-key-spec",
        "RSA_2048",
    ]);
    assert!(params["ImportToken"].is_string(), "{params}");

    for args in [
        &["kms", "describe-key", "--key-id", "alias/parity"][..],
        &["kms", "list-aliases", "--key-id", k],
        &["kms", "get-key-rotation-status", "--key-id", k],
        &["kms", "list-key-rotations", "--key-id", k],
        &["kms", "list-resource-tags", "--key-id", k],
        &["kms", "get-key-policy", "--key-id", k],
        &["kms", "list-key-policies", "--key-id", k],
        &["kms", "get-public-key", "--key-id", &signer],
        &[
            "kms",
            "verify",
            "--key-id",
            &signer,
            "--message",
            &message,
            "--signature",
            &sig,
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ],
        &["kms", "list-keys", "--limit", "2"],
        &["kms", "describe-key", "--key-id", k, "--output", "text"],
        &["kms", "describe-key", "--key-id", "alias/none"],
        &["kms", "enable-key-rotation", "--key-id", &signer],
        &[
            "kms",
            "sign",
            "--key-id",
            k,
            "--message",
            &message,
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ],
        &[
            "kms",
            "verify",
            "--key-id",
            &signer,
            "--message",
            &base64_encode(b"other"),
            "--signature",
            &sig,
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ],
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            k,
            "--key-spec",
            "BOGUS",
        ],
        &[
            "kms",
            "create-alias",
            "--alias-name",
            "bad name",
            "--target-key-id",
            k,
        ],
    ] {
        same_both_ways(&env, &agent, args);
    }
    let d = json_of(
        &env.run(&["kms", "describe-key", "--key-id", "alias/parity"]),
        "describe",
    );
    assert_eq!(d["KeyMetadata"]["Description"], "renamed");
    let tags = json_of(
        &env.run(&["kms", "list-resource-tags", "--key-id", k]),
        "tags",
    );
    assert_eq!(
        tags["Tags"],
        serde_json::json!([{"TagKey": "team", "TagValue": "ops"}])
    );
}

/// alice, with a grant to decrypt, can neither create keys or aliases nor
/// tag, rotate or describe anew; once the key policy allows her
/// kms:TagResource she tags, and still cannot make an alias (the store
/// owner's alone).
#[test]
fn management_through_the_agent_is_what_the_policy_allows() {
    let test = "management_through_the_agent_is_what_the_policy_allows";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "pm") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let me = format!("arn:envelopefs:iam::{id}:user/{}", alice.name);
    env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        &me,
        "--operations",
        "Decrypt",
    ]);
    let agent = Agent::start(&env, &[]);
    let alice_runs = |args: &[&str]| run_bounded(as_user(&env, &alice, &agent, args), 30);
    let denied = |args: &[&str]| {
        let out = alice_runs(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{args:?}: {err}");
        assert!(err.contains("AccessDeniedException"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    };
    let tag = [
        "kms",
        "tag-resource",
        "--key-id",
        &key,
        "--tags",
        "TagKey=a,TagValue=b",
    ];
    denied(&["kms", "create-key"]);
    denied(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/alice",
        "--target-key-id",
        &key,
    ]);
    denied(&tag);
    denied(&["kms", "enable-key-rotation", "--key-id", &key]);
    denied(&[
        "kms",
        "update-key-description",
        "--key-id",
        &key,
        "--description",
        "x",
    ]);
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:envelopefs:iam::{id}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": me},
         "Action": ["kms:TagResource", "kms:ListResourceTags", "kms:CreateAlias"],
         "Resource": "*"}]})
    .to_string();
    env.run_ok(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &key,
        "--policy",
        &policy,
    ]);
    let out = alice_runs(&tag);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = alice_runs(&["kms", "list-resource-tags", "--key-id", &key]);
    let tags = json_of(&out, "alice lists tags");
    assert_eq!(
        tags["Tags"],
        serde_json::json!([{"TagKey": "a", "TagValue": "b"}])
    );
    denied(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/alice",
        "--target-key-id",
        &key,
    ]);
    let audit = audit_lines(&env);
    assert!(
        audit.iter().any(|l| l["eventName"] == "CreateKey"
            && l["outcome"] == "AccessDeniedException"
            && l["principalArn"] == me.as_str()),
        "alice's refused CreateKey is audited under her principal"
    );
}

/// alice has no key store and sets no agent: `kms describe-key` of a key
/// ARN of root's store goes to the default agent (refused, then allowed
/// by a grant), not to "no key store"; with no agent there she is told
/// she has no key store.
#[test]
fn a_kms_command_on_a_key_of_another_store_goes_to_the_default_agent() {
    let test = "a_kms_command_on_a_key_of_another_store_goes_to_the_default_agent";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "pr") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let arn = format!("arn:envelopefs:kms:local:{id}:key/{key}");
    let agent = Agent::start(&env, &[]);
    let describe = |default_socket: &str| -> Output {
        let mut c = Command::new(env.shared_bin());
        c.args(["kms", "describe-key", "--key-id", &arn])
            .env_clear()
            .env("HOME", "/nonexistent")
            .env("ENVELOPEFS_TEST_DEFAULT_AGENT_SOCKET", default_socket)
            .current_dir("/")
            .stdin(std::process::Stdio::null());
        std::os::unix::process::CommandExt::uid(&mut c, alice.uid);
        std::os::unix::process::CommandExt::gid(&mut c, alice.gid);
        run_bounded(c, 30)
    };
    let out = describe(agent.sock());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{err}");
    assert!(err.contains("kms:DescribeKey"), "{err}");
    env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        &format!("arn:envelopefs:iam::{id}:user/{}", alice.name),
        "--operations",
        "DescribeKey",
    ]);
    let d = json_of(
        &describe(agent.sock()),
        "alice describes through the default agent",
    );
    assert_eq!(d["KeyMetadata"]["Arn"], arn.as_str());
    let out = describe(env.path("run/no-agent.sock").to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(13), "no agent, no key store: {err}");
    assert!(err.starts_with("envelopefs: no key store at "), "{err}");
}

/// ReEncrypt is decided on both keys, as AWS decides it: kms:ReEncryptFrom
/// on the blob's key (with the source context) and kms:ReEncryptTo on the
/// destination. alice, allowed everything on her own key and nothing on
/// root's, cannot move a blob of root's key under hers (and so read it).
#[test]
fn re_encrypt_is_decided_on_the_source_key_too() {
    let test = "re_encrypt_is_decided_on_the_source_key_too";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "px") else {
        return;
    };
    let env = Env::shared();
    let roots = store_with_key(&env);
    let hers = store_with_key(&env);
    let id = store_id(&env);
    let me = format!("arn:envelopefs:iam::{id}:user/{}", alice.name);
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:envelopefs:iam::{id}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": me}, "Action": "kms:*", "Resource": "*"}]})
    .to_string();
    env.run_ok(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &hers,
        "--policy",
        &policy,
    ]);
    let (blob, _) = wrapped_key(&env, &roots, "volume=root", "root.blob");
    let agent = Agent::start(&env, &[]);
    let blob_arg = format!("fileb://{}", blob.display());
    let re_encrypt = [
        "kms",
        "re-encrypt",
        "--ciphertext-blob",
        &blob_arg,
        "--source-encryption-context",
        "volume=root",
        "--destination-key-id",
        &hers,
    ];
    let out = run_bounded(as_user(&env, &alice, &agent, &re_encrypt), 30);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{err}");
    assert!(err.contains("kms:ReEncryptFrom"), "{err}");
    // Root's own re-encrypt through the agent is allowed both ways.
    let out = via_agent(&env, &agent, &re_encrypt);
    json_of(&out, "root re-encrypts through the agent");
}
