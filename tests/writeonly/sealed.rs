//! A write-only mount cannot read anything from before it started, by any
//! path: every open mode of an earlier file, truncate, readlink, getxattr
//! and listxattr are EACCES (again on a second try), readdir lists only its
//! own entries, stat still works with the right size; each refused entry is
//! logged once with its backing path and no name ever reaches the log.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::common::*;
use crate::support::*;
use crate::tree::names_in;

/// Canary names: none may appear in the write-only daemon's log.
const LEDGER: &str = "ledger-Q3-canary.txt";
const EMPTY: &str = "empty-canary";
const BOX: &str = "box-canary";
const INNER: &str = "inner-canary.txt";
const LINK: &str = "link-canary";
const TARGET: &str = "target-canary-of-the-link";
const XNAME: &str = "user.xattr-canary";
const OWN: &str = "own-canary.txt";
const OWN_IN_BOX: &str = "own-in-box-canary.txt";
const OWN_DIR: &str = "own-dir-canary";

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// The errno of a libc call that returned -1 (None when it succeeded).
fn last_errno(r: isize) -> Option<i32> {
    (r < 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap())
}

fn getxattr_errno(p: &Path, name: &str) -> Option<i32> {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of its length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    last_errno(r)
}

fn listxattr_errno(p: &Path) -> Option<i32> {
    let c = cpath(p);
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C string and a buffer of its length.
    let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    last_errno(r)
}

fn truncate_errno(p: &Path, len: i64) -> Option<i32> {
    let c = cpath(p);
    // SAFETY: valid C string.
    let r = unsafe { libc::truncate(c.as_ptr(), len) };
    last_errno(r as isize)
}

/// Every way to open an earlier file, each EACCES.
fn assert_every_open_refused(p: &Path) {
    let modes: [(&str, OpenOptions); 6] = [
        ("O_RDONLY", OpenOptions::new().read(true).clone()),
        ("O_WRONLY", OpenOptions::new().write(true).clone()),
        ("O_RDWR", OpenOptions::new().read(true).write(true).clone()),
        (
            "O_WRONLY|O_TRUNC",
            OpenOptions::new().write(true).truncate(true).clone(),
        ),
        ("O_WRONLY|O_APPEND", OpenOptions::new().append(true).clone()),
        (
            "O_RDONLY|O_NOATIME",
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOATIME)
                .clone(),
        ),
    ];
    for (what, o) in modes {
        assert_eq!(
            errno(o.open(p)),
            Some(libc::EACCES),
            "{what} {}",
            p.display()
        );
    }
    // A second try after a failed one: nothing was cached by the first.
    assert_eq!(
        errno(std::fs::File::open(p)),
        Some(libc::EACCES),
        "a second O_RDONLY"
    );
}

