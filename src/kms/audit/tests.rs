use super::*;

fn rec(op: &str, key: Option<&str>, uid: u32, outcome: &str) -> AuditRecord {
    AuditRecord {
        time: 1_798_000_000,
        operation: op.into(),
        key_arn: key.map(str::to_owned),
        key_material_id: None,
        encryption_context: None,
        uid,
        pid: 7,
        principal_arn: None,
        outcome: outcome.into(),
    }
}

/// A log of four chained events, and its lines.
fn logged() -> (tempfile::TempDir, Vec<String>) {
    let d = tempfile::tempdir().unwrap();
    append(d.path(), &rec("CreateKey", Some("arn:k/1"), 0, "ok"));
    append(
        d.path(),
        &rec("Decrypt", Some("arn:k/1"), 1000, "AccessDeniedException"),
    );
    append(d.path(), &rec("GenerateRandom", None, 0, "ok"));
    append(d.path(), &rec("Encrypt", Some("arn:k/2"), 0, "ok"));
    let text = std::fs::read_to_string(audit_path(d.path())).unwrap();
    let lines = text.lines().map(str::to_owned).collect();
    (d, lines)
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

fn broken(lines: &[String], anchor: Option<&AuditHead>) -> ChainBreak {
    verify(&joined(lines), anchor).unwrap_err()
}

#[test]
fn events_are_cloudtrail_shaped_without_secrets() {
    let (_d, lines) = logged();
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["eventVersion"], "1.11");
    assert_eq!(v["eventSource"], "kms.envelopefs");
    assert_eq!(v["eventTime"], "2026-12-23T04:26:40Z");
    assert_eq!(v["eventName"], "Decrypt");
    assert_eq!(v["eventID"].as_str().unwrap().len(), 36);
    assert_eq!(v["userIdentity"]["type"], "Unknown");
    assert_eq!(v["userIdentity"]["uid"], 1000);
    assert_eq!(v["requestParameters"]["keyId"], "arn:k/1");
    assert_eq!(
        v["resources"],
        serde_json::json!([{"ARN": "arn:k/1", "type": "AWS::KMS::Key"}])
    );
    assert_eq!(v["errorCode"], "AccessDeniedException");
    assert_eq!(v["readOnly"], true);
    assert_eq!(v["outcome"], "AccessDeniedException");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["previousEventHash"], chain::ZERO_HASH);
    assert_eq!(first["userIdentity"]["type"], "Root");
    assert_eq!(first["readOnly"], false);
    assert!(first.get("errorCode").is_none());
    let third: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert!(third.get("resources").is_none());
}

#[test]
fn both_shapes_read_back_as_records() {
    let (d, _) = logged();
    let old = r#"{"time":5,"operation":"Decrypt","key_arn":"k","encryption_context":{"a":"b"},"uid":0,"pid":1,"outcome":"ok"}"#;
    let flat = r#"{"eventTime":6,"eventName":"Encrypt","keyArn":"arn:k/1","uid":3,"pid":1,"principalArn":"p","outcome":"ok"}"#;
    let mut f = crate::sys::open_log(&audit_path(d.path())).unwrap();
    f.write_all(format!("{old}\n{flat}\n").as_bytes()).unwrap();
    let all = read(d.path(), &AuditFilter::default()).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[1].outcome, "AccessDeniedException");
    assert_eq!(all[1].time, 1_798_000_000);
    assert_eq!(all[4].key_arn.as_deref(), Some("k"));
    assert_eq!(all[5].time, 6);
    let by = |f: AuditFilter| read(d.path(), &f).unwrap().len();
    let key = || AuditFilter {
        key: Some("1".into()),
        ..Default::default()
    };
    assert_eq!(by(key()), 3);
    let principal = AuditFilter {
        principal: Some("p".into()),
        ..Default::default()
    };
    assert_eq!(by(principal), 1);
    let uid = AuditFilter {
        principal: Some("1000".into()),
        ..Default::default()
    };
    assert_eq!(by(uid), 1);
    let window = AuditFilter {
        since: Some(5),
        until: Some(5),
        ..Default::default()
    };
    assert_eq!(by(window), 1);
}

