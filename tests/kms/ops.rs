//! The kms operations beyond the volume's needs, through the CLI, as AWS
//! KMS and the AWS CLI have them: generate-data-key-without-plaintext,
//! generate-random, update-key-description, tags, pagination of the list
//! commands, and re-encrypt's --source-key-id.

use crate::common::*;
use crate::support::{fails_named as fails, json};
use serde_json::Value;

fn b64(s: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

fn new_key(env: &Env) -> String {
    let k = json(env, &["kms", "create-key"]);
    k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

fn audit_outcomes(env: &Env, op: &str) -> Vec<String> {
    let a = json(env, &["kms", "audit", "--operation", op]);
    let events = a["Events"].as_array().unwrap();
    events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn generate_data_key_without_plaintext_gives_only_the_blob() {
    let env = Env::new();
    let id = new_key(&env);
    let gdk = [
        "kms",
        "generate-data-key-without-plaintext",
        "--key-id",
        &id,
    ];
    let mut args = gdk.to_vec();
    args.extend(["--key-spec", "AES_256", "--encryption-context", "app=x"]);
    let v: Value = serde_json::from_str(&env.run_ok(&args)).unwrap();
    let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["CiphertextBlob", "KeyId", "KeyMaterialId"], "{v}");
    let blob = v["CiphertextBlob"].as_str().unwrap();
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
    assert_eq!(b64(&d["Plaintext"]).len(), 32);
    assert_eq!(d["KeyId"], v["KeyId"]);
    let mut args = gdk.to_vec();
    args.extend(["--number-of-bytes", "16"]);
    let v: Value = serde_json::from_str(&env.run_ok(&args)).unwrap();
    let d = json(
        &env,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            v["CiphertextBlob"].as_str().unwrap(),
        ],
    );
    assert_eq!(b64(&d["Plaintext"]).len(), 16);
    // Exactly one of --key-spec and --number-of-bytes, each in range.
    for extra in [
        &["--key-spec", "AES_256", "--number-of-bytes", "16"][..],
        &[][..],
        &["--key-spec", "BOGUS"][..],
        &["--number-of-bytes", "0"][..],
        &["--number-of-bytes", "1025"][..],
    ] {
        let mut args = gdk.to_vec();
        args.extend(extra);
        fails(&env, &args, 18, "ValidationException: ");
    }
    env.run_ok(&["kms", "disable-key", "--key-id", &id]);
    let mut args = gdk.to_vec();
    args.extend(["--key-spec", "AES_128"]);
    fails(&env, &args, 15, "DisabledException: ");
    assert_eq!(
        audit_outcomes(&env, "GenerateDataKeyWithoutPlaintext"),
        [
            "ok",
            "ok",
            "ValidationException",
            "ValidationException",
            "DisabledException"
        ]
    );
}

#[test]
fn generate_random_gives_fresh_bytes_of_the_asked_length() {
    let env = Env::new();
    new_key(&env);
    let r = |n: &str| json(&env, &["kms", "generate-random", "--number-of-bytes", n]);
    assert_eq!(b64(&r("1")["Plaintext"]).len(), 1);
    let (a, b) = (b64(&r("1024")["Plaintext"]), b64(&r("1024")["Plaintext"]));
    assert_eq!((a.len(), b.len()), (1024, 1024));
    assert_ne!(a, b);
    for n in ["0", "1025"] {
        fails(
            &env,
            &["kms", "generate-random", "--number-of-bytes", n],
            18,
            "ValidationException: ",
        );
    }
    fails(
        &env,
        &["kms", "generate-random"],
        18,
        "ValidationException: ",
    );
    // The missing --number-of-bytes never reaches the key service.
    assert_eq!(
        audit_outcomes(&env, "GenerateRandom"),
        [
            "ok",
            "ok",
            "ok",
            "ValidationException",
            "ValidationException"
        ]
    );
}

#[test]
fn update_key_description_follows_the_key_state_table() {
    let env = Env::new();
    let id = new_key(&env);
    let describe = |env: &Env| {
        let d = json(env, &["kms", "describe-key", "--key-id", &id]);
        d["KeyMetadata"]["Description"].as_str().unwrap().to_owned()
    };
    let update = [
        "kms",
        "update-key-description",
        "--key-id",
        &id,
        "--description",
    ];
    let with = |d: &'static str| [&update[..], &[d]].concat();
    assert_eq!(env.run_ok(&with("new words")), "", "no output, as AWS");
    assert_eq!(describe(&env), "new words");
    env.run_ok(&with(""));
    assert_eq!(describe(&env), "");
    let long = "d".repeat(8193);
    fails(
        &env,
        &[&update[..], &[&long]].concat(),
        18,
        "ValidationException: ",
    );
    env.run_ok(&[&update[..], &[&long[..8192]]].concat());
    // A key ID or ARN, not an alias; not the managed default key.
    let alias = [
        "kms",
        "create-alias",
        "--alias-name",
        "alias/d",
        "--target-key-id",
        &id,
    ];
    env.run_ok(&alias);
    let by_alias = [
        "kms",
        "update-key-description",
        "--key-id",
        "alias/d",
        "--description",
        "x",
    ];
    fails(&env, &by_alias, 18, "ValidationException: ");
    env.init("c", &[]);
    let managed = json(
        &env,
        &[
            "kms",
            "describe-key",
            "--key-id",
            "alias/envelopefs/default",
        ],
    );
    let managed = managed["KeyMetadata"]["KeyId"].as_str().unwrap();
    let m = [
        "kms",
        "update-key-description",
        "--key-id",
        managed,
        "--description",
        "x",
    ];
    fails(&env, &m, 26, "UnsupportedOperationException: ");
    // Disabled: allowed; pending deletion: KMSInvalidStateException.
    env.run_ok(&["kms", "disable-key", "--key-id", &id]);
    env.run_ok(&with("while disabled"));
    assert_eq!(describe(&env), "while disabled");
    let del = [
        "kms",
        "schedule-key-deletion",
        "--key-id",
        &id,
        "--pending-window-in-days",
        "7",
    ];
    env.run_ok(&del);
    fails(&env, &with("too late"), 15, "KMSInvalidStateException: ");
    assert_eq!(describe(&env), "while disabled");
}

fn tags_of(env: &Env, id: &str) -> Vec<(String, String)> {
    let v = json(env, &["kms", "list-resource-tags", "--key-id", id]);
    assert_eq!(v.as_object().unwrap().len(), 1, "only Tags: {v}");
    let tags = v["Tags"].as_array().unwrap();
    let pair = |t: &Value| {
        (
            t["TagKey"].as_str().unwrap().into(),
            t["TagValue"].as_str().unwrap().into(),
        )
    };
    tags.iter().map(pair).collect()
}

#[test]
fn tags_follow_aws_rules_and_limits() {
    let env = Env::new();
    let id = new_key(&env);
    let tag = ["kms", "tag-resource", "--key-id", &id, "--tags"];
    let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert!(tags_of(&env, &id).is_empty());
    // Shorthand, one argument per tag; JSON; an existing key's value replaced.
    let out = env.run_ok(
        &[
            &tag[..],
            &["TagKey=Purpose,TagValue=Test", "TagKey=b,TagValue="],
        ]
        .concat(),
    );
    assert_eq!(out, "", "no output, as AWS");
    env.run_ok(
        &[
            &tag[..],
            &[r#"[{"TagKey":"Purpose","TagValue":"Prod"},{"TagKey":"a","TagValue":"1"}]"#],
        ]
        .concat(),
    );
    assert_eq!(
        tags_of(&env, &id),
        [kv("Purpose", "Prod"), kv("a", "1"), kv("b", "")]
    );
    // Untag: the keys named go, keys it lacks are no error.
    let untag = [
        "kms",
        "untag-resource",
        "--key-id",
        &id,
        "--tag-keys",
        "a",
        "missing",
    ];
    assert_eq!(env.run_ok(&untag), "");
    assert_eq!(tags_of(&env, &id), [kv("Purpose", "Prod"), kv("b", "")]);
    // The reserved prefix and characters outside the set: TagException;
    // lengths: ValidationException; nothing changes.
    for (t, name) in [
        ("TagKey=aws:owner,TagValue=x", "TagException: "),
        ("TagKey=AWS:owner,TagValue=x", "TagException: "),
        ("TagKey=a*b,TagValue=x", "TagException: "),
        ("TagKey=ok,TagValue=semi;colon", "TagException: "),
        ("TagKey=,TagValue=x", "ValidationException: "),
    ] {
        fails(&env, &[&tag[..], &[t]].concat(), 18, name);
    }
    let long_key = format!("TagKey={},TagValue=x", "k".repeat(129));
    fails(
        &env,
        &[&tag[..], &[long_key.as_str()]].concat(),
        18,
        "ValidationException: ",
    );
    let long_value = format!("TagKey=k,TagValue={}", "v".repeat(257));
    fails(
        &env,
        &[&tag[..], &[long_value.as_str()]].concat(),
        18,
        "ValidationException: ",
    );
    let aws_untag = [
        "kms",
        "untag-resource",
        "--key-id",
        &id,
        "--tag-keys",
        "aws:x",
    ];
    fails(&env, &aws_untag, 18, "TagException: ");
    assert_eq!(tags_of(&env, &id), [kv("Purpose", "Prod"), kv("b", "")]);
    // At most 50 tags a key: the request that would pass it changes nothing.
    let many: Vec<String> = (0..48)
        .map(|i| format!("TagKey=t{i:02},TagValue=v"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    env.run_ok(&[&tag[..], &many].concat());
    assert_eq!(tags_of(&env, &id).len(), 50);
    fails(
        &env,
        &[&tag[..], &["TagKey=one-more,TagValue=x"]].concat(),
        25,
        "LimitExceededException: ",
    );
    env.run_ok(&[&tag[..], &["TagKey=t00,TagValue=replaced"]].concat());
    assert_eq!(tags_of(&env, &id).len(), 50);
    // Pending deletion: listed, not changed. The managed key: not tagged.
    let del = [
        "kms",
        "schedule-key-deletion",
        "--key-id",
        &id,
        "--pending-window-in-days",
        "7",
    ];
    env.run_ok(&del);
    fails(
        &env,
        &[&tag[..], &["TagKey=x,TagValue=y"]].concat(),
        15,
        "KMSInvalidStateException: ",
    );
    fails(&env, &untag, 15, "KMSInvalidStateException: ");
    assert_eq!(tags_of(&env, &id).len(), 50);
    env.init("c", &[]);
    let managed = json(
        &env,
        &[
            "kms",
            "describe-key",
            "--key-id",
            "alias/envelopefs/default",
        ],
    );
    let managed = managed["KeyMetadata"]["KeyId"].as_str().unwrap();
    let m = [
        "kms",
        "tag-resource",
        "--key-id",
        managed,
        "--tags",
        "TagKey=x,TagValue=y",
    ];
    fails(&env, &m, 26, "UnsupportedOperationException: ");
    assert!(tags_of(&env, managed).is_empty());
    let ok = audit_outcomes(&env, "TagResource");
    assert_eq!(ok.iter().filter(|o| *o == "ok").count(), 4, "{ok:?}");
}

/// Every page of a list command by --limit and --marker, checking each.
fn pages(env: &Env, args: &[&str], key: &str, limit: usize) -> Vec<Value> {
    let (mut all, mut marker) = (Vec::new(), None::<String>);
    loop {
        let l = limit.to_string();
        let mut a = [args, &["--limit", &l]].concat();
        if let Some(m) = &marker {
            a.extend(["--marker", m]);
        }
        let p = json(env, &a);
        let items = p[key].as_array().unwrap();
        assert!(items.len() <= limit, "{p}");
        all.extend(items.iter().cloned());
        match p["NextMarker"].as_str() {
            Some(m) => {
                assert_eq!(p["Truncated"], true, "{p}");
                marker = Some(m.to_owned());
            }
            None => {
                assert_eq!(p["Truncated"], false, "{p}");
                return all;
            }
        }
    }
}

#[test]
fn list_commands_page_by_limit_and_marker() {
    let env = Env::new();
    let ids: Vec<String> = (0..5).map(|_| new_key(&env)).collect();
    let full = json(&env, &["kms", "list-keys"]);
    assert_eq!(
        full.as_object().unwrap().len(),
        1,
        "the whole list, as the AWS CLI: {full}"
    );
    assert_eq!(full["Keys"].as_array().unwrap().len(), 5);
    for limit in [1, 2, 5, 1000] {
        assert_eq!(
            pages(&env, &["kms", "list-keys"], "Keys", limit),
            full["Keys"].as_array().unwrap()[..]
        );
    }
    // The text form of one page: its scalars (NextMarker, Truncated), then a
    // KEYS line per key.
    let text = env.run_ok(&["kms", "list-keys", "--limit", "2", "--output", "text"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].ends_with("\tTrue"), "{text}");
    let first: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(
        (first[0], first[2]),
        ("KEYS", full["Keys"][0]["KeyId"].as_str().unwrap())
    );
    for (i, id) in ids.iter().enumerate() {
        let a = format!("alias/a{i}");
        env.run_ok(&[
            "kms",
            "create-alias",
            "--alias-name",
            &a,
            "--target-key-id",
            id,
        ]);
        let r = ["kms", "rotate-key-on-demand", "--key-id", &ids[0]];
        env.run_ok(&r);
        let t = format!("TagKey=k{i},TagValue=v");
        env.run_ok(&["kms", "tag-resource", "--key-id", &ids[0], "--tags", &t]);
    }
    let aliases = pages(&env, &["kms", "list-aliases"], "Aliases", 2);
    assert_eq!(
        aliases,
        json(&env, &["kms", "list-aliases"])["Aliases"]
            .as_array()
            .unwrap()[..]
    );
    assert_eq!(aliases.len(), 5);
    let rot = ["kms", "list-key-rotations", "--key-id", &ids[0]];
    assert_eq!(pages(&env, &rot, "Rotations", 2).len(), 5);
    let tags = ["kms", "list-resource-tags", "--key-id", &ids[0]];
    assert_eq!(pages(&env, &tags, "Tags", 3).len(), 5);
    // Each operation's Limit range; a marker not from the operation.
    for (args, bad) in [
        (&["kms", "list-keys"][..], "1001"),
        (&["kms", "list-aliases"][..], "101"),
        (&rot[..], "1001"),
        (&tags[..], "51"),
    ] {
        for limit in ["0", bad] {
            fails(
                &env,
                &[args, &["--limit", limit]].concat(),
                18,
                "ValidationException: ",
            );
        }
    }
    let p = json(&env, &["kms", "list-keys", "--limit", "1"]);
    let m = p["NextMarker"].as_str().unwrap();
    fails(
        &env,
        &["kms", "list-aliases", "--marker", m],
        18,
        "InvalidMarkerException: ",
    );
    fails(
        &env,
        &["kms", "list-keys", "--marker", "not-a-marker"],
        18,
        "InvalidMarkerException: ",
    );
}

#[test]
fn re_encrypt_checks_the_source_key_id() {
    let env = Env::new();
    let (a, b) = (new_key(&env), new_key(&env));
    let e = json(
        &env,
        &["kms", "encrypt", "--key-id", &a, "--plaintext", "aGk="],
    );
    let blob = e["CiphertextBlob"].as_str().unwrap();
    let re = [
        "kms",
        "re-encrypt",
        "--ciphertext-blob",
        blob,
        "--destination-key-id",
        &b,
    ];
    env.run_ok(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/src",
        "--target-key-id",
        &a,
    ]);
    for src in [a.as_str(), "alias/src", e["KeyId"].as_str().unwrap()] {
        let r = json(&env, &[&re[..], &["--source-key-id", src]].concat());
        assert_eq!(r["SourceKeyId"], e["KeyId"]);
    }
    fails(
        &env,
        &[&re[..], &["--source-key-id", &b]].concat(),
        17,
        "IncorrectKeyException: ",
    );
    fails(
        &env,
        &[&re[..], &["--source-key-id", "alias/none"]].concat(),
        16,
        "NotFoundException: ",
    );
    assert_eq!(
        audit_outcomes(&env, "ReEncrypt")[3..],
        ["IncorrectKeyException", "NotFoundException"]
    );
}
