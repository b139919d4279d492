//! What a denied caller learns (nothing of a key it may not use), and the
//! grant operations as the agent decides them.

use serde_json::json;

use super::tests::with_store::{request, store_root, store_user};
use super::*;
use crate::kms::local::test_store;

#[test]
fn a_missing_key_is_the_same_denial_as_a_key_not_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let ks = test_store(dir.path());
    let key_id = ks.create_key("", "AWS_KMS").unwrap().key_id;
    ks.create_alias("alias/team", &key_id).unwrap();
    let missing = "00000000-0000-4000-8000-000000000000";
    let alice = store_user(&ks, "alice", 1000);
    let message = |name: &str| {
        authorize(&ks, &alice, &request("kms:Decrypt", name, None))
            .unwrap_err()
            .to_string()
    };
    // The same words but for the name the caller gave.
    assert_eq!(message(&key_id).replace(&key_id, missing), message(missing));
    assert_eq!(
        message("alias/team").replace("alias/team", "alias/none"),
        message("alias/none")
    );
    assert!(
        message("alias/team").starts_with(&format!(
            "AccessDeniedException: User: {} is not authorized to perform: kms:Decrypt on resource: {} because",
            alice.principal_arn,
            ks.alias_arn("alias/team")
        )),
        "{}",
        message("alias/team")
    );
    // The owner is told the key does not exist.
    let root = store_root(&ks);
    let e = authorize(&ks, &root, &request("kms:Decrypt", missing, None)).unwrap_err();
    assert_eq!(e.name(), "NotFoundException");
    assert_eq!(
        authorize(&ks, &root, &request("kms:Decrypt", &key_id, None)).unwrap(),
        Some(ks.arn(&key_id))
    );
}

#[test]
fn retiring_by_key_and_grant_id_tells_a_stranger_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ks = test_store(dir.path());
    let key = ks.arn(&ks.create_key("", "AWS_KMS").unwrap().key_id);
    let (alice, bob) = (store_user(&ks, "alice", 1000), store_user(&ks, "bob", 1001));
    let req = GrantRequest {
        grantee_principal: alice.principal_arn.clone(),
        retiring_principal: Some(bob.principal_arn.clone()),
        operations: vec!["Decrypt".into()],
        ..Default::default()
    };
    let (_, grant_id) = ks.create_grant(&key, &req, &[]).unwrap();
    let retire = |who: &Caller, key: &str, grant: &str| {
        let r = AccessRequest {
            action: "kms:RetireGrant",
            key: Some(key),
            grant_id: Some(grant),
            ..AccessRequest::default()
        };
        authorize(&ks, who, &r).map_err(|e| e.name())
    };
    let missing_key = ks.arn("00000000-0000-4000-8000-000000000000");
    assert_eq!(retire(&bob, &key, &grant_id), Ok(Some(key.clone())));
    for (k, g) in [
        (&key, "0".repeat(64)),
        (&key, grant_id.clone()),
        (&missing_key, grant_id.clone()),
    ] {
        assert_eq!(
            retire(&alice, k, &g),
            Err("AccessDeniedException"),
            "{k} {g}"
        );
    }
    assert_eq!(
        retire(&store_root(&ks), &key, &"0".repeat(64)),
        Err("NotFoundException")
    );
}

#[test]
fn create_grant_is_decided_by_grant_operations_and_list_retirable_by_whose() {
    let dir = tempfile::tempdir().unwrap();
    let ks = test_store(dir.path());
    let key = ks.arn(&ks.create_key("", "AWS_KMS").unwrap().key_id);
    let (alice, bob) = (store_user(&ks, "alice", 1000), store_user(&ks, "bob", 1001));
    let policy = json!({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": root_principal(ks.store_id())},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": alice.principal_arn}, "Action": "kms:CreateGrant",
         "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]},
                       "Null": {"kms:GrantOperations": "false"}}}]});
    ks.put_key_policy(&key, "default", &policy.to_string(), false)
        .unwrap();
    let create = |who: &Caller, ops: &[&str]| {
        let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        let r = AccessRequest {
            action: "kms:CreateGrant",
            key: Some(&key),
            grant_operations: &ops,
            ..AccessRequest::default()
        };
        authorize(&ks, who, &r).map_err(|e| e.name())
    };
    assert_eq!(create(&alice, &["Decrypt"]), Ok(Some(key.clone())));
    assert_eq!(create(&alice, &["Encrypt"]), Err("AccessDeniedException"));
    assert_eq!(
        create(&alice, &["Decrypt", "Encrypt"]),
        Err("AccessDeniedException")
    );
    assert_eq!(create(&bob, &["Decrypt"]), Err("AccessDeniedException"));
    let list = |who: &Caller, whose: &str| {
        let r = AccessRequest {
            action: "kms:ListRetirableGrants",
            retiring_principal: Some(whose),
            ..AccessRequest::default()
        };
        authorize(&ks, who, &r).map_err(|e| e.name())
    };
    assert_eq!(list(&bob, &bob.principal_arn), Ok(None));
    assert_eq!(
        list(&bob, &alice.principal_arn),
        Err("AccessDeniedException")
    );
    assert_eq!(list(&store_root(&ks), &alice.principal_arn), Ok(None));
}
