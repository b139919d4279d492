use serde_json::json;

use super::*;
use crate::kms::EncryptionContext;

const STORE: &str = "0123456789ab";

fn user(name: &str, uid: u32) -> Caller {
    Caller {
        uid,
        gid: uid,
        groups: vec![],
        pid: 1,
        principal_arn: format!("arn:envelopefs:iam::{STORE}:user/{name}"),
    }
}

fn root() -> Caller {
    Caller {
        principal_arn: root_principal(STORE),
        ..user("x", 0)
    }
}

fn malformed_naming(doc: serde_json::Value, naming: &str) {
    let e = Policy::parse(&doc.to_string()).unwrap_err();
    assert_eq!(e.name(), "MalformedPolicyDocumentException", "{doc}");
    assert!(e.to_string().contains(naming), "{doc}: {e}");
}

fn stmt(extra: serde_json::Value) -> serde_json::Value {
    let mut s =
        json!({"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            s.as_object_mut().unwrap().remove(k);
        } else {
            s[k] = v.clone();
        }
    }
    json!({"Version": "2012-10-17", "Statement": [s]})
}

#[test]
fn default_policy_parses_and_allows_root_only() {
    let p = Policy::parse(&default_policy(STORE)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&default_policy(STORE)).unwrap();
    assert_eq!(v["Statement"][0]["Principal"]["AWS"], root_principal(STORE));
    assert_eq!(v["Statement"][0]["Action"], "kms:*");
    let ctx = ctx_of(None);
    assert_eq!(p.decide(&root(), "kms:Decrypt", &ctx), Decision::Allow);
    assert_eq!(p.decide(&root(), "kms:PutKeyPolicy", &ctx), Decision::Allow);
    assert_eq!(
        p.decide(&user("alice", 1000), "kms:Decrypt", &ctx),
        Decision::NoMatch
    );
    // A non-root caller claiming the root ARN is not root.
    let fake = Caller {
        uid: 1000,
        ..root()
    };
    assert_eq!(p.decide(&fake, "kms:Decrypt", &ctx), Decision::NoMatch);
}

