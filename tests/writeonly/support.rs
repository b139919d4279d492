//! Helpers of the write-only tests: recipient keys through `envelopefs kms`,
//! the format_version 2 derivations exactly as docs/FORMAT.md defines them
//! (the oracle: a test that unwraps a header with them proves the format),
//! the audit log by phase, and mounts that must be refused.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::*;

pub const HEADER_LEN: usize = 100;
pub const BLOCK: usize = 4096;
/// A block on disk: prefix (8) | nonce (12) | ciphertext | tag (16).
pub const BLOCK_OVERHEAD: usize = 36;
pub const SESSION_PREFIX: &str = "envelopefs.session.";
pub const SESSION_FIXED_LEN: usize = 56;

/// A kms command's JSON result.
pub fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--output", "json"]);
    serde_json::from_str(&env.run_ok(&a)).unwrap()
}

/// A recipient key made in the test's key store.
#[derive(Clone)]
pub struct Recipient {
    pub id: String,
    pub arn: String,
    pub spec: String,
    /// The public key as get-public-key returns it (DER SubjectPublicKeyInfo).
    pub der: Vec<u8>,
}

impl Recipient {
    pub fn create(env: &Env, spec: &str, usage: &str) -> Recipient {
        let k = json(
            env,
            &[
                "kms",
                "create-key",
                "--key-spec",
                spec,
                "--key-usage",
                usage,
            ],
        );
        let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let arn = k["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
        let p = json(env, &["kms", "get-public-key", "--key-id", &id]);
        let der = B64.decode(p["PublicKey"].as_str().unwrap()).unwrap();
        Recipient {
            id,
            arn,
            spec: spec.to_owned(),
            der,
        }
    }

    /// An RSA_2048 ENCRYPT_DECRYPT key.
    pub fn rsa(env: &Env) -> Recipient {
        Recipient::create(env, "RSA_2048", "ENCRYPT_DECRYPT")
    }

    /// An ECC_NIST_P256 KEY_AGREEMENT key.
    pub fn ecc(env: &Env) -> Recipient {
        Recipient::create(env, "ECC_NIST_P256", "KEY_AGREEMENT")
    }

    /// F = SHA-256(public key DER).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// The key-service operation a full mount unseals one session with.
    pub fn unseal_op(&self) -> &'static str {
        if self.spec.starts_with("RSA_") {
            "Decrypt"
        } else {
            "DeriveSharedSecret"
        }
    }

    pub fn der_file(&self, env: &Env, name: &str) -> PathBuf {
        let p = env.path(name);
        std::fs::write(&p, &self.der).unwrap();
        p
    }

    /// The public key as a PEM "PUBLIC KEY" file.
    pub fn pem_file(&self, env: &Env, name: &str) -> PathBuf {
        let b = B64.encode(&self.der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        let p = env.path(name);
        std::fs::write(&p, pem).unwrap();
        p
    }

    /// `mount` flags of a write-only mount that names this key.
    pub fn by_key(&self) -> Vec<String> {
        vec![
            "--write-only".into(),
            "--recipient-key".into(),
            self.id.clone(),
        ]
    }

    /// `mount` flags of a write-only mount given the public key in `file`.
    pub fn by_file(file: &Path) -> Vec<String> {
        vec![
            "--write-only".into(),
            "--recipient-file".into(),
            file.to_str().unwrap().into(),
        ]
    }
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `init CIPHERDIR --recipient-key KEY`.
pub fn init_v2(env: &Env, name: &str, r: &Recipient) -> PathBuf {
    env.init(name, &["--recipient-key", &r.id])
}

/// HKDF-SHA256(ikm, salt, info parts concatenated), 32 bytes.
pub fn hkdf32(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(&info.concat(), &mut out)
        .unwrap();
    out
}

/// The config of a format_version 2 volume, fields in the format's order
/// (the MAC covers their compact JSON in this order).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigV2 {
    pub format_version: u32,
    pub volume_id: String,
    pub cipher: String,
    pub block_size: u32,
    pub key_location: String,
    pub name_scheme: String,
    pub key_provider: String,
    pub recipient_key_arn: String,
    pub recipient_key_spec: String,
    pub recipient_public_key_sha256: String,
    pub header_length: u32,
    pub creation_date: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConfigFileV2 {
    pub config: ConfigV2,
    pub mac: String,
}

impl ConfigFileV2 {
    pub fn read(cipher: &Path) -> ConfigFileV2 {
        let raw = std::fs::read(cipher.join("envelopefs.conf")).unwrap();
        serde_json::from_slice(&raw)
            .unwrap_or_else(|e| panic!("not a v2 config ({e}): {}", String::from_utf8_lossy(&raw)))
    }

    pub fn write(&self, cipher: &Path) {
        std::fs::write(
            cipher.join("envelopefs.conf"),
            serde_json::to_vec(self).unwrap(),
        )
        .unwrap();
    }

    pub fn volume_id(&self) -> [u8; 16] {
        *uuid::Uuid::parse_str(&self.config.volume_id)
            .unwrap()
            .as_bytes()
    }

    /// The config MAC under the writer key of fingerprint `f`, with `nonce`.
    pub fn mac_for(&self, f: &[u8; 32], nonce: &[u8; 12]) -> String {
        let vid = self.volume_id();
        let w = writer_key(f, &vid);
        let k = hkdf32(&w, &vid, &[b"envelopefs config mac v2"]);
        let aad = serde_json::to_vec(&self.config).unwrap();
        let tag = Aes256Gcm::new_from_slice(&k)
            .unwrap()
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: b"",
                    aad: &aad,
                },
            )
            .unwrap();
        let mut mac = nonce.to_vec();
        mac.extend(tag);
        B64.encode(mac)
    }

