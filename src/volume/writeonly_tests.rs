//! Write-only volumes through a whole `Volume`: round trips under every
//! recipient spec, what a write-only mount can and cannot read, the number
//! of key-service calls of a full mount, refused configs, planted session
//! files and tampered headers.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::error::ContentError;
use crate::kms::audit::{self, AuditFilter};
use crate::kms::local::LocalKeyService;

struct Fixture {
    dir: tempfile::TempDir,
    ks: Arc<LocalKeyService>,
    key: String,
    vdir: PathBuf,
}

fn new_key(ks: &LocalKeyService, spec: &str, usage: &str) -> String {
    let rec = ks
        .create_key_with_spec("r", "AWS_KMS", spec, usage)
        .unwrap();
    ks.arn(&rec.key_id)
}

fn fixture(spec: &str, usage: &str) -> Fixture {
    fixture_at(spec, usage, KeyLocation::Header)
}

fn fixture_at(spec: &str, usage: &str, key_location: KeyLocation) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ks = Arc::new(crate::kms::local::test_store(&dir.path().join("ks")));
    let key = new_key(&ks, spec, usage);
    let vdir = dir.path().join("vol");
    let opts = InitOptions {
        recipient_key: Some(key.clone()),
        key_location,
        ..InitOptions::default()
    };
    let cfg = Volume::init(&vdir, &*ks, "unused", &opts).unwrap();
    assert_eq!(cfg.format_version, 2);
    Fixture { dir, ks, key, vdir }
}

impl Fixture {
    fn write_only(&self) -> Volume {
        let r = Recipient::KeyService(self.key.clone());
        Volume::open_write_only(&self.vdir, Some(&*self.ks), &r, CacheOptions::default()).unwrap()
    }

    fn full(&self) -> Volume {
        let ks: Arc<dyn KeyService> = self.ks.clone();
        Volume::open_shared(&self.vdir, ks, CacheOptions::default()).unwrap()
    }

    /// Key-service calls that unseal a session.
    fn unseal_calls(&self) -> usize {
        audit::read(self.ks.dir(), &AuditFilter::default())
            .unwrap()
            .iter()
            .filter(|r| r.operation == "Decrypt" || r.operation == "DeriveSharedSecret")
            .count()
    }

