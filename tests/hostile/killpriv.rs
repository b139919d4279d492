//! Setuid and setgid bits are cleared when another user changes a file
//! (write, truncate, open with O_TRUNC, fallocate) exactly as ext4 clears them: setuid always,
//! setgid when the file is group-executable or the writer is not in its
//! group, and nothing for a writer with CAP_FSETID. The oracle is the same
//! sequence on a plain directory of the local filesystem, and each case
//! also states the mode it must end with.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::*;

/// One file: its mode and group when root creates it, the mode it must have
/// after the change (what ext4 gives).
struct Case {
    mode: u32,
    gid: u32,
    after: u32,
}

const CASES: &[Case] = &[
    // setuid: always cleared.
    Case {
        mode: 0o4757,
        gid: 0,
        after: 0o0757,
    },
    // setgid, group-executable: cleared.
    Case {
        mode: 0o2757,
        gid: 0,
        after: 0o0757,
    },
    // setgid, not group-executable, writer not in the group: cleared.
    Case {
        mode: 0o2747,
        gid: 0,
        after: 0o0747,
    },
    Case {
        mode: 0o6747,
        gid: 0,
        after: 0o0747,
    },
    // setgid, not group-executable, writer in the group: kept.
    Case {
        mode: 0o2767,
        gid: NOBODY,
        after: 0o2767,
    },
    // setgid, group-executable, writer in the group: cleared.
    Case {
        mode: 0o2777,
        gid: NOBODY,
        after: 0o0777,
    },
    // No special bits: nothing to do.
    Case {
        mode: 0o0757,
        gid: 0,
        after: 0o0757,
    },
];

/// The change `nobody` makes to `f`, as a shell command.
fn change(op: &str, f: &Path) -> String {
    let f = f.display();
    match op {
        "write" => format!("printf X | dd of={f} conv=notrunc status=none"),
        "truncate" => format!("truncate -s 100 {f}"),
        "fallocate" => format!("fallocate -l 8192 {f}"),
        "open-trunc" => format!("printf X > {f}"),
        _ => unreachable!(),
    }
}

/// Create every case's file in `dir` as root; return (file, case, op).
fn plant(dir: &Path, ops: &[&'static str]) -> Vec<(PathBuf, &'static Case, &'static str)> {
    let mut out = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        for op in ops {
            let f = dir.join(format!("f{i}-{op}"));
            std::fs::write(&f, b"hello").unwrap();
            std::os::unix::fs::chown(&f, Some(0), Some(c.gid)).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(c.mode)).unwrap();
            assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, c.mode);
            out.push((f, c, *op));
        }
    }
    out
}

