//! Tampering with what write-only sessions wrote: a flipped bit in a v2
//! header (each field), in a block, in a name side file, or in a session
//! file. A full mount answers EIO for exactly the files concerned (hides the
//! one entry whose side file fails, with a log line), serves every other file
//! byte-exact, and serves all again once the bits are put back.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use crate::common::*;
use crate::support::*;
use crate::tree::*;

/// Header offsets flipped, one file each: magic, version, file ID, session
/// ID, nonce, wrapped data key, tag.
const HEADER_FLIPS: [u64; 7] = [0, 4, 8, 24, 40, 60, 90];

fn content(name: &str) -> Vec<u8> {
    let seed = name.bytes().map(u64::from).sum::<u64>();
    pattern(seed, 3 * BLOCK + 100)
}

/// Reading `p` fails with EIO, at the open or at the first read; never a byte.
fn assert_eio(p: &Path) {
    match std::fs::File::open(p) {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::EIO),
            "open {}: {e}",
            p.display()
        ),
        Ok(mut f) => {
            use std::io::Read;
            let mut buf = Vec::new();
            let r = f.read_to_end(&mut buf);
            assert_eq!(errno(r), Some(libc::EIO), "read {}", p.display());
        }
    }
}

/// Where a flip goes: a file and an offset in it, or an xattr's byte.
enum Spot {
    File(PathBuf, u64),
    Xattr(PathBuf, u64),
}

fn apply(spot: &Spot) {
    match spot {
        Spot::File(p, at) => flip(p, *at),
        Spot::Xattr(p, at) => flip_xattr(p, "user.envelopefs.header", *at as usize),
    }
}

#[test]
fn tampered_write_only_volume_gives_eio_for_exactly_the_tampered_files() {
    if !need_fuse("tampered_write_only_volume_gives_eio_for_exactly_the_tampered_files") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let c = init_v2(&env, "c", &r);
        let cfg = ConfigFileV2::read(&c).config;
        let der = r.der_file(&env, "r.der");

        let mut tree = Tree::new();
        let header_victims: Vec<String> = HEADER_FLIPS.iter().map(|o| format!("h{o}")).collect();
        let w = env.mount(&c, "w", &strs(&r.by_key()));
        for name in header_victims
            .iter()
            .map(String::as_str)
            .chain(["blk", "side", "ok1", "ok2"])
        {
            put(&w.mnt, &mut tree, name, Node::File(content(name)));
        }
        put(&w.mnt, &mut tree, "dir", Node::Dir);
        put(&w.mnt, &mut tree, "dir/ok3", Node::File(content("ok3")));
        w.unmount();
        let first = sessions(&c);
        // A second session, whose session file is tampered with.
        let w = env.mount(&c, "w", &strs(&Recipient::by_file(&der)));
        for name in ["z1", "z2"] {
            std::fs::write(w.p(name), content(name)).unwrap();
        }
        w.unmount();
        let second = sessions(&c)
            .into_iter()
            .find(|s| s.id != first[0].id)
            .unwrap();

        // Everything reads, and where each victim lives.
        let m = env.mount(&c, "m", &[]);
        let mut all = tree.clone();
        for name in ["z1", "z2"] {
            all.insert(name.into(), Node::File(content(name)));
        }
        assert_tree(&m.mnt, &all);
        let b = |rel: &str| backing_path(&c, &m.p(rel));
        let xattr_headers = cfg.key_location == "xattr";
        let header_len = if xattr_headers { 0 } else { HEADER_LEN as u64 };
        let mut spots: Vec<Spot> = header_victims
            .iter()
            .zip(HEADER_FLIPS)
            .map(|(name, at)| match xattr_headers {
                true => Spot::Xattr(b(name), at),
                false => Spot::File(b(name), at),
            })
            .collect();
        // The second block's ciphertext.
        let second_block = header_len + (BLOCK + BLOCK_OVERHEAD) as u64 + 8 + 12 + 100;
        spots.push(Spot::File(b("blk"), second_block));
        let side = b("side").with_extension("name");
        assert!(side.is_file(), "the side file {}", side.display());
        spots.push(Spot::File(side.clone(), 30)); // in the sealed name
        spots.push(Spot::File(
            second.path.clone(),
            SESSION_FIXED_LEN as u64 + 10,
        ));
        let tampered: Vec<String> = header_victims
            .iter()
            .map(|n| name_of(&b(n)))
            .chain([name_of(&b("blk")), name_of(&b("z1")), name_of(&b("z2"))])
            .collect();
        m.unmount();

        for s in &spots {
            apply(s);
        }
        // h24's header now names a session that does not exist.
        let mut unknown = first[0].id;
        unknown[0] ^= 0x01;
        let unknown = format!("{SESSION_PREFIX}{}", B64URL.encode(unknown));
        let m = env.mount(&c, "m", &[]);
        for part in tampered
            .iter()
            .chain([&name_of(&side), &name_of(&second.path), &unknown])
        {
            m.expect_log(part);
        }
        // The entries of the session that no longer opens are skipped from
        // listings, each with a line naming its backing entry.
        m.expect_log("has a name that does not decrypt here");
        // The listing hides the entry whose side file fails, and the second
        // session's entries (their names are sealed under its key).
        let mut listed = names_in(&m.mnt);
        listed.retain(|n| n != "dir");
        let mut want: Vec<String> = header_victims.clone();
        want.extend(["blk", "ok1", "ok2"].map(String::from));
        want.sort();
        assert_eq!(listed, want);
        assert_eq!(names_in(&m.p("dir")), vec!["ok3".to_owned()]);
        for name in header_victims
            .iter()
            .map(String::as_str)
            .chain(["blk", "z1", "z2"])
        {
            assert_eio(&m.p(name));
        }
        for name in ["ok1", "ok2", "dir/ok3"] {
            let base = name.rsplit('/').next().unwrap();
            assert_eq!(std::fs::read(m.p(name)).unwrap(), content(base), "{name}");
        }
        let log = m.unmount();
        // Each listing that skips it says so.
        assert!(
            !lines_with(&log, name_of(&side).trim_end_matches(".name")).is_empty(),
            "a line for the hidden entry's side file:\n{log}"
        );
        assert_eq!(
            lines_with(&log, &name_of(&second.path)).len(),
            1,
            "one line for the garbled session:\n{log}"
        );

        // Bits put back: everything reads again, nothing was repaired away.
        for s in &spots {
            apply(s);
        }
        let m = env.mount(&c, "m", &[]);
        assert_tree(&m.mnt, &all);
        m.unmount();
    });
}