#[test]
fn an_untouched_chain_verifies_and_matches_its_head() {
    let (d, lines) = logged();
    let h = head(d.path()).unwrap();
    assert_eq!(h.lines, 4);
    assert_eq!(verify(&joined(&lines), Some(&h)), Ok(4));
    assert_eq!(chain::head_of(&joined(&lines)), h);
}

#[test]
fn an_edited_field_names_its_line() {
    let (_d, mut lines) = logged();
    lines[1] = lines[1].replace("AccessDeniedException", "ok");
    let b = broken(&lines, None);
    assert_eq!(b.line, 2, "{b}");
    assert!(b.why.contains("edited"), "{b}");
}

#[test]
fn a_deleted_line_names_where_it_was() {
    let (_d, mut lines) = logged();
    lines.remove(1);
    let b = broken(&lines, None);
    assert_eq!(b.line, 2, "{b}");
    assert!(b.why.contains("removed"), "{b}");
}

#[test]
fn swapped_lines_are_named_reordered() {
    let (_d, mut lines) = logged();
    lines.swap(1, 2);
    let b = broken(&lines, None);
    assert_eq!(b.line, 2, "{b}");
    assert!(b.why.contains("reordered"), "{b}");
}

#[test]
fn a_cut_tail_shows_against_the_anchor() {
    let (d, mut lines) = logged();
    let h = head(d.path()).unwrap();
    lines.truncate(2);
    assert_eq!(verify(&joined(&lines), None), Ok(2));
    let b = broken(&lines, Some(&h));
    assert_eq!(b.line, 3, "{b}");
    assert!(b.why.contains("cut off after line 2"), "{b}");
}

#[test]
fn an_edited_last_line_shows_against_the_anchor() {
    let (d, mut lines) = logged();
    let h = head(d.path()).unwrap();
    lines[3] = lines[3].replace("Encrypt", "Decrypt");
    let b = broken(&lines, Some(&h));
    assert_eq!(b.line, 4, "{b}");
    assert!(b.why.contains("edited"), "{b}");
}

#[test]
fn a_forged_line_with_a_wrong_hash_is_found() {
    let (_d, mut lines) = logged();
    let mut v: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    v["eventSequence"] = 5.into();
    v["previousEventHash"] = chain::line_hash(b"not the line before").into();
    lines.push(v.to_string());
    let b = broken(&lines, None);
    assert_eq!(b.line, 4, "{b}");
    assert!(b.why.contains("line 5 is forged"), "{b}");
    // A forged line without a hash after chained lines.
    lines.pop();
    lines.push(r#"{"eventTime":6,"eventName":"Encrypt","uid":0,"pid":1,"outcome":"ok"}"#.into());
    assert_eq!(broken(&lines, None).line, 5);
}

#[test]
fn a_chain_continues_an_older_unchained_log() {
    let d = tempfile::tempdir().unwrap();
    let old = r#"{"eventTime":6,"eventName":"Encrypt","uid":3,"pid":1,"outcome":"ok"}"#;
    std::fs::write(audit_path(d.path()), format!("{old}\n{old}\n")).unwrap();
    append(d.path(), &rec("Decrypt", None, 0, "ok"));
    let text = std::fs::read(audit_path(d.path())).unwrap();
    assert_eq!(verify(&text, head(d.path()).as_ref()), Ok(3));
    let v: serde_json::Value =
        serde_json::from_slice(text.split(|b| *b == b'\n').nth(2).unwrap()).unwrap();
    assert_eq!(v["eventSequence"], 3);
}

#[test]
fn concurrent_writers_make_one_chain() {
    let d = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let p = d.path();
            s.spawn(move || {
                for _ in 0..25 {
                    append(p, &rec("GenerateRandom", None, t, "ok"));
                }
            });
        }
    });
    let text = std::fs::read(audit_path(d.path())).unwrap();
    assert_eq!(verify(&text, None), Ok(100));
}
