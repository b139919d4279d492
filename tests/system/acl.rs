//! POSIX ACLs, trusted.* and security.* xattrs, RENAME_WHITEOUT, and
//! overlayfs with its upper and work directories inside a mount (issue 14).
//!
//! Where ext4 is the reference (mode and ACL interplay), the same script runs
//! in a plain directory of the test's temp dir (ext4 or tmpfs, both with the
//! kernel's generic ACL code) and in the mount, and the outputs must match.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

fn sh(dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Run `script` in `dir`; its stdout, failing the test if it fails.
fn sh_ok(dir: &Path, script: &str) -> String {
    let out = sh(dir, script);
    assert!(
        out.status.success(),
        "`{script}` in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Skip (or, under CI=true, fail) when the acl package is missing.
fn have_acl_tools(test: &str) -> bool {
    let ok = Command::new("setfacl").arg("--version").output().is_ok()
        && Command::new("getfacl").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: setfacl/getfacl missing (CI=true)"
        );
        skip(test, "setfacl/getfacl (package acl) missing");
    }
    ok
}

/// The backing xattr names of the entry behind `in_mount`: only the volume's
/// own encrypted ones (`user.e.*`, the header and tail copy xattrs), never a real ACL or a
/// trusted.* / security.* name in the clear.
fn assert_backing_xattrs_encrypted(cipher: &Path, in_mount: &Path) {
    let b = backing_path(cipher, in_mount);
    for n in xattr_list(&b) {
        assert!(
            n.starts_with("user.e.")
                || n == "user.envelopefs.header"
                || n == "user.envelopefs.tail",
            "backing {} carries xattr {n}",
            b.display()
        );
    }
}

#[test]
fn setfacl_getfacl_round_trip_survives_remount() {
    if !need_root("setfacl_getfacl_round_trip_survives_remount")
        || !have_acl_tools("setfacl_getfacl_round_trip_survives_remount")
    {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        sh_ok(
            &m.mnt,
            "echo hi > f && mkdir d && chmod 0640 f && \
             setfacl -m u:nobody:rw,g:daemon:r f && \
             setfacl -m u:nobody:rx d && setfacl -d -m u:nobody:rwx,g:daemon:rx d",
        );
        let before = sh_ok(&m.mnt, "getfacl -n f d");
        assert!(before.contains("user:65534:rw-"), "{before}");
        assert!(before.contains("group:1:r--"), "{before}");
        assert!(before.contains("mask::rw-"), "{before}");
        assert!(before.contains("default:user:65534:rwx"), "{before}");
        // The mode's group bits are the mask.
        assert_eq!(mode_of(&m.p("f")), 0o660);
        // Stored encrypted in the backing directory, not as backing ACLs.
        assert_backing_xattrs_encrypted(&c, &m.p("f"));
        assert_backing_xattrs_encrypted(&c, &m.p("d"));
        // Listed like other xattrs.
        let names = xattr_list(&m.p("d"));
        assert!(
            names.contains(&"system.posix_acl_access".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"system.posix_acl_default".to_string()),
            "{names:?}"
        );
        m.unmount();
        let m = env.mount(&c, "m", &[]);
        assert_eq!(sh_ok(&m.mnt, "getfacl -n f d"), before);
        // Removing them: back to the plain mode.
        sh_ok(&m.mnt, "setfacl -b f d");
        let after = sh_ok(&m.mnt, "getfacl -n f d");
        assert!(!after.contains("65534"), "{after}");
        assert!(xattr_get(&m.p("f"), "system.posix_acl_access").is_none());
        m.unmount();
    });
}

