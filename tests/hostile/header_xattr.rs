//! Bytes after the header in the header xattr are not ignored: nothing
//! unauthenticated rides along with a file's key.

use std::fs;

use crate::common::*;

#[test]
fn bytes_after_the_header_xattr_are_refused() {
    bounded(120, || {
        let env = Env::new();
        let c = env.init("c", &["--key-location", "xattr"]);
        let m = env.mount(&c, "m", &[]);
        fs::write(m.p("f"), pattern(9, 10_000)).unwrap();
        fs::write(m.p("g"), pattern(10, 10_000)).unwrap();
        let bf = backing_path(&c, &m.p("f"));
        m.unmount();
        let header = xattr_get(&bf, "user.envelopefs.header").expect("a header xattr");
        let mut longer = header.clone();
        longer.extend_from_slice(b"attacker's trailing bytes");
        xattr_set(&bf, "user.envelopefs.header", &longer);

        let m = env.mount(&c, "m", &[]);
        m.expect_log("file header is longer than this format's");
        let e = fs::read(m.p("f")).expect_err("a header with trailing bytes");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        // The untouched file still reads: the refusal is about that header.
        assert_eq!(fs::read(m.p("g")).unwrap(), pattern(10, 10_000));
        m.unmount();
        let out = env.run(&["fsck", c.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(30), "fsck reports a problem");
        let rel = bf.strip_prefix(&c).unwrap().display().to_string();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines()
                .any(|l| l.starts_with("/f") && l.contains(&rel) && l.contains("longer")),
            "fsck names the file and why: {text}"
        );
        // The exact header reads again.
        xattr_set(&bf, "user.envelopefs.header", &header);
        let m = env.mount(&c, "m", &[]);
        assert_eq!(fs::read(m.p("f")).unwrap(), pattern(9, 10_000));
        m.unmount();
    });
}
