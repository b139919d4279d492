//! AWS KMS as the master-key provider, against a local KMS emulator (moto's
//! server on 127.0.0.1, started and stopped here). moto does not enforce key
//! states; these tests check the wire path, encryption contexts and errors.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std
#![cfg(feature = "aws-kms")]

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tests share the process environment (AWS_ENDPOINT_URL_KMS): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A moto server, or None (the skip recorded) when moto is missing.
fn moto(test: &str) -> Option<Moto> {
    let port = free_port();
    // `python3 -m moto.server` works without the console script on PATH.
    let child = match Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            missing_prerequisite(test, &format!("no python3 for moto ({e})"));
            return None;
        }
    };
    let m = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let t0 = Instant::now();
    let mut m = m;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = m.child.try_wait() {
            // python3 ran but has no moto: skip outside CI, fail in CI.
            missing_prerequisite(test, &format!("moto is not installed (exit {st})"));
            return None;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "moto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(m)
}

fn aws_env(c: &mut Command, url: &str) {
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_KMS", url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
}

fn run(env: &Env, url: &str, args: &[&str]) -> std::process::Output {
    let mut c = env.cmd();
    aws_env(&mut c, url);
    c.args(args).output().unwrap()
}

fn ok(env: &Env, url: &str, args: &[&str]) -> String {
    let o = run(env, url, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Create a KMS key (and alias) in moto through the provider's own client.
fn create_key(url: &str, alias: &str) -> String {
    // SAFETY (of env changes): tests in this file use the same values.
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ENDPOINT_URL_KMS", url);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let kms = envelopefs::kms::aws::AwsKms::new(None).unwrap();
    kms.create_key_for_tests(alias).unwrap()
}

#[test]
fn volumes_on_aws_kms() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(m) = moto("volumes_on_aws_kms") else {
        return;
    };
    let url = m.url.clone();
    bounded(300, move || {
        let env = Env::new();
        let arn = create_key(&url, "alias/envelopefs-test");
        assert!(arn.starts_with("arn:aws:kms:"));
        let c = env.path("c");
        let out = ok(
            &env,
            &url,
            &[
                "init",
                c.to_str().unwrap(),
                "--key",
                "aws-kms:alias/envelopefs-test",
                "--output",
                "json",
            ],
        );
        let info: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(info["KeyProvider"], "aws-kms");
        assert_eq!(info["MasterKeyArn"], arn.as_str());
        let mnt = env.path("m");
        fs::create_dir(&mnt).unwrap();
        ok(
            &env,
            &url,
            &["mount", c.to_str().unwrap(), mnt.to_str().unwrap()],
        );
        fs::write(mnt.join("f"), b"kms-protected").unwrap();
        ok(&env, &url, &["umount", mnt.to_str().unwrap()]);
        ok(
            &env,
            &url,
            &["mount", c.to_str().unwrap(), mnt.to_str().unwrap()],
        );
        assert_eq!(fs::read(mnt.join("f")).unwrap(), b"kms-protected");
        ok(&env, &url, &["umount", mnt.to_str().unwrap()]);
        ok(&env, &url, &["rewrap", c.to_str().unwrap()]);
        // aws -> local -> aws copies mount under their new keys.
        let local = env.path("local");
        let lk = ok(
            &env,
            &url,
            &[
                "kms",
                "create-key",
                "--query",
                "KeyMetadata.KeyId",
                "--output",
                "text",
            ],
        )
        .trim()
        .to_owned();
        ok(
            &env,
            &url,
            &[
                "snapshot",
                "copy",
                c.to_str().unwrap(),
                local.to_str().unwrap(),
                "--key",
                &lk,
            ],
        );
        let back = env.path("back");
        ok(
            &env,
            &url,
            &[
                "snapshot",
                "copy",
                local.to_str().unwrap(),
                back.to_str().unwrap(),
                "--key",
                &arn,
                "--mode",
                "reencrypt",
            ],
        );
        for v in [&local, &back] {
            ok(
                &env,
                &url,
                &["mount", v.to_str().unwrap(), mnt.to_str().unwrap()],
            );
            assert_eq!(fs::read(mnt.join("f")).unwrap(), b"kms-protected");
            ok(&env, &url, &["umount", mnt.to_str().unwrap()]);
        }
        assert!(backing_contains(&back, b"kms-protected").is_empty());
        // An unreachable KMS fails the mount in bounded time with a clear error.
        let dead = format!("http://127.0.0.1:{}", free_port());
        let t0 = Instant::now();
        let o = run(
            &env,
            &dead,
            &["mount", c.to_str().unwrap(), mnt.to_str().unwrap()],
        );
        assert_eq!(
            o.status.code(),
            Some(28),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("KMS unavailable"));
        assert!(t0.elapsed() < Duration::from_secs(90));
        assert!(!is_mounted(&mnt));
    });
}

#[test]
fn encryption_context_and_errors_on_the_wire() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(m) = moto("encryption_context_and_errors_on_the_wire") else {
        return;
    };
    use envelopefs::kms::{EncryptionContext, KeyService, KmsError};
    let arn = create_key(&m.url, "alias/ctx-test");
    let kms = envelopefs::kms::aws::AwsKms::new(None).unwrap();
    let ctx = EncryptionContext::new().with("envelopefs:volume-id", "v1");
    let g = kms.generate_data_key(&arn, 32, &ctx).unwrap();
    assert_eq!(g.plaintext.len(), 32);
    assert_eq!(
        *kms.decrypt(&g.ciphertext_blob, &ctx, None)
            .unwrap()
            .plaintext,
        *g.plaintext
    );
    let wrong = EncryptionContext::new().with("envelopefs:volume-id", "v2");
    assert!(matches!(
        kms.decrypt(&g.ciphertext_blob, &wrong, None),
        Err(KmsError::InvalidCiphertext)
    ));
    let mut bad = g.ciphertext_blob.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        kms.decrypt(&bad, &ctx, None),
        Err(KmsError::InvalidCiphertext)
    ));
    assert!(matches!(
        kms.resolve("aws-kms:alias/does-not-exist"),
        Err(KmsError::NotFound(_))
    ));
}
