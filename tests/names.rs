//! Encrypted names: nothing of a name shows in the backing directory, names
//! are bound to their directory, long names and deep paths work, and renaming
//! a directory does not touch its children.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;

use common::*;

fn names(dir: &std::path::Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[test]
fn no_name_shows_in_the_backing_directory() {
    bounded(120, || {
        for flags in [
            &[][..],
            &["--long-name-max", "64"],
            &["--key-location", "xattr"],
        ] {
            let env = Env::new();
            let c = env.init("c", flags);
            let m = env.mount(&c, "m", &[]);
            let long = format!("MRKR{}", "l".repeat(251));
            let wanted: Vec<OsString> = vec![
                "MRKR plain ascii".into(),
                "MRKR-ünïcödé-名前-🙂".into(),
                long.clone().into(),
                ".MRKR leading dot".into(),
                "MRKR\nnew\nlines".into(),
                OsString::from_vec(b"MRKR\xff\xfe not utf8".to_vec()),
            ];
            for n in &wanted {
                fs::write(m.mnt.join(n), b"content").unwrap();
            }
            fs::create_dir(m.p("MRKRdir")).unwrap();
            fs::write(m.p("MRKRdir/MRKRinner"), b"x").unwrap();
            std::os::unix::fs::symlink("MRKR-target", m.p("MRKRlink")).unwrap();
            xattr_set(
                &m.p("MRKRdir"),
                &format!("user.MRKR{}", "x".repeat(240)),
                b"v",
            );
            let mut want: BTreeSet<OsString> = wanted.iter().cloned().collect();
            want.insert("MRKRdir".into());
            want.insert("MRKRlink".into());
            assert_eq!(names(&m.mnt), want, "listing round-trips exactly");
            assert_eq!(
                names(&m.p("MRKRdir")),
                ["MRKRinner".into()].into_iter().collect()
            );
            assert_eq!(fs::read(m.mnt.join(&long)).unwrap(), b"content");
            assert_eq!(
                xattr_list(&m.p("MRKRdir")),
                vec![format!("user.MRKR{}", "x".repeat(240))]
            );
            m.unmount();
            assert!(backing_contains(&c, b"MRKR").is_empty(), "{flags:?}");
            let m = env.mount(&c, "m", &[]);
            assert_eq!(names(&m.mnt), want, "after remount");
            m.unmount();
        }
    });
}

#[test]
fn names_are_bound_to_their_directory() {
    bounded(60, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::create_dir(m.p("a")).unwrap();
        fs::create_dir(m.p("b")).unwrap();
        fs::write(m.p("a/same"), b"1").unwrap();
        fs::write(m.p("b/same"), b"2").unwrap();
        fs::write(m.p("a/mover"), b"m").unwrap();
        fs::write(m.p("a/broken"), b"b").unwrap();
        let (ba, bb) = (backing_path(&c, &m.p("a")), backing_path(&c, &m.p("b")));
        let (s1, s2) = (
            backing_path(&c, &m.p("a/same")),
            backing_path(&c, &m.p("b/same")),
        );
        assert_ne!(
            s1.file_name(),
            s2.file_name(),
            "equal names differ across directories"
        );
        let mover = backing_path(&c, &m.p("a/mover"));
        let broken = backing_path(&c, &m.p("a/broken"));
        m.unmount();
        // Move an encrypted name into another backing directory; corrupt another.
        fs::rename(&mover, bb.join(mover.file_name().unwrap())).unwrap();
        let mut bn = broken.file_name().unwrap().to_str().unwrap().to_owned();
        let last = bn.pop().unwrap();
        bn.push(if last == 'A' { 'B' } else { 'A' });
        fs::rename(&broken, ba.join(bn)).unwrap();
        let m = env.mount(&c, "m", &[]);
        m.expect_log("does not decrypt here");
        assert_eq!(names(&m.p("a")), ["same".into()].into_iter().collect());
        assert_eq!(names(&m.p("b")), ["same".into()].into_iter().collect());
        assert_eq!(fs::read(m.p("b/same")).unwrap(), b"2");
        let log = m.unmount();
        assert_eq!(log.matches("does not decrypt here").count(), 2, "{log}");
    });
}

