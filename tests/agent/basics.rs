//! Root through the agent, a user denied, a fake agent refused, a key
//! disabled in the store, SIGTERM, unsafe socket directories.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::users::TestUser;
use crate::common::*;
use crate::*;

#[test]
fn root_mounts_through_the_agent_without_the_passphrase() {
    if !need_fuse("root_mounts_through_the_agent_without_the_passphrase") {
        return;
    }
    let env = Env::shared();
    let cipher = env.init("c", &[]);
    let m = env.mount(&cipher, "m", &[]);
    std::fs::write(m.p("f"), b"through the agent").unwrap();
    m.unmount();
    let agent = Agent::start(&env, &[]);
    assert_eq!(mode_of(&env.path("run")), 0o755);
    assert_eq!(mode_of(&agent.socket), 0o666);
    let vars = [
        ("ENVELOPEFS_AGENT", agent.sock()),
        ("ENVELOPEFS_PASSPHRASE_FILE", "/nonexistent/passphrase"),
    ];
    let m = env.mount_env(&cipher, "m2", &[], &vars);
    assert_eq!(std::fs::read(m.p("f")).unwrap(), b"through the agent");
    m.unmount();
    let root = format!("arn:envelopefs:iam::{}:root", store_id(&env));
    assert!(
        audit_lines(&env)
            .iter()
            .any(|l| l["eventName"] == "Decrypt" && l["principalArn"] == root.as_str()),
        "no Decrypt of {root} in the audit log"
    );
}

#[test]
fn a_user_is_denied_and_the_denial_audited() {
    if !need_root("a_user_is_denied_and_the_denial_audited") {
        return;
    }
    let Some(alice) = TestUser::create("a_user_is_denied_and_the_denial_audited", "ad") else {
        return;
    };
    let env = Env::shared();
    let key = store_with_key(&env);
    let agent = Agent::start(&env, &[]);
    let out = run_bounded(
        as_user(
            &env,
            &alice,
            &agent,
            &["kms", "describe-key", "--key-id", &key],
        ),
        30,
    );
    let id = store_id(&env);
    let principal = format!("arn:envelopefs:iam::{id}:user/{}", alice.name);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "envelopefs: AccessDeniedException: User: {principal} is not authorized to perform: kms:DescribeKey on resource: arn:envelopefs:kms:local:{id}:key/{key}"
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let denied = audit_lines(&env).into_iter().find(|l| {
        l["outcome"] == "AccessDeniedException" && l["principalArn"] == principal.as_str()
    });
    let denied = denied.expect("the denial is not in the audit log");
    assert_eq!(denied["uid"], alice.uid);
    assert_eq!(denied["eventName"], "DescribeKey");
    // Root through the same agent is served.
    let ok = via_agent(&env, &agent, &["kms", "describe-key", "--key-id", &key]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn the_client_refuses_an_agent_of_another_user() {
    if !need_root("the_client_refuses_an_agent_of_another_user") {
        return;
    }
    let Some(bob) = TestUser::create("the_client_refuses_an_agent_of_another_user", "fk") else {
        return;
    };
    let env = Env::shared();
    // Bob's own store and agent, in a directory of his.
    let home = env.path("bob");
    std::fs::create_dir(&home).unwrap();
    let bob_env = |c: &mut Command| {
        c.env("ENVELOPEFS_KEYSTORE", home.join("ks"))
            .env("ENVELOPEFS_PASSPHRASE_FILE", home.join("pass"));
    };
    std::fs::copy(env.path("pass"), home.join("pass")).unwrap();
    let mut create = env.cmd();
    bob_env(&mut create);
    create.args(["kms", "create-key"]);
    let out = run_bounded(create, 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let chown = Command::new("chown")
        .args(["-R", &format!("{}:{}", bob.uid, bob.gid)])
        .arg(&home)
        .status()
        .unwrap();
    assert!(chown.success());
    let socket = home.join("run/agent.sock");
    let mut cmd = Command::new(env.shared_bin());
    bob_env(&mut cmd);
    cmd.args(["agent", "--foreground", "--socket"])
        .arg(&socket)
        .current_dir("/")
        .stdin(Stdio::null())
        .uid(bob.uid)
        .gid(bob.gid);
    let fake = Agent::spawn(cmd, socket);
    // Root's client, naming root's own store: bob is neither root nor its owner.
    let mut client = env.cmd();
    client
        .env("ENVELOPEFS_AGENT", fake.sock())
        .args(["kms", "describe-key", "--key-id", &key]);
    let out = run_bounded(client, 30);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "envelopefs: AccessDeniedException: the key agent at {} runs as uid {}, neither root nor the key store's owner: refused",
            fake.sock(),
            bob.uid
        )
    );
    let heard = std::fs::read_to_string(home.join("ks/audit.log")).unwrap_or_default();
    assert!(
        !heard.contains("DescribeKey"),
        "the request was sent: {heard}"
    );
    // The same agent, for a client naming bob's store (its owner): served.
    let mut ok = env.cmd();
    bob_env(&mut ok);
    ok.env("ENVELOPEFS_AGENT", fake.sock())
        .args(["kms", "describe-key", "--key-id", &key]);
    let out = run_bounded(ok, 30);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_key_disabled_in_the_store_is_refused_by_the_agent_at_once() {
    if !need_root("a_key_disabled_in_the_store_is_refused_by_the_agent_at_once") {
        return;
    }
    let env = Env::shared();
    let key = store_with_key(&env);
    let agent = Agent::start(&env, &[]);
    let gdk = [
        "kms",
        "generate-data-key",
        "--key-id",
        &key,
        "--number-of-bytes",
        "32",
    ];
    let out = via_agent(&env, &agent, &gdk);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.run_ok(&["kms", "disable-key", "--key-id", &key]);
    let out = via_agent(&env, &agent, &gdk);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(15), "{err}");
    assert!(err.starts_with("envelopefs: DisabledException: "), "{err}");
}

/// SIGTERM to the agent, and its exit status within 30 s (None: still running).
fn terminate(agent: &mut Agent) -> Option<std::process::ExitStatus> {
    let child = agent.child.as_mut().unwrap();
    // SAFETY: the agent this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn the_agent_stops_on_sigterm_and_removes_its_socket() {
    if !need_root("the_agent_stops_on_sigterm_and_removes_its_socket") {
        return;
    }
    let env = Env::shared();
    store_with_key(&env);
    let mut agent = Agent::start(&env, &[]);
    let status = terminate(&mut agent).expect("the agent did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(!agent.socket.exists());
    // Stopped too when someone removed its socket's path.
    let mut agent = Agent::start(&env, &[]);
    std::fs::remove_file(&agent.socket).unwrap();
    let status = terminate(&mut agent).expect("the agent without its path did not stop");
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_unsafe_socket_directory_is_refused() {
    if !need_root("an_unsafe_socket_directory_is_refused") {
        return;
    }
    let env = Env::shared();
    store_with_key(&env);
    let open = env.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&open, env.path("link")).unwrap();
    for (dir, why) in [
        ("open", "mode 777: writable by group or others"),
        ("link", "not a directory (a symlink is not followed)"),
    ] {
        let sock = env.path(&format!("{dir}/agent.sock"));
        let mut c = env.cmd();
        c.args(["agent", "--foreground", "--socket"]).arg(&sock);
        let out = run_bounded(c, 30);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "envelopefs: agent socket directory {}: {why}: refused",
                env.path(dir).display()
            )
        );
    }
}