#[test]
fn other_users_changes_clear_setuid_and_setgid_as_ext4_does() {
    if !need_root("killpriv::other_users_changes_clear_setuid_and_setgid_as_ext4_does") {
        return;
    }
    let ops = ["write", "truncate", "fallocate", "open-trunc"];
    let env = Env::shared();
    let plain = env.path("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cipher = env.init("c", &[]);
    let m = env.mount(&cipher, "m", &["--allow-other"]);
    let dir = m.p("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();

    let oracle = plant(&plain, &ops);
    let mounted = plant(&dir, &ops);
    let script: Vec<String> = oracle
        .iter()
        .chain(mounted.iter())
        .map(|(f, _, op)| change(op, f))
        .collect();
    let script = script.join(" && ");
    let out = bounded(60, move || as_nobody(&script).output().unwrap());
    assert!(
        out.status.success(),
        "as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut wrong = Vec::new();
    for ((pf, c, op), (mf, _, _)) in oracle.iter().zip(mounted.iter()) {
        let (want, got) = (mode_of(pf), mode_of(mf));
        assert_eq!(
            want, c.after,
            "oracle: {op} on {:04o} (gid {}) gave {want:04o} on the local filesystem",
            c.mode, c.gid
        );
        if got != want {
            wrong.push(format!(
                "{op} on {:04o} (gid {}): {got:04o}, ext4 gives {want:04o}",
                c.mode, c.gid
            ));
        }
        assert_eq!(
            std::fs::metadata(mf).unwrap().len(),
            std::fs::metadata(pf).unwrap().len()
        );
    }
    assert!(
        wrong.is_empty(),
        "modes after nobody's change:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn root_changes_keep_setuid_and_setgid() {
    if !need_root("killpriv::root_changes_keep_setuid_and_setgid") {
        return;
    }
    let env = Env::shared();
    let cipher = env.init("c", &[]);
    let m = env.mount(&cipher, "m", &["--allow-other"]);
    // CAP_FSETID: root's own changes clear nothing, on ext4 as here.
    for (i, op) in ["write", "truncate", "fallocate"].iter().enumerate() {
        let f = m.p(&format!("r{i}"));
        std::fs::write(&f, b"hello").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o6745)).unwrap();
        let script = change(op, &f);
        let st = bounded(30, move || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .status()
                .unwrap()
        });
        assert!(st.success());
        assert_eq!(mode_of(&f), 0o6745, "root's {op}");
    }
}

/// A caller that is root only inside its own user namespace has no
/// CAP_FSETID on the files of the host (the kernel checks `capable()`
/// against the initial namespace), so ext4 clears the setgid bit of a
/// non-group-executable file it writes when it is not in the file's group.
/// `CapEff` in /proc/PID/status shows the namespace's full set: the daemon
/// must not count it (it once kept the bit).
#[test]
fn killpriv_user_namespace_root_has_no_fsetid() {
    if !need_root("killpriv_user_namespace_root_has_no_fsetid") {
        return;
    }
    // Precondition: unprivileged user namespaces (else the attack is moot).
    if !as_nobody("unshare -Ur true").status().unwrap().success() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nobody cannot unshare -Ur here (CI=true: a missing prerequisite fails)"
        );
        skip(
            "killpriv_user_namespace_root_has_no_fsetid",
            "no unprivileged user namespaces",
        );
        return;
    }
    let env = Env::shared();
    let (plain, cipher, _m, dir) = oracle_and_mount(&env);
    let (pf, mf) = (plain.join("f"), dir.join("f"));
    for f in [&pf, &mf] {
        fs::write(f, b"hello").unwrap();
        std::os::unix::fs::chown(f, Some(0), Some(0)).unwrap();
        fs::set_permissions(f, fs::Permissions::from_mode(0o2747)).unwrap();
    }
    let script = format!(
        "unshare -Ur sh -c 'printf X | dd of={} conv=notrunc status=none && \
         printf X | dd of={} conv=notrunc status=none'",
        pf.display(),
        mf.display()
    );
    let out = bounded(60, move || as_nobody(&script).output().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        format!("{:04o}", mode_of(&pf)),
        "0747",
        "oracle: the local filesystem clears"
    );
    // The backing file holds the mode the daemon left (the mount's view may
    // lag by the attribute TTL).
    let b = backing_path(&cipher, &mf);
    assert_eq!(
        format!("{:04o}", mode_of(&b)),
        "0747",
        "a user-namespace root kept the setgid bit through the mount"
    );
}

