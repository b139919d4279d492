//! A real FUSE mount by a user other than root through the agent: alice,
//! with a grant for the team volume, mounts and reads it with no
//! passphrase anywhere; bob, without one, is refused; once the grant is
//! revoked alice's new mount is refused while her running mount keeps the
//! volume key it already decrypted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::fusens::*;
use crate::common::users::{TestGroup, TestUser};
use crate::common::*;
use crate::*;

/// A home of `user` (0700, theirs) in the test's 0755 directory, with the
/// mount points `mnt` and `mnt2`.
fn home_of(env: &Env, user: &TestUser, name: &str) -> PathBuf {
    let home = env.path(name);
    for d in [home.clone(), home.join("mnt"), home.join("mnt2")] {
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(user.uid), Some(user.gid)).unwrap();
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    home
}

/// The whole environment of a user's command: the agent, and no
/// passphrase, key store or terminal.
fn user_vars(home: &Path, agent: &Agent) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME", home.display().to_string()),
        ("ENVELOPEFS_AGENT", agent.sock().to_owned()),
    ]
}

/// `prog args` as `user` (with the team group) in the namespace.
fn as_member(
    ns: &FuseNs,
    user: &TestUser,
    home: &Path,
    agent: &Agent,
    prog: &Path,
    args: &[&Path],
) -> Output {
    let mut c = ns.cmd_in_groups(user, &user_vars(home, agent), prog);
    c.args(args);
    output_within(60, c)
}

/// `envelopefs mount` of `cipher` at `home/mnt_name`, as `user`.
fn mount_as(
    ns: &FuseNs,
    env: &Env,
    user: &TestUser,
    (home, agent): (&Path, &Agent),
    cipher: &Path,
    mnt_name: &str,
    extra: &[&str],
) -> Output {
    let (mnt, log) = (home.join(mnt_name), home.join("daemon.log"));
    let mut args = vec![
        Path::new("mount"),
        cipher,
        &mnt,
        Path::new("--log-file"),
        &log,
    ];
    args.extend(extra.iter().map(Path::new));
    as_member(ns, user, home, agent, &env.shared_bin(), &args)
}

/// A refused mount: the exit code of AccessDeniedException, one line
/// naming the principal and kms:Decrypt, and no mount.
fn assert_mount_denied(ns: &FuseNs, out: &Output, principal: &str, mnt: &Path) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(ACCESS_DENIED), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!(
            "AccessDeniedException: User: {principal} is not authorized to perform: kms:Decrypt"
        )),
        "{err}"
    );
    assert!(mount_at(&fuse_mounts(&ns.mountinfo()), mnt).is_none());
}

