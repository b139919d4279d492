//! The agent's memory, scanned while it serves (/proc/PID/mem through
//! /proc/PID/smaps): every copy of the store key, of a master key's
//! material and of an asymmetric private key lies in a mapping that is
//! locked (`lo`) and out of core dumps (`dd`); a data key handed to a
//! client is nowhere once its connection is gone; and the agent is not
//! dumpable. The secrets are recovered independently: Argon2id over the
//! test passphrase, then the store's sealed content opened with that key.

use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::*;

const CAP_SYS_PTRACE: u32 = 19;

/// One mapping of /proc/PID/smaps.
#[derive(Debug)]
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    name: String,
    flags: Vec<String>,
    locked_kb: u64,
}

fn mappings(pid: u32) -> Vec<Mapping> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out: Vec<Mapping> = Vec::new();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if let Some(m) = out.last_mut() {
                m.flags = rest.split_whitespace().map(String::from).collect();
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Locked:") {
            if let Some(m) = out.last_mut() {
                let kb = rest.split_whitespace().next().unwrap_or("0");
                m.locked_kb = kb.parse().unwrap_or(0);
            }
            continue;
        }
        // A mapping's first line: "start-end perms offset dev inode [name]".
        let mut f = line.split_whitespace();
        let Some((a, b)) = f.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        out.push(Mapping {
            start,
            end,
            perms: f.next().unwrap_or("").to_owned(),
            name: f.nth(3).unwrap_or("").to_owned(),
            flags: Vec::new(),
            locked_kb: 0,
        });
    }
    out
}

/// Every address of the process's readable memory where `secret` occurs.
/// Only its bytes past the 16th are looked for: malloc writes its free-list
/// pointers over the first 16 bytes of a freed chunk, and a freed copy is
/// a copy still.
fn copies_of(pid: u32, maps: &[Mapping], secret: &[u8]) -> Vec<u64> {
    let needle = &secret[16.min(secret.len() / 2)..];
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    const CHUNK: u64 = 1 << 20;
    let overlap = needle.len() as u64 - 1;
    let mut hits = Vec::new();
    let mut buf = vec![0u8; (CHUNK + overlap) as usize];
    for m in maps.iter().filter(|m| m.perms.starts_with('r')) {
        let mut at = m.start;
        while at < m.end {
            let len = (m.end - at).min(CHUNK + overlap) as usize;
            let Ok(n) = mem.read_at(&mut buf[..len], at) else {
                break; // [vvar] and the like cannot be read
            };
            for (i, w) in buf[..n].windows(needle.len()).enumerate() {
                if w[0] == needle[0] && w == needle {
                    hits.push(at + i as u64);
                }
            }
            at += CHUNK;
        }
    }
    hits.sort_unstable();
    hits.dedup();
    hits
}

/// The copies of `needle` that lie outside locked (`lo`, `Locked:` > 0),
/// undumped (`dd`) memory, described; and how many copies there are.
fn exposed_copies(pid: u32, needle: &[u8]) -> (Vec<String>, usize) {
    let maps = mappings(pid);
    let hits = copies_of(pid, &maps, needle);
    let safe = |m: &Mapping| {
        m.flags.iter().any(|f| f == "lo") && m.flags.iter().any(|f| f == "dd") && m.locked_kb > 0
    };
    let bad = hits
        .iter()
        .map(|a| (a, maps.iter().find(|m| (m.start..m.end).contains(a))))
        .filter(|(_, m)| !m.is_some_and(safe))
        .map(|(a, m)| match m {
            Some(m) => format!(
                "{a:#x} in {} {:?} [{}] Locked: {} kB",
                m.perms,
                m.name,
                m.flags.join(" "),
                m.locked_kb
            ),
            None => format!("{a:#x} in no mapping"),
        })
        .collect();
    (bad, hits.len())
}

/// The store key, derived here from the test passphrase and the store's
/// KDF parameters, and the store's content it opens.
fn unseal_store(env: &Env) -> ([u8; 32], serde_json::Value) {
    let raw = fs::read(env.path("ks/keystore.json")).unwrap();
    let f = envelopefs::kms::store::parse_store_file(&raw).unwrap();
    let salt = base64_decode(&f.kdf.salt);
    let params =
        argon2::Params::new(f.kdf.m_cost_kib, f.kdf.t_cost, f.kdf.p_cost, Some(32)).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    a.hash_password_into(b"test passphrase", &salt, &mut key)
        .unwrap();
    let plain = envelopefs::kms::store::unseal_store(&f, &key).unwrap();
    (key, serde_json::from_slice(&plain).unwrap())
}

/// Every secret of an opened store, by name: the store key; each key
/// material as the store holds it (base64) and decoded.
fn store_secrets(env: &Env) -> Vec<(String, Vec<u8>)> {
    let (key, data) = unseal_store(env);
    let mut out = vec![("store key".to_owned(), key.to_vec())];
    for k in data["keys"].as_array().unwrap() {
        let spec = k["key_spec"].as_str().unwrap_or("SYMMETRIC_DEFAULT");
        for m in k["materials"].as_array().unwrap() {
            let Some(b64) = m["material"].as_str() else {
                continue;
            };
            let what = format!("{spec} material of {}", k["key_id"]);
            out.push((format!("{what} (base64)"), b64.as_bytes().to_vec()));
            out.push((what, base64_decode(b64)));
        }
    }
    out
}

