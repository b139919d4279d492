//! Key policies and grants decide for each user through the agent.

use crate::common::users::TestUser;
use crate::common::*;
use crate::*;

/// Key policies and grants decide what each user may do through the agent:
/// nothing by default; a grant for one volume's context admits that volume
/// and not another; an explicit Deny overrides the grant; a policy
/// condition admits another user for one volume; revoking the grant stops
/// the user at once. Each denial is audited under the user's principal.
#[test]
fn policies_and_grants_decide_for_each_user() {
    if !need_root("policies_and_grants_decide_for_each_user") {
        return;
    }
    let test = "policies_and_grants_decide_for_each_user";
    let (Some(alice), Some(bob)) = (TestUser::create(test, "pa"), TestUser::create(test, "pb"))
    else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let principal = |u: &TestUser| format!("arn:envelopefs:iam::{id}:user/{}", u.name);
    let (team, team_plain) = wrapped_key(&env, &key, "volume=team", "team.blob");
    let (other, _) = wrapped_key(&env, &key, "volume=other", "other.blob");
    let agent = Agent::start(&env, &[]);

    assert_denied(
        decrypt_as(&env, &alice, &agent, &team, "volume=team"),
        "alice, default policy",
    );
    let grant = env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        &principal(&alice),
        "--operations",
        "Decrypt",
        "--constraints",
        "EncryptionContextSubset={volume=team}",
        "--output",
        "json",
    ]);
    let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
    let grant_id = grant["GrantId"].as_str().unwrap().to_owned();
    assert_eq!(
        decrypt_as(&env, &alice, &agent, &team, "volume=team"),
        Ok(team_plain.clone()),
        "alice, granted the team volume"
    );
    assert_denied(
        decrypt_as(&env, &alice, &agent, &other, "volume=other"),
        "alice, another volume",
    );
    assert_denied(
        decrypt_as(&env, &bob, &agent, &team, "volume=team"),
        "bob, no grant",
    );

    // An explicit Deny for alice beats her grant; a condition admits bob
    // for the team volume only.
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:envelopefs:iam::{id}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": principal(&alice)}, "Action": "kms:Decrypt",
         "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": [principal(&bob)]}, "Action": "kms:Decrypt",
         "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:volume": "team"}}}]})
    .to_string();
    let put = |p: &str| {
        env.run_ok(&[
            "kms",
            "put-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
            "--policy",
            p,
        ])
    };
    put(&policy);
    assert_denied(
        decrypt_as(&env, &alice, &agent, &team, "volume=team"),
        "alice, denied explicitly",
    );
    assert_eq!(
        decrypt_as(&env, &bob, &agent, &team, "volume=team"),
        Ok(team_plain.clone()),
        "bob, by the policy's condition"
    );
    assert_denied(
        decrypt_as(&env, &bob, &agent, &other, "volume=other"),
        "bob, another volume",
    );

    // Back to the default policy: the grant admits alice again, until it
    // is revoked.
    put(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:envelopefs:iam::{id}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    ));
    assert_eq!(
        decrypt_as(&env, &alice, &agent, &team, "volume=team"),
        Ok(team_plain),
        "alice, granted again"
    );
    env.run_ok(&[
        "kms",
        "revoke-grant",
        "--key-id",
        &key,
        "--grant-id",
        &grant_id,
    ]);
    assert_denied(
        decrypt_as(&env, &alice, &agent, &team, "volume=team"),
        "alice, grant revoked",
    );
    let denials = audit_lines(&env)
        .into_iter()
        .filter(|l| {
            l["outcome"] == "AccessDeniedException"
                && l["principalArn"] == principal(&alice).as_str()
                && l["eventName"] == "Decrypt"
        })
        .count();
    assert!(denials >= 3, "alice's denials audited: {denials}");
}

/// Key management through the agent: a user with a grant to use the key
/// cannot disable it, schedule its deletion or change its policy
/// (AccessDenied, audited); root can, through the same agent.
#[test]
fn management_through_the_agent_is_decided_by_policy() {
    if !need_root("management_through_the_agent_is_decided_by_policy") {
        return;
    }
    let test = "management_through_the_agent_is_decided_by_policy";
    let Some(alice) = TestUser::create(test, "ma") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let alice_arn = format!("arn:envelopefs:iam::{id}:user/{}", alice.name);
    env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        &alice_arn,
        "--operations",
        "Decrypt",
        "DescribeKey",
    ]);
    let agent = Agent::start(&env, &[]);
    let policy = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    let attempts: [&[&str]; 4] = [
        &["kms", "disable-key", "--key-id", &key],
        &["kms", "schedule-key-deletion", "--key-id", &key],
        &[
            "kms",
            "put-key-policy",
            "--key-id",
            &key,
            "--policy",
            &policy,
        ],
        &["kms", "get-key-policy", "--key-id", &key],
    ];
    for args in attempts {
        let c = as_user(&env, &alice, &agent, args);
        let out = bounded(30, move || { c }.output().unwrap());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{args:?}: {err}");
        assert!(
            err.starts_with("envelopefs: AccessDeniedException: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // Her grant still works: DescribeKey is hers.
    let c = as_user(
        &env,
        &alice,
        &agent,
        &["kms", "describe-key", "--key-id", &key],
    );
    let out = bounded(30, move || { c }.output().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let denied: Vec<String> = audit_lines(&env)
        .into_iter()
        .filter(|l| {
            l["outcome"] == "AccessDeniedException" && l["principalArn"] == alice_arn.as_str()
        })
        .map(|l| l["eventName"].as_str().unwrap_or("").to_owned())
        .collect();
    for op in [
        "DisableKey",
        "ScheduleKeyDeletion",
        "PutKeyPolicy",
        "GetKeyPolicy",
    ] {
        assert!(
            denied.iter().any(|d| d == op),
            "{op} not audited: {denied:?}"
        );
    }
    // Root, through the same agent, manages the key.
    for args in [
        &["kms", "disable-key", "--key-id", &key][..],
        &["kms", "enable-key", "--key-id", &key],
    ] {
        let out = via_agent(&env, &agent, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?} prints nothing");
    }
    let out = via_agent(&env, &agent, &["kms", "get-key-policy", "--key-id", &key]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["PolicyName"], "default");
    assert!(v["Policy"].as_str().unwrap().contains(":root"), "{v}");
}
