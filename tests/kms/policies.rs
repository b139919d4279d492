//! Key policies and grants through the CLI: put-key-policy, get-key-policy,
//! list-key-policies, create-key --policy, create-grant, list-grants,
//! list-retirable-grants, retire-grant and revoke-grant, with AWS's JSON
//! shapes and errors.

use crate::common::*;
use crate::support::{fails_named as fails, json};
use serde_json::{json as j, Value};

fn new_key(env: &Env) -> (String, String, String) {
    let k = json(env, &["kms", "create-key"]);
    let m = &k["KeyMetadata"];
    (
        m["KeyId"].as_str().unwrap().to_owned(),
        m["Arn"].as_str().unwrap().to_owned(),
        m["AWSAccountId"].as_str().unwrap().to_owned(),
    )
}

fn root(store: &str) -> String {
    format!("arn:envelopefs:iam::{store}:root")
}

fn user(store: &str, name: &str) -> String {
    format!("arn:envelopefs:iam::{store}:user/{name}")
}

fn policy_of(env: &Env, id: &str) -> String {
    let v = json(env, &["kms", "get-key-policy", "--key-id", id]);
    assert_eq!(v["PolicyName"], "default", "{v}");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    v["Policy"].as_str().unwrap().to_owned()
}

#[test]
fn key_policies_put_get_list() {
    let env = Env::new();
    let (id, arn, store) = new_key(&env);
    // The default key policy: the store's root principal, every action.
    let default: Value = serde_json::from_str(&policy_of(&env, &id)).unwrap();
    assert_eq!(default["Version"], "2012-10-17");
    let st = &default["Statement"][0];
    assert_eq!(st["Effect"], "Allow");
    assert_eq!(st["Principal"]["AWS"], root(&store));
    assert_eq!(st["Action"], "kms:*");
    assert_eq!(st["Resource"], "*");
    let list = json(&env, &["kms", "list-key-policies", "--key-id", &arn]);
    assert_eq!(list, j!({"PolicyNames": ["default"]}));
    let page = json(
        &env,
        &["kms", "list-key-policies", "--key-id", &id, "--limit", "1"],
    );
    assert_eq!(page, j!({"PolicyNames": ["default"], "Truncated": false}));
    // A policy from a file, returned as put.
    let team = j!({"Version": "2012-10-17", "Statement": [
        {"Sid": "owner", "Effect": "Allow", "Principal": {"AWS": root(&store)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "team", "Effect": "Allow", "Principal": {"AWS": [user(&store, "alice")]},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:volume": "team"}}}]})
    .to_string();
    let file = env.path("policy.json");
    std::fs::write(&file, &team).unwrap();
    let put = [
        "kms",
        "put-key-policy",
        "--key-id",
        &id,
        "--policy-name",
        "default",
        "--policy",
    ];
    let from_file = format!("file://{}", file.display());
    assert_eq!(env.run_ok(&[&put[..], &[&from_file]].concat()), "");
    assert_eq!(policy_of(&env, &id), team);
}

#[test]
fn key_policy_errors() {
    let env = Env::new();
    let (id, _, store) = new_key(&env);
    let before = policy_of(&env, &id);
    let put = |p: &str| {
        [
            "kms",
            "put-key-policy",
            "--key-id",
            &id,
            "--policy-name",
            "default",
            "--policy",
            p,
        ]
        .map(str::to_owned)
    };
    fn strs(v: &[String; 8]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let unknown_key = j!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*",
        "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": "x"}}}})
    .to_string();
    let args = put(&unknown_key);
    fails(&env, &strs(&args), 18, "MalformedPolicyDocumentException");
    let out = env.run(&strs(&args));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kms:ViaService"));
    // A policy that would lock root out needs the bypass flag.
    let alice_only =
        j!({"Statement": {"Effect": "Allow", "Principal": {"AWS": user(&store, "alice")},
        "Action": "kms:*", "Resource": "*"}})
        .to_string();
    let args = put(&alice_only);
    fails(&env, &strs(&args), 18, "MalformedPolicyDocumentException");
    assert_eq!(policy_of(&env, &id), before, "nothing changed");
    let bypass = [&strs(&args)[..], &["--bypass-policy-lockout-safety-check"]].concat();
    assert_eq!(env.run_ok(&bypass), "");
    assert_eq!(policy_of(&env, &id), alice_only);
    // The one policy name is default.
    let other = [
        "kms",
        "get-key-policy",
        "--key-id",
        &id,
        "--policy-name",
        "x",
    ];
    fails(&env, &other, 16, "NotFoundException");
    // create-key --policy: checked before the key is made.
    let keys = |env: &Env| {
        json(env, &["kms", "list-keys"])["Keys"]
            .as_array()
            .unwrap()
            .len()
    };
    let n = keys(&env);
    let bad = ["kms", "create-key", "--policy", "{\"Statement\": 1}"];
    fails(&env, &bad, 18, "MalformedPolicyDocumentException");
    assert_eq!(keys(&env), n);
    let anyone = j!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}})
        .to_string();
    let k = json(&env, &["kms", "create-key", "--policy", &anyone]);
    let new_id = k["KeyMetadata"]["KeyId"].as_str().unwrap();
    assert_eq!(policy_of(&env, new_id), anyone);
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn create_grant(env: &Env, args: &[&str]) -> (String, String) {
    let v = json(env, &[&["kms", "create-grant"], args].concat());
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    (
        v["GrantToken"].as_str().unwrap().to_owned(),
        v["GrantId"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn grants_create_list_retire_revoke() {
    let env = Env::new();
    let (id, arn, store) = new_key(&env);
    let (alice, bob) = (user(&store, "alice"), user(&store, "bob"));
    let args = [
        "--key-id",
        &id,
        "--grantee-principal",
        &alice,
        "--retiring-principal",
        &bob,
        "--operations",
        "Decrypt",
        "DescribeKey",
        "--constraints",
        "EncryptionContextSubset={volume=team}",
        "--name",
        "alice-team",
    ];
    let (token, gid) = create_grant(&env, &args);
    assert_eq!(gid.len(), 64);
    let (token2, gid2) = create_grant(&env, &args);
    assert_eq!(gid2, gid, "same name and parameters: the same grant");
    assert_ne!(token2, token);
    let list = json(&env, &["kms", "list-grants", "--key-id", &arn]);
    let grants = list["Grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{list}");
    let g = &grants[0];
    assert_eq!(g["KeyId"], arn.as_str());
    assert_eq!(g["GrantId"], gid.as_str());
    assert_eq!(g["Name"], "alice-team");
    assert_eq!(g["GranteePrincipal"], alice.as_str());
    assert_eq!(g["RetiringPrincipal"], bob.as_str());
    assert_eq!(g["IssuingAccount"], root(&store).as_str());
    assert_eq!(g["Operations"], j!(["Decrypt", "DescribeKey"]));
    assert_eq!(
        g["Constraints"],
        j!({"EncryptionContextSubset": {"volume": "team"}})
    );
    assert!(g["CreationDate"].is_u64());
    // A second grant, by JSON constraints; filters.
    let (_, gid_b) = create_grant(
        &env,
        &[
            "--key-id",
            &id,
            "--grantee-principal",
            &bob,
            "--operations",
            "Encrypt",
            "--constraints",
            r#"{"EncryptionContextEquals": {"volume": "b"}}"#,
        ],
    );
    let only = |flag: &str, v: &str| {
        let l = json(&env, &["kms", "list-grants", "--key-id", &id, flag, v]);
        let ids: Vec<String> = l["Grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["GrantId"].as_str().unwrap().to_owned())
            .collect();
        ids
    };
    assert_eq!(only("--grantee-principal", &bob), [gid_b.as_str()]);
    assert_eq!(only("--grant-id", &gid), [gid.as_str()]);
    let retirable = json(
        &env,
        &["kms", "list-retirable-grants", "--retiring-principal", &bob],
    );
    assert_eq!(retirable["Grants"].as_array().unwrap().len(), 1);
    assert_eq!(retirable["Grants"][0]["GrantId"], gid.as_str());
    // Retire by token; the token is then invalid.
    assert_eq!(
        env.run_ok(&["kms", "retire-grant", "--grant-token", &token]),
        ""
    );
    assert_eq!(only("--grant-id", &gid), Vec::<String>::new());
    fails(
        &env,
        &["kms", "retire-grant", "--grant-token", &token],
        18,
        "InvalidGrantTokenException",
    );
    // Revoke by key and grant ID; once gone, NotFoundException.
    let revoke = ["kms", "revoke-grant", "--key-id", &id, "--grant-id", &gid_b];
    assert_eq!(env.run_ok(&revoke), "");
    fails(&env, &revoke, 16, "NotFoundException");
    let retire = [
        "kms",
        "retire-grant",
        "--key-id",
        &arn,
        "--grant-id",
        &gid_b,
    ];
    fails(&env, &retire, 16, "NotFoundException");
    assert_eq!(
        json(&env, &["kms", "list-grants", "--key-id", &id]),
        j!({"Grants": []})
    );
}

#[test]
fn grant_errors() {
    let env = Env::new();
    let (id, _, store) = new_key(&env);
    let alice = user(&store, "alice");
    let base = ["kms", "create-grant", "--key-id", &id];
    let with =
        |rest: &[&str]| -> Vec<String> { base.iter().chain(rest).map(|s| s.to_string()).collect() };
    fails(
        &env,
        &refs(&with(&[
            "--grantee-principal",
            &alice,
            "--operations",
            "Fly",
        ])),
        18,
        "ValidationException",
    );
    fails(
        &env,
        &refs(&with(&[
            "--grantee-principal",
            "alice",
            "--operations",
            "Decrypt",
        ])),
        18,
        "InvalidArnException",
    );
    fails(
        &env,
        &refs(&with(&[
            "--grantee-principal",
            &alice,
            "--operations",
            "Decrypt",
            "--grant-tokens",
            "bm90IGEgdG9rZW4",
        ])),
        18,
        "InvalidGrantTokenException",
    );
    fails(
        &env,
        &["kms", "retire-grant", "--grant-token", "garbage"],
        18,
        "InvalidGrantTokenException",
    );
    assert_eq!(
        json(&env, &["kms", "list-grants", "--key-id", &id]),
        j!({"Grants": []})
    );
}

#[test]
fn grants_page_and_refuse_what_aws_refuses() {
    let env = Env::new();
    let (id, _, store) = new_key(&env);
    let alice = user(&store, "alice");
    let mut made = Vec::new();
    for op in ["Decrypt", "Encrypt", "DescribeKey"] {
        let args = [
            "--key-id",
            &id,
            "--grantee-principal",
            &alice,
            "--operations",
            op,
        ];
        made.push(create_grant(&env, &args).1);
    }
    let first = json(
        &env,
        &["kms", "list-grants", "--key-id", &id, "--limit", "2"],
    );
    assert_eq!(first["Grants"].as_array().unwrap().len(), 2);
    assert_eq!(first["Truncated"], true);
    let marker = first["NextMarker"].as_str().unwrap();
    let rest = json(
        &env,
        &["kms", "list-grants", "--key-id", &id, "--marker", marker],
    );
    assert_eq!(rest["Truncated"], false);
    let mut seen: Vec<&str> = first["Grants"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["Grants"].as_array().unwrap())
        .map(|g| g["GrantId"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    made.sort_unstable();
    assert_eq!(seen, made);
    let bad_limit = ["kms", "list-grants", "--key-id", &id, "--limit", "101"];
    fails(&env, &bad_limit, 18, "ValidationException");
    let bad = [
        "kms",
        "list-retirable-grants",
        "--retiring-principal",
        "bob",
    ];
    fails(&env, &bad, 18, "InvalidArnException");
    // Constraints are for symmetric keys; a key pending deletion takes no grant.
    let ecc = crate::support::create(&env, "ECC_NIST_P256", "SIGN_VERIFY");
    let constrained = [
        "kms",
        "create-grant",
        "--key-id",
        &ecc,
        "--grantee-principal",
        &alice,
        "--operations",
        "Sign",
        "--constraints",
        "EncryptionContextSubset={a=b}",
    ];
    fails(&env, &constrained, 18, "ValidationException");
    env.run_ok(&["kms", "schedule-key-deletion", "--key-id", &id]);
    let pending = [
        "kms",
        "create-grant",
        "--key-id",
        &id,
        "--grantee-principal",
        &alice,
        "--operations",
        "Decrypt",
    ];
    fails(&env, &pending, 15, "KMSInvalidStateException");
}