/// Reads 8 bytes of `pid`'s memory with process_vm_readv as root without
/// CAP_SYS_PTRACE in the effective set: allowed for a dumpable root
/// process, EPERM for one that made itself non-dumpable (see
/// tests/hostile/core_dump.rs).
fn read_memory_without_ptrace(pid: u32) -> std::io::Result<()> {
    let addr = mappings(pid)
        .iter()
        .find(|m| m.perms.starts_with('r'))
        .map(|m| m.start)
        .unwrap();
    std::thread::spawn(move || {
        drop_effective_cap(CAP_SYS_PTRACE)?;
        let mut buf = [0u8; 8];
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: one local iovec over buf; the remote one is only read.
        let n = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })
    .join()
    .unwrap()
}

/// Drop one capability from this thread's effective set.
fn drop_effective_cap(cap: u32) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: header and two data structs as capget/capset take them.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        d[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        if libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A store with a symmetric key and an ECC signing key, served by an agent
/// that has used both: (agent, symmetric key ID).
fn agent_with_used_keys(env: &Env) -> (Agent, String) {
    let key = store_with_key(env);
    let out = env.run_ok(&[
        "kms",
        "create-key",
        "--key-spec",
        "ECC_NIST_P256",
        "--key-usage",
        "SIGN_VERIFY",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ecc = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let agent = Agent::start(env, &[]);
    let enc = raw_call(
        &agent.socket,
        &serde_json::json!({"Operation": "Encrypt", "KeyId": key, "Plaintext": "c2VjcmV0"}),
    );
    let blob = enc["CiphertextBlob"].as_str().expect("Encrypt").to_owned();
    let dec = raw_call(
        &agent.socket,
        &serde_json::json!({"Operation": "Decrypt", "CiphertextBlob": blob}),
    );
    assert_eq!(dec["Plaintext"], "c2VjcmV0", "{dec}");
    let pk = raw_call(
        &agent.socket,
        &serde_json::json!({"Operation": "GetPublicKey", "KeyId": ecc}),
    );
    assert!(pk["PublicKey"].is_string(), "{pk}");
    (agent, key)
}

#[test]
fn agent_keeps_store_secrets_only_in_locked_undumped_memory() {
    if !need_root("agent_keeps_store_secrets_only_in_locked_undumped_memory") {
        return;
    }
    bounded(240, || {
        let env = Env::new();
        let (mut agent, _) = agent_with_used_keys(&env);
        let secrets = store_secrets(&env);
        assert!(secrets.len() >= 5, "store key, two keys' material");
        let pid = agent.child.as_ref().unwrap().id();
        let mut problems = Vec::new();
        for (what, needle) in &secrets {
            let (bad, copies) = exposed_copies(pid, needle);
            // The scan is not blind: what the store holds is found.
            let held = what == "store key" || what.ends_with("(base64)");
            if held && copies == 0 {
                problems.push(format!("no copy of the {what} found: the scan is blind"));
            }
            for b in bad {
                problems.push(format!("{what}: {b}"));
            }
        }
        assert!(agent.alive());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    });
}

#[test]
fn agent_is_not_dumpable() {
    if !need_root("agent_is_not_dumpable") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        store_with_key(&env);
        // The oracle works: a root process that stays dumpable is open to it.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let r = read_memory_without_ptrace(sleeper.id());
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        r.expect("probe of a dumpable process");
        let agent = Agent::start(&env, &[]);
        let e = read_memory_without_ptrace(agent.child.as_ref().unwrap().id())
            .expect_err("the agent is dumpable");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    });
}

/// The agent's threads.
fn threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

/// A data key generated for a client is in the agent's memory nowhere once
/// the client's connection is closed (and its thread gone).
#[test]
fn a_closed_connection_leaves_no_data_key_in_the_agent() {
    if !need_root("a_closed_connection_leaves_no_data_key_in_the_agent") {
        return;
    }
    bounded(240, || {
        let env = Env::new();
        let (agent, key) = agent_with_used_keys(&env);
        let pid = agent.child.as_ref().unwrap().id();
        let idle = threads(pid);
        let mut keys = Vec::new();
        for _ in 0..4 {
            let mut s = UnixStream::connect(&agent.socket).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let req = serde_json::json!({"Operation": "GenerateDataKey", "KeyId": key,
                "NumberOfBytes": 32});
            let body = serde_json::to_vec(&req).unwrap();
            use std::io::Write;
            s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
            s.write_all(&body).unwrap();
            let v = read_answer(&mut s);
            let b64 = v["Plaintext"].as_str().expect("GenerateDataKey").to_owned();
            keys.push((b64.clone(), base64_decode(&b64)));
            drop(s);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while threads(pid) > idle {
            assert!(Instant::now() < deadline, "connection threads linger");
            std::thread::sleep(Duration::from_millis(20));
        }
        let maps = mappings(pid);
        let mut left = Vec::new();
        for (i, (b64, raw)) in keys.iter().enumerate() {
            for (form, needle) in [("base64", b64.as_bytes()), ("raw", &raw[..])] {
                let hits = copies_of(pid, &maps, needle);
                if !hits.is_empty() {
                    left.push(format!("data key {i} ({form}): {} copies", hits.len()));
                }
            }
        }
        // The control: the same scan finds the store key.
        let (store_key, _) = unseal_store(&env);
        assert!(!copies_of(pid, &maps, &store_key).is_empty(), "blind scan");
        assert!(left.is_empty(), "{}", left.join("\n"));
    });
}
