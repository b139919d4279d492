//! The route by store ID (a volume whose key is in a store this user
//! cannot open goes to the default agent) and the agent's idle and request
//! timeouts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::users::TestUser;
use crate::common::*;
use crate::*;

/// The variable that moves the default agent socket, for tests.
const DEFAULT_SOCKET_VAR: &str = "ENVELOPEFS_TEST_DEFAULT_AGENT_SOCKET";

/// alice, with no key store and no `--agent`/`ENVELOPEFS_AGENT`, checks the
/// team volume (its key ARN names root's store): it goes to the default
/// agent, which her grant admits; without an agent there she is told she
/// has no key store; without a grant the agent refuses her.
#[test]
fn a_volume_of_a_store_the_user_cannot_open_goes_to_the_default_agent() {
    let test = "a_volume_of_a_store_the_user_cannot_open_goes_to_the_default_agent";
    if !need_fuse(test) {
        return;
    }
    let Some(alice) = TestUser::create(test, "rt") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let cipher = env.init("team", &["--key", &key]);
    let m = env.mount(&cipher, "root-mnt", &[]);
    std::fs::write(m.p("plan"), b"the team's plan").unwrap();
    m.unmount();
    let st = Command::new("chown")
        .args(["-R", &format!("{}:{}", alice.uid, alice.gid)])
        .arg(&cipher)
        .status()
        .unwrap();
    assert!(st.success());
    let agent = Agent::start(&env, &[]);
    let fsck = |default_socket: &str| -> Output {
        let mut c = Command::new(env.shared_bin());
        c.args(["fsck", cipher.to_str().unwrap()])
            .env_clear()
            .env("HOME", "/nonexistent")
            .env(DEFAULT_SOCKET_VAR, default_socket)
            .current_dir("/")
            .stdin(std::process::Stdio::null());
        std::os::unix::process::CommandExt::uid(&mut c, alice.uid);
        std::os::unix::process::CommandExt::gid(&mut c, alice.gid);
        run_bounded(c, 60)
    };
    let out = fsck(agent.sock());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{err}");
    assert!(
        err.contains(&format!(
            "AccessDeniedException: User: arn:envelopefs:iam::{id}:user/{} is not authorized to perform: kms:Decrypt",
            alice.name
        )),
        "{err}"
    );
    let info = env.run_ok(&["info", cipher.to_str().unwrap(), "--output", "json"]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        &format!("arn:envelopefs:iam::{id}:user/{}", alice.name),
        "--operations",
        "Decrypt",
        "--constraints",
        &format!(
            "EncryptionContextSubset={{envelopefs:volume-id={}}}",
            info["VolumeId"].as_str().unwrap()
        ),
    ]);
    let out = fsck(agent.sock());
    assert!(
        out.status.success(),
        "fsck through the default agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nowhere = env.path("run/no-agent.sock");
    let out = fsck(nowhere.to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(13), "no agent, no key store: {err}");
    assert!(err.starts_with("envelopefs: no key store at "), "{err}");
}

/// Reads until the agent closes the connection (or 20 s pass): the time it
/// took, and whether any answer came.
fn time_to_close(s: &mut UnixStream, started: Instant) -> (Duration, bool) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 64];
    let answered = match s.read(&mut buf) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => panic!("the agent kept the connection open 20 s: {e}"),
    };
    (started.elapsed(), answered)
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    if !need_root("an_idle_connection_is_closed_after_the_idle_timeout") {
        return;
    }
    let env = Env::shared();
    store_with_key(&env);
    let agent = Agent::start(&env, &["--idle-timeout", "1"]);
    let started = Instant::now();
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    let (took, answered) = bounded(30, move || time_to_close(&mut s, started));
    assert!(!answered);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "closed after {took:?}, not about 1 s"
    );
    // A connection that asks in time is served.
    let v = raw_call(&agent.socket, &serde_json::json!({"Operation": "ListKeys"}));
    assert!(v["Keys"].is_array(), "{v}");
}

/// A request trickled a byte at a time keeps no slot past the request
/// timeout, though each byte comes well within the idle timeout.
#[test]
fn a_trickled_request_is_cut_off_at_the_request_timeout() {
    if !need_root("a_trickled_request_is_cut_off_at_the_request_timeout") {
        return;
    }
    let env = Env::shared();
    store_with_key(&env);
    let agent = Agent::start(&env, &["--request-timeout", "1"]);
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    let body = br#"{"Operation": "ListKeys", "Padding": "........................"}"#;
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    let started = Instant::now();
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in body {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let (took, answered) = bounded(30, move || time_to_close(&mut s, started));
    assert!(!answered, "the trickled request was answered");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "cut off after {took:?}, not about 1 s"
    );
    let _ = trickle.join();
    let v = raw_call(&agent.socket, &serde_json::json!({"Operation": "ListKeys"}));
    assert!(v["Keys"].is_array(), "{v}");
}