fn volume_id(env: &Env, cipher: &Path) -> String {
    let out = env.run_ok(&["info", cipher.to_str().unwrap(), "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["VolumeId"].as_str().unwrap().to_owned()
}

/// Root's team volume, written by root through its own mount, in a
/// directory of the team group (its members' mounts read and write it).
fn team_volume(env: &Env, key: &str, group: &TestGroup) -> PathBuf {
    let cipher = env.init("team", &["--key", key]);
    let m = env.mount(&cipher, "root-mnt", &[]);
    std::fs::write(m.p("plan"), b"the team's plan").unwrap();
    std::fs::create_dir(m.p("d")).unwrap();
    std::fs::write(m.p("d/later"), b"read after the revoke").unwrap();
    m.unmount();
    for (tool, args) in [
        ("chgrp", vec!["-R", group.name.as_str()]),
        ("chmod", vec!["-R", "g+rwX"]),
    ] {
        let st = Command::new(tool).args(args).arg(&cipher).status().unwrap();
        assert!(st.success(), "{tool}");
    }
    cipher
}

#[test]
fn a_user_mounts_the_team_volume_through_the_agent_with_a_grant() {
    let test = "a_user_mounts_the_team_volume_through_the_agent_with_a_grant";
    if !need_fuse(test) {
        return;
    }
    if setuid_fusermount3().is_none() {
        missing_prerequisite(test, "no setuid-root fusermount3");
        return;
    }
    let (Some(alice), Some(bob)) = (TestUser::create(test, "ta"), TestUser::create(test, "tb"))
    else {
        return;
    };
    let team = TestGroup::create("tt", &[&alice, &bob]);
    let env = Env::shared();
    let key = store_with_key(&env);
    let id = store_id(&env);
    let principal = |u: &TestUser| format!("arn:envelopefs:iam::{id}:user/{}", u.name);
    let cipher = team_volume(&env, &key, &team);
    let grant = env.run_ok(&[
        "kms",
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        &principal(&alice),
        "--operations",
        "Decrypt",
        "--constraints",
        &format!(
            "EncryptionContextSubset={{envelopefs:volume-id={}}}",
            volume_id(&env, &cipher)
        ),
        "--output",
        "json",
    ]);
    let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
    let grant_id = grant["GrantId"].as_str().unwrap().to_owned();
    let agent = Agent::start(&env, &[]);
    // Dropped before the agent and the users: its mounts are detached even
    // when the test fails.
    let ns = FuseNs::new(env.path("ns"), 0o666, "");
    let (a_home, b_home) = (home_of(&env, &alice, "alice"), home_of(&env, &bob, "bob"));
    let cat = |path: &str| {
        let out = as_member(
            &ns,
            &alice,
            &a_home,
            &agent,
            Path::new("cat"),
            &[&a_home.join("mnt").join(path)],
        );
        assert!(out.status.success(), "cat {path}: {}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap()
    };

    let out = mount_as(&ns, &env, &alice, (&a_home, &agent), &cipher, "mnt", &[]);
    assert!(out.status.success(), "alice's mount: {}", stderr_of(&out));
    let mounts = fuse_mounts(&ns.mountinfo());
    let m = mount_at(&mounts, &a_home.join("mnt")).expect("alice's mount is listed");
    assert!(
        m.super_opts.contains(&format!("user_id={}", alice.uid)),
        "mounted by alice: {}",
        m.super_opts
    );
    assert_eq!(cat("plan"), "the team's plan");
    assert!(
        !a_home.join(".local").exists(),
        "alice made a key store of her own"
    );

    let out = mount_as(&ns, &env, &bob, (&b_home, &agent), &cipher, "mnt", &[]);
    assert_mount_denied(&ns, &out, &principal(&bob), &b_home.join("mnt"));

    env.run_ok(&[
        "kms",
        "revoke-grant",
        "--key-id",
        &key,
        "--grant-id",
        &grant_id,
    ]);
    let out = mount_as(
        &ns,
        &env,
        &alice,
        (&a_home, &agent),
        &cipher,
        "mnt2",
        &["--read-only"],
    );
    assert_mount_denied(&ns, &out, &principal(&alice), &a_home.join("mnt2"));
    // Her running mount keeps the volume key: a file it had not read yet.
    assert_eq!(cat("d/later"), "read after the revoke");
    let out = as_member(
        &ns,
        &alice,
        &a_home,
        &agent,
        &env.shared_bin(),
        &[Path::new("umount"), &a_home.join("mnt")],
    );
    assert!(out.status.success(), "alice's umount: {}", stderr_of(&out));
    assert!(mount_at(&fuse_mounts(&ns.mountinfo()), &a_home.join("mnt")).is_none());

    let lines = audit_lines(&env);
    let audited = |who: &TestUser, outcome: &str| {
        lines.iter().any(|l| {
            l["eventName"] == "Decrypt"
                && l["principalArn"] == principal(who).as_str()
                && l["outcome"] == outcome
        })
    };
    assert!(audited(&alice, "ok"), "alice's Decrypt is not audited");
    assert!(
        audited(&alice, "AccessDeniedException"),
        "alice's refused Decrypt is not audited"
    );
    assert!(
        audited(&bob, "AccessDeniedException"),
        "bob's denial is not audited"
    );
}