    fn root_entries(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = std::fs::read_dir(&self.vdir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    }
}

fn root(vol: &Volume) -> (OwnedFd, DirContext) {
    let fd = crate::sys::open_dir_path(vol.root()).unwrap();
    let ctx = vol.dir_ctx(fd.as_fd(), true).unwrap();
    (fd, ctx)
}

/// A file made as the frontend makes one: side file, entry, header, data.
fn create_file(vol: &Volume, name: &str, data: &[u8]) -> OsString {
    let (fd, ctx) = root(vol);
    let b = vol.names().to_backing(&ctx, OsStr::new(name)).unwrap();
    assert!(vol.write_side(fd.as_fd(), &b).unwrap());
    let f = crate::sys::create_new(fd.as_fd(), &b.name, libc::O_RDWR, 0o600).unwrap();
    let c = FileContent::new();
    c.create(vol, f.as_fd()).unwrap();
    c.write(vol, f.as_fd(), 0, data).unwrap();
    b.name
}

fn read_file(vol: &Volume, backing: &OsStr) -> Result<Vec<u8>, ContentError> {
    let f = std::fs::File::open(vol.root().join(backing)).unwrap();
    FileContent::new().read(vol, f.as_fd(), 0, 1 << 20)
}

fn listed(vol: &Volume) -> (Vec<String>, usize) {
    let (fd, ctx) = root(vol);
    let (good, bad) = vol.list_dir(fd.as_fd(), &ctx).unwrap();
    let mut names: Vec<String> = good
        .into_iter()
        .map(|e| e.plain.into_string().unwrap())
        .collect();
    names.sort();
    (names, bad.len())
}

fn round_trip(spec: &str, usage: &str) {
    let fx = fixture(spec, usage);
    let long = "L".repeat(255);
    let wo = fx.write_only();
    assert!(wo.is_write_only());
    assert!(wo.volume_key().is_err());
    // Opening wrote nothing: no session before the first write.
    let before = fx.root_entries();
    let a = create_file(&wo, "a.txt", b"hello");
    let l = create_file(&wo, &long, &vec![7u8; 10_000]);
    assert_eq!(
        fx.root_entries().len(),
        before.len() + 5,
        "one session file"
    );
    let link = wo.encrypt_symlink(b"../target").unwrap();
    let dir_xattr = wo.encrypt_xattr(None, b"user.d", b"dv").unwrap();
    let f = std::fs::File::open(wo.root().join(&a)).unwrap();
    let fc = FileContent::new().crypto(&wo, f.as_fd()).unwrap();
    let file_xattr = wo.encrypt_xattr(Some(&fc), b"user.f", b"fv").unwrap();
    // The writer reads back all of its own.
    assert_eq!(read_file(&wo, &a).unwrap(), b"hello");
    assert_eq!(wo.open_symlink(&link).unwrap(), b"../target");
    assert_eq!(
        wo.open_xattr(None, &dir_xattr).unwrap(),
        (b"user.d".to_vec(), b"dv".to_vec())
    );
    let expect = (vec![long.clone(), "a.txt".to_string()], 0);
    assert_eq!(listed(&wo), expect);
    drop(wo);
    let full = fx.full();
    assert!(!full.is_write_only());
    assert_eq!(read_file(&full, &a).unwrap(), b"hello");
    assert_eq!(read_file(&full, &l).unwrap(), vec![7u8; 10_000]);
    assert_eq!(full.open_symlink(&link).unwrap(), b"../target");
    assert_eq!(
        full.open_xattr(None, &dir_xattr).unwrap(),
        (b"user.d".to_vec(), b"dv".to_vec())
    );
    let f = std::fs::File::open(full.root().join(&a)).unwrap();
    let fc = FileContent::new().crypto(&full, f.as_fd()).unwrap();
    assert_eq!(
        full.open_xattr(Some(&fc), &file_xattr).unwrap(),
        (b"user.f".to_vec(), b"fv".to_vec())
    );
    assert_eq!(listed(&full), expect);
    // The full mount writes too (its own session) and reads both.
    let b = create_file(&full, "b", b"second");
    assert_eq!(read_file(&full, &b).unwrap(), b"second");
    assert_eq!(
        fx.unseal_calls(),
        1,
        "{spec}: one unseal for the writer's session"
    );
}

#[test]
fn round_trips_with_rsa_2048_and_p256_recipients() {
    round_trip("RSA_2048", "ENCRYPT_DECRYPT");
    round_trip("ECC_NIST_P256", "KEY_AGREEMENT");
}

#[test]
fn other_recipient_specs_work() {
    for spec in ["ECC_NIST_P384", "ECC_NIST_P521", "RSA_4096"] {
        let usage = if spec.starts_with("RSA") {
            "ENCRYPT_DECRYPT"
        } else {
            "KEY_AGREEMENT"
        };
        let fx = fixture(spec, usage);
        let a = create_file(&fx.write_only(), "x", b"data");
        assert_eq!(read_file(&fx.full(), &a).unwrap(), b"data", "{spec}");
    }
}

#[test]
fn write_only_mount_cannot_read_an_earlier_session() {
    let fx = fixture("ECC_NIST_P256", "KEY_AGREEMENT");
    let first = fx.write_only();
    let a = create_file(&first, "old.log", b"past");
    let link = first.encrypt_symlink(b"secret-target").unwrap();
    let dir_xattr = first.encrypt_xattr(None, b"user.d", b"v").unwrap();
    drop(first);
    let wo = fx.write_only();
    let e = read_file(&wo, &a).unwrap_err();
    assert!(matches!(e, ContentError::WriteOnly { .. }), "{e}");
    assert_eq!(e.errno(), libc::EACCES);
    let e = wo.open_symlink(&link).unwrap_err();
    assert!(matches!(e, VolumeError::WriteOnly(_)), "{e}");
    assert_eq!(crate::error::volume_errno(&e), libc::EACCES);
    let e = wo.open_xattr(None, &dir_xattr).unwrap_err();
    assert!(matches!(e, VolumeError::WriteOnly(_)), "{e}");
    // Its name: found by lookup (a keyed hash), never listed.
    let (_, ctx) = root(&wo);
    let b = wo.names().to_backing(&ctx, OsStr::new("old.log")).unwrap();
    assert_eq!(b.name, a);
    assert_eq!(listed(&wo), (vec![], 0));
    let n = create_file(&wo, "new.log", b"now");
    assert_eq!(read_file(&wo, &n).unwrap(), b"now");
    assert_eq!(listed(&wo), (vec!["new.log".to_string()], 0));
    assert_eq!(fx.unseal_calls(), 0, "a write-only mount never unseals");
    drop(wo);
    assert_eq!(listed(&fx.full()).0, vec!["new.log", "old.log"]);
}

#[test]
fn a_full_mount_unseals_each_session_once() {
    let fx = fixture("RSA_2048", "ENCRYPT_DECRYPT");
    let wo = fx.write_only();
    let files: Vec<OsString> = (0..1000)
        .map(|i| create_file(&wo, &format!("f{i}"), format!("content {i}").as_bytes()))
        .collect();
    drop(wo);
    let second = create_file(&fx.write_only(), "second", b"2");
    assert_eq!(fx.unseal_calls(), 0);
    // Sessions unsealed as met (the mount), or all at open (tools).
    let opens: [&dyn Fn() -> Volume; 2] = [&|| fx.full(), &|| {
        Volume::open(&fx.vdir, &*fx.ks, CacheOptions::default()).unwrap()
    }];
    for open in opens {
        let before = fx.unseal_calls();
        let full = open();
        assert_eq!(listed(&full).0.len(), 1001);
        for (i, f) in files.iter().enumerate() {
            assert_eq!(
                read_file(&full, f).unwrap(),
                format!("content {i}").as_bytes()
            );
        }
        assert_eq!(read_file(&full, &second).unwrap(), b"2");
        assert_eq!(fx.unseal_calls() - before, 2, "one call per session");
    }
}

fn config_path(fx: &Fixture) -> PathBuf {
    fx.vdir.join(config::CONFIG_FILE)
}

const OTHER_KEY: &str = "is sealed to the public key with SHA-256";
const EDITED: &str = "the config failed authentication";

/// Both mounts refuse the config as `BadConfig` saying (write-only, full)
/// why, and write nothing.
fn assert_refused(fx: &Fixture, why: &str, said: (&str, &str)) {
    let before = fx.root_entries();
    let r = Recipient::KeyService(fx.key.clone());
    let e =
        Volume::open_write_only(&fx.vdir, Some(&*fx.ks), &r, CacheOptions::default()).unwrap_err();
    assert!(
        matches!(&e, VolumeError::BadConfig(m) if m.contains(said.0)),
        "{why}: {e}"
    );
    let ks: Arc<dyn KeyService> = fx.ks.clone();
    let e = Volume::open_shared(&fx.vdir, ks, CacheOptions::default()).unwrap_err();
    assert!(
        matches!(&e, VolumeError::BadConfig(m) if m.contains(said.1)),
        "{why}: {e}"
    );
    assert_eq!(fx.root_entries(), before, "{why}: nothing written");
}

#[test]
fn swapped_or_edited_configs_are_refused() {
    let fx = fixture("RSA_2048", "ENCRYPT_DECRYPT");
    let p = config_path(&fx);
    let orig = std::fs::read_to_string(&p).unwrap();
    let cfg = VolumeConfig::parse(orig.as_bytes()).unwrap().0;
    let f = cfg.recipient.clone().unwrap().public_key_sha256;
    // Another key: its fingerprint, its ARN, or a whole config made for it.
    let other = new_key(&fx.ks, "RSA_2048", "ENCRYPT_DECRYPT");
    let other_pub = fx.ks.get_public_key(&other).unwrap();
    let other_f = crate::crypto::recipient::RecipientPublicKey::from_der(&other_pub.public_key)
        .unwrap()
        .fingerprint_hex();
    for (from, to, said) in [
        (f.as_str(), other_f.as_str(), (OTHER_KEY, OTHER_KEY)),
        // The ARN is the full mount's way to the public key.
        (fx.key.as_str(), other.as_str(), (EDITED, OTHER_KEY)),
        (
            "\"block_size\": 4096",
            "\"block_size\": 8192",
            (EDITED, EDITED),
        ),
        (
            "\"key_location\": \"header\"",
            "\"key_location\": \"xattr\"",
            (EDITED, EDITED),
        ),
    ] {
        assert!(orig.contains(from), "{from}");
        std::fs::write(&p, orig.replace(from, to)).unwrap();
        assert_refused(&fx, to, said);
    }
    let attacker = fx.dir.path().join("attacker");
    let opts = InitOptions {
        recipient_key: Some(other.clone()),
        ..InitOptions::default()
    };
    Volume::init(&attacker, &*fx.ks, "", &opts).unwrap();
    let forged = std::fs::read_to_string(attacker.join(config::CONFIG_FILE)).unwrap();
    let forged = forged.replace(
        &VolumeConfig::parse(forged.as_bytes()).unwrap().0.volume_id,
        &cfg.volume_id,
    );
    std::fs::write(&p, &forged).unwrap();
    // The full mount follows the config to the other key, whose MAC does
    // not cover this volume ID.
    assert_refused(&fx, "a config made for another key", (OTHER_KEY, EDITED));
    std::fs::write(&p, &orig).unwrap();
    fx.write_only();
    // A recipient file: DER or PEM of the right key, refused for another.
    let der = fx.dir.path().join("r.der");
    std::fs::write(&der, fx.ks.get_public_key(&fx.key).unwrap().public_key).unwrap();
    Volume::open_write_only(
        &fx.vdir,
        None,
        &Recipient::File(der),
        CacheOptions::default(),
    )
    .unwrap();
    let wrong = fx.dir.path().join("o.der");
    std::fs::write(&wrong, &other_pub.public_key).unwrap();
    let e = Volume::open_write_only(
        &fx.vdir,
        None,
        &Recipient::File(wrong),
        CacheOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, VolumeError::BadConfig(_)), "{e}");
}