    /// The MAC as the format defines it, recomputed with the stored nonce.
    pub fn mac_is_valid_for(&self, f: &[u8; 32]) -> bool {
        let mac = B64.decode(&self.mac).unwrap();
        let nonce: [u8; 12] = mac[..12].try_into().unwrap();
        self.mac_for(f, &nonce) == self.mac
    }
}

/// W = HKDF(F, volume ID, "envelopefs writer v2").
pub fn writer_key(f: &[u8; 32], vid: &[u8; 16]) -> [u8; 32] {
    hkdf32(f, vid, &[b"envelopefs writer v2"])
}

/// S = HKDF(K, volume ID, "envelopefs session v2" || session ID).
pub fn session_key(k: &[u8], vid: &[u8; 16], sid: &[u8; 16]) -> [u8; 32] {
    hkdf32(k, vid, &[b"envelopefs session v2", sid])
}

/// The keys a session key S derives for names, symlinks and directory
/// xattrs (each opens that session's entries of that kind).
pub fn session_subkeys(s: &[u8; 32], vid: &[u8; 16]) -> Vec<(&'static str, [u8; 32])> {
    vec![
        ("names key", hkdf32(s, vid, &[b"envelopefs names v2"])),
        ("symlink key", hkdf32(s, vid, &[b"envelopefs symlink v2"])),
        (
            "dir xattr key",
            hkdf32(s, vid, &[b"envelopefs dir xattr v2"]),
        ),
    ]
}

/// A session file, its fixed part checked against the format.
#[derive(Debug, Clone)]
pub struct SessionFile {
    pub path: PathBuf,
    pub id: [u8; 16],
    pub alg: u8,
    pub fingerprint: [u8; 32],
    pub body: Vec<u8>,
}

/// The volume's session files, by name.
pub fn sessions(cipher: &Path) -> Vec<SessionFile> {
    let mut names: Vec<String> = std::fs::read_dir(cipher)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(SESSION_PREFIX))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let path = cipher.join(&n);
            let raw = std::fs::read(&path).unwrap();
            assert!(raw.len() > SESSION_FIXED_LEN, "{n}: {} bytes", raw.len());
            assert_eq!(&raw[..4], b"EFSS", "{n}: magic");
            assert_eq!(raw[4], 1, "{n}: version");
            assert_eq!(&raw[6..8], &[0, 0], "{n}: reserved");
            let id: [u8; 16] = raw[8..24].try_into().unwrap();
            assert_eq!(
                &n[SESSION_PREFIX.len()..],
                B64URL.encode(id),
                "the file name is the session ID"
            );
            SessionFile {
                path,
                id,
                alg: raw[5],
                fingerprint: raw[24..56].try_into().unwrap(),
                body: raw[SESSION_FIXED_LEN..].to_vec(),
            }
        })
        .collect()
}