/// How many times `path` is opened while `f` runs (inotify IN_OPEN; each
/// open's close comes between, so no two opens are merged into one event).
fn opens_during(path: &std::path::Path, f: impl FnOnce()) -> usize {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: a new inotify descriptor of this test, closed below.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid descriptor and NUL-terminated path.
    let wd =
        unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_CLOSE_NOWRITE) };
    assert!(wd >= 0);
    f();
    let mut opens = 0;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a buffer of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at + 16 <= n as usize {
            let mask = u32::from_ne_bytes(buf[at + 4..at + 8].try_into().unwrap());
            let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
            if mask & libc::IN_OPEN != 0 {
                opens += 1;
            }
            at += 16 + len;
        }
    }
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    opens
}

/// The agent reads the store once per request (as it is on disk then),
/// and still sees at once a key disabled directly in the store.
#[test]
fn the_agent_reads_the_store_once_per_request() {
    if !need_root("the_agent_reads_the_store_once_per_request") {
        return;
    }
    let env = Env::shared();
    let key = store_with_key(&env);
    let agent = Agent::start(&env, &[]);
    let gdk = serde_json::json!({"Operation": "GenerateDataKey", "KeyId": key,
        "NumberOfBytes": 32});
    let describe = serde_json::json!({"Operation": "DescribeKey", "KeyId": key});
    let store = env.path("ks/keystore.json");
    for req in [&gdk, &describe] {
        let mut answer = serde_json::Value::Null;
        let opens = opens_during(&store, || answer = raw_call(&agent.socket, req));
        assert!(
            answer["KeyId"].is_string() || answer["KeyMetadata"].is_object(),
            "{answer}"
        );
        assert_eq!(opens, 1, "store reads for {}", req["Operation"]);
    }
    env.run_ok(&["kms", "disable-key", "--key-id", &key]);
    let v = raw_call(&agent.socket, &gdk);
    assert_eq!(v["__type"], "DisabledException", "{v}");
}
