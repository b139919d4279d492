//! Logs hold no plaintext file name, symlink target or xattr name, at any
//! level: a daemon at `RUST_LOG=trace` serves every name-carrying operation
//! on canary names (and an xattr that fails authentication), and its log
//! never shows them. Failures name the backing path, which is public.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::*;

/// Every canary below starts with this; none may reach the log.
const CANARY: &str = "CANARY";

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno_of(r: i32) -> i32 {
    assert_eq!(r, -1, "expected a failure");
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// renameat2 with flags (RENAME_NOREPLACE, RENAME_EXCHANGE).
fn rename2(from: &Path, to: &Path, flags: u32) {
    let (f, t) = (c(from), c(to));
    // SAFETY: valid C strings; AT_FDCWD for both directories.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    };
    assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
}

/// Every operation that carries a name, a target or an xattr name.
fn touch_every_name(mnt: &Path) {
    let dir = mnt.join("CANARYDIR-d41d");
    std::fs::create_dir(&dir).unwrap();
    let a = dir.join("CANARYNAME-a-8c1f");
    let b = dir.join("CANARYNAME-b-3e77");
    let long = dir.join(format!("CANARYLONG-{}", "x".repeat(200)));
    std::fs::write(&a, b"first").unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    f.write_all(b" second").unwrap();
    drop(f);
    let mut s = String::new();
    std::fs::File::open(&a)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "first second");
    std::fs::write(&long, b"long").unwrap();
    assert_eq!(std::fs::read(&long).unwrap(), b"long");
    std::fs::rename(&a, &b).unwrap();
    rename2(&b, &a, libc::RENAME_NOREPLACE);
    std::fs::write(&b, b"other").unwrap();
    rename2(&a, &b, libc::RENAME_EXCHANGE);
    std::fs::hard_link(&a, dir.join("CANARYNAME-link-5b20")).unwrap();
    let link = dir.join("CANARYLINK-90ab");
    std::os::unix::fs::symlink("CANARYTARGET-e3b0/CANARYTARGET-c442", &link).unwrap();
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("CANARYTARGET-e3b0/CANARYTARGET-c442")
    );
    let fifo = c(&dir.join("CANARYFIFO-77aa"));
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let listed = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(listed, 6, "a, b, long, link, symlink, fifo");
    let missing = c(&dir.join("CANARYNAME-missing-0d0d"));
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and stat buffer.
    assert_eq!(
        errno_of(unsafe { libc::lstat(missing.as_ptr(), &mut st) }),
        libc::ENOENT
    );
    for p in [&a, &dir] {
        xattr_set(p, "user.CANARYXATTR-1a2b", b"value");
        assert_eq!(xattr_get(p, "user.CANARYXATTR-1a2b").unwrap(), b"value");
        assert_eq!(xattr_list(p), vec!["user.CANARYXATTR-1a2b".to_string()]);
        let (cp, cn) = (c(p), CString::new("user.CANARYXATTR-1a2b").unwrap());
        // SAFETY: valid C strings.
        assert_eq!(unsafe { libc::lremovexattr(cp.as_ptr(), cn.as_ptr()) }, 0);
        assert_eq!(xattr_get(p, "user.CANARYXATTR-absent-6f6f"), None);
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::remove_file(&p).unwrap();
    }
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn trace_log_holds_no_plaintext_name() {
    let env = Env::new();
    let cipher = env.init("c", &[]);
    let m = env.mount_env(&cipher, "m", &[], &[("RUST_LOG", "trace")]);
    m.expect_log("failed authentication");
    // At trace level fuser's own warnings show: its session's unmount after
    // `envelopefs umount` did it finds nothing to unmount.
    m.expect_log("Failed to umount filesystem: Invalid argument");
    let mnt = m.mnt.clone();
    bounded(60, move || touch_every_name(&mnt));

    // An xattr whose backing value was altered fails authentication.
    let f = m.p("CANARYNAME-tampered-2c2c");
    std::fs::write(&f, b"x").unwrap();
    xattr_set(&f, "user.CANARYXATTR-tampered-9e9e", b"value");
    let backing = backing_path(&cipher, &f);
    let mut tampered = 0;
    for name in xattr_list(&backing) {
        if let Some(mut v) = xattr_get(&backing, &name) {
            if name.starts_with("user.") && !v.is_empty() {
                *v.last_mut().unwrap() ^= 1;
                xattr_set(&backing, &name, &v);
                tampered += 1;
            }
        }
    }
    assert_eq!(tampered, 1, "one backing xattr carries the user xattr");
    let (cf, cn) = (
        c(&f),
        CString::new("user.CANARYXATTR-tampered-9e9e").unwrap(),
    );
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lgetxattr(cf.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), 64) };
    assert_eq!(errno_of(r as i32), libc::EIO);

    let log = m.unmount();
    // The log is live: the request trace and the failure are in it.
    assert!(
        log.contains("SETXATTR"),
        "no request trace in the log:\n{log}"
    );
    assert!(
        log.contains("SYMLINK"),
        "no request trace in the log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("failed authentication") && l.contains(backing.to_str().unwrap())),
        "the authentication failure does not name the backing path:\n{log}"
    );
    // Neither as text nor as a byte list ("[67, 65, 78, ...").
    let as_bytes = format!("{:?}", CANARY.as_bytes());
    let as_bytes = &as_bytes[1..as_bytes.len() - 1];
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(CANARY) || l.contains(as_bytes))
        .collect();
    assert!(
        leaks.is_empty(),
        "plaintext names in the log:\n{}",
        leaks.join("\n")
    );
}
