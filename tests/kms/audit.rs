//! `kms audit`: CloudTrail-shaped events, `--verify` of the hash chain
//! against edits, removals and reordering, and the filters.

use std::fs;

use crate::common::*;
use crate::support::json;
use serde_json::Value;

/// The exit code of a broken audit log (problems found).
const TAMPERED: i32 = 30;

/// A store with two keys (one aliased) and some audited operations.
fn audited() -> (Env, String, String) {
    let env = Env::new();
    let id = |k: Value| k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let a = id(json(&env, &["kms", "create-key", "--description", "a"]));
    let b = id(json(&env, &["kms", "create-key", "--description", "b"]));
    env.run_ok(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/a",
        "--target-key-id",
        &a,
    ]);
    for k in [&a, &b, &a] {
        env.run_ok(&["kms", "encrypt", "--key-id", k, "--plaintext", "aGk="]);
    }
    env.run_ok(&["kms", "disable-key", "--key-id", &b]);
    let _ = env.run(&["kms", "encrypt", "--key-id", &b, "--plaintext", "aGk="]);
    (env, a, b)
}

fn log_lines(env: &Env) -> Vec<String> {
    fs::read_to_string(env.path("ks/audit.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(env: &Env, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fs::write(env.path("ks/audit.log"), text).unwrap();
}

/// `--verify` fails with the tampered exit code, naming `line`.
fn verify_fails(env: &Env, line: usize, what: &str) {
    let out = env.run(&["kms", "audit", "--verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(TAMPERED), "{err}");
    assert!(err.contains(&format!("line {line}:")), "{err}");
    assert!(err.contains(what), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn an_untouched_log_verifies() {
    let (env, _, _) = audited();
    let n = log_lines(&env).len();
    let out = env.run_ok(&["kms", "audit", "--verify"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(&format!("{n} events")), "{out}");
}

#[test]
fn an_edited_line_is_named() {
    let (env, _, _) = audited();
    let mut lines = log_lines(&env);
    lines[2] = lines[2].replace("\"ok\"", "\"AccessDeniedException\"");
    write_lines(&env, &lines);
    verify_fails(&env, 3, "edited");
}

#[test]
fn a_deleted_line_is_named() {
    let (env, _, _) = audited();
    let mut lines = log_lines(&env);
    lines.remove(1);
    write_lines(&env, &lines);
    verify_fails(&env, 2, "removed");
}

#[test]
fn reordered_lines_are_named() {
    let (env, _, _) = audited();
    let mut lines = log_lines(&env);
    lines.swap(3, 4);
    write_lines(&env, &lines);
    verify_fails(&env, 4, "reordered");
}

#[test]
fn a_tail_cut_before_the_last_store_write_is_named() {
    let (env, _, _) = audited();
    let mut lines = log_lines(&env);
    // The last store write (disable-key) anchored the lines before its own.
    lines.truncate(2);
    write_lines(&env, &lines);
    verify_fails(&env, 3, "cut off after line 2");
}

#[test]
fn a_tail_cut_after_the_last_store_write_is_named() {
    let (env, _, _) = audited();
    let mut lines = log_lines(&env);
    let n = lines.len();
    // The failed encrypt after disable-key wrote no store: only the head
    // sealed beside the log records it.
    lines.truncate(n - 1);
    write_lines(&env, &lines);
    verify_fails(&env, n, &format!("cut off after line {}", n - 1));
}

#[test]
fn an_edited_last_line_is_named() {
    let (env, _, _) = audited();
    let mut lines = log_lines(&env);
    let n = lines.len();
    lines[n - 1] = lines[n - 1].replace("\"uid\":0", "\"uid\":1000");
    assert!(lines[n - 1].contains("1000"), "{}", lines[n - 1]);
    write_lines(&env, &lines);
    verify_fails(&env, n, "edited");
}

#[test]
fn a_forged_sealed_head_is_named() {
    let (env, _, _) = audited();
    let mut lines = log_lines(&env);
    let n = lines.len();
    lines.truncate(n - 1);
    write_lines(&env, &lines);
    // A head recomputed for the shortened log, without the store's key.
    let head = env.path("ks/audit.head");
    let text = fs::read_to_string(&head).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["lines"] = Value::from((n - 1) as u64);
    v["lastHash"] = Value::from(sha256_hex(lines[n - 2].as_bytes()));
    fs::write(&head, v.to_string()).unwrap();
    let out = env.run(&["kms", "audit", "--verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(TAMPERED), "{err}");
    assert!(
        err.contains("audit.head") && err.contains("not sealed"),
        "{err}"
    );
}

fn sha256_hex(b: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

#[test]
fn a_failed_unlock_is_audited_and_sealed_at_the_next_unlock() {
    let (env, a, _) = audited();
    let before = log_lines(&env).len();
    let wrong = env.path("wrong-pass");
    fs::write(&wrong, "not the passphrase\n").unwrap();
    let out = env
        .cmd()
        .env("ENVELOPEFS_PASSPHRASE_FILE", &wrong)
        .args(["kms", "describe-key", "--key-id", &a])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let lines = log_lines(&env);
    assert_eq!(lines.len(), before + 1, "one event for the failed unlock");
    let ev: Value = serde_json::from_str(&lines[before]).unwrap();
    assert_eq!(ev["eventName"], "UnlockKeyStore", "{ev}");
    assert_eq!(ev["errorCode"], "WrongPassphrase", "{ev}");
    assert_eq!(ev["userIdentity"]["uid"], 0, "{ev}");
    // The next unlock's event seals it: cutting it off now is named.
    env.run_ok(&["kms", "encrypt", "--key-id", &a, "--plaintext", "aGk="]);
    let mut lines = log_lines(&env);
    lines.remove(before);
    write_lines(&env, &lines);
    let out = env.run(&["kms", "audit", "--verify"]);
    assert_eq!(out.status.code(), Some(TAMPERED));
}

#[test]
fn read_only_calls_to_the_store_are_audited() {
    let (env, a, _) = audited();
    let before = log_lines(&env).len();
    for args in [
        vec!["kms", "describe-key", "--key-id", &a],
        vec!["kms", "list-keys"],
        vec!["kms", "list-aliases"],
        vec!["kms", "get-key-rotation-status", "--key-id", &a],
        vec!["kms", "list-key-rotations", "--key-id", &a],
        vec!["kms", "list-resource-tags", "--key-id", &a],
        vec!["kms", "list-grants", "--key-id", &a],
    ] {
        env.run_ok(&args);
    }
    let events: Vec<Value> = log_lines(&env)[before..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "DescribeKey",
            "ListKeys",
            "ListAliases",
            "GetKeyRotationStatus",
            "ListKeyRotations",
            "ListResourceTags",
            "ListGrants"
        ]
    );
    for e in &events {
        assert_eq!(e["readOnly"], true, "{e}");
    }
    assert!(events[0]["requestParameters"]["keyId"]
        .as_str()
        .unwrap()
        .ends_with(&a));
    env.run_ok(&["kms", "audit", "--verify"]);
}

#[test]
fn events_are_cloudtrail_shaped() {
    let (env, a, _) = audited();
    let ev = json(
        &env,
        &["kms", "audit", "--key-id", &a, "--event-name", "Encrypt"],
    );
    let ev = &ev["Events"][0];
    assert_eq!(ev["eventVersion"], "1.11");
    assert_eq!(ev["eventSource"], "kms.envelopefs");
    assert!(ev["eventTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(ev["resources"][0]["type"], "AWS::KMS::Key");
    assert!(ev["resources"][0]["ARN"].as_str().unwrap().ends_with(&a));
    assert_eq!(ev["readOnly"], true);
    assert_eq!(ev["userIdentity"]["type"], "Root");
}

#[test]
fn the_filters_pick_events() {
    let (env, a, b) = audited();
    let count = |args: &[&str]| {
        let mut all = vec!["kms", "audit"];
        all.extend_from_slice(args);
        json(&env, &all)["Events"].as_array().unwrap().len()
    };
    assert_eq!(count(&["--key-id", &a, "--event-name", "Encrypt"]), 2);
    assert_eq!(count(&["--alias", "alias/a", "--event-name", "Encrypt"]), 2);
    assert_eq!(count(&["--key-id", &b, "--operation", "Encrypt"]), 2);
    let failed = json(
        &env,
        &["kms", "audit", "--key-id", &b, "--event-name", "Encrypt"],
    );
    assert_eq!(failed["Events"][1]["errorCode"], "DisabledException");
    assert_eq!(count(&["--principal", "0", "--event-name", "Encrypt"]), 4);
    assert_eq!(count(&["--principal", "65534"]), 0);
    assert_eq!(
        count(&[
            "--start-time",
            "2000-01-01T00:00:00Z",
            "--event-name",
            "CreateKey"
        ]),
        2
    );
    assert_eq!(count(&["--end-time", "2000-01-01T00:00:00Z"]), 0);
    assert_eq!(
        count(&["--end-time", "4102444800", "--event-name", "CreateKey"]),
        2
    );
    let bad = env.run(&["kms", "audit", "--start-time", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
}