#[test]
fn write_only_refuses_a_v1_volume() {
    let tv = testutil::volume(InitOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let ks = crate::kms::local::test_store(&dir.path().join("ks"));
    let key = new_key(&ks, "RSA_2048", "ENCRYPT_DECRYPT");
    let e = Volume::open_write_only(
        tv.vol.root(),
        Some(&ks),
        &Recipient::KeyService(key),
        CacheOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, VolumeError::BadOption(m) if m.starts_with("not a write-only volume: made without --recipient-key")),
        "{e}"
    );
}

#[test]
fn init_refuses_keys_that_cannot_be_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let ks = crate::kms::local::test_store(&dir.path().join("ks"));
    let cases = [
        ("RSA_2048", "SIGN_VERIFY"),
        ("ECC_NIST_P256", "SIGN_VERIFY"),
        ("ECC_SECG_P256K1", "SIGN_VERIFY"),
    ];
    for (spec, usage) in cases {
        let key = new_key(&ks, spec, usage);
        let vdir = dir.path().join(spec);
        let opts = InitOptions {
            recipient_key: Some(key),
            ..InitOptions::default()
        };
        let e = Volume::init(&vdir, &ks, "", &opts).unwrap_err();
        assert!(
            matches!(&e, VolumeError::BadOption(m) if m.contains(spec) && m.contains(usage)),
            "{e}"
        );
        assert!(!vdir.exists());
    }
    let key = new_key(&ks, "RSA_2048", "ENCRYPT_DECRYPT");
    let opts = InitOptions {
        recipient_key: Some(key),
        plaintext_names: true,
        ..InitOptions::default()
    };
    let e = Volume::init(&dir.path().join("p"), &ks, "", &opts).unwrap_err();
    assert!(matches!(e, VolumeError::BadOption(_)), "{e}");
}

