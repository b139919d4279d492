//! Grant operations through the agent (`envelopefs --agent SOCKET kms
//! create-grant ...`), decided as AWS decides them: kms:CreateGrant,
//! kms:ListGrants and kms:RevokeGrant by the key policy (with
//! kms:GrantOperations), RetireGrant by the grant; every call audited. A
//! denied user cannot tell a missing key from one it may not use.

use std::process::Output;

use crate::common::users::TestUser;
use crate::common::*;
use crate::*;

/// `envelopefs ARGS` as `user` through the agent, within 30 s.
fn user_run(env: &Env, user: &TestUser, agent: &Agent, args: &[&str]) -> Output {
    run_bounded(as_user(env, user, agent, args), 30)
}

fn ok_json(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One line, AccessDeniedException for `principal` and `action`, exit 19.
fn assert_refused(out: &Output, principal: &str, action: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(
        err.starts_with(&format!(
            "envelopefs: AccessDeniedException: User: {principal} is not authorized to perform: {action} "
        )),
        "{what}: {err}"
    );
    assert!(out.stdout.is_empty(), "{what}");
}

fn audited(env: &Env, principal: &str, event: &str, outcome: &str) -> bool {
    audit_lines(env).iter().any(|l| {
        l["principalArn"] == principal && l["eventName"] == event && l["outcome"] == outcome
    })
}

/// alice may create grants of Decrypt only (kms:GrantOperations): she
/// grants bob Decrypt for one volume, and not Encrypt; bob then decrypts
/// through his grant. A user the policy does not name may not list or
/// revoke grants, audited; root does both through the same agent.
#[test]
fn create_grant_through_the_agent_is_decided_by_grant_operations() {
    let test = "create_grant_through_the_agent_is_decided_by_grant_operations";
    if !need_root(test) {
        return;
    }
    let (Some(alice), Some(bob)) = (TestUser::create(test, "ga"), TestUser::create(test, "gb"))
    else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let principal = |u: &TestUser| format!("arn:envelopefs:iam::{id}:user/{}", u.name);
    let policy = serde_json::json!({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:envelopefs:iam::{id}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": principal(&alice)}, "Action": "kms:CreateGrant",
         "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"kms:GrantOperations": "Decrypt"},
                       "Null": {"kms:GrantOperations": "false"}}}]});
    env.run_ok(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &key,
        "--policy",
        &policy.to_string(),
    ]);
    let (team, team_plain) = wrapped_key(&env, &key, "volume=team", "team.blob");
    let agent = Agent::start(&env, &[]);
    let grant = |ops: &str| {
        user_run(
            &env,
            &alice,
            &agent,
            &[
                "kms",
                "create-grant",
                "--key-id",
                &key,
                "--grantee-principal",
                &principal(&bob),
                "--operations",
                ops,
                "--constraints",
                "EncryptionContextSubset={volume=team}",
            ],
        )
    };
    let made = ok_json(&grant("Decrypt"), "alice grants bob Decrypt");
    let grant_id = made["GrantId"].as_str().unwrap().to_owned();
    assert!(made["GrantToken"].is_string(), "{made}");
    assert_refused(
        &grant("Encrypt"),
        &principal(&alice),
        "kms:CreateGrant",
        "alice grants Encrypt",
    );
    assert_eq!(
        decrypt_as(&env, &bob, &agent, &team, "volume=team"),
        Ok(team_plain),
        "bob, through the grant alice made"
    );
    assert!(audited(&env, &principal(&alice), "CreateGrant", "ok"));
    assert!(audited(
        &env,
        &principal(&alice),
        "CreateGrant",
        "AccessDeniedException"
    ));

    // bob is named by no statement: he may not list or revoke grants.
    let list = ["kms", "list-grants", "--key-id", key.as_str()];
    let revoke = [
        "kms",
        "revoke-grant",
        "--key-id",
        key.as_str(),
        "--grant-id",
        grant_id.as_str(),
    ];
    assert_refused(
        &user_run(&env, &bob, &agent, &list),
        &principal(&bob),
        "kms:ListGrants",
        "bob lists",
    );
    assert_refused(
        &user_run(&env, &bob, &agent, &revoke),
        &principal(&bob),
        "kms:RevokeGrant",
        "bob revokes",
    );
    for event in ["ListGrants", "RevokeGrant"] {
        assert!(
            audited(&env, &principal(&bob), event, "AccessDeniedException"),
            "bob's {event} is not audited"
        );
    }
    let listed = ok_json(&via_agent(&env, &agent, &list), "root lists");
    let grants = listed["Grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{listed}");
    assert_eq!(grants[0]["GranteePrincipal"], principal(&bob).as_str());
    assert_eq!(grants[0]["Operations"], serde_json::json!(["Decrypt"]));
    assert_eq!(
        grants[0]["Constraints"],
        serde_json::json!({"EncryptionContextSubset": {"volume": "team"}})
    );
    ok_json(&via_agent(&env, &agent, &revoke), "root revokes");
    assert_denied(
        decrypt_as(&env, &bob, &agent, &team, "volume=team"),
        "bob, grant revoked",
    );
}