/// K of an RSA session, through `kms decrypt` as a holder of the private
/// key's Decrypt permission would get it.
pub fn unseal_rsa(env: &Env, r: &Recipient, s: &SessionFile) -> Vec<u8> {
    assert_eq!(s.alg, 1, "an RSAES_OAEP_SHA_256 session");
    assert_eq!(s.body.len(), 256, "the body is the RSA_2048 modulus long");
    let blob = env.path("session-body");
    std::fs::write(&blob, &s.body).unwrap();
    let out = json(
        env,
        &[
            "kms",
            "decrypt",
            "--key-id",
            &r.id,
            "--ciphertext-blob",
            &format!("fileb://{}", blob.display()),
            "--encryption-algorithm",
            "RSAES_OAEP_SHA_256",
        ],
    );
    let k = B64.decode(out["Plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(k.len(), 32, "K is 32 bytes");
    k
}

/// The 100-byte v2 header of a backing file (in the file or its xattr).
pub fn header_of(cfg: &ConfigV2, backing: &Path) -> [u8; HEADER_LEN] {
    let raw = if cfg.key_location == "xattr" {
        xattr_get(backing, "user.envelopefs.header").expect("the header xattr")
    } else {
        std::fs::read(backing).unwrap()
    };
    let h: [u8; HEADER_LEN] = raw[..HEADER_LEN].try_into().unwrap();
    assert_eq!(&h[..4], b"EFSH");
    assert_eq!(h[4], 2, "a version 2 header");
    h
}

/// The header's session ID.
pub fn header_session(h: &[u8; HEADER_LEN]) -> [u8; 16] {
    h[24..40].try_into().unwrap()
}

/// The data-key wrapping key of a header under session key `s`.
pub fn wrapping_key(s: &[u8; 32], vid: &[u8; 16], h: &[u8; HEADER_LEN]) -> [u8; 32] {
    hkdf32(s, vid, &[b"envelopefs data-key wrap v2", &h[8..24]])
}

/// The data key of a v2 header, unwrapped with its session key `s`.
pub fn unwrap_data_key(s: &[u8; 32], vid: &[u8; 16], h: &[u8; HEADER_LEN]) -> [u8; 32] {
    let wk = wrapping_key(s, vid, h);
    let mut aad = h[..40].to_vec();
    aad.extend_from_slice(vid);
    let dk = Aes256Gcm::new_from_slice(&wk)
        .unwrap()
        .decrypt(
            Nonce::from_slice(&h[40..52]),
            Payload {
                msg: &h[52..100],
                aad: &aad,
            },
        )
        .expect("the header's data key unwraps under its session key");
    dk.try_into().unwrap()
}

/// The number of lines of the key store's audit log (a phase's start).
pub fn audit_mark(env: &Env) -> usize {
    audit_lines(env).len()
}

fn audit_lines(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.path("ks").join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The operations audited since `mark`: `eventName` for an ok outcome,
/// `eventName:outcome` otherwise, with their counts.
pub fn audit_since(env: &Env, mark: usize) -> BTreeMap<String, usize> {
    let mut ops = BTreeMap::new();
    for l in &audit_lines(env)[mark..] {
        let v: Value = serde_json::from_str(l).unwrap();
        let name = v["eventName"].as_str().unwrap();
        let key = match v["outcome"].as_str().unwrap() {
            "ok" => name.to_owned(),
            o => format!("{name}:{o}"),
        };
        *ops.entry(key).or_insert(0) += 1;
    }
    ops
}

pub fn ops(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
    list.iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), *n))
        .collect()
}

/// Runs `envelopefs mount CIPHER MNT --foreground FLAGS`, which must fail
/// without mounting: its exit code and stderr. A mount that comes up is
/// unmounted and fails the test.
pub fn mount_refused(env: &Env, cipher: &Path, mnt_name: &str, flags: &[&str]) -> (i32, String) {
    let mnt = env.path(mnt_name);
    std::fs::create_dir_all(&mnt).unwrap();
    let mut child = env
        .cmd()
        .arg("mount")
        .arg(cipher)
        .arg(&mnt)
        .arg("--foreground")
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let code = st.code().expect("an exit, not a signal");
            return (code, err);
        }
        if is_mounted(&mnt) || t0.elapsed() > Duration::from_secs(20) {
            let _ = std::process::Command::new(BIN)
                .arg("umount")
                .arg(&mnt)
                .status();
            let _ = child.kill();
            let _ = child.wait();
            let c = std::ffi::CString::new(mnt.to_str().unwrap()).unwrap();
            // SAFETY: valid C string; detach a mount that should not exist.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            panic!("mount {flags:?} of {} was not refused", cipher.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command's error is one line `envelopefs: ...`.
pub fn one_line_error(what: &str, err: &str) {
    assert_eq!(err.lines().count(), 1, "{what}: one line, got {err:?}");
    assert!(err.starts_with("envelopefs: "), "{what}: {err:?}");
}

/// Every entry under `dir` (not following symlinks): kind, size, SHA-256 of
/// the content or target, mtime and xattr dump; the root's own too.
pub fn tree_state(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let digest = if md.is_file() {
            hex(&Sha256::digest(std::fs::read(&p).unwrap()))
        } else if md.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            hex(&Sha256::digest(t.as_os_str().as_encoded_bytes()))
        } else {
            String::new()
        };
        let xattrs = if md.is_symlink() {
            Vec::new()
        } else {
            xattr_list(&p)
                .into_iter()
                .map(|n| (xattr_get(&p, &n).map(|v| hex(&Sha256::digest(v))), n))
                .collect()
        };
        out.insert(
            p.strip_prefix(dir).unwrap().to_path_buf(),
            format!(
                "{:o} {} {} {}.{} {digest} {xattrs:?}",
                md.mode(),
                md.len(),
                md.ino(),
                md.mtime(),
                md.mtime_nsec()
            ),
        );
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The file name of a path, as a string (a backing name).
pub fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The lines of `log` that contain `part`.
pub fn lines_with<'a>(log: &'a str, part: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(part)).collect()
}

/// Flip one bit of the byte at `offset` of a file (again to undo it).
pub fn flip(p: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p).unwrap().permissions().mode();
    // Session files are 0400; root writes them anyway, the mode stays.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(p);
    let f = f.unwrap_or_else(|e| panic!("{} ({mode:o}): {e}", p.display()));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, offset).unwrap();
}

/// Flip one bit of byte `offset` of an xattr value.
pub fn flip_xattr(p: &Path, name: &str, offset: usize) {
    let mut v = xattr_get(p, name).unwrap();
    v[offset] ^= 0x01;
    xattr_set(p, name, &v);
}