#[test]
fn planted_session_files_give_errors_not_panics() {
    let fx = fixture("ECC_NIST_P256", "KEY_AGREEMENT");
    let a = create_file(&fx.write_only(), "a", b"x");
    let session = fx
        .root_entries()
        .into_iter()
        .find(|n| n.to_string_lossy().starts_with("envelopefs.session."))
        .unwrap();
    let sp = fx.vdir.join(&session);
    let good = std::fs::read(&sp).unwrap();
    let plants: [(&str, &dyn Fn()); 5] = [
        ("symlink", &|| {
            std::os::unix::fs::symlink("/dev/zero", &sp).unwrap()
        }),
        ("fifo", &|| {
            let d = crate::sys::open_dir_path(&fx.vdir).unwrap();
            crate::sys::mknodat(d.as_fd(), &session, libc::S_IFIFO | 0o600, 0).unwrap();
        }),
        ("oversized", &|| {
            std::fs::write(&sp, vec![0u8; 2000]).unwrap()
        }),
        ("garbled", &|| {
            let mut g = good.clone();
            let n = g.len();
            g[n - 1] ^= 1;
            std::fs::write(&sp, g).unwrap()
        }),
        ("missing", &|| {}),
    ];
    for (what, plant) in plants {
        std::fs::remove_file(&sp).unwrap();
        plant();
        for full in [
            fx.full(),
            Volume::open(&fx.vdir, &*fx.ks, CacheOptions::default()).unwrap(),
        ] {
            let e = read_file(&full, &a).unwrap_err();
            assert!(matches!(e, ContentError::Corrupt { .. }), "{what}: {e}");
            assert_eq!(e.errno(), libc::EIO);
            assert_eq!(listed(&full), (vec![], 1), "{what}");
        }
        let _ = std::fs::remove_file(&sp);
        std::fs::write(&sp, &good).unwrap();
    }
    assert_eq!(read_file(&fx.full(), &a).unwrap(), b"x");
}

