//! Interrupted copies and failed inits leave nothing behind; a later run
//! removes the partial copy of a killed one (decided by a lock, not a PID);
//! progress bars on a terminal only, reaching 100 % with a sane ETA.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

#[path = "common/mod.rs"]
mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A plain tree of real (not sparse) data: one large file, so a signal lands
/// inside a file, and a few small ones.
fn plain_tree(env: &Env, mib: usize) -> PathBuf {
    use std::io::Write;
    let plain = env.path("plain");
    fs::create_dir(&plain).unwrap();
    let chunk = pattern(7, 1 << 20);
    let mut f = fs::File::create(plain.join("big")).unwrap();
    for i in 0..mib {
        // Every MiB differs, so no chunk is all zeros or equal to another.
        let mut c = chunk.clone();
        c[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        f.write_all(&c).unwrap();
    }
    for i in 0..5 {
        fs::write(plain.join(format!("small{i}")), pattern(i, 10_000)).unwrap();
    }
    plain
}

/// Entries beside `dst` named like its partial copies.
fn partials_of(dst: &Path) -> Vec<String> {
    let name = dst.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = format!(".{name}.envelopefs-partial.");
    fs::read_dir(dst.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn key_id(env: &Env) -> String {
    let out = env.run_ok(&["kms", "create-key", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// Start `args`, wait until its partial copy of `dst` exists and the copy is
/// under way, and return the child stopped (SIGSTOP) there, so that however
/// fast the machine copies, the test acts in the middle of the copy.
fn start_copy(env: &Env, args: &[&str], dst: &Path) -> Running {
    start_copy_after(env, args, dst, 60)
}

/// [`start_copy`], stopped `ms` milliseconds after the partial appeared.
fn start_copy_after(env: &Env, args: &[&str], dst: &Path, ms: u64) -> Running {
    let child = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(Some(child));
    let t0 = Instant::now();
    while partials_of(dst).is_empty() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{args:?} ended ({st}) before its partial copy appeared");
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no partial copy");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Into the copy of the large file.
    std::thread::sleep(Duration::from_millis(ms));
    signal(&child, libc::SIGSTOP);
    assert!(
        child.try_wait().unwrap().is_none(),
        "{args:?} finished before it was stopped: make the tree larger"
    );
    child
}

/// A child is never left stopped: SIGCONT it after `sig`.
fn signal_stopped(child: &Child, sig: i32) {
    signal(child, sig);
    signal(child, libc::SIGCONT);
}

/// A child killed (and reaped) on drop: a failing test leaves no copy
/// running, or stopped, behind.
struct Running(Option<Child>);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().unwrap()
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with the pid of our own running child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Wait (bounded) for a child and collect its output.
fn finish(mut running: Running, secs: u64) -> Output {
    let mut child = running.0.take().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the command did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// The command ended with `code` and one line on stderr naming the signal.
fn assert_interrupted(out: &Output, code: i32, signame: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {} (stderr {err:?})",
        out.status
    );
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(
        err.starts_with("envelopefs: ") && err.contains(signame),
        "names the signal: {err:?}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn sigint_and_sigterm_during_snapshot_copy_and_create_remove_the_partial() {
    bounded(600, || {
        let env = Env::new();
        let plain = plain_tree(&env, 256);
        let src = env.path("src");
        env.run_ok(&["import", plain.to_str().unwrap(), src.to_str().unwrap()]);
        fs::remove_dir_all(&plain).unwrap();
        let k = key_id(&env);
        // `snapshot create` copies with copy_file_range, fast: stopped as
        // soon as its partial appears.
        for (create, delay, sig, code, name) in [
            (false, 60, libc::SIGINT, 130, "SIGINT"),
            (false, 60, libc::SIGTERM, 143, "SIGTERM"),
            (true, 0, libc::SIGINT, 130, "SIGINT"),
        ] {
            let dst = env.path("dst");
            let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
            let args = if create {
                vec!["snapshot", "create", s, d]
            } else {
                vec!["snapshot", "copy", s, d, "--key", &k, "--mode", "reencrypt"]
            };
            let child = start_copy_after(&env, &args, &dst, delay);
            let t = Instant::now();
            signal_stopped(&child, sig);
            let out = finish(child, 60);
            assert_interrupted(&out, code, name);
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{args:?} {name}: stopped at once, not after the copy ({:?})",
                t.elapsed()
            );
            assert!(!dst.exists(), "{args:?} {name}: no destination");
            assert_eq!(
                partials_of(&dst),
                Vec::<String>::new(),
                "{args:?} {name}: no partial"
            );
        }
    });
}

#[test]
fn sigint_and_sigterm_during_import_remove_the_partial() {
    bounded(600, || {
        let env = Env::new();
        key_id(&env); // the key store exists: its creation says so on stderr
        let plain = plain_tree(&env, 256);
        for (sig, code, name) in [
            (libc::SIGINT, 130, "SIGINT"),
            (libc::SIGTERM, 143, "SIGTERM"),
        ] {
            let dst = env.path("vol");
            let args = ["import", plain.to_str().unwrap(), dst.to_str().unwrap()];
            let child = start_copy(&env, &args, &dst);
            signal_stopped(&child, sig);
            let out = finish(child, 60);
            assert_interrupted(&out, code, name);
            assert!(!dst.exists(), "{name}: no destination");
            assert_eq!(
                partials_of(&dst),
                Vec::<String>::new(),
                "{name}: no partial"
            );
        }
    });
}

#[test]
fn the_partial_of_a_killed_run_is_removed_by_the_next() {
    bounded(600, || {
        let env = Env::new();
        let plain = plain_tree(&env, 256);
        let dst = env.path("vol");
        let args = ["import", plain.to_str().unwrap(), dst.to_str().unwrap()];
        let mut child = start_copy(&env, &args, &dst);
        child.kill().unwrap();
        child.wait().unwrap();
        let left = partials_of(&dst);
        assert_eq!(left.len(), 1, "kill -9 leaves the partial: {left:?}");
        let stale = env.path(&left[0]);
        // The next run (a small import to the same name) removes it and says so.
        let small = env.path("small");
        fs::create_dir(&small).unwrap();
        fs::write(small.join("f"), b"x").unwrap();
        let out = env.run(&["import", small.to_str().unwrap(), dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "import: {err}");
        assert!(
            err.lines().any(|l| l
                == format!(
                    "envelopefs: removed a partial copy left by an interrupted run: {}",
                    stale.display()
                )),
            "says what it removed: {err:?}"
        );
        assert_eq!(partials_of(&dst), Vec::<String>::new());
        assert!(dst.join("envelopefs.conf").exists());
    });
}

#[test]
fn a_partial_held_by_a_running_copy_or_not_a_directory_is_left_alone() {
    bounded(300, || {
        let env = Env::new();
        let dst = env.path("vol");
        // A partial another run holds (its flock on the directory).
        let held = env.path(".vol.envelopefs-partial.held");
        fs::create_dir(&held).unwrap();
        fs::write(held.join("data"), b"being built").unwrap();
        let lock = fs::File::open(&held).unwrap();
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(r, 0);
        // One nobody holds.
        let stale = env.path(".vol.envelopefs-partial.stale");
        fs::create_dir_all(stale.join("sub")).unwrap();
        fs::write(stale.join("sub/data"), b"left over").unwrap();
        // The marker every partial carries from before it has this name.
        fs::write(stale.join("envelopefs.partial"), b"").unwrap();
        // A planted symlink (to a directory with data) and a plain file
        // named like partials: never followed, never removed.
        let victim = env.path("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, env.path(".vol.envelopefs-partial.link")).unwrap();
        fs::write(env.path(".vol.envelopefs-partial.file"), b"file").unwrap();
        // The partial of another destination.
        let other = env.path(".other.envelopefs-partial.x");
        fs::create_dir(&other).unwrap();

        let small = env.path("small");
        fs::create_dir(&small).unwrap();
        fs::write(small.join("f"), b"x").unwrap();
        let out = env.run(&["import", small.to_str().unwrap(), dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "import: {err}");

        assert!(!stale.exists(), "the unheld partial is removed");
        assert_eq!(err.matches("removed a partial copy").count(), 1, "{err:?}");
        assert_eq!(fs::read(held.join("data")).unwrap(), b"being built");
        assert!(env
            .path(".vol.envelopefs-partial.link")
            .symlink_metadata()
            .is_ok());
        assert_eq!(fs::read(victim.join("keep")).unwrap(), b"keep");
        assert_eq!(
            fs::read(env.path(".vol.envelopefs-partial.file")).unwrap(),
            b"file"
        );
        assert!(other.exists(), "another destination's partial stays");
        drop(lock);
    });
}

#[test]
fn a_parallel_copy_to_the_same_name_keeps_the_running_ones_partial() {
    bounded(600, || {
        let env = Env::new();
        let plain = plain_tree(&env, 256);
        let dst = env.path("vol");
        let args = ["import", plain.to_str().unwrap(), dst.to_str().unwrap()];
        let first = start_copy(&env, &args, &dst);
        let running = partials_of(&dst);
        assert_eq!(running.len(), 1);
        // A second run to the same name: it must not remove the first one's
        // partial (it fails at the end, when the name is taken, or finishes
        // first and the first one fails).
        let small = env.path("small");
        fs::create_dir(&small).unwrap();
        fs::write(small.join("f"), b"x").unwrap();
        let second = env.run(&["import", small.to_str().unwrap(), dst.to_str().unwrap()]);
        let err2 = String::from_utf8_lossy(&second.stderr);
        assert!(!err2.contains("removed a partial"), "{err2:?}");
        assert!(
            partials_of(&dst).contains(&running[0]),
            "the running copy's partial is still there"
        );
        signal(&first, libc::SIGCONT);
        let out1 = finish(first, 300);
        // The small import won the name; the large one is refused at its end
        // and removes its own partial.
        assert!(second.status.success(), "{err2}");
        assert!(!out1.status.success());
        assert_eq!(partials_of(&dst), Vec::<String>::new());
    });
}

#[test]
fn init_with_an_unknown_key_leaves_nothing_behind() {
    let env = Env::new();
    // No key store yet, a cipher dir under a missing parent.
    let vol = env.path("new/parent/vol");
    let out = env.run(&["init", vol.to_str().unwrap(), "--key", "alias/nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(16), "NotFound: {err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(!env.path("new").exists(), "no directory made");
    assert!(!env.path("ks").exists(), "no key store made");
    // A directory that is not empty: refused before a store is made.
    let full = env.path("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("f"), b"x").unwrap();
    let out = env.run(&["init", full.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "usage");
    assert!(!env.path("ks").exists(), "no key store made");

    // With a store: an existing empty directory stays empty, the store
    // holds the same keys.
    key_id(&env);
    let keys = env.run_ok(&["kms", "list-keys", "--output", "json"]);
    let empty = env.path("empty");
    fs::create_dir(&empty).unwrap();
    for dir in [&empty, &vol] {
        let out = env.run(&["init", dir.to_str().unwrap(), "--key", "alias/nope"]);
        assert_eq!(out.status.code(), Some(16));
    }
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "still empty");
    assert!(!env.path("new").exists(), "no directory made");
    assert_eq!(env.run_ok(&["kms", "list-keys", "--output", "json"]), keys);
}

/// `cmd` run under a pseudo-terminal (`script`); what the terminal showed.
fn under_pty(env: &Env, cmd: &str) -> (i32, String) {
    let out = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("ENVELOPEFS_KEYSTORE", env.path("ks"))
        .env("ENVELOPEFS_PASSPHRASE_FILE", env.path("pass"))
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every "ETA hh:mm:ss" shown, in seconds (one that does not read as
/// hh:mm:ss, such as indicatif's "1d 02:00:00", counts as too long).
fn etas(shown: &str) -> Vec<u64> {
    shown
        .split("ETA ")
        .skip(1)
        .map(|s| {
            let t: Option<Vec<u64>> = s
                .get(..8)
                .and_then(|t| t.split(':').map(|x| x.parse().ok()).collect());
            match t {
                Some(t) if t.len() == 3 => t[0] * 3600 + t[1] * 60 + t[2],
                _ => u64::MAX,
            }
        })
        .collect()
}

#[test]
fn progress_bar_on_a_terminal_reaches_100_percent_with_a_sane_eta() {
    bounded(300, || {
        if Command::new("script").arg("--version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "no script(1)");
            skip(
                "progress_bar_on_a_terminal_reaches_100_percent_with_a_sane_eta",
                "no script(1) (util-linux)",
            );
            return;
        }
        let env = Env::new();
        let plain = plain_tree(&env, 50);
        let vol = env.path("vol");
        let (code, shown) = under_pty(
            &env,
            &format!("{BIN} import {} {}", plain.display(), vol.display()),
        );
        assert_eq!(code, 0, "{shown}");
        assert!(shown.contains("100%"), "reaches 100 %: {shown:?}");
        let e = etas(&shown);
        assert!(!e.is_empty(), "an ETA is shown: {shown:?}");
        assert!(e.iter().all(|s| *s < 3600), "sane ETAs: {e:?}");

        // A copy: the same bar, in plaintext bytes (it reaches 100 % too).
        let k = key_id(&env);
        let dst = env.path("dst");
        let (code, shown) = under_pty(
            &env,
            &format!(
                "{BIN} snapshot copy {} {} --key {k} --mode reencrypt",
                vol.display(),
                dst.display()
            ),
        );
        assert_eq!(code, 0, "{shown}");
        assert!(shown.contains("100%"), "reaches 100 %: {shown:?}");
        assert!(etas(&shown).iter().all(|s| *s < 3600), "{shown:?}");

        // Standard output redirected: no bar (the terminal shows only stderr).
        let (code, shown) = under_pty(
            &env,
            &format!(
                "{BIN} import {} {} >/dev/null",
                plain.display(),
                env.path("vol2").display()
            ),
        );
        assert_eq!(code, 0, "{shown}");
        assert!(!shown.contains('%') && !shown.contains("ETA"), "{shown:?}");
    });
}

#[test]
fn no_progress_bar_without_a_terminal() {
    let env = Env::new();
    let plain = plain_tree(&env, 8);
    let out = env.run(&[
        "import",
        plain.to_str().unwrap(),
        env.path("vol").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains('%') && !err.contains("ETA") && !err.contains('\r'),
        "no bar on a pipe: {err:?}"
    );
}

/// A reader that went away (`envelopefs kms audit | head -1`) ends a command
/// quietly: exit 141 (128 + SIGPIPE), nothing on stderr, no panic.
#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let env = Env::new();
    let c = env.init("c", &[]);
    let cs = c.to_str().unwrap();
    let commands: [&[&str]; 6] = [
        &["info", cs],
        &["info", cs, "--output", "json"],
        &["kms", "list-keys"],
        &["kms", "list-aliases", "--output", "json"],
        &["kms", "audit"],
        &["fsck", cs],
    ];
    for args in commands {
        let (rd, wr) = std::io::pipe().unwrap();
        // The reader is gone before the command writes anything.
        drop(rd);
        let out = env
            .cmd()
            .args(args)
            .stdout(wr)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said: {err}");
    }
}

/// Only a partial this user's runs made (a directory owned by the effective
/// uid holding the regular file `envelopefs.partial`, owned likewise) is
/// removed: a directory someone else renamed into a partial's name (in a
/// world-writable directory anyone can rename another user's tree there), or
/// one marked by a file of another owner, is left alone, and the copy goes on.
#[test]
fn a_directory_named_like_a_partial_but_not_marked_as_ours_is_left_alone() {
    bounded(300, || {
        let env = Env::new();
        let dst = env.path("vol");
        // Root's data, renamed into a partial's name (as nobody could in a
        // 0777 non-sticky directory): no marker.
        let unmarked = env.path(".vol.envelopefs-partial.0123456789abcdef");
        fs::create_dir_all(unmarked.join("sub")).unwrap();
        fs::write(unmarked.join("sub/rootdata"), b"precious").unwrap();
        // Marked, but the marker belongs to someone else.
        let foreign = env.path(".vol.envelopefs-partial.fedcba9876543210");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("data"), b"also precious").unwrap();
        fs::write(foreign.join("envelopefs.partial"), b"").unwrap();
        std::os::unix::fs::lchown(foreign.join("envelopefs.partial"), Some(NOBODY), None).unwrap();
        // Marked by a symlink to a file of ours: not a regular file.
        let linked = env.path(".vol.envelopefs-partial.1111111111111111");
        fs::create_dir(&linked).unwrap();
        fs::write(env.path("ours"), b"").unwrap();
        std::os::unix::fs::symlink(env.path("ours"), linked.join("envelopefs.partial")).unwrap();

        let small = env.path("small");
        fs::create_dir(&small).unwrap();
        fs::write(small.join("f"), b"x").unwrap();
        let out = env.run(&["import", small.to_str().unwrap(), dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "import: {err}");
        assert!(!err.contains("removed a partial"), "{err:?}");
        assert_eq!(
            fs::read(unmarked.join("sub/rootdata")).unwrap(),
            b"precious"
        );
        assert_eq!(fs::read(foreign.join("data")).unwrap(), b"also precious");
        assert!(linked.join("envelopefs.partial").symlink_metadata().is_ok());
        for p in [&unmarked, &foreign, &linked] {
            assert!(
                err.lines().any(|l| l
                    == format!(
                        "envelopefs: left alone (named like a partial copy, but not one made by this user's runs): {}",
                        p.display()
                    )),
                "names {}: {err:?}",
                p.display()
            );
        }
        assert!(dst.join("envelopefs.conf").exists());
    });
}

/// The attack itself: in a 0777 non-sticky directory, nobody renames root's
/// private tree to the name of a partial of root's next snapshot; root's
/// `snapshot create` leaves it alone and succeeds.
#[test]
fn a_tree_renamed_into_a_partials_name_by_another_user_survives_snapshot_create() {
    if !need_root("a_tree_renamed_into_a_partials_name_by_another_user_survives_snapshot_create") {
        return;
    }
    bounded(300, || {
        use std::os::unix::fs::PermissionsExt;
        let env = Env::shared();
        let c = env.init("c", &[]);
        let shared = env.path("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let rootdata = shared.join("rootdata");
        fs::create_dir(&rootdata).unwrap();
        fs::set_permissions(&rootdata, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(rootdata.join("secret"), b"root's").unwrap();
        let planted = shared.join(".vol.envelopefs-partial.0123456789abcdef");
        let out = as_nobody(&format!("mv {} {}", rootdata.display(), planted.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dst = shared.join("vol");
        let out = env.run(&[
            "snapshot",
            "create",
            c.to_str().unwrap(),
            dst.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "snapshot create: {err}");
        assert!(!err.contains("removed a partial"), "{err:?}");
        assert_eq!(fs::read(planted.join("secret")).unwrap(), b"root's");
        assert!(dst.join("envelopefs.conf").exists());
    });
}
