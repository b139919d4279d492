//! The S3 object store of remote snapshots against a real S3 API server
//! (moto's, on 127.0.0.1: tests/common/s3.rs), and against a local server
//! that only ever answers 503.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std
#![cfg(feature = "s3")]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::s3::{header, raw_request, S3Server, BUCKET, PART_MIN};
use common::*;
use envelopefs::snapshot::remote::s3::S3Store;
use envelopefs::snapshot::remote::store::{
    ObjectStore, PutMode, PutOutcome, StoreErrorKind, TransferOptions,
};

/// The tests share the process environment (AWS_ENDPOINT_URL_S3): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn store(server: &S3Server, prefix: &str, opts: TransferOptions) -> S3Store {
    server.set_process_env();
    S3Store::open(BUCKET, prefix, opts).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn put_get_head_list_delete() {
    let _serial = serial();
    let Some(server) = S3Server::start("put_get_head_list_delete") else {
        return;
    };
    let s = store(&server, "repo/one/", TransferOptions::default());
    assert_eq!(s.url(), format!("s3://{BUCKET}/repo/one"));
    assert_eq!(s.get("chunks/ab/x", 1 << 20).unwrap(), None);
    assert_eq!(s.head("chunks/ab/x").unwrap(), None);
    let body = pattern(1, 1000);
    assert_eq!(
        s.put("chunks/ab/x", &body, PutMode::Overwrite).unwrap(),
        PutOutcome::Written
    );
    assert_eq!(s.get("chunks/ab/x", 1000).unwrap(), Some(body.clone()));
    // The key sits under the prefix in the bucket.
    let (st, _) = raw_request(
        server.port,
        "HEAD",
        &format!("/{BUCKET}/repo/one/chunks/ab/x"),
    );
    assert_eq!(st, 200);
    let info = s.head("chunks/ab/x").unwrap().unwrap();
    assert_eq!((info.key.as_str(), info.size), ("chunks/ab/x", 1000));
    let clock = s.now_unix().unwrap();
    assert!((clock - now()).abs() < 120, "store clock {clock}");
    assert!((info.modified_unix - clock).abs() < 120);
    // An empty object (S3 refuses a range of it) reads back empty.
    s.put("leases/empty", b"", PutMode::Overwrite).unwrap();
    assert_eq!(s.get("leases/empty", 10).unwrap(), Some(Vec::new()));
    // Another prefix of the bucket is not listed.
    let other = S3Store::open(BUCKET, "repo/one-other", TransferOptions::default()).unwrap();
    other.put("chunks/zz", b"z", PutMode::Overwrite).unwrap();
    let listed: Vec<(String, u64)> = s
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(
        listed,
        [("chunks/ab/x".into(), 1000), ("leases/empty".into(), 0)]
    );
    assert_eq!(s.list("leases/").unwrap().len(), 1);
    assert_eq!(s.list("manifests/").unwrap(), []);
    s.delete("chunks/ab/x").unwrap();
    assert_eq!(s.head("chunks/ab/x").unwrap(), None);
    s.delete("chunks/ab/x").unwrap();
    assert_eq!(other.list("").unwrap().len(), 1);
}

#[test]
fn if_absent_writes_once_and_overwrite_replaces() {
    let _serial = serial();
    let Some(server) = S3Server::start("if_absent_writes_once_and_overwrite_replaces") else {
        return;
    };
    let s = store(&server, "p", TransferOptions::default());
    let key = "manifests/monday";
    assert_eq!(
        s.put(key, b"first", PutMode::IfAbsent).unwrap(),
        PutOutcome::Written
    );
    assert_eq!(
        s.put(key, b"second", PutMode::IfAbsent).unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(s.get(key, 100).unwrap().unwrap(), b"first");
    assert_eq!(
        s.put(key, b"third", PutMode::Overwrite).unwrap(),
        PutOutcome::Written
    );
    assert_eq!(s.get(key, 100).unwrap().unwrap(), b"third");
}

#[test]
fn multipart_upload_round_trips() {
    let _serial = serial();
    let Some(server) = S3Server::start("multipart_upload_round_trips") else {
        return;
    };
    let opts = TransferOptions {
        jobs: 2,
        part_size: PART_MIN,
    };
    let s = store(&server, "mp", opts);
    let body = pattern(7, 2 * PART_MIN as usize + 12_345);
    assert_eq!(
        s.put("chunks/big", &body, PutMode::IfAbsent).unwrap(),
        PutOutcome::Written
    );
    // A multipart object's ETag ends in the number of its parts.
    let (st, answer) = raw_request(server.port, "HEAD", &format!("/{BUCKET}/mp/chunks/big"));
    assert_eq!(st, 200);
    let etag = header(&answer, "ETag").unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag}");
    assert_eq!(
        s.get("chunks/big", body.len() as u64).unwrap(),
        Some(body.clone())
    );
    let other = pattern(8, body.len());
    assert_eq!(
        s.put("chunks/big", &other, PutMode::IfAbsent).unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        s.put("chunks/big", &other, PutMode::Overwrite).unwrap(),
        PutOutcome::Written
    );
    assert_eq!(s.get("chunks/big", u64::MAX).unwrap(), Some(other));
    // No upload left behind.
    let (st, answer) = raw_request(server.port, "GET", &format!("/{BUCKET}?uploads"));
    assert_eq!(st, 200);
    assert!(!answer.contains("<Upload>"), "{answer}");
}

