//! Users a test creates and removes again (even when it fails): for the
//! tests of what other users may and may not do.

use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::skip;

/// A user the test creates and removes again, even when the test fails.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Run a user-database tool, retrying while another one holds its lock
/// (other tests may add users at the same time).
fn user_tool(args: &[&str]) -> Option<Output> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        if out.status.success() || !locked || Instant::now() > deadline {
            return Some(out);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn id_of(name: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl TestUser {
    /// `envfs-<tag><pid>`, with a group of its own and no home; None (and a
    /// SKIPPED line) without useradd.
    pub fn create(test: &str, tag: &str) -> Option<TestUser> {
        let name = format!("envfs-{tag}{}", std::process::id());
        let Some(out) = user_tool(&[
            "useradd",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            &name,
        ]) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: useradd missing"
            );
            skip(test, "useradd missing");
            return None;
        };
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(TestUser {
            uid: id_of(&name, "-u"),
            gid: id_of(&name, "-g"),
            name,
        })
    }

    /// This user's processes (a daemon left by a failed test), by ID.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(dir) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uid = status.lines().find(|l| l.starts_with("Uid:"))?;
            let real: u32 = uid.split_whitespace().nth(1)?.parse().ok()?;
            (real == self.uid).then_some(pid)
        })
        .collect()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill by the ID of a process of the user this test made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = user_tool(&["userdel", &self.name]);
        // userdel removes the user's own group where USERGROUPS_ENAB is set.
        if Command::new("getent")
            .args(["group", &self.name])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            let _ = user_tool(&["groupdel", &self.name]);
        }
    }
}

/// A group the test creates, with some test users as members, and removes
/// again (even when the test fails).
pub struct TestGroup {
    pub name: String,
    pub gid: u32,
}

impl TestGroup {
    /// `envfs-<tag><pid>` with `members`.
    pub fn create(tag: &str, members: &[&TestUser]) -> TestGroup {
        let name = format!("envfs-{tag}{}", std::process::id());
        let out = user_tool(&["groupadd", &name]).expect("groupadd missing");
        assert!(
            out.status.success(),
            "groupadd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let group = TestGroup {
            gid: gid_of_group(&name),
            name,
        };
        for u in members {
            let out =
                user_tool(&["usermod", "-a", "-G", &group.name, &u.name]).expect("usermod missing");
            assert!(
                out.status.success(),
                "usermod -a -G {} {}: {}",
                group.name,
                u.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        group
    }
}

fn gid_of_group(name: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = user_tool(&["groupdel", &self.name]);
    }
}