#[test]
fn acl_entry_grants_another_user_and_its_removal_denies() {
    if !need_root("acl_entry_grants_another_user_and_its_removal_denies")
        || !have_acl_tools("acl_entry_grants_another_user_and_its_removal_denies")
    {
        return;
    }
    bounded(120, || {
        let env = Env::shared();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &["--allow-other"]);
        fs::set_permissions(&m.mnt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let f = m.p("secret");
        fs::write(&f, b"for nobody's eyes\n").unwrap();
        fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let cat = format!("cat {}", f.display());
        let out = as_nobody(&cat).output().unwrap();
        assert!(!out.status.success(), "nobody read a 0600 root file");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        sh_ok(&m.mnt, "setfacl -m u:nobody:r secret");
        let out = as_nobody(&cat).output().unwrap();
        assert!(
            out.status.success(),
            "the ACL entry u:nobody:r did not let nobody read: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"for nobody's eyes\n");
        // Read, not write.
        let out = as_nobody(&format!("echo x >> {}", f.display()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "u:nobody:r let nobody write");
        // A mask of none takes the entry's effect away.
        sh_ok(&m.mnt, "setfacl -m m::- secret");
        assert!(!as_nobody(&cat).output().unwrap().status.success());
        sh_ok(
            &m.mnt,
            "setfacl -m m::r secret && setfacl -x u:nobody secret",
        );
        let out = as_nobody(&cat).output().unwrap();
        assert!(
            !out.status.success(),
            "nobody read after the entry was removed"
        );
        m.unmount();
    });
}

/// What `script` leaves, as getfacl and stat show it, run in `dir`.
fn acl_state(dir: &Path, script: &str, paths: &str) -> String {
    sh_ok(dir, script);
    sh_ok(
        dir,
        &format!("getfacl -n {paths} && stat -c '%n %a %F' {paths}"),
    )
}

/// The same script in a plain directory (ext4 or tmpfs) and in the mount.
fn same_as_reference(env: &Env, m: &Mount, script: &str, paths: &str) -> String {
    let reference = env.path("reference");
    fs::create_dir_all(&reference).unwrap();
    let want = acl_state(&reference, script, paths);
    let got = acl_state(&m.mnt, script, paths);
    assert_eq!(got, want, "mount and reference differ after `{script}`");
    got
}

#[test]
fn default_acl_is_inherited_as_by_ext4() {
    if !need_root("default_acl_is_inherited_as_by_ext4")
        || !have_acl_tools("default_acl_is_inherited_as_by_ext4")
    {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        // The umask does not apply under a default ACL, and applies without one.
        let script = "mkdir d plain && echo 0 > d/before && chmod 0750 d && \
             setfacl -d -m u::rwx,g::rx,o::-,u:nobody:rwx,g:daemon:rx,m::rwx d && \
             umask 077 && echo x > d/f && mkdir d/s && echo y > d/s/g && \
             (umask 027; mkdir -m 0777 d/wide; echo z > plain/u)";
        let got = same_as_reference(
            &env,
            &m,
            script,
            "d d/before d/f d/s d/s/g d/wide plain plain/u",
        );
        assert!(
            got.contains(
                "# file: d/f\n# owner: 0\n# group: 0\nuser::rw-\nuser:65534:rwx\t#effective:rw-"
            ),
            "{got}"
        );
        assert!(got.contains("default:user:65534:rwx"), "{got}");
        assert!(got.contains("d/f 660 regular file"), "{got}");
        assert!(got.contains("plain/u 640 regular file"), "{got}");
        assert_backing_xattrs_encrypted(&c, &m.p("d/s"));
        assert_backing_xattrs_encrypted(&c, &m.p("d/f"));
        m.unmount();
    });
}

/// Fifos and device nodes cannot carry an ACL here (Linux allows no user.*
/// xattr on them in the backing directory), so one made under a default ACL
/// gets what the ACL would let each class do on ext4 and never more: the
/// owner's and others' bits as there, and as group bits the owning group's
/// effective rights (its entry under the mask), not the mask, which would
/// give the owning group what only the named entries get. The named entries
/// themselves are lost (they fall to others). Regular files are as on ext4.
#[test]
fn special_files_under_a_default_acl_get_no_more_than_ext4_allows() {
    if !need_root("special_files_under_a_default_acl_get_no_more_than_ext4_allows")
        || !have_acl_tools("special_files_under_a_default_acl_get_no_more_than_ext4_allows")
    {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let script = "umask 022 && mkdir dd && chmod 0750 dd && \
             setfacl -d -m u:nobody:rw dd && mkfifo dd/p && mknod dd/n c 1 3 && touch dd/f";
        let reference = env.path("reference");
        fs::create_dir_all(&reference).unwrap();
        let modes = "stat -c '%n %a %F' dd/p dd/n dd/f";
        let want = acl_state(&reference, script, "dd/p dd/n dd/f");
        assert_eq!(
            sh_ok(&reference, modes),
            "dd/p 660 fifo\ndd/n 660 character special file\ndd/f 660 regular empty file\n"
        );
        assert!(
            want.contains("# file: dd/p\n# owner: 0\n# group: 0\nuser::rw-\nuser:65534:rw-\ngroup::r-x\t#effective:r--\nmask::rw-\nother::---\n"),
            "{want}"
        );
        sh_ok(&m.mnt, script);
        // Owner rw, owning group r (its effective right above), others none.
        assert_eq!(
            sh_ok(&m.mnt, modes),
            "dd/p 640 fifo\ndd/n 640 character special file\ndd/f 660 regular empty file\n"
        );
        let got = sh_ok(&m.mnt, "getfacl -n dd/p dd/n");
        assert_eq!(
            got,
            "# file: dd/p\n# owner: 0\n# group: 0\nuser::rw-\ngroup::r--\nother::---\n\n\
             # file: dd/n\n# owner: 0\n# group: 0\nuser::rw-\ngroup::r--\nother::---\n\n"
        );
        // The regular file inherits the ACL exactly as on ext4.
        assert_eq!(
            sh_ok(&m.mnt, "getfacl -n dd/f"),
            sh_ok(&reference, "getfacl -n dd/f")
        );
        // Setting an ACL on one is refused, not silently dropped.
        let out = sh(&m.mnt, "setfacl -m u:nobody:rw dd/p");
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        m.unmount();
    });
}

