//! The key agent (`envelopefs agent`) as a real process, with real users:
//! root mounts through it without the passphrase, a user mounts a team
//! volume with a grant and no passphrase, other users are denied (and
//! audited), grants are managed through it, a client refuses an agent of
//! another user, the agent survives hostile clients and many at once, sees
//! a key disabled directly in the store at once, and stops cleanly on
//! SIGTERM.
#![allow(clippy::disallowed_methods)] // tests create fixtures with std

#[path = "../common/mod.rs"]
mod common;

mod basics;
mod grants;
mod limits;
mod memory;
mod mount;
mod parity;
mod policies;
mod review;
mod routes;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::users::TestUser;
use common::*;

/// The exit code of AccessDeniedException (src/error.rs, exitcodes).
pub const ACCESS_DENIED: i32 = 19;

/// A running agent, killed and reaped on drop (even when the test fails).
pub struct Agent {
    pub child: Option<Child>,
    pub socket: PathBuf,
}

impl Agent {
    pub fn start(env: &Env, extra: &[&str]) -> Agent {
        let socket = env.path("run/agent.sock");
        let mut cmd = env.cmd();
        cmd.arg("agent")
            .arg("--foreground")
            .arg("--socket")
            .arg(&socket)
            .args(extra);
        Agent::spawn(cmd, socket)
    }

    pub fn spawn(mut cmd: Command, socket: PathBuf) -> Agent {
        let log = socket.parent().unwrap().parent().unwrap().join("agent.log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut a = Agent {
            child: Some(child),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&a.socket).is_err() {
            let exited = a.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none(),
                "the agent exited: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "the agent did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        a
    }

    pub fn sock(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    pub fn alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run `cmd` to its end, within `secs` seconds: killed (and the test
/// failed) past them.
pub fn run_bounded(mut cmd: Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end in {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A store with one key, and that key's ID.
pub fn store_with_key(env: &Env) -> String {
    let out = env.run_ok(&["kms", "create-key", "--description", "agent"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

pub fn store_id(env: &Env) -> String {
    let out = env.run_ok(&["kms", "list-keys"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arn = v["Keys"][0]["KeyArn"].as_str().unwrap().to_owned();
    arn.split(':').nth(4).unwrap().to_owned()
}

/// `envelopefs ARGS` through the agent, as root, with no passphrase at hand.
pub fn via_agent(env: &Env, agent: &Agent, args: &[&str]) -> Output {
    let mut c = env.cmd();
    c.env("ENVELOPEFS_AGENT", agent.sock())
        .env("ENVELOPEFS_PASSPHRASE_FILE", env.path("no-such-passphrase"))
        .args(args);
    run_bounded(c, 30)
}

/// `BIN ARGS` as `user`, through the agent.
pub fn as_user(env: &Env, user: &TestUser, agent: &Agent, args: &[&str]) -> Command {
    let mut c = Command::new(env.shared_bin());
    c.args(args)
        .env_clear()
        .env("ENVELOPEFS_AGENT", agent.sock())
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .stdin(Stdio::null())
        .uid(user.uid)
        .gid(user.gid);
    c
}

pub fn audit_lines(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.path("ks/audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One request over a raw connection; an agent at its cap is asked again
/// (bounded).
pub fn raw_call(socket: &Path, req: &serde_json::Value) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = serde_json::to_vec(req).unwrap();
        let _ = s.write_all(&(body.len() as u32).to_be_bytes());
        let _ = s.write_all(&body);
        let v = read_answer(&mut s);
        if v["__type"] == "LimitExceededException" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return v;
    }
}

pub fn read_answer(s: &mut UnixStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// `kms decrypt` of `blob` (a file) with `context` as `user` through the
/// agent: the plaintext (base64), or the exit code and one-line error.
pub fn decrypt_as(
    env: &Env,
    user: &TestUser,
    agent: &Agent,
    blob: &Path,
    context: &str,
) -> Result<String, (Option<i32>, String)> {
    let blob = format!("fileb://{}", blob.display());
    let c = as_user(
        env,
        user,
        agent,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob,
            "--encryption-context",
            context,
            "--output",
            "json",
        ],
    );
    let out = bounded(30, move || { c }.output().unwrap());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        return Err((out.status.code(), err));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(v["Plaintext"].as_str().unwrap().to_owned())
}

pub fn assert_denied(r: Result<String, (Option<i32>, String)>, what: &str) {
    match r {
        Err((code, err)) => {
            assert_eq!(code, Some(ACCESS_DENIED), "{what}: {err}");
            assert!(err.contains("AccessDeniedException"), "{what}: {err}");
        }
        Ok(_) => panic!("{what}: allowed"),
    }
}

/// A data key wrapped under `key` with `context`, by root on the store:
/// (blob file, plaintext base64).
pub fn wrapped_key(env: &Env, key: &str, context: &str, name: &str) -> (PathBuf, String) {
    let out = env.run_ok(&[
        "kms",
        "generate-data-key",
        "--key-id",
        key,
        "--key-spec",
        "AES_256",
        "--encryption-context",
        context,
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let blob = base64_decode(v["CiphertextBlob"].as_str().unwrap());
    let path = env.path(name);
    std::fs::write(&path, blob).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (path, v["Plaintext"].as_str().unwrap().to_owned())
}

pub fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
