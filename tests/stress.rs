//! Concurrency stress: many threads create, write, rename and delete in shared
//! directories for a fixed time; afterwards the tree equals the model. A
//! watchdog fails the test after a bound instead of hanging on a deadlock.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn threads_in_shared_directories_match_the_model() {
    bounded(240, || {
        let env = Env::new();
        let c = env.init("c", &["--block-size", "1024"]);
        let m = env.mount(&c, "m", &[]);
        let dirs = ["s0", "s1", "s2"];
        for d in dirs {
            fs::create_dir(m.p(d)).unwrap();
        }
        let secs = std::env::var("STRESS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4);
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let root = m.mnt.clone();
                std::thread::spawn(move || {
                    // Each thread owns its names; directories are shared.
                    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                    let mut x = t * 7919 + 1;
                    let mut rnd = |n: u64| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x % n
                    };
                    let end = Instant::now() + Duration::from_secs(secs);
                    let mut ops = 0u64;
                    while Instant::now() < end {
                        ops += 1;
                        let name = format!("{}/t{t}-{}", dirs[rnd(3) as usize], rnd(8));
                        match rnd(5) {
                            0 | 1 => {
                                let data = pattern(ops ^ t << 32, rnd(5000) as usize);
                                fs::write(root.join(&name), &data).unwrap();
                                model.insert(name, data);
                            }
                            2 => {
                                let to = format!("{}/t{t}-{}", dirs[rnd(3) as usize], rnd(8));
                                let r = fs::rename(root.join(&name), root.join(&to));
                                match model.remove(&name) {
                                    Some(d) => {
                                        r.unwrap();
                                        model.insert(to, d);
                                    }
                                    None => assert_eq!(errno(r), Some(libc::ENOENT), "{name}"),
                                }
                            }
                            3 => {
                                let r = fs::remove_file(root.join(&name));
                                match model.remove(&name) {
                                    Some(_) => r.unwrap(),
                                    None => assert_eq!(errno(r), Some(libc::ENOENT), "{name}"),
                                }
                            }
                            _ => {
                                let r = fs::read(root.join(&name));
                                match model.get(&name) {
                                    Some(d) => assert!(r.unwrap() == *d, "{name}"),
                                    None => assert_eq!(errno(r), Some(libc::ENOENT), "{name}"),
                                }
                            }
                        }
                    }
                    (model, ops)
                })
            })
            .collect();
        let mut want = BTreeMap::new();
        let mut total = 0;
        for t in threads {
            let (m, n) = t.join().unwrap();
            total += n;
            want.extend(m);
        }
        let mut got = BTreeMap::new();
        for d in dirs {
            for e in fs::read_dir(m.p(d)).unwrap() {
                let e = e.unwrap();
                let name = format!("{d}/{}", e.file_name().to_string_lossy());
                got.insert(name, fs::read(e.path()).unwrap());
            }
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want, "tree differs from the model");
        eprintln!(
            "stress: {total} operations by 6 threads, {} files at the end",
            got.len()
        );
        m.unmount();
    });
}