#[test]
fn chmod_sets_the_mask_and_the_mask_sets_the_mode() {
    if !need_root("chmod_sets_the_mask_and_the_mask_sets_the_mode")
        || !have_acl_tools("chmod_sets_the_mask_and_the_mask_sets_the_mode")
    {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let got = same_as_reference(
            &env,
            &m,
            "echo x > f && chmod 0640 f && setfacl -m u:nobody:rwx f && chmod g=r f",
            "f",
        );
        assert!(got.contains("mask::r--"), "{got}");
        assert!(got.contains("user:65534:rwx\t#effective:r--"), "{got}");
        assert!(got.contains("f 640 regular file"), "{got}");
        let got = same_as_reference(&env, &m, "setfacl -m m::rw f", "f");
        assert!(got.contains("f 660 regular file"), "{got}");
        // chmod on a directory with a default ACL leaves the default alone;
        // an ACL equal to a mode is no ACL (ext4 stores none).
        let got = same_as_reference(
            &env,
            &m,
            "mkdir e && setfacl -m u:nobody:rx -d -m u:nobody:rx e && chmod 0701 e && \
             echo y > g && setfacl -m u::rwx,g::r,o::- g",
            "e g",
        );
        assert!(got.contains("e 701 directory"), "{got}");
        assert!(got.contains("mask::---\n"), "{got}");
        assert!(got.contains("g 740 regular file"), "{got}");
        assert!(xattr_get(&m.p("g"), "system.posix_acl_access").is_none());
        m.unmount();
    });
}

/// setxattr as the caller (root), giving the errno on failure.
fn try_setxattr(p: &Path, name: &str, v: &[u8]) -> Result<(), i32> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of v.len() bytes.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr() as *const _, v.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn malformed_acl_values_are_einval() {
    if !need_root("malformed_acl_values_are_einval") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        let f = m.p("f");
        fs::write(&f, b"x").unwrap();
        const U: u32 = u32::MAX;
        let good = acl_xattr(&[
            (0x01, 6, U),
            (0x02, 4, 65534),
            (0x04, 4, U),
            (0x10, 4, U),
            (0x20, 0, U),
        ]);
        assert_eq!(try_setxattr(&f, "system.posix_acl_access", &good), Ok(()));
        assert_eq!(
            xattr_get(&f, "system.posix_acl_access").as_deref(),
            Some(&good[..])
        );
        let bad: Vec<Vec<u8>> = vec![
            vec![1, 2, 3],                                                        // short
            good[..good.len() - 3].to_vec(),                                      // torn entry
            acl_xattr(&[(0x01, 6, U), (0x20, 0, U)]),                             // no group entry
            acl_xattr(&[(0x01, 6, U), (0x02, 4, 9), (0x04, 4, U), (0x20, 0, U)]), // no mask
            acl_xattr(&[(0x01, 9, U), (0x04, 4, U), (0x20, 0, U)]),               // perm bits
            acl_xattr(&[(0x04, 4, U), (0x01, 6, U), (0x20, 0, U)]),               // order
            acl_xattr(&[(0x01, 6, U), (0x04, 4, U), (0x20, 0, U), (0x40, 0, U)]), // tag
            {
                let mut v = good.clone();
                v[0] = 3; // version
                v
            },
        ];
        // As ext4 answers: EINVAL, and EOPNOTSUPP for an unknown version.
        let reference = env.path("reference");
        fs::write(&reference, b"x").unwrap();
        for (i, b) in bad.iter().enumerate() {
            let want = if i == bad.len() - 1 {
                libc::EOPNOTSUPP
            } else {
                libc::EINVAL
            };
            assert_eq!(
                try_setxattr(&reference, "system.posix_acl_access", b),
                Err(want),
                "reference: {b:?}"
            );
            assert_eq!(
                try_setxattr(&f, "system.posix_acl_access", b),
                Err(want),
                "{b:?}"
            );
        }
        // The good ACL is still there.
        assert_eq!(
            xattr_get(&f, "system.posix_acl_access").as_deref(),
            Some(&good[..])
        );
        // A default ACL belongs to directories.
        assert_eq!(
            try_setxattr(&reference, "system.posix_acl_default", &good),
            Err(libc::EACCES)
        );
        assert_eq!(
            try_setxattr(&f, "system.posix_acl_default", &good),
            Err(libc::EACCES)
        );
        m.unmount();
    });
}