#[test]
fn get_refuses_an_object_larger_than_allowed() {
    let _serial = serial();
    let Some(server) = S3Server::start("get_refuses_an_object_larger_than_allowed") else {
        return;
    };
    let s = store(&server, "", TransferOptions::default());
    assert_eq!(s.url(), format!("s3://{BUCKET}"));
    s.put("manifests/m", &[5u8; 100], PutMode::Overwrite)
        .unwrap();
    assert_eq!(s.get("manifests/m", 100).unwrap().unwrap().len(), 100);
    let e = s.get("manifests/m", 99).unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Other);
    assert_eq!(
        e.message,
        format!(
            "S3 GetObject s3://{BUCKET}/manifests/m: the object is 100 bytes, more than the 99 expected"
        )
    );
}

#[test]
fn listing_follows_every_page() {
    let _serial = serial();
    let Some(server) = S3Server::start("listing_follows_every_page") else {
        return;
    };
    let s = Arc::new(store(&server, "many", TransferOptions::default()));
    let n = 1003;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in (w..n).step_by(4) {
                    s.put(&format!("chunks/{i:05}"), b"c", PutMode::IfAbsent)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    s.put("leases/l", b"l", PutMode::Overwrite).unwrap();
    let chunks = s.list("chunks/").unwrap();
    let expect: Vec<String> = (0..n).map(|i| format!("chunks/{i:05}")).collect();
    let got: Vec<String> = chunks.into_iter().map(|o| o.key).collect();
    assert_eq!(got, expect);
    assert_eq!(s.list("").unwrap().len(), n + 1);
}

/// A store call's error message, None when it succeeded.
type FailedCall<'a> = dyn Fn() -> Option<String> + 'a;

#[test]
fn a_missing_bucket_is_named_in_one_line() {
    let _serial = serial();
    let Some(server) = S3Server::start("a_missing_bucket_is_named_in_one_line") else {
        return;
    };
    server.set_process_env();
    let s = S3Store::open("no-such-bucket", "r", TransferOptions::default()).unwrap();
    let checks: [(&str, Box<FailedCall>); 5] = [
        (
            "GetObject",
            Box::new(|| s.get("k", 10).err().map(|e| e.to_string())),
        ),
        (
            "HeadObject",
            Box::new(|| s.head("k").err().map(|e| e.to_string())),
        ),
        (
            "PutObject",
            Box::new(|| {
                s.put("k", b"v", PutMode::IfAbsent)
                    .err()
                    .map(|e| e.to_string())
            }),
        ),
        (
            "ListObjectsV2",
            Box::new(|| s.list("").err().map(|e| e.to_string())),
        ),
        (
            "DeleteObject",
            Box::new(|| s.delete("k").err().map(|e| e.to_string())),
        ),
    ];
    for (op, call) in checks {
        let msg = call().unwrap_or_else(|| panic!("{op} on a missing bucket succeeded"));
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.starts_with(&format!("S3 {op} s3://no-such-bucket/r/"))
                && msg.contains("NoSuchBucket"),
            "{msg}"
        );
    }
    let e = s.head("k").unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::NoSuchBucket);
    assert_eq!(
        s.get("k", 1).unwrap_err().kind,
        StoreErrorKind::NoSuchBucket
    );
}

/// A server on 127.0.0.1 that answers every request 503 SlowDown, counting
/// them; it stops when the returned flag is set.
fn always_503() -> (u16, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, st) = (count.clone(), stop.clone());
    std::thread::spawn(move || {
        let t0 = Instant::now();
        while !st.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // The request's head (a GET has no body).
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            c.fetch_add(1, Ordering::SeqCst);
            let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let _ = write!(
                conn,
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, count, stop)
}

#[test]
fn a_store_answering_503_is_retried_then_unavailable() {
    let _serial = serial();
    let (port, count, stop) = always_503();
    let server_env = [
        ("AWS_ENDPOINT_URL_S3", format!("http://127.0.0.1:{port}")),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ("AWS_MAX_ATTEMPTS", "3".into()),
    ];
    for (k, v) in &server_env {
        std::env::set_var(k, v);
    }
    let r = bounded(120, move || {
        let s = S3Store::open("b", "p", TransferOptions::default()).unwrap();
        let t0 = Instant::now();
        let e = s.get("chunks/ab/abc", 100).unwrap_err();
        (e, t0.elapsed())
    });
    std::env::remove_var("AWS_MAX_ATTEMPTS");
    stop.store(true, Ordering::Relaxed);
    let (e, took) = r;
    assert_eq!(e.kind, StoreErrorKind::Unavailable, "{e}");
    assert_eq!(count.load(Ordering::SeqCst), 3, "attempts: {e}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(
        e.message,
        "S3 GetObject s3://b/p/chunks/ab/abc: SlowDown: Please reduce your request rate."
    );
}
