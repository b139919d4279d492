//! The agent's memory, scanned while it serves (/proc/PID/mem through
//! /proc/PID/smaps): every copy of the store key, of a master key's
//! material and of an asymmetric private key lies in a mapping that is
//! locked (`lo`) and out of core dumps (`dd`); a data key handed to a
//! client is nowhere once its connection is gone; and the agent is not
//! dumpable. The secrets are recovered independently: Argon2id over the
//! test passphrase, then the store's sealed content opened with that key.

use std::fs;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::common::memscan::*;
use crate::common::*;
use crate::*;

/// The copies of `secret` in the process, found by its bytes past the
/// 16th: malloc writes its free-list pointers over the first 16 bytes of a
/// freed chunk, and a freed copy is a copy still.
fn tail_copies(pid: u32, maps: &[Mapping], secret: &[u8]) -> Vec<u64> {
    copies_of(pid, maps, &secret[16.min(secret.len() / 2)..])
}

/// The copies of `needle` that lie outside locked (`lo`, `Locked:` > 0),
/// undumped (`dd`) memory, described; and how many copies there are.
fn exposed_copies(pid: u32, needle: &[u8]) -> (Vec<String>, usize) {
    let maps = mappings(pid);
    let hits = tail_copies(pid, &maps, needle);
    let safe = Mapping::locked_undumped;
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
                let hits = tail_copies(pid, &maps, needle);
                if !hits.is_empty() {
                    left.push(format!("data key {i} ({form}): {} copies", hits.len()));
                }
            }
        }
        // The control: the same scan finds the store key.
        let (store_key, _) = unseal_store(&env);
        assert!(
            !tail_copies(pid, &maps, &store_key).is_empty(),
            "blind scan"
        );
        assert!(left.is_empty(), "{}", left.join("\n"));
    });
}