#[test]
fn write_only_mount_reads_nothing_from_earlier_sessions() {
    if !need_fuse("write_only_mount_reads_nothing_from_earlier_sessions") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let c = init_v2(&env, "c", &r);
        let ledger = pattern(1, 9000);
        let m = env.mount(&c, "m", &[]);
        std::fs::write(m.p(LEDGER), &ledger).unwrap();
        std::fs::write(m.p(EMPTY), b"").unwrap();
        std::fs::create_dir(m.p(BOX)).unwrap();
        std::fs::write(m.p(BOX).join(INNER), pattern(2, 100)).unwrap();
        std::os::unix::fs::symlink(TARGET, m.p(LINK)).unwrap();
        xattr_set(&m.p(LEDGER), XNAME, b"earlier file xattr");
        xattr_set(&m.p(BOX), XNAME, b"earlier dir xattr");
        m.unmount();

        let w = env.mount(&c, "w", &strs(&r.by_key()));
        std::fs::write(w.p(OWN), pattern(3, 5000)).unwrap();
        std::fs::write(w.p(BOX).join(OWN_IN_BOX), pattern(4, 10)).unwrap();
        std::fs::create_dir(w.p(OWN_DIR)).unwrap();
        let backing = |rel: &str| name_of(&backing_path(&c, &w.p(rel)));
        let refused = [
            backing(LEDGER),
            backing(EMPTY),
            backing(&format!("{BOX}/{INNER}")),
            backing(LINK),
            backing(BOX),
        ];
        for b in &refused {
            w.expect_log(b);
        }

        // Stat of an earlier entry by its name works, with the right size.
        let md = std::fs::symlink_metadata(w.p(LEDGER)).unwrap();
        assert!(md.is_file());
        assert_eq!(md.len(), 9000);
        assert_eq!(std::fs::metadata(w.p(EMPTY)).unwrap().len(), 0);
        assert!(std::fs::metadata(w.p(BOX)).unwrap().is_dir());
        assert!(std::fs::symlink_metadata(w.p(LINK))
            .unwrap()
            .file_type()
            .is_symlink());

        for f in [w.p(LEDGER), w.p(EMPTY), w.p(BOX).join(INNER)] {
            assert_every_open_refused(&f);
        }
        assert_eq!(truncate_errno(&w.p(LEDGER), 0), Some(libc::EACCES));
        assert_eq!(truncate_errno(&w.p(LEDGER), 20_000), Some(libc::EACCES));
        assert_eq!(truncate_errno(&w.p(EMPTY), 10), Some(libc::EACCES));
        assert_eq!(
            errno(std::fs::read_link(w.p(LINK))),
            Some(libc::EACCES),
            "readlink of an earlier symlink"
        );
        for p in [w.p(LEDGER), w.p(BOX)] {
            assert_eq!(
                getxattr_errno(&p, XNAME),
                Some(libc::EACCES),
                "{}",
                p.display()
            );
            // A directory has no key of its own to refuse with: an absent
            // name is ENODATA (the writer holds the xattr name key anyway).
            let absent = if p.is_dir() {
                libc::ENODATA
            } else {
                libc::EACCES
            };
            assert_eq!(getxattr_errno(&p, "user.absent"), Some(absent));
            assert_eq!(listxattr_errno(&p), Some(libc::EACCES), "{}", p.display());
        }
        // Names are looked up, not guessed anew: an earlier name exists.
        let excl = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(w.p(LEDGER));
        assert_eq!(
            errno(excl),
            Some(libc::EEXIST),
            "O_CREAT|O_EXCL of an earlier name"
        );
        let creat = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(w.p(LEDGER));
        assert_eq!(
            errno(creat),
            Some(libc::EACCES),
            "O_CREAT of an earlier file"
        );
        assert_eq!(errno(std::fs::create_dir(w.p(BOX))), Some(libc::EEXIST));
        // Nothing changed the earlier file: same size after the refused truncates.
        assert_eq!(std::fs::metadata(w.p(LEDGER)).unwrap().len(), 9000);

        // Listings: only this mount's own entries.
        let mut own_top = vec![OWN.to_owned(), OWN_DIR.to_owned()];
        own_top.sort();
        assert_eq!(names_in(&w.mnt), own_top);
        assert_eq!(names_in(&w.p(BOX)), vec![OWN_IN_BOX.to_owned()]);
        assert!(names_in(&w.p(OWN_DIR)).is_empty());
        // Its own file: everything.
        assert_eq!(std::fs::read(w.p(OWN)).unwrap(), pattern(3, 5000));
        assert_eq!(
            std::fs::read(w.p(BOX).join(OWN_IN_BOX)).unwrap(),
            pattern(4, 10)
        );
        let log = w.unmount();

        for b in &refused {
            // Each refused entry is logged once, however often it is asked
            // for (the lines end the backing path with ':' or ')').
            let lines: Vec<&str> = lines_with(&log, b)
                .into_iter()
                .filter(|l| l.contains(&format!("{b}:")) || l.contains(&format!("{b})")))
                .collect();
            assert_eq!(lines.len(), 1, "one line for refused entry {b}:\n{log}");
        }
        for name in [
            LEDGER, EMPTY, BOX, INNER, LINK, TARGET, XNAME, OWN, OWN_IN_BOX, OWN_DIR,
        ] {
            assert!(!log.contains(name), "the log names {name}:\n{log}");
        }
        assert!(!log.contains("canary"), "a name in the log:\n{log}");

        // The refusals changed nothing: a full mount reads the earlier entries.
        let m = env.mount(&c, "m", &[]);
        assert_eq!(std::fs::read(m.p(LEDGER)).unwrap(), ledger);
        assert_eq!(std::fs::read(m.p(EMPTY)).unwrap(), b"");
        assert_eq!(std::fs::read_link(m.p(LINK)).unwrap(), Path::new(TARGET));
        assert_eq!(
            xattr_get(&m.p(LEDGER), XNAME).as_deref(),
            Some(&b"earlier file xattr"[..])
        );
        assert_eq!(
            names_in(&m.p(BOX)),
            vec![INNER.to_owned(), OWN_IN_BOX.to_owned()]
        );
        m.unmount();
    });
}
