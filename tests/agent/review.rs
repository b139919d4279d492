//! An adversarial review of the agent's authorization: each test is a
//! request a user can send over the socket (raw JSON, not only what the
//! CLI sends) that AWS would refuse, or allow, and the agent decided
//! otherwise.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::users::TestUser;
use crate::common::*;
use crate::*;

/// Run by the tests below as another user: one raw request, its answer
/// printed on a line of its own.
#[test]
#[ignore = "a helper run as another user by the review tests"]
fn review_raw_call_helper() {
    let socket = PathBuf::from(std::env::var("REVIEW_SOCKET").unwrap());
    let req: Value = serde_json::from_str(&std::env::var("REVIEW_REQUEST").unwrap()).unwrap();
    let times: usize = std::env::var("REVIEW_REPEAT").map_or(1, |n| n.parse().unwrap());
    let mut answer = Value::Null;
    for _ in 0..times {
        answer = raw_call(&socket, &req);
    }
    println!("ANSWER {answer}");
}

/// `req` sent as it is over the agent's socket by `user`: the answer.
fn raw_as(env: &Env, user: &TestUser, agent: &Agent, req: &Value) -> Value {
    raw_as_times(env, user, agent, req, 1)
}

/// `req` sent `times` times by `user`: the last answer.
fn raw_as_times(env: &Env, user: &TestUser, agent: &Agent, req: &Value, times: usize) -> Value {
    let helper = env.path("review-test-bin");
    if !helper.exists() {
        copy_executable(&std::env::current_exe().unwrap(), &helper);
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut c = Command::new(&helper);
    c.args([
        "--ignored",
        "--exact",
        "review::review_raw_call_helper",
        "--nocapture",
    ])
    .env("REVIEW_SOCKET", agent.sock())
    .env("REVIEW_REQUEST", req.to_string())
    .env("REVIEW_REPEAT", times.to_string())
    .current_dir("/")
    .stdin(Stdio::null())
    .uid(user.uid)
    .gid(user.gid);
    let out = run_bounded(c, 60);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ANSWER "))
        .unwrap_or_else(|| panic!("no answer: {text} {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).unwrap()
}

fn is_denied(v: &Value) -> bool {
    v["__type"] == "AccessDeniedException"
}

/// A key whose policy lets root do everything and `user` what `statement`
/// (a statement without Effect and Principal) says.
fn key_with_user_statement(env: &Env, user: &TestUser, statement: Value) -> String {
    let key = store_with_key(env);
    let id = store_id(env);
    let mut s = statement;
    s["Effect"] = json!("Allow");
    s["Principal"] = json!({"AWS": format!("arn:envelopefs:iam::{id}:user/{}", user.name)});
    s["Resource"] = json!("*");
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:envelopefs:iam::{id}:root")},
         "Action": "kms:*", "Resource": "*"}, s]})
    .to_string();
    env.run_ok(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &key,
        "--policy",
        &policy,
    ]);
    key
}

/// A policy that lets alice use the key only with the context
/// volume=team (`kms:*` under a kms:EncryptionContext condition) does not
/// let her disable it, re-policy it or schedule its deletion by adding an
/// EncryptionContext those requests do not have: AWS sees no encryption
/// context in them, and the condition does not hold.
#[test]
fn a_context_sent_with_a_request_that_takes_none_is_not_seen_by_conditions() {
    let test = "a_context_sent_with_a_request_that_takes_none_is_not_seen_by_conditions";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "rc") else {
        return;
    };
    let env = Env::shared();
    let key = key_with_user_statement(
        &env,
        &alice,
        json!({"Action": "kms:*",
               "Condition": {"StringEquals": {"kms:EncryptionContext:volume": "team"}}}),
    );
    let agent = Agent::start(&env, &[]);
    let team = json!({"volume": "team"});
    // What the policy means: data keys of the team volume.
    let v = raw_as(
        &env,
        &alice,
        &agent,
        &json!({"Operation": "GenerateDataKey", "KeyId": key, "KeySpec": "AES_256",
                "EncryptionContext": team}),
    );
    assert!(v["CiphertextBlob"].is_string(), "{v}");
    for op in [
        "DisableKey",
        "ScheduleKeyDeletion",
        "DescribeKey",
        "GetKeyPolicy",
    ] {
        let v = raw_as(
            &env,
            &alice,
            &agent,
            &json!({"Operation": op, "KeyId": key, "EncryptionContext": team}),
        );
        assert!(is_denied(&v), "{op} with a context it does not take: {v}");
    }
    let out = env.run_ok(&["kms", "describe-key", "--key-id", &key]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["KeyMetadata"]["KeyState"], "Enabled", "{out}");
}

