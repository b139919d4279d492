//! A write-only daemon holds no key that opens anything written before it
//! started: with the private key's Decrypt the test recovers the earlier
//! session's K, its session key S, the keys S derives and the earlier
//! files' data keys, then scans the running write-only daemon's memory
//! (/proc/PID/mem through /proc/PID/maps) for each. The same scan must find
//! the daemon's own session key, or it proves nothing.

use std::fs;
use std::os::unix::fs::FileExt;

use crate::common::*;
use crate::roundtrip::write_earlier;
use crate::support::*;

/// The readable mappings of a process: (start, end).
fn readable_ranges(pid: u32) -> Vec<(u64, u64)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (a, b) = f.next()?.split_once('-')?;
            f.next()?.starts_with('r').then_some(())?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// How many copies of each needle (32 bytes each) the process's memory holds.
fn count_copies(pid: u32, needles: &[[u8; 32]]) -> Vec<usize> {
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    const CHUNK: u64 = 1 << 20;
    let mut counts = vec![0usize; needles.len()];
    let mut buf = vec![0u8; CHUNK as usize + 31];
    for (start, end) in readable_ranges(pid) {
        let mut at = start;
        while at < end {
            let len = (end - at).min(CHUNK + 31) as usize;
            let Ok(n) = mem.read_at(&mut buf[..len], at) else {
                break; // [vvar] and the like cannot be read
            };
            // Matches starting in this chunk only (the overlap is the next's).
            let starts = n.saturating_sub(31).min(CHUNK as usize);
            for i in 0..starts {
                let w = &buf[i..i + 32];
                for (k, nd) in needles.iter().enumerate() {
                    if w[0] == nd[0] && w == nd {
                        counts[k] += 1;
                    }
                }
            }
            at += CHUNK;
        }
    }
    counts
}

#[test]
fn write_only_daemon_memory_holds_no_key_to_earlier_content() {
    if !need_fuse("write_only_daemon_memory_holds_no_key_to_earlier_content") {
        return;
    }
    bounded(180, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let c = init_v2(&env, "c", &r);
        let cfg = ConfigFileV2::read(&c).config;
        let vid = ConfigFileV2::read(&c).volume_id();

        // The first full-mount session of the round trip.
        let m = env.mount(&c, "m", &[]);
        write_earlier(&m.mnt);
        let earlier_files = ["big", "multi", "docs/readme.txt", "docs/sub/deep.bin"];
        let headers: Vec<_> = earlier_files
            .iter()
            .map(|f| header_of(&cfg, &backing_path(&c, &m.p(f))))
            .collect();
        m.unmount();

        // What opens it: K (Decrypt with the private key), S, and below them.
        let first = sessions(&c);
        assert_eq!(first.len(), 1);
        let k = unseal_rsa(&env, &r, &first[0]);
        let s = session_key(&k, &vid, &first[0].id);
        let mut secrets: Vec<(String, [u8; 32])> = vec![
            ("earlier K".into(), k.clone().try_into().unwrap()),
            ("earlier session key S".into(), s),
        ];
        for (what, key) in session_subkeys(&s, &vid) {
            secrets.push((format!("earlier {what}"), key));
        }
        for (f, h) in earlier_files.iter().zip(&headers) {
            assert_eq!(header_session(h), first[0].id);
            secrets.push((format!("wrapping key of {f}"), wrapping_key(&s, &vid, h)));
            secrets.push((format!("data key of {f}"), unwrap_data_key(&s, &vid, h)));
        }

        // A write-only mount writes, and looks up, stats and lists earlier entries.
        let w = env.mount(&c, "w", &strs(&r.by_key()));
        for i in 0..8 {
            let data = pattern(100 + i, 10_000);
            fs::write(w.p(&format!("own{i}")), &data).unwrap();
            assert_eq!(fs::read(w.p(&format!("own{i}"))).unwrap(), data);
        }
        fs::write(w.p("docs/own-in-docs"), pattern(99, 5000)).unwrap();
        for f in earlier_files {
            assert!(fs::metadata(w.p(f)).unwrap().len() > 0);
        }
        let refused = name_of(&backing_path(&c, &w.p("big")));
        w.expect_log(&refused);
        assert_eq!(errno(fs::File::open(w.p("big"))), Some(libc::EACCES));
        fs::read_dir(&w.mnt).unwrap().for_each(drop);
        fs::read_dir(w.p("docs")).unwrap().for_each(drop);

        // Its own session, recovered the same way: the scan's control.
        let own = sessions(&c);
        let own = own
            .iter()
            .find(|x| x.id != first[0].id)
            .expect("its session");
        let own_k = unseal_rsa(&env, &r, own);
        let own_s = session_key(&own_k, &vid, &own.id);
        let own_h = header_of(&cfg, &backing_path(&c, &w.p("own3")));
        let own_dk = unwrap_data_key(&own_s, &vid, &own_h);

        let pid = w.pid().unwrap();
        let mut needles: Vec<[u8; 32]> = secrets.iter().map(|(_, k)| *k).collect();
        needles.extend([own_s, own_dk, own_k.clone().try_into().unwrap()]);
        let counts = count_copies(pid, &needles);
        let n = secrets.len();
        assert!(
            counts[n] > 0,
            "the write-only daemon's own session key is not found: the scan is blind"
        );
        let found: Vec<String> = secrets
            .iter()
            .zip(&counts)
            .filter(|(_, c)| **c > 0)
            .map(|((what, _), c)| format!("{what}: {c} copies"))
            .collect();
        assert!(
            found.is_empty(),
            "the write-only daemon holds:\n{}",
            found.join("\n")
        );
        assert_eq!(
            counts[n + 2],
            0,
            "its own raw session key K outlived the derivation of S"
        );
        eprintln!(
            "control: own session key {} copies, own data key {} copies",
            counts[n],
            counts[n + 1]
        );
        w.unmount();
    });
}

/// The scanner finds a key it is shown: 32 bytes in this process's heap.
#[test]
fn memory_scan_finds_a_key_in_this_process() {
    let key: Vec<u8> = pattern(4242, 32);
    let needle: [u8; 32] = key.clone().try_into().unwrap();
    let counts = count_copies(std::process::id(), &[needle]);
    assert!(counts[0] >= 1, "{counts:?}");
    std::hint::black_box(&key);
}