#[test]
fn header_v2_tampering_at_every_byte_fails_authentication() {
    let fx = fixture("RSA_2048", "ENCRYPT_DECRYPT");
    let a = create_file(&fx.write_only(), "a", b"content");
    let p = fx.vdir.join(&a);
    let good = std::fs::read(&p).unwrap();
    let full = fx.full();
    let wo = fx.write_only();
    assert_eq!(read_file(&full, &a).unwrap(), b"content");
    for i in 0..crate::crypto::header::HEADER_V2_LEN {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&p, &bad).unwrap();
        let e = read_file(&full, &a).unwrap_err();
        assert!(matches!(e, ContentError::Corrupt { .. }), "byte {i}: {e}");
        // The write-only mount: a bad magic, version or reserved byte is
        // refused as it is parsed; past them, the header names a session
        // that is not the mount's own.
        let e = read_file(&wo, &a).unwrap_err();
        if i < 8 {
            assert!(matches!(e, ContentError::Corrupt { .. }), "byte {i}: {e}");
        } else {
            assert!(matches!(e, ContentError::WriteOnly { .. }), "byte {i}: {e}");
        }
    }
    std::fs::write(&p, &good).unwrap();
    assert_eq!(read_file(&full, &a).unwrap(), b"content");
}

/// A writer holds P, so it can seal any name under its own session: a side
/// file whose name does not hash to its entry's backing name is refused by
/// a full mount's listing (the name would be shown twice, or hide another).
#[test]
fn a_side_file_naming_another_entry_is_not_listed() {
    let fx = fixture("RSA_2048", "ENCRYPT_DECRYPT");
    let wo = fx.write_only();
    let y = create_file(&wo, "y", b"1");
    let (fd, ctx) = root(&wo);
    let (id, key) = wo.sessions().unwrap().own().unwrap();
    let forged =
        crate::crypto::names_v2::seal_side(&key, &id, wo.volume_id(), &ctx, &y, OsStr::new("x"));
    let side = fx.vdir.join(format!("{}.name", y.to_str().unwrap()));
    std::fs::remove_file(&side).unwrap();
    std::fs::write(&side, forged).unwrap();
    drop((fd, wo));
    assert_eq!(listed(&fx.full()), (vec![], 1));
}