#[test]
fn trusted_and_security_xattrs_for_root_only() {
    if !need_root("trusted_and_security_xattrs_for_root_only") {
        return;
    }
    bounded(120, || {
        let env = Env::shared();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &["--allow-other"]);
        fs::set_permissions(&m.mnt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (f, d) = (m.p("f"), m.p("d"));
        fs::write(&f, b"x").unwrap();
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        for p in [&f, &d] {
            xattr_set(p, "trusted.overlay.opaque", b"TRUSTED-SECRET");
            xattr_set(p, "security.envtest", b"SECURITY-SECRET");
            assert_eq!(
                xattr_get(p, "trusted.overlay.opaque").as_deref(),
                Some(&b"TRUSTED-SECRET"[..])
            );
            let names = xattr_list(p);
            assert!(
                names.contains(&"trusted.overlay.opaque".to_string()),
                "{names:?}"
            );
            assert!(names.contains(&"security.envtest".to_string()), "{names:?}");
            assert_backing_xattrs_encrypted(&c, p);
        }
        assert!(backing_contains(&c, b"TRUSTED-SECRET").is_empty());
        assert!(backing_contains(&c, b"SECURITY-SECRET").is_empty());
        for p in [&f, &d] {
            let p = p.display();
            // Not seen, not listed, not set by another user.
            let out = as_nobody(&format!("getfattr -n trusted.overlay.opaque {p}"))
                .output()
                .unwrap();
            assert!(!out.status.success());
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("No such attribute"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = as_nobody(&format!("getfattr -d -m - {p}"))
                .output()
                .unwrap();
            let listed = String::from_utf8_lossy(&out.stdout);
            assert!(!listed.contains("trusted."), "{listed}");
            assert!(listed.contains("security.envtest"), "{listed}");
            for name in ["trusted.x", "security.x"] {
                let out = as_nobody(&format!("setfattr -n {name} -v 1 {p}"))
                    .output()
                    .unwrap();
                assert!(!out.status.success());
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
                    "{name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // File capabilities: seen after writes (which ask for them first),
        // and dropped by the next write, as on ext4.
        let g = m.p("g");
        fs::write(&g, b"before").unwrap();
        fs::write(&g, b"before again").unwrap();
        let mut caps = 0x0200_0001u32.to_le_bytes().to_vec(); // revision 2, effective
        for word in [1u32 << 13, 0, 0, 0] {
            caps.extend_from_slice(&word.to_le_bytes()); // cap_net_raw permitted
        }
        xattr_set(&g, "security.capability", &caps);
        assert_eq!(
            xattr_get(&g, "security.capability").as_deref(),
            Some(&caps[..])
        );
        fs::write(&g, b"after").unwrap();
        assert_eq!(xattr_get(&g, "security.capability"), None);
        m.unmount();
        let m = env.mount(&c, "m", &[]);
        assert_eq!(
            xattr_get(&m.p("d"), "security.envtest").as_deref(),
            Some(&b"SECURITY-SECRET"[..])
        );
        m.unmount();
    });
}

fn rename_whiteout(dir: &Path, from: &str, to: &str) -> Result<(), i32> {
    let d = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let (a, b) = (
        std::ffi::CString::new(from).unwrap(),
        std::ffi::CString::new(to).unwrap(),
    );
    // SAFETY: valid C strings; plain syscall.
    let r = unsafe {
        let fd = libc::open(d.as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
        assert!(fd >= 0);
        let r = libc::renameat2(fd, a.as_ptr(), fd, b.as_ptr(), libc::RENAME_WHITEOUT);
        let e = std::io::Error::last_os_error().raw_os_error().unwrap();
        libc::close(fd);
        if r == 0 {
            0
        } else {
            e
        }
    };
    if r == 0 {
        Ok(())
    } else {
        Err(r)
    }
}

fn is_whiteout(p: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = fs::symlink_metadata(p).unwrap();
    md.file_type().is_char_device() && md.rdev() == 0
}

#[test]
fn rename_whiteout_leaves_a_whiteout() {
    if !need_root("rename_whiteout_leaves_a_whiteout") {
        return;
    }
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &["--long-name-max", "64"]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("a"), b"data").unwrap();
        assert_eq!(rename_whiteout(&m.mnt, "a", "b"), Ok(()));
        assert!(is_whiteout(&m.p("a")), "no whiteout at the source");
        assert_eq!(fs::read(m.p("b")).unwrap(), b"data");
        // A long name keeps its side file for the whiteout.
        let long = "l".repeat(120);
        fs::write(m.p(&long), b"long").unwrap();
        assert_eq!(rename_whiteout(&m.mnt, &long, "c"), Ok(()));
        let names: Vec<String> = fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.contains(&long), "{names:?}");
        assert!(is_whiteout(&m.p(&long)));
        // mknod of a whiteout (overlayfs makes its own in the work directory).
        let p = std::ffi::CString::new(m.p("w").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR, 0) }, 0);
        assert!(is_whiteout(&m.p("w")));
        m.unmount();
        let m = env.mount(&c, "m", &[]);
        assert!(is_whiteout(&m.p("a")));
        m.unmount();
        // A whiteout is no device: fsck does not warn of it, and a snapshot
        // keeps it (without it, a deleted lower file of an overlay comes back).
        let fsck = env.run_ok(&["fsck", c.to_str().unwrap()]);
        assert!(!fsck.contains("device node"), "{fsck}");
        let snap = env.path("snap");
        env.run_ok(&[
            "snapshot",
            "create",
            c.to_str().unwrap(),
            snap.to_str().unwrap(),
        ]);
        let m = env.mount(&snap, "s", &[]);
        for n in ["a", "w", long.as_str()] {
            assert!(is_whiteout(&m.p(n)), "{n}: the snapshot lost a whiteout");
        }
        m.unmount();
    });
}