#[test]
fn grammar_errors_name_what_is_wrong() {
    malformed_naming(
        json!({"Statement": [], "Version": "2012-10-17"}),
        "Statement",
    );
    malformed_naming(json!({"Version": "2012-10-17"}), "no Statement");
    malformed_naming(
        json!({"Version": "2011-01-01", "Statement": {}}),
        "2011-01-01",
    );
    let mut top = stmt(json!({}));
    top["Extra"] = json!(1);
    malformed_naming(top, "\"Extra\"");
    malformed_naming(stmt(json!({"Effect": "Maybe"})), "Maybe");
    malformed_naming(stmt(json!({"Effect": null})), "Effect");
    malformed_naming(stmt(json!({"NotAction": "kms:Decrypt"})), "NotAction");
    malformed_naming(stmt(json!({"NotPrincipal": "*"})), "NotPrincipal");
    malformed_naming(stmt(json!({"Whatever": 1})), "\"Whatever\"");
    malformed_naming(stmt(json!({"Principal": {"Service": "x"}})), "\"Service\"");
    malformed_naming(stmt(json!({"Principal": {"AWS": "bob"}})), "\"bob\"");
    malformed_naming(stmt(json!({"Principal": null})), "Principal");
    malformed_naming(stmt(json!({"Action": "kms:Decrpyt"})), "kms:Decrpyt");
    malformed_naming(stmt(json!({"Action": "s3:GetObject"})), "s3:GetObject");
    malformed_naming(stmt(json!({"Action": "kms:Nothing*"})), "kms:Nothing*");
    malformed_naming(stmt(json!({"Resource": "arn:x"})), "Resource");
    malformed_naming(
        stmt(json!({"Condition": {"StringEqualsIgnoreCase": {"kms:KeySpec": "x"}}})),
        "StringEqualsIgnoreCase",
    );
    malformed_naming(
        stmt(json!({"Condition": {"StringEquals": {"kms:ViaService": "x"}}})),
        "kms:ViaService",
    );
    malformed_naming(
        stmt(json!({"Condition": {"Bool": {"kms:KeySpec": "yes"}}})),
        "yes",
    );
    malformed_naming(
        stmt(json!({"Condition": {"NullIfExists": {"kms:KeySpec": "true"}}})),
        "NullIfExists",
    );
    let twice = json!({"Statement": [
        {"Sid": "a", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"},
        {"Sid": "a", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]});
    malformed_naming(twice, "Sid \"a\"");
    let e = Policy::parse("not json").unwrap_err();
    assert_eq!(e.name(), "MalformedPolicyDocumentException");
    let big = format!("{{\"Id\": \"{}\"}}", "x".repeat(MAX_POLICY_BYTES));
    assert_eq!(
        Policy::parse(&big).unwrap_err().name(),
        "LimitExceededException"
    );
    assert_eq!(Policy::parse("").unwrap_err().name(), "ValidationException");
    // AWS's characters: printable Latin-1, tab, line feed, carriage return.
    let with_id = |id: &str| {
        let mut doc = stmt(json!({}));
        doc["Id"] = json!(id);
        doc.to_string().replace("\\u0007", "\u{7}")
    };
    Policy::parse(&with_id("caf\u{e9}\tx")).unwrap();
    for bad in ["\u{20ac}", "a\u{7}"] {
        let doc = with_id(bad);
        assert!(doc.contains(bad), "{doc}");
        assert_eq!(
            Policy::parse(&doc).unwrap_err().name(),
            "ValidationException",
            "{bad:?}"
        );
    }
    // A single statement object and string forms are the grammar too.
    let one = json!({"Statement": {"Effect": "Deny", "Principal": {"AWS": ["*"]},
        "Action": ["kms:GenerateDataKey*", "KMS:decrypt"], "Resource": ["*"]}});
    let p = Policy::parse(&one.to_string()).unwrap();
    assert_eq!(p.statements[0].principals, Principals::Anyone);
}

fn ctx_of(ec: Option<&EncryptionContext>) -> RequestContext<'_> {
    RequestContext {
        encryption_context: ec,
        caller_account: STORE,
        principal_arn: "",
        key_spec: Some("SYMMETRIC_DEFAULT"),
        key_usage: Some("ENCRYPT_DECRYPT"),
        ..RequestContext::default()
    }
}

/// Whether a one-statement Allow policy with this condition allows alice.
fn allows(cond: serde_json::Value, ec: Option<&EncryptionContext>) -> bool {
    allows_with(cond, &ctx_of(ec))
}

fn allows_with(cond: serde_json::Value, ctx: &RequestContext) -> bool {
    let p = Policy::parse(&stmt(json!({"Condition": cond})).to_string()).unwrap();
    let alice = user("alice", 1000);
    let ctx = RequestContext {
        principal_arn: &alice.principal_arn,
        ..ctx.clone()
    };
    p.decide(&alice, "kms:Decrypt", &ctx) == Decision::Allow
}

#[test]
fn string_operators_on_the_encryption_context() {
    let vol = EncryptionContext::new().with("Volume", "team");
    let other = EncryptionContext::new().with("volume", "other");
    let eq = json!({"StringEquals": {"kms:EncryptionContext:volume": "team"}});
    assert!(
        allows(eq.clone(), Some(&vol)),
        "key name matches without case"
    );
    assert!(!allows(eq.clone(), Some(&other)));
    assert!(!allows(eq.clone(), None), "absent key: no match");
    let value_case = json!({"StringEquals": {"kms:EncryptionContext:volume": "TEAM"}});
    assert!(!allows(value_case, Some(&vol)), "values match with case");
    let ne = json!({"StringNotEquals": {"kms:EncryptionContext:volume": "team"}});
    assert!(!allows(ne.clone(), Some(&vol)));
    assert!(allows(ne.clone(), Some(&other)));
    assert!(
        allows(ne, None),
        "negated operator on an absent key matches"
    );
    let like = json!({"StringLike": {"kms:EncryptionContext:volume": ["te?m", "x*"]}});
    assert!(allows(like.clone(), Some(&vol)));
    assert!(!allows(like.clone(), Some(&other)));
    assert!(!allows(like, None));
    let if_exists = json!({"StringEqualsIfExists": {"kms:EncryptionContext:volume": "team"}});
    assert!(allows(if_exists.clone(), None));
    assert!(!allows(if_exists, Some(&other)));
}

#[test]
fn set_operators_on_encryption_context_keys() {
    let ab = EncryptionContext::new().with("a", "1").with("b", "2");
    let a = EncryptionContext::new().with("a", "1");
    let c = EncryptionContext::new().with("c", "1");
    let all = json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}});
    assert!(allows(all.clone(), Some(&ab)));
    assert!(allows(all.clone(), Some(&a)));
    assert!(!allows(all.clone(), Some(&c)));
    // AWS's warning: ForAllValues with Allow also allows a request with no context.
    assert!(allows(all.clone(), None));
    assert!(allows(all, Some(&EncryptionContext::new())));
    let any = json!({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["b", "z"]}});
    assert!(allows(any.clone(), Some(&ab)));
    assert!(!allows(any.clone(), Some(&a)), "needs one match");
    assert!(!allows(any, None));
}