/// kms:EncryptionContext conditions on CreateGrant see the new grant's
/// constraint (as AWS's): alice, allowed CreateGrant only for volume=team,
/// makes a grant constrained to it, but not an unconstrained one by
/// sending an EncryptionContext (CreateGrant has none) beside it.
#[test]
fn create_grant_conditions_see_the_grants_constraint() {
    let test = "create_grant_conditions_see_the_grants_constraint";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "rg") else {
        return;
    };
    let env = Env::shared();
    let key = key_with_user_statement(
        &env,
        &alice,
        json!({"Action": "kms:CreateGrant",
               "Condition": {"StringEquals": {"kms:EncryptionContext:volume": "team"}}}),
    );
    let me = format!("arn:envelopefs:iam::{}:user/{}", store_id(&env), alice.name);
    let agent = Agent::start(&env, &[]);
    let grant = |extra: Value| {
        let mut req = json!({"Operation": "CreateGrant", "KeyId": key,
                             "GranteePrincipal": me, "Operations": ["Decrypt"]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        raw_as(&env, &alice, &agent, &req)
    };
    let v = grant(json!({"EncryptionContext": {"volume": "team"}}));
    assert!(is_denied(&v), "an unconstrained grant: {v}");
    let v = grant(json!({"Constraints": {"EncryptionContextSubset": {"volume": "other"}}}));
    assert!(is_denied(&v), "a grant for another volume: {v}");
    let v = grant(json!({"Constraints": {"EncryptionContextSubset": {"volume": "team"}}}));
    assert!(v["GrantId"].is_string(), "a grant for the team volume: {v}");
}

/// kms:RequestAlias is the alias's name however the request names the
/// alias: a Deny of requests through `alias/locked` is not dodged by
/// naming the alias by its ARN, nor an Allow through `alias/open` lost.
#[test]
fn request_alias_is_the_alias_name_in_an_alias_arn_too() {
    let test = "request_alias_is_the_alias_name_in_an_alias_arn_too";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "ra") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let me = format!("arn:envelopefs:iam::{id}:user/{}", alice.name);
    let when = |alias: &str| json!({"StringEquals": {"kms:RequestAlias": alias}});
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:envelopefs:iam::{id}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": me}, "Action": "kms:DescribeKey",
         "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": me}, "Action": "kms:*",
         "Resource": "*", "Condition": when("alias/locked")},
        {"Effect": "Allow", "Principal": {"AWS": me}, "Action": "kms:Encrypt",
         "Resource": "*", "Condition": when("alias/open")}]})
    .to_string();
    env.run_ok(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &key,
        "--policy",
        &policy,
    ]);
    for alias in ["alias/open", "alias/locked"] {
        env.run_ok(&[
            "kms",
            "create-alias",
            "--alias-name",
            alias,
            "--target-key-id",
            &key,
        ]);
    }
    let agent = Agent::start(&env, &[]);
    let call = |op: &str, name: &str| {
        raw_as(
            &env,
            &alice,
            &agent,
            &json!({"Operation": op, "KeyId": name, "Plaintext": "aGk="}),
        )
    };
    let arn = |alias: &str| format!("arn:envelopefs:kms:local:{id}:{alias}");
    let v = call("DescribeKey", &key);
    assert_eq!(v["KeyMetadata"]["KeyId"], key.as_str(), "by key ID: {v}");
    for name in ["alias/locked".to_owned(), arn("alias/locked")] {
        let v = call("DescribeKey", &name);
        assert!(is_denied(&v), "{name}: {v}");
    }
    for name in ["alias/open".to_owned(), arn("alias/open")] {
        let v = call("Encrypt", &name);
        assert!(v["CiphertextBlob"].is_string(), "{name}: {v}");
    }
}

fn error_type(v: &Value) -> &str {
    v["__type"].as_str().unwrap_or("")
}