/// Unmounts the overlay (lazily) even when the test fails.
struct Overlay(std::path::PathBuf);

impl Overlay {
    fn mount(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> Overlay {
        fs::create_dir_all(merged).unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(merged)
            .output()
            .unwrap();
        let dmesg = Command::new("dmesg")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let tail: Vec<&str> = std::str::from_utf8(&dmesg)
            .unwrap_or("")
            .lines()
            .filter(|l| l.contains("overlayfs"))
            .collect();
        assert!(
            out.status.success(),
            "mount -t overlay: {} ({:?})",
            String::from_utf8_lossy(&out.stderr),
            &tail[tail.len().saturating_sub(5)..]
        );
        Overlay(merged.to_path_buf())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn names_in(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn overlayfs_upper_and_work_inside_the_mount() {
    if !need_root("overlayfs_upper_and_work_inside_the_mount") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let lower = env.path("lower");
        for (p, data) in [
            ("keep", "lower keep\n"),
            ("modify", "lower modify\n"),
            ("delete", "lower delete\n"),
            ("opaque/old1", "o1\n"),
            ("opaque/old2", "o2\n"),
            ("sub/move", "lower move\n"),
            ("ldir/x", "lower x\n"),
        ] {
            let p = lower.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        std::os::unix::fs::symlink("keep", lower.join("link")).unwrap();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::create_dir(m.p("upper")).unwrap();
        fs::create_dir(m.p("work")).unwrap();
        let merged = env.path("merged");
        let o = Overlay::mount(&lower, &m.p("upper"), &m.p("work"), &merged);
        // Copy-up, whiteout, opaque directory, renames, a new file.
        sh_ok(
            &merged,
            "echo OVERLAY-COPYUP-SECRET >> modify && rm delete && \
             rm -r opaque && mkdir opaque && echo OVERLAY-NEW-SECRET > opaque/new && \
             mv sub/move moved && echo made > made && mv made made2 && \
             mv link link2 && mkdir -p tree/deep && echo t > tree/deep/t && mv tree tree2 && \
             mv ldir ldir2",
        );
        let check = |merged: &Path| {
            assert_eq!(
                names_in(merged),
                ["keep", "ldir2", "link2", "made2", "modify", "moved", "opaque", "sub", "tree2"]
            );
            assert_eq!(
                fs::read_to_string(merged.join("ldir2/x")).unwrap(),
                "lower x\n"
            );
            assert_eq!(
                fs::read_link(merged.join("link2")).unwrap(),
                Path::new("keep")
            );
            assert_eq!(
                fs::read_to_string(merged.join("tree2/deep/t")).unwrap(),
                "t\n"
            );
            assert_eq!(
                fs::read_to_string(merged.join("modify")).unwrap(),
                "lower modify\nOVERLAY-COPYUP-SECRET\n"
            );
            assert_eq!(names_in(&merged.join("opaque")), ["new"]);
            assert!(names_in(&merged.join("sub")).is_empty());
            assert_eq!(
                fs::read_to_string(merged.join("moved")).unwrap(),
                "lower move\n"
            );
        };
        check(&merged);
        // The lower layer is untouched; the changes are in the mount.
        assert_eq!(
            fs::read_to_string(lower.join("modify")).unwrap(),
            "lower modify\n"
        );
        assert!(lower.join("delete").exists() && lower.join("opaque/old1").exists());
        let up = m.p("upper");
        assert_eq!(
            fs::read_to_string(up.join("modify")).unwrap(),
            "lower modify\nOVERLAY-COPYUP-SECRET\n"
        );
        assert!(
            is_whiteout(&up.join("delete")),
            "no whiteout for a deleted lower file"
        );
        assert!(
            is_whiteout(&up.join("sub/move")),
            "no whiteout for a moved lower file"
        );
        assert_eq!(
            xattr_get(&up.join("opaque"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(backing_contains(&c, b"OVERLAY-COPYUP-SECRET").is_empty());
        assert!(backing_contains(&c, b"OVERLAY-NEW-SECRET").is_empty());
        assert!(backing_contains(&c, b"trusted.overlay").is_empty());
        // The same view after both are mounted again.
        drop(o);
        m.unmount();
        let m = env.mount(&c, "m", &[]);
        let o = Overlay::mount(&lower, &m.p("upper"), &m.p("work"), &merged);
        check(&merged);
        drop(o);
        // Nothing failed authentication or went wrong on the way.
        let log = m.unmount();
        assert!(
            !log.contains("ERROR") && !log.contains("envelopefs::fs"),
            "{log}"
        );
    });
}

/// `getfacl -R` output with its per-file blocks sorted: the order of
/// entries in a directory is the filesystem's, not part of what is compared.
fn facl_blocks(out: String) -> Vec<String> {
    let mut b: Vec<String> = out.split("\n\n").map(str::to_owned).collect();
    b.sort();
    b
}

/// `cp -a` (as `rsync -A` or a backup tool) carries ACLs into the mount and
/// out of it unchanged.
#[test]
fn cp_a_keeps_acls_in_and_out() {
    if !need_root("cp_a_keeps_acls_in_and_out") || !have_acl_tools("cp_a_keeps_acls_in_and_out") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let src = env.path("src");
        fs::create_dir(&src).unwrap();
        sh_ok(
            &src,
            "mkdir -p d/e && echo a > d/a && echo b > d/e/b && chmod 0750 d/e && \
             setfacl -R -m u:nobody:rX,g:daemon:r d && setfacl -d -m u:nobody:rwx d/e",
        );
        let want = facl_blocks(sh_ok(&src, "getfacl -R -n d"));
        assert_eq!(want.len(), 5, "{want:?}");
        assert!(
            want.iter().any(|b| b.contains("default:user:65534:rwx")),
            "{want:?}"
        );
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        sh_ok(&m.mnt, &format!("cp -a {}/d .", src.display()));
        assert_eq!(facl_blocks(sh_ok(&m.mnt, "getfacl -R -n d")), want);
        let back = env.path("back");
        fs::create_dir(&back).unwrap();
        sh_ok(&back, &format!("cp -a {}/d .", m.mnt.display()));
        assert_eq!(facl_blocks(sh_ok(&back, "getfacl -R -n d")), want);
        m.unmount();
    });
}