/// A grant's retiring principal lists and retires it through the agent;
/// its grantee (not allowed RetireGrant) may not.
#[test]
fn the_retiring_principal_retires_a_grant_through_the_agent() {
    let test = "the_retiring_principal_retires_a_grant_through_the_agent";
    if !need_root(test) {
        return;
    }
    let (Some(alice), Some(bob)) = (TestUser::create(test, "ra"), TestUser::create(test, "rb"))
    else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let principal = |u: &TestUser| format!("arn:envelopefs:iam::{id}:user/{}", u.name);
    let made = env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        &principal(&alice),
        "--retiring-principal",
        &principal(&bob),
        "--operations",
        "Decrypt",
        "--output",
        "json",
    ]);
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let grant_id = made["GrantId"].as_str().unwrap().to_owned();
    let (blob, plain) = wrapped_key(&env, &key, "volume=team", "team.blob");
    let agent = Agent::start(&env, &[]);
    assert_eq!(
        decrypt_as(&env, &alice, &agent, &blob, "volume=team"),
        Ok(plain)
    );
    let retire = [
        "kms",
        "retire-grant",
        "--key-id",
        key.as_str(),
        "--grant-id",
        grant_id.as_str(),
    ];
    assert_refused(
        &user_run(&env, &alice, &agent, &retire),
        &principal(&alice),
        "kms:RetireGrant",
        "the grantee retires",
    );
    let retirable = |u: &TestUser, whose: &str| {
        user_run(
            &env,
            u,
            &agent,
            &[
                "kms",
                "list-retirable-grants",
                "--retiring-principal",
                whose,
            ],
        )
    };
    assert_refused(
        &retirable(&alice, &principal(&bob)),
        &principal(&alice),
        "kms:ListRetirableGrants",
        "alice lists bob's retirable grants",
    );
    let mine = ok_json(&retirable(&bob, &principal(&bob)), "bob's retirable");
    assert_eq!(mine["Grants"][0]["GrantId"], grant_id.as_str(), "{mine}");
    let out = user_run(&env, &bob, &agent, &retire);
    assert_eq!(ok_json(&out, "bob retires"), serde_json::Value::Null);
    assert!(audited(&env, &principal(&bob), "RetireGrant", "ok"));
    assert!(audited(
        &env,
        &principal(&alice),
        "RetireGrant",
        "AccessDeniedException"
    ));
    assert_denied(
        decrypt_as(&env, &alice, &agent, &blob, "volume=team"),
        "alice, grant retired",
    );
}

/// A denied user gets the same answer for a key that does not exist as
/// for one it may not use; root is told it does not exist.
#[test]
fn a_denied_user_cannot_tell_a_missing_key_from_a_forbidden_one() {
    let test = "a_denied_user_cannot_tell_a_missing_key_from_a_forbidden_one";
    if !need_root(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "mk") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    env.run_ok(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/team",
        "--target-key-id",
        &key,
    ]);
    let missing = "00000000-0000-4000-8000-000000000000";
    let agent = Agent::start(&env, &[]);
    let describe = |u: Option<&TestUser>, name: &str| {
        let args = ["kms", "describe-key", "--key-id", name];
        match u {
            Some(u) => user_run(&env, u, &agent, &args),
            None => via_agent(&env, &agent, &args),
        }
    };
    for (there, absent) in [(key.as_str(), missing), ("alias/team", "alias/none")] {
        let (a, b) = (
            describe(Some(&alice), there),
            describe(Some(&alice), absent),
        );
        assert_eq!(a.status.code(), Some(ACCESS_DENIED));
        assert_eq!(b.status.code(), Some(ACCESS_DENIED));
        assert_eq!(
            String::from_utf8_lossy(&a.stderr).replace(there, absent),
            String::from_utf8_lossy(&b.stderr),
            "{there} and {absent} answered apart"
        );
    }
    let out = describe(None, missing);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(16), "{err}");
    assert!(err.starts_with("envelopefs: NotFoundException: "), "{err}");
}