#[test]
fn renaming_a_directory_leaves_its_children_untouched() {
    bounded(300, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::create_dir(m.p("big")).unwrap();
        for i in 0..10_000 {
            fs::write(m.p(&format!("big/child-{i}")), i.to_string()).unwrap();
        }
        let bdir = backing_path(&c, &m.p("big"));
        let snapshot = |d: &std::path::Path| -> BTreeSet<(OsString, u64, i64, i64)> {
            fs::read_dir(d)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let md = fs::symlink_metadata(e.path()).unwrap();
                    (e.file_name(), md.ino(), md.ctime(), md.ctime_nsec())
                })
                .collect()
        };
        let before = snapshot(&bdir);
        assert_eq!(before.len(), 10_001, "children plus the directory IV");
        fs::create_dir(m.p("elsewhere")).unwrap();
        fs::rename(m.p("big"), m.p("elsewhere/renamed")).unwrap();
        let after = snapshot(&backing_path(&c, &m.p("elsewhere/renamed")));
        assert!(before == after, "children's backing entries changed");
        assert_eq!(
            fs::read(m.p("elsewhere/renamed/child-9999")).unwrap(),
            b"9999"
        );
        // Listing and stat of 10,000 entries read no header: break every header first.
        m.unmount();
        let moved = fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .unwrap();
        let renamed = fs::read_dir(&moved)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .unwrap();
        for e in fs::read_dir(&renamed).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() != "envelopefs.diriv" {
                let mut v = fs::read(&p).unwrap();
                v[..4].copy_from_slice(b"XXXX");
                fs::write(&p, v).unwrap();
            }
        }
        let m = env.mount(&c, "m", &[]);
        m.expect_log("file header has a bad magic or version");
        let mut n = 0;
        for e in fs::read_dir(m.p("elsewhere/renamed")).unwrap() {
            let e = e.unwrap();
            let want = e
                .file_name()
                .to_str()
                .unwrap()
                .trim_start_matches("child-")
                .len();
            assert_eq!(e.metadata().unwrap().len(), want as u64);
            n += 1;
        }
        assert_eq!(n, 10_000);
        let read = fs::read(m.p("elsewhere/renamed/child-1"));
        assert_eq!(
            read.map_err(|e| e.raw_os_error()),
            Err(Some(libc::EIO)),
            "contents do check the header"
        );
        let log = m.unmount();
        assert!(
            log.contains("file header has a bad magic or version"),
            "{log}"
        );
    });
}

#[test]
fn hard_links_across_directories_and_deep_paths() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &[]);
        let m = env.mount(&c, "m", &[]);
        fs::create_dir(m.p("x")).unwrap();
        fs::create_dir(m.p("y")).unwrap();
        fs::write(m.p("x/orig"), b"shared").unwrap();
        fs::hard_link(m.p("x/orig"), m.p(&format!("y/{}", "L".repeat(200)))).unwrap();
        let (a, b) = (
            fs::metadata(m.p("x/orig")).unwrap(),
            fs::metadata(m.p(&format!("y/{}", "L".repeat(200)))).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        // A path near PATH_MAX in the mount, although backing names are longer.
        let comp = "d".repeat(200);
        let mut rel = String::new();
        while rel.len() + comp.len() + 1 < 3900 {
            rel.push_str(&comp);
            rel.push('/');
        }
        let depth = rel.split('/').filter(|s| !s.is_empty()).count();
        let cd = |n: usize| {
            let mut p = std::path::PathBuf::new();
            for _ in 0..n {
                p.push(&comp);
            }
            p
        };
        let st = std::process::Command::new("sh")
            .current_dir(&m.mnt)
            .arg("-c")
            .arg(format!(
                "set -e; for i in $(seq {depth}); do mkdir {comp}; cd {comp}; done; echo deep > f; cat f"
            ))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert_eq!(st.stdout, b"deep\n");
        assert!(cd(depth).as_os_str().len() > 3800);
        m.unmount();
    });
}