#[test]
fn bool_null_and_the_other_keys() {
    let a = EncryptionContext::new().with("a", "1");
    let null_t = json!({"Null": {"kms:EncryptionContextKeys": true}});
    assert!(allows(null_t.clone(), None));
    assert!(!allows(null_t, Some(&a)));
    let null_f = json!({"Null": {"kms:EncryptionContext:A": "false"}});
    assert!(allows(null_f.clone(), Some(&a)));
    assert!(!allows(null_f, None));
    let b = json!({"Bool": {"kms:EncryptionContext:a": "1"}});
    assert!(Policy::parse(&stmt(json!({"Condition": b})).to_string()).is_err());
    let flag = EncryptionContext::new().with("flag", "True");
    assert!(allows(
        json!({"Bool": {"kms:EncryptionContext:flag": true}}),
        Some(&flag)
    ));
    assert!(!allows(
        json!({"Bool": {"kms:EncryptionContext:flag": "false"}}),
        Some(&flag)
    ));
    assert!(!allows(
        json!({"Bool": {"kms:EncryptionContext:flag": "true"}}),
        None
    ));
    let spec = json!({"StringEquals": {"kms:KeySpec": "SYMMETRIC_DEFAULT", "KMS:KeyUsage": "ENCRYPT_DECRYPT"}});
    assert!(allows(spec, None), "keys are ANDed; names without case");
    assert!(!allows(
        json!({"StringEquals": {"kms:KeySpec": "RSA_2048"}}),
        None
    ));
    let ops = vec!["Decrypt".to_owned(), "Encrypt".to_owned()];
    let alias_ctx = RequestContext {
        request_alias: Some("alias/team"),
        grant_operations: &ops,
        ..ctx_of(None)
    };
    assert!(allows_with(
        json!({"StringEquals": {"kms:RequestAlias": "alias/team"}}),
        &alias_ctx
    ));
    assert!(!allows(
        json!({"StringEquals": {"kms:RequestAlias": "alias/team"}}),
        None
    ));
    let only_decrypt = json!({"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}});
    assert!(!allows_with(only_decrypt, &alias_ctx));
    let crypto =
        json!({"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]}});
    assert!(allows_with(crypto, &alias_ctx));
    let arn = format!("arn:envelopefs:iam::{STORE}:user/alice");
    assert!(allows(
        json!({"StringEquals": {"aws:PrincipalArn": arn}}),
        None
    ));
    assert!(!allows(
        json!({"StringEquals": {"aws:PrincipalArn": "x"}}),
        None
    ));
}

#[test]
fn anyone_in_the_account_and_explicit_deny() {
    let doc = json!({"Statement": [
        {"Sid": "all of this store", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
         "Resource": "*", "Condition": {"StringEquals": {"kms:CallerAccount": STORE}}},
        {"Sid": "but not bob's decrypt", "Effect": "Deny",
         "Principal": {"AWS": format!("arn:envelopefs:iam::{STORE}:user/bob")},
         "Action": "kms:Decrypt", "Resource": "*"}]});
    let p = Policy::parse(&doc.to_string()).unwrap();
    let ctx = ctx_of(None);
    assert_eq!(
        p.decide(&user("alice", 1000), "kms:Decrypt", &ctx),
        Decision::Allow
    );
    assert_eq!(
        p.decide(&user("bob", 1001), "kms:Decrypt", &ctx),
        Decision::ExplicitDeny
    );
    assert_eq!(
        p.decide(&user("bob", 1001), "kms:Encrypt", &ctx),
        Decision::Allow
    );
    let elsewhere = RequestContext {
        caller_account: "otherstore00",
        ..ctx
    };
    assert_eq!(
        p.decide(&user("alice", 1000), "kms:Decrypt", &elsewhere),
        Decision::NoMatch
    );
}

fn grant(ops: &[&str], constraints: Option<GrantConstraints>) -> Grant {
    Grant {
        grant_id: new_grant_id(),
        name: Some("n".into()),
        grantee_principal: user("alice", 1000).principal_arn,
        retiring_principal: None,
        issuing_account: root_principal(STORE),
        operations: ops.iter().map(|s| s.to_string()).collect(),
        constraints,
        creation_date: 0,
    }
}

fn map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn grant_constraints_subset_and_equals() {
    let team = EncryptionContext::new().with("volume", "team");
    let team_more = team.clone().with("inode", "7");
    let sub = GrantConstraints {
        encryption_context_subset: Some(map(&[("Volume", "team")])),
        ..Default::default()
    };
    let g = grant(&["Decrypt", "DescribeKey"], Some(sub.clone()));
    assert!(g.allows("kms:Decrypt", Some(&team), &[], None));
    assert!(g.allows("kms:Decrypt", Some(&team_more), &[], None));
    assert!(!g.allows("kms:Decrypt", None, &[], None));
    assert!(!g.allows(
        "kms:Decrypt",
        Some(&EncryptionContext::new().with("volume", "TEAM")),
        &[],
        None
    ));
    assert!(
        g.allows("kms:DescribeKey", None, &[], None),
        "constraints skip DescribeKey"
    );
    assert!(!g.allows("kms:Encrypt", Some(&team), &[], None));
    let eq = GrantConstraints {
        encryption_context_equals: Some(map(&[("volume", "team")])),
        ..Default::default()
    };
    let g = grant(&["Decrypt"], Some(eq.clone()));
    assert!(g.allows("kms:Decrypt", Some(&team), &[], None));
    assert!(!g.allows("kms:Decrypt", Some(&team_more), &[], None));
    // Constraints: one kind, 1..8 pairs.
    sub.check().unwrap();
    let both = GrantConstraints {
        encryption_context_equals: eq.encryption_context_equals.clone(),
        encryption_context_subset: sub.encryption_context_subset.clone(),
    };
    assert_eq!(both.check().unwrap_err().name(), "ValidationException");
    let nine: Vec<(String, String)> = (0..9).map(|i| (format!("k{i}"), "v".into())).collect();
    let many = GrantConstraints {
        encryption_context_subset: Some(nine.into_iter().collect()),
        ..Default::default()
    };
    assert_eq!(many.check().unwrap_err().name(), "ValidationException");
}

#[test]
fn grants_delegate_no_more_than_they_hold() {
    let g = grant(&["Decrypt", "CreateGrant"], None);
    let ops = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(g.allows("kms:CreateGrant", None, &ops(&["Decrypt"]), None));
    assert!(!g.allows("kms:CreateGrant", None, &ops(&["Decrypt", "Encrypt"]), None));
    let sub = GrantConstraints {
        encryption_context_subset: Some(map(&[("volume", "team")])),
        ..Default::default()
    };
    let constrained = grant(&["Decrypt", "CreateGrant"], Some(sub.clone()));
    assert!(!constrained.allows("kms:CreateGrant", None, &ops(&["Decrypt"]), None));
    let stricter = GrantConstraints {
        encryption_context_subset: Some(map(&[("volume", "team"), ("x", "y")])),
        ..Default::default()
    };
    assert!(sub.covers(Some(&stricter)));
    assert!(!stricter.covers(Some(&sub)));
}

#[test]
fn grant_tokens_name_a_grant() {
    let t = grant_token("key-1", "g1");
    assert_eq!(
        parse_grant_token(&t).unwrap(),
        ("key-1".into(), "g1".into())
    );
    assert_ne!(t, grant_token("key-1", "g1"), "each token is new");
    for bad in ["", "abc", "!!!", &"A".repeat(9000)] {
        assert_eq!(
            parse_grant_token(bad).unwrap_err().name(),
            "InvalidGrantTokenException",
            "{bad}"
        );
    }
    let req = GrantRequest {
        grantee_principal: user("alice", 1000).principal_arn,
        operations: vec!["Decrypt".into(), "DescribeKey".into()],
        name: Some("n".into()),
        ..Default::default()
    };
    let g = grant(&["Decrypt", "DescribeKey"], None);
    assert!(g.same_as(&req));
    assert!(!g.same_as(&GrantRequest {
        operations: vec!["Decrypt".into()],
        ..req.clone()
    }));
    assert!(!g.same_as(&GrantRequest { name: None, ..req }));
    let ten = vec![t.clone(); 10];
    check_grant_token_count(&ten).unwrap();
    let eleven = vec![t.clone(); 11];
    assert_eq!(
        check_grant_token_count(&eleven).unwrap_err().name(),
        "ValidationException"
    );
    check_grant_name("team-volume:mount/1_a").unwrap();
    assert!(check_grant_name("a b").is_err());
}

pub(super) mod with_store {
    use super::*;
    use crate::kms::local::test_store;

    pub(in crate::kms::policy) fn request<'a>(
        action: &'a str,
        key: &'a str,
        ec: Option<&'a EncryptionContext>,
    ) -> AccessRequest<'a> {
        AccessRequest {
            action,
            key: Some(key),
            encryption_context: ec,
            ..AccessRequest::default()
        }
    }

    pub(in crate::kms::policy) fn store_user(
        ks: &crate::kms::local::LocalKeyService,
        name: &str,
        uid: u32,
    ) -> Caller {
        Caller {
            uid,
            gid: uid,
            groups: vec![],
            pid: 1,
            principal_arn: format!("arn:envelopefs:iam::{}:user/{name}", ks.store_id()),
        }
    }

    pub(in crate::kms::policy) fn store_root(ks: &crate::kms::local::LocalKeyService) -> Caller {
        Caller {
            principal_arn: root_principal(ks.store_id()),
            ..store_user(ks, "x", 0)
        }
    }

    #[test]
    fn authorize_policy_then_grants_deny_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ks = test_store(dir.path());
        let key = ks.arn(&ks.create_key("", "AWS_KMS").unwrap().key_id);
        let alice = store_user(&ks, "alice", 1000);
        let bob = store_user(&ks, "bob", 1001);
        let team = EncryptionContext::new().with("volume", "team");
        authorize(&ks, &store_root(&ks), &request("kms:Decrypt", &key, None)).unwrap();
        let e = authorize(&ks, &alice, &request("kms:Decrypt", &key, Some(&team))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("AccessDeniedException: User: {} is not authorized to perform: kms:Decrypt on resource: {key} because no resource-based policy allows the kms:Decrypt action", alice.principal_arn)
        );
        let req = GrantRequest {
            grantee_principal: alice.principal_arn.clone(),
            operations: vec!["Decrypt".into()],
            constraints: Some(GrantConstraints {
                encryption_context_subset: Some(map(&[("volume", "team")])),
                ..Default::default()
            }),
            name: Some("alice-team".into()),
            ..Default::default()
        };
        let (token, id) = ks.create_grant(&key, &req, &[]).unwrap();
        let (_, again) = ks.create_grant(&key, &req, &[]).unwrap();
        assert_eq!(id, again, "same name and parameters: same grant");
        authorize(&ks, &alice, &request("kms:Decrypt", &key, Some(&team))).unwrap();
        let other = EncryptionContext::new().with("volume", "other");
        assert!(authorize(&ks, &alice, &request("kms:Decrypt", &key, Some(&other))).is_err());
        assert!(authorize(&ks, &alice, &request("kms:Encrypt", &key, Some(&team))).is_err());
        assert!(authorize(&ks, &bob, &request("kms:Decrypt", &key, Some(&team))).is_err());
        // A token of a live grant is accepted; a made-up one is not.
        let tokens = [token.clone()];
        let with_token = AccessRequest {
            grant_tokens: &tokens,
            ..request("kms:Decrypt", &key, Some(&team))
        };
        authorize(&ks, &alice, &with_token).unwrap();
        let forged = [grant_token("nokey", "nogrant")];
        let bad = AccessRequest {
            grant_tokens: &forged,
            ..request("kms:Decrypt", &key, Some(&team))
        };
        assert_eq!(
            authorize(&ks, &alice, &bad).unwrap_err().name(),
            "InvalidGrantTokenException"
        );
        // An explicit Deny in the policy overrides the grant.
        let deny = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": root_principal(ks.store_id())}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": alice.principal_arn}, "Action": "kms:Decrypt", "Resource": "*"}]});
        ks.put_key_policy(&key, "default", &deny.to_string(), false)
            .unwrap();
        let e = authorize(&ks, &alice, &request("kms:Decrypt", &key, Some(&team))).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("with an explicit deny in a resource-based policy"),
            "{e}"
        );
        // Key-less requests: root only.
        let list = AccessRequest {
            key: None,
            ..request("kms:ListKeys", &key, None)
        };
        authorize(&ks, &store_root(&ks), &list).unwrap();
        assert_eq!(
            authorize(&ks, &alice, &list).unwrap_err().name(),
            "AccessDeniedException"
        );
        // Revoked: the grant and its token are gone.
        ks.revoke_grant(&key, &id).unwrap();
        assert_eq!(
            authorize(&ks, &alice, &with_token).unwrap_err().name(),
            "InvalidGrantTokenException"
        );
    }

    #[test]
    fn retire_is_decided_by_the_grant() {
        let dir = tempfile::tempdir().unwrap();
        let ks = test_store(dir.path());
        let key = ks.arn(&ks.create_key("", "AWS_KMS").unwrap().key_id);
        let alice = store_user(&ks, "alice", 1000);
        let bob = store_user(&ks, "bob", 1001);
        let carol = store_user(&ks, "carol", 1002);
        let mk = |ops: &[&str]| {
            let req = GrantRequest {
                grantee_principal: alice.principal_arn.clone(),
                retiring_principal: Some(bob.principal_arn.clone()),
                operations: ops.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            ks.create_grant(&key, &req, &[]).unwrap()
        };
        let retire = |who: &Caller, token: &str| {
            let t = [token.to_owned()];
            authorize(
                &ks,
                who,
                &AccessRequest {
                    action: "kms:RetireGrant",
                    grant_tokens: &t,
                    ..AccessRequest::default()
                },
            )
        };
        let (plain, plain_id) = mk(&["Decrypt"]);
        let (retirable, _) = mk(&["Decrypt", "RetireGrant"]);
        retire(&bob, &plain).unwrap();
        retire(&store_root(&ks), &plain).unwrap();
        assert_eq!(
            retire(&alice, &plain).unwrap_err().name(),
            "AccessDeniedException"
        );
        retire(&alice, &retirable).unwrap();
        assert_eq!(
            retire(&carol, &retirable).unwrap_err().name(),
            "AccessDeniedException"
        );
        // The policy's kms:RetireGrant does not count; the token of a
        // --key-id/--grant-id request is made by the store.
        let anyone = json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}});
        ks.put_key_policy(&key, "default", &anyone.to_string(), false)
            .unwrap();
        let token = ks.grant_token_of(&key, &plain_id).unwrap();
        assert_eq!(
            retire(&carol, &token).unwrap_err().name(),
            "AccessDeniedException"
        );
        ks.retire_grant(None, Some(&key), Some(&plain_id)).unwrap();
        assert_eq!(
            retire(&bob, &token).unwrap_err().name(),
            "InvalidGrantTokenException"
        );
        assert_eq!(
            ks.retire_grant(Some(&token), None, None)
                .unwrap_err()
                .name(),
            "InvalidGrantTokenException"
        );
    }

    #[test]
    fn put_key_policy_guards_against_lockout() {
        let dir = tempfile::tempdir().unwrap();
        let ks = test_store(dir.path());
        let key = ks.arn(&ks.create_key("", "AWS_KMS").unwrap().key_id);
        assert_eq!(
            ks.get_key_policy(&key, "default").unwrap(),
            default_policy(ks.store_id())
        );
        let alice_only = json!({"Statement": {"Effect": "Allow",
            "Principal": {"AWS": format!("arn:envelopefs:iam::{}:user/alice", ks.store_id())},
            "Action": "kms:*", "Resource": "*"}})
        .to_string();
        let e = ks
            .put_key_policy(&key, "default", &alice_only, false)
            .unwrap_err();
        assert_eq!(e.name(), "MalformedPolicyDocumentException");
        assert_eq!(
            ks.get_key_policy(&key, "default").unwrap(),
            default_policy(ks.store_id())
        );
        ks.put_key_policy(&key, "default", &alice_only, true)
            .unwrap();
        assert_eq!(ks.get_key_policy(&key, "default").unwrap(), alice_only);
        assert_eq!(
            ks.get_key_policy(&key, "other").unwrap_err().name(),
            "NotFoundException"
        );
        // The managed default key has the default policy: root only.
        let managed = ks.default_key().unwrap();
        let alice = store_user(&ks, "alice", 1000);
        let arn = ks.arn(&managed);
        assert!(authorize(&ks, &alice, &request("kms:Decrypt", &arn, None)).is_err());
        authorize(&ks, &store_root(&ks), &request("kms:Decrypt", &arn, None)).unwrap();
    }

    #[test]
    fn decisions_read_the_store_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let agent_view = test_store(dir.path());
        let key = agent_view.arn(&agent_view.create_key("", "AWS_KMS").unwrap().key_id);
        let owner =
            crate::kms::local::LocalKeyService::open(dir.path(), "test passphrase").unwrap();
        let alice = store_user(&agent_view, "alice", 1000);
        let req = GrantRequest {
            grantee_principal: alice.principal_arn.clone(),
            operations: vec!["Decrypt".into()],
            ..Default::default()
        };
        // A grant made, then revoked, through another handle of the store.
        let (_, id) = owner.create_grant(&key, &req, &[]).unwrap();
        authorize(&agent_view, &alice, &request("kms:Decrypt", &key, None)).unwrap();
        owner.revoke_grant(&key, &id).unwrap();
        let e = authorize(&agent_view, &alice, &request("kms:Decrypt", &key, None)).unwrap_err();
        assert_eq!(e.name(), "AccessDeniedException");
    }

    #[test]
    fn keys_of_older_stores_have_the_default_policy_and_no_grants() {
        let old = json!({"key_id": "k", "description": "", "creation_date": 0,
            "key_state": "Enabled", "key_manager": "CUSTOMER", "origin": "AWS_KMS",
            "materials": [], "current_material": ""});
        let r: crate::kms::local::KeyRecord = serde_json::from_value(old).unwrap();
        assert_eq!(r.policy, None);
        assert!(r.grants.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let ks = test_store(dir.path());
        assert_eq!(ks.policy_text(&r), default_policy(ks.store_id()));
    }
}