/// chown and chgrp clear setuid always (root's too) and setgid when the file
/// is group-executable or the caller is neither in the file's group (before
/// the change) nor holds CAP_FSETID: the VFS rule (chown_common), which the
/// daemon applies itself since it handles FUSE_HANDLE_KILLPRIV_V2 (the
/// kernel then sends no mode change of its own). The oracle is the same
/// sequence on the local filesystem.
#[test]
fn chown_clears_setuid_and_setgid_as_the_vfs_does() {
    if !need_root("killpriv::chown_clears_setuid_and_setgid_as_the_vfs_does") {
        return;
    }
    let env = Env::shared();
    let (plain, _cipher, _m, dir) = oracle_and_mount(&env);
    let mut cases = Vec::new();
    for mode in [0o4755, 0o2747, 0o2757, 0o6745, 0o2745] {
        for (uid, gid) in [(0, 0), (NOBODY, 0), (NOBODY, NOBODY)] {
            for by_root in [true, false] {
                cases.push((mode, uid, gid, by_root));
            }
        }
    }
    let mut scripts = (Vec::new(), Vec::new());
    let mut files = Vec::new();
    for (i, &(mode, uid, gid, by_root)) in cases.iter().enumerate() {
        let (pf, mf) = (plain.join(format!("f{i}")), dir.join(format!("f{i}")));
        for f in [&pf, &mf] {
            fs::write(f, b"hello").unwrap();
            std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
            fs::set_permissions(f, fs::Permissions::from_mode(mode)).unwrap();
            let script = if by_root {
                &mut scripts.0
            } else {
                &mut scripts.1
            };
            // Only the owner may chgrp; a refused one changes nothing.
            script.push(format!(
                "chgrp {NOBODY} {} 2>/dev/null || true",
                f.display()
            ));
        }
        files.push((pf, mf));
    }
    let (root_script, nobody_script) = (scripts.0.join("; "), scripts.1.join("; "));
    let out = bounded(60, move || {
        let root = std::process::Command::new("sh")
            .arg("-c")
            .arg(root_script)
            .output()
            .unwrap();
        (root, as_nobody(&nobody_script).output().unwrap())
    });
    assert!(out.0.status.success() && out.1.status.success());
    let mut wrong = Vec::new();
    for (&(mode, uid, gid, by_root), (pf, mf)) in cases.iter().zip(&files) {
        let (want, got) = (mode_of(pf), mode_of(mf));
        if want != got {
            let who = if by_root { "root" } else { "nobody" };
            wrong.push(format!(
                "chgrp by {who} of {mode:04o} {uid}:{gid}: {got:04o}, the VFS gives {want:04o}"
            ));
        }
    }
    assert!(wrong.is_empty(), "modes after chgrp:\n{}", wrong.join("\n"));
}

/// The mode stat(1) shows: from the kernel's cache while it is valid (std's
/// metadata asks statx for more than the basic fields, which makes FUSE ask
/// the daemon every time).
fn shown_mode(f: &Path) -> String {
    let out = std::process::Command::new("stat")
        .args(["-c", "%a"])
        .arg(f)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The mode the kernel shows right after another user's write cleared
/// setuid/setgid is the new one: the daemon clears the bits itself
/// (FUSE_HANDLE_KILLPRIV_V2), so the kernel's cached mode must be dropped,
/// with and without writeback caching.
#[test]
fn mode_shown_right_after_a_clearing_write_is_the_new_one() {
    if !need_root("killpriv::mode_shown_right_after_a_clearing_write_is_the_new_one") {
        return;
    }
    let env = Env::shared();
    let cipher = env.init("c", &[]);
    for (mnt, flags) in [("m", &[][..]), ("n", &["--no-writeback-cache"][..])] {
        let mut flags = flags.to_vec();
        flags.push("--allow-other");
        let m = env.mount(&cipher, mnt, &flags);
        let dir = m.p(mnt);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let mut files = Vec::new();
        for (i, (mode, after)) in [(0o4757, 0o0757), (0o2757, 0o0757), (0o2747, 0o0747)]
            .into_iter()
            .enumerate()
        {
            let f = dir.join(format!("f{i}"));
            fs::write(&f, b"hello").unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                shown_mode(&f),
                format!("{mode:o}"),
                "cached before the write"
            );
            files.push((f, mode, after));
        }
        for (f, mode, after) in &files {
            let script = change("write", f);
            let out = bounded(60, move || as_nobody(&script).output().unwrap());
            assert!(out.status.success());
            assert_eq!(
                shown_mode(f),
                format!("{after:o}"),
                "{flags:?}: shown right after nobody's write to a {mode:04o} file"
            );
        }
        m.unmount();
    }
}

/// A world-writable local directory (the oracle) and a world-writable
/// directory in an `--allow-other` mount: the volume, the mount, the
/// directory.
fn oracle_and_mount(env: &Env) -> (PathBuf, PathBuf, Mount, PathBuf) {
    let plain = env.path("plain");
    fs::create_dir(&plain).unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o777)).unwrap();
    let cipher = env.init("c", &[]);
    let m = env.mount(&cipher, "m", &["--allow-other"]);
    let dir = m.p("d");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    (plain, cipher, m, dir)
}