/// Requests of the review that the agent already decided as AWS does,
/// kept so they stay so: alice may do everything with her own key and
/// nothing else. A KeyId of hers beside a blob of root's key, a KeyId of
/// the wrong JSON type, the key-less operations, a grant of another user,
/// the managed default key and keys that do not exist all leave her
/// without root's data and without telling her more than AccessDenied.
#[test]
fn a_user_allowed_her_own_key_gets_nothing_of_another() {
    let test = "a_user_allowed_her_own_key_gets_nothing_of_another";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "rs") else {
        return;
    };
    let env = Env::shared();
    let hers = key_with_user_statement(&env, &alice, json!({"Action": "kms:*"}));
    let roots = store_with_key(&env);
    let id = store_id(&env);
    let (blob, _) = wrapped_key(&env, &roots, "volume=root", "review-root.blob");
    let blob = base64_encode(&std::fs::read(&blob).unwrap());
    let root = format!("arn:envelopefs:iam::{id}:root");
    let grant = env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &roots,
        "--grantee-principal",
        &root,
        "--retiring-principal",
        &root,
        "--operations",
        "Decrypt",
    ]);
    let grant: Value = serde_json::from_str(&grant).unwrap();
    let agent = Agent::start(&env, &[]);
    let call = |req: Value| raw_as(&env, &alice, &agent, &req);
    let ctx = json!({"volume": "root"});
    // Her key named beside root's blob: the blob's key decides.
    let v = call(json!({"Operation": "Decrypt", "CiphertextBlob": blob,
                        "EncryptionContext": ctx, "KeyId": hers}));
    assert_eq!(error_type(&v), "IncorrectKeyException", "{v}");
    let v = call(json!({"Operation": "ReEncrypt", "CiphertextBlob": blob,
                        "SourceEncryptionContext": ctx, "SourceKeyId": hers,
                        "DestinationKeyId": hers}));
    assert_eq!(error_type(&v), "IncorrectKeyException", "{v}");
    // A KeyId that is not a string is no KeyId: the blob's key decides.
    for key_id in [json!(5), json!([hers]), json!({"KeyId": hers}), Value::Null] {
        let v = call(json!({"Operation": "Decrypt", "CiphertextBlob": blob,
                            "EncryptionContext": ctx, "KeyId": key_id}));
        assert!(is_denied(&v), "KeyId {key_id}: {v}");
    }
    for req in [
        json!({"Operation": "ListKeys"}),
        json!({"Operation": "ListAliases"}),
        json!({"Operation": "ListAliases", "KeyId": hers}),
        json!({"Operation": "GenerateRandom", "NumberOfBytes": 16}),
        json!({"Operation": "CreateKey"}),
        json!({"Operation": "CreateAlias", "AliasName": "alias/x", "TargetKeyId": hers}),
        json!({"Operation": "ListRetirableGrants", "RetiringPrincipal": root}),
        json!({"Operation": "RetireGrant", "GrantToken": grant["GrantToken"]}),
        json!({"Operation": "RetireGrant", "KeyId": roots, "GrantId": grant["GrantId"]}),
        json!({"Operation": "GenerateDataKey", "KeyId": "alias/envelopefs/default",
               "KeySpec": "AES_256"}),
        json!({"Operation": "GenerateDataKey", "KeyId": roots, "KeySpec": "AES_256",
               "GrantTokens": [grant["GrantToken"]]}),
    ] {
        let v = call(req.clone());
        assert!(is_denied(&v), "{req}: {v}");
    }
    // A key that does not exist is the same denial as root's.
    let missing = "00000000-0000-4000-8000-000000000000";
    let a = call(json!({"Operation": "DescribeKey", "KeyId": roots}));
    let b = call(json!({"Operation": "DescribeKey", "KeyId": missing}));
    assert_eq!(
        a["message"].as_str().unwrap().replace(&roots, missing),
        b["message"].as_str().unwrap(),
        "{a} {b}"
    );
}

/// A denied request is audited (at most 20 lines a minute a user), and
/// the line names the key as the caller named it: a KeyId as long as the
/// request may be (64 KiB) made each line 120 KiB, some 3 GB a day of
/// log from one user. A key name longer than AWS's 2048 characters is a
/// ValidationException before any decision.
#[test]
fn a_denied_user_cannot_grow_the_audit_log_by_long_key_names() {
    let test = "a_denied_user_cannot_grow_the_audit_log_by_long_key_names";
    if !need_root(test) {
        return;
    }
    let Some(mallory) = TestUser::create(test, "rl") else {
        return;
    };
    let env = Env::shared();
    store_with_key(&env);
    let agent = Agent::start(&env, &[]);
    let log = env.path("ks/audit.log");
    let size = || std::fs::metadata(&log).map_or(0, |m| m.len());
    let before = size();
    let long = "k".repeat(60_000);
    let req = json!({"Operation": "DescribeKey", "KeyId": long});
    let v = raw_as_times(&env, &mallory, &agent, &req, 25);
    let grown = size() - before;
    assert!(grown < 64 << 10, "the audit log grew by {grown} bytes");
    assert_eq!(
        error_type(&v),
        "ValidationException",
        "{:.200}",
        v.to_string()
    );
}

/// A key policy whose JSON repeats a key in one object is refused: JSON
/// keeps the last of them silently, so a policy that reads "Decrypt only
/// for volume=team" with a second `StringEquals` block beside the first
/// allowed every volume to alice.
#[test]
fn a_policy_with_a_key_twice_in_one_object_is_refused() {
    let test = "a_policy_with_a_key_twice_in_one_object_is_refused";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "rd") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let policy = format!(
        r#"{{"Version": "2012-10-17", "Statement": [
  {{"Effect": "Allow", "Principal": {{"AWS": "arn:envelopefs:iam::{id}:root"}},
    "Action": "kms:*", "Resource": "*"}},
  {{"Effect": "Allow", "Principal": {{"AWS": "arn:envelopefs:iam::{id}:user/{}"}},
    "Action": "kms:Decrypt", "Resource": "*",
    "Condition": {{"StringEquals": {{"kms:EncryptionContext:volume": "team"}},
                  "StringEquals": {{"kms:CallerAccount": "{id}"}}}}}}]}}"#,
        alice.name
    );
    let out = env.run(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &key,
        "--policy",
        &policy,
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        // What it let alice do.
        let (blob, _) = wrapped_key(&env, &key, "volume=other", "review-other.blob");
        let agent = Agent::start(&env, &[]);
        let r = decrypt_as(&env, &alice, &agent, &blob, "volume=other");
        panic!(
            "the policy was put; alice decrypts volume=other: {}",
            r.is_ok()
        );
    }
    assert!(err.contains("MalformedPolicyDocumentException"), "{err}");
    assert!(err.contains("StringEquals"), "{err}");
}
