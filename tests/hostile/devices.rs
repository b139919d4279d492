//! Device nodes and setuid bits planted in the backing directory: mounts are
//! `nodev,nosuid` unless `--dev`/`--suid` (root only) say otherwise, and fsck
//! names what it finds.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::*;

/// The mount options of the mount at `mnt`, from /proc/self/mountinfo.
fn mount_flags(mnt: &Path) -> Vec<String> {
    let canon = mnt.canonicalize().unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4).map(Path::new) == Some(canon.as_path()))
        .expect("the mount is listed");
    line.split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Replace the backing entry of `plain_name` (in the volume's root) by a
/// character device `1:5` (/dev/zero), readable by anyone.
fn plant_device(backing: &Path) {
    fs::remove_file(backing).unwrap();
    let cp = std::ffi::CString::new(backing.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string; makedev(1, 5) is /dev/zero.
    let r = unsafe { libc::mknod(cp.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
}

#[test]
fn planted_device_node_does_not_open_the_device() {
    if !need_root("planted_device_node_does_not_open_the_device") {
        return;
    }
    bounded(120, || {
        let env = Env::shared();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &["--allow-other"]);
        fs::write(m.p("f"), b"secret").unwrap();
        let b = backing_path(&c, &m.p("f"));
        m.unmount();
        plant_device(&b);

        let m = env.mount(&c, "m", &["--allow-other"]);
        let e = fs::File::open(m.p("f")).expect_err("a device node must not open");
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        let flags = mount_flags(&m.mnt);
        assert!(
            flags.iter().any(|f| f == "nodev") && flags.iter().any(|f| f == "nosuid"),
            "default mount options {flags:?}"
        );
        // Nor for another user.
        let out = as_nobody(&format!("head -c 4 {}/f", m.mnt.display()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "nobody read the device");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        m.unmount();

        // fsck names it, as a warning with the backing path.
        let out = env.run(&["fsck", c.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        let rel = b.strip_prefix(&c).unwrap().display().to_string();
        assert!(
            text.lines()
                .any(|l| l.starts_with("warning: /f") && l.contains(&rel) && l.contains("1:5")),
            "fsck output: {text}"
        );
    });
}

#[test]
fn planted_setuid_bit_does_not_raise_privilege() {
    if !need_root("planted_setuid_bit_does_not_raise_privilege") {
        return;
    }
    bounded(120, || {
        let env = Env::shared();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &["--allow-other"]);
        fs::copy("/usr/bin/id", m.p("id")).unwrap();
        fs::set_permissions(m.p("id"), fs::Permissions::from_mode(0o755)).unwrap();
        let b = backing_path(&c, &m.p("id"));
        m.unmount();
        // The attacker of the backing directory sets the setuid bit on a
        // root-owned executable.
        fs::set_permissions(&b, fs::Permissions::from_mode(0o4755)).unwrap();

        let m = env.mount(&c, "m", &["--allow-other"]);
        let out = as_nobody(&format!("{}/id -u", m.mnt.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            NOBODY.to_string(),
            "the effective uid through a nosuid mount"
        );
        m.unmount();
        let out = env.run(&["fsck", c.to_str().unwrap()]);
        assert!(out.status.success(), "warnings are not damage");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines()
                .any(|l| l.starts_with("warning: /id") && l.contains("setuid bit")),
            "fsck output: {text}"
        );
    });
}

#[test]
fn dev_and_suid_opt_in_for_root_only() {
    if !need_root("dev_and_suid_opt_in_for_root_only") {
        return;
    }
    bounded(120, || {
        let env = Env::shared();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &["--dev", "--suid"]);
        let flags = mount_flags(&m.mnt);
        assert!(
            !flags.iter().any(|f| f == "nodev" || f == "nosuid"),
            "--dev --suid mount options {flags:?}"
        );
        m.unmount();
        // An unprivileged user may not ask for them: a usage error (2)
        // before anything else happens.
        fs::create_dir(env.path("m2")).unwrap();
        fs::set_permissions(env.path("m2"), fs::Permissions::from_mode(0o777)).unwrap();
        for flag in ["--dev", "--suid"] {
            let out = as_nobody(&format!(
                "{} mount {} {} {flag}",
                env.shared_bin().display(),
                c.display(),
                env.path("m2").display()
            ))
            .output()
            .unwrap();
            assert_eq!(out.status.code(), Some(2), "{flag}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("need root") && err.lines().count() == 1,
                "{err}"
            );
        }
    });
}

#[test]
fn allow_other_warns_when_others_may_write_the_cipher_directory() {
    if !need_root("allow_other_warns_when_others_may_write_the_cipher_directory") {
        return;
    }
    bounded(120, || {
        let env = Env::shared();
        let c = env.init("c", &[]);
        fs::set_permissions(&c, fs::Permissions::from_mode(0o755)).unwrap();
        let quiet = env.mount(&c, "m", &["--allow-other"]).unmount();
        assert!(!quiet.contains("is writable by"), "{quiet}");
        for (mode, owner, who) in [
            (0o757, 0, "every user"),
            (0o775, 0, "group 0"),
            (0o755, NOBODY, "its owner (uid 65534)"),
        ] {
            fs::set_permissions(&c, fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(&c, Some(owner), None).unwrap();
            let m = env.mount(&c, "m", &["--allow-other"]);
            m.expect_log("is writable by");
            let log = m.unmount();
            let line = log
                .lines()
                .find(|l| l.contains("is writable by"))
                .unwrap_or_else(|| panic!("no warning for mode {mode:o} uid {owner}: {log}"));
            assert!(line.contains(who), "{line}");
        }
        // Without --allow-other only the owner reaches the mount: no warning.
        let quiet = env.mount(&c, "m", &[]).unmount();
        assert!(!quiet.contains("is writable by"), "{quiet}");
    });
}

/// Mounts are nodev,nosuid; `snapshot create` (root) copies the backing tree
/// raw and must not re-create planted device nodes or setuid files on the
/// host's filesystem: a disk mounted nodev,nosuid (udisks does that for
/// removable media) once became a world-writable device node and a
/// setuid-root program of the attacker's bytes.
#[test]
fn snapshot_does_not_recreate_planted_devices_or_setuid_files() {
    if !need_root("snapshot_does_not_recreate_planted_devices_or_setuid_files") {
        return;
    }
    let env = Env::new();
    let c = env.init("c", &[]);
    let dev = c.join("planteddevice");
    let cd = std::ffi::CString::new(dev.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string; 1:3 is /dev/null (harmless for the test).
    let r = unsafe { libc::mknod(cd.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
    let suid = c.join("plantedsuid");
    fs::copy("/usr/bin/id", &suid).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();

    let snap = env.path("snap");
    env.run_ok(&[
        "snapshot",
        "create",
        c.to_str().unwrap(),
        snap.to_str().unwrap(),
    ]);
    let mut bad = Vec::new();
    for e in fs::read_dir(&snap).unwrap() {
        let p = e.unwrap().path();
        let md = fs::symlink_metadata(&p).unwrap();
        let fmt = md.mode() & libc::S_IFMT;
        if fmt == libc::S_IFCHR || fmt == libc::S_IFBLK {
            bad.push(format!("{}: device node", p.display()));
        }
        if md.mode() & (libc::S_ISUID | libc::S_ISGID) != 0 {
            bad.push(format!("{}: mode {:04o}", p.display(), md.mode() & 0o7777));
        }
    }
    assert!(
        bad.is_empty(),
        "the snapshot re-created:\n{}",
        bad.join("\n")
    );
}