/// What has no meaning without a volume key refuses a write-only volume by
/// name, and never panics.
#[test]
fn tools_without_format_2_support_refuse_it() {
    use crate::snapshot::{copy_volume, CopyError, CopyOptions, Mode};
    let fx = fixture("RSA_2048", "ENCRYPT_DECRYPT");
    create_file(&fx.write_only(), "a", b"x");
    let e = Volume::rewrap(&fx.vdir, &*fx.ks).unwrap_err();
    assert!(matches!(e, VolumeError::Unsupported(_)), "{e}");
    assert_eq!(crate::error::volume_exit_code(&e), 26);
    // A rekey copy keeps data keys under a volume key: refused; a
    // reencrypt copy makes an ordinary volume.
    let key = fx.ks.default_key().unwrap();
    let opts = |mode| CopyOptions {
        key: key.clone(),
        mode,
        init: InitOptions::default(),
        progress: false,
    };
    let dst = fx.dir.path().join("copy");
    let e = copy_volume(&fx.vdir, &dst, None, &*fx.ks, &*fx.ks, &opts(Mode::Rekey)).unwrap_err();
    assert!(matches!(e, CopyError::Refused(_)), "{e}");
    assert!(!dst.exists());
    copy_volume(
        &fx.vdir,
        &dst,
        None,
        &*fx.ks,
        &*fx.ks,
        &opts(Mode::Reencrypt),
    )
    .unwrap();
    let copy = Volume::open(&dst, &*fx.ks, CacheOptions::default()).unwrap();
    assert!(!copy.config().is_write_only_format());
    assert_eq!(listed(&copy), (vec!["a".to_owned()], 0));
}

/// With the header in an xattr: exactly 100 bytes there, the backing file
/// holds blocks only, and a longer or shorter header xattr is refused.
#[test]
fn header_v2_in_an_xattr() {
    let fx = fixture_at("ECC_NIST_P256", "KEY_AGREEMENT", KeyLocation::Xattr);
    let wo = fx.write_only();
    let a = create_file(&wo, "a", b"in blocks");
    let f = std::fs::File::open(fx.vdir.join(&a)).unwrap();
    let h = crate::sys::fgetxattr(f.as_fd(), HEADER_XATTR).unwrap();
    assert_eq!(h.len(), 100);
    assert_eq!(&h[..5], b"EFSH\x02");
    let overhead = crate::crypto::offsets::BLOCK_OVERHEAD;
    assert_eq!(
        f.metadata().unwrap().len(),
        9 + overhead,
        "no header in the file"
    );
    drop(wo);
    let full = fx.full();
    assert_eq!(read_file(&full, &a).unwrap(), b"in blocks");
    for bad in [&h[..99], &[&h[..], &[0u8][..]].concat()[..]] {
        crate::sys::fsetxattr(f.as_fd(), HEADER_XATTR, bad, 0).unwrap();
        let e = read_file(&fx.full(), &a).unwrap_err();
        assert!(matches!(e, ContentError::Corrupt { .. }), "{e}");
    }
}

#[test]
fn memory_scan_support_names_the_keys_of_a_file() {
    let fx = fixture("RSA_2048", "ENCRYPT_DECRYPT");
    let a = create_file(&fx.write_only(), "a", b"x");
    let f = std::fs::File::open(fx.vdir.join(&a)).unwrap();
    let keys = fx
        .full()
        .session_keys_for_memory_scan_test(f.as_fd())
        .unwrap();
    assert_eq!(keys.len(), 6);
    let (crypto, full) = (FileContent::new(), fx.full());
    let fc = crypto.crypto(&full, f.as_fd()).unwrap();
    // The data key is among them; a write-only mount cannot ask.
    let blob = full.encrypt_xattr(Some(&fc), b"user.k", b"v").unwrap();
    let dk = crate::crypto::keys::DataKey::from_bytes(keys[1]);
    let probe = FileCrypto::new(fc.file_id(), dk);
    assert!(full.open_xattr(Some(&probe), &blob).is_ok());
    let e = fx
        .write_only()
        .session_keys_for_memory_scan_test(f.as_fd())
        .unwrap_err();
    assert!(matches!(e, VolumeError::WriteOnly(_)), "{e}");
}
