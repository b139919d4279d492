use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;
use crate::kms::audit;
use crate::kms::KeyService;

const EXISTING: ImportType = ImportType::ExistingKeyMaterial;

struct Fixture {
    _dir: tempfile::TempDir,
    ks: LocalKeyService,
    clock: Arc<AtomicU64>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut ks = test_store(&dir.path().join("ks"));
    let clock = Arc::new(AtomicU64::new(1_800_000_000));
    let c = clock.clone();
    ks.set_clock(Arc::new(move || c.load(Ordering::SeqCst)));
    Fixture {
        _dir: dir,
        ks,
        clock,
    }
}

impl Fixture {
    fn advance_days(&self, d: u64) {
        self.clock.fetch_add(d * DAY, Ordering::SeqCst);
    }

    /// Reopen, as the next use of the store does (runs due maintenance).
    fn reopen(&mut self) {
        let c = self.clock.clone();
        self.ks = LocalKeyService::open_with_clock(
            self.ks.dir(),
            "test passphrase",
            Arc::new(move || c.load(Ordering::SeqCst)),
        )
        .unwrap();
    }

    fn state(&self, k: &str) -> String {
        self.ks.describe(k).unwrap().key_state
    }
}

fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("volume", "v1")
}

#[test]
fn wrap_unwrap_context_and_tampering() {
    let f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap();
    let g = f.ks.generate_data_key(&k.key_id, 32, &ctx()).unwrap();
    let d = f.ks.decrypt(&g.ciphertext_blob, &ctx(), None).unwrap();
    assert_eq!(*d.plaintext, *g.plaintext);
    assert!(matches!(
        f.ks.decrypt(&g.ciphertext_blob, &EncryptionContext::new(), None),
        Err(KmsError::InvalidCiphertext)
    ));
    assert!(matches!(
        f.ks.decrypt(
            &g.ciphertext_blob,
            &EncryptionContext::new().with("volume", "v2"),
            None
        ),
        Err(KmsError::InvalidCiphertext)
    ));
    for i in 0..g.ciphertext_blob.len() {
        let mut bad = g.ciphertext_blob.clone();
        bad[i] ^= 0x20;
        assert!(f.ks.decrypt(&bad, &ctx(), None).is_err(), "byte {i}");
    }
    let other = f.ks.create_key("other", "AWS_KMS").unwrap();
    assert!(matches!(
        f.ks.decrypt(&g.ciphertext_blob, &ctx(), Some(&other.key_id)),
        Err(KmsError::IncorrectKey(_))
    ));
    let s2 = LocalKeyService::open(f.ks.dir(), "test passphrase").unwrap();
    assert_eq!(
        *s2.decrypt(&g.ciphertext_blob, &ctx(), None)
            .unwrap()
            .plaintext,
        *g.plaintext
    );
    assert!(matches!(
        LocalKeyService::open(f.ks.dir(), "wrong"),
        Err(KmsError::WrongPassphrase(_))
    ));
}

#[test]
fn key_state_table() {
    let mut f = fixture();
    // One key per state.
    let en = f.ks.create_key("enabled", "AWS_KMS").unwrap().key_id;
    let dis = f.ks.create_key("disabled", "AWS_KMS").unwrap().key_id;
    f.ks.disable_key(&dis).unwrap();
    let pd =
        f.ks.create_key("pending deletion", "AWS_KMS")
            .unwrap()
            .key_id;
    let pi =
        f.ks.create_key("pending import", "EXTERNAL")
            .unwrap()
            .key_id;
    let blob_pd = f.ks.encrypt(&pd, b"x", &ctx()).unwrap().0;
    f.ks.schedule_key_deletion(&pd, Some(7)).unwrap();
    f.reopen();
    assert_eq!(f.state(&en), ENABLED);
    assert_eq!(f.state(&dis), DISABLED);
    assert_eq!(f.state(&pd), PENDING_DELETION);
    assert_eq!(f.state(&pi), PENDING_IMPORT);
    let name = |r: Result<(), KmsError>| r.err().map(|e| e.name()).unwrap_or("ok");
    let ks = &f.ks;
    // Cryptographic operations.
    for (k, want) in [
        (&en, "ok"),
        (&dis, "DisabledException"),
        (&pi, "KMSInvalidStateException"),
        (&pd, "KMSInvalidStateException"),
    ] {
        assert_eq!(
            name(ks.encrypt(k, b"p", &ctx()).map(|_| ())),
            want,
            "Encrypt {k}"
        );
        assert_eq!(
            name(ks.generate_data_key(k, 32, &ctx()).map(|_| ())),
            want,
            "GenerateDataKey {k}"
        );
    }
    assert_eq!(
        name(ks.decrypt(&blob_pd, &ctx(), None).map(|_| ())),
        "KMSInvalidStateException"
    );
    // Rotation settings.
    assert_eq!(name(ks.enable_key_rotation(&en, None)), "ok");
    assert_eq!(
        name(ks.enable_key_rotation(&dis, None)),
        "DisabledException"
    );
    assert_eq!(
        name(ks.enable_key_rotation(&pi, None)),
        "UnsupportedOperationException"
    );
    assert_eq!(
        name(ks.enable_key_rotation(&pd, None)),
        "KMSInvalidStateException"
    );
    assert_eq!(name(ks.disable_key_rotation(&dis)), "DisabledException");
    // On-demand rotation.
    assert_eq!(
        name(ks.rotate_key_on_demand(&dis).map(|_| ())),
        "DisabledException"
    );
    assert_eq!(
        name(ks.rotate_key_on_demand(&pd).map(|_| ())),
        "KMSInvalidStateException"
    );
    // Cancel deletion only when pending deletion.
    for k in [&en, &dis, &pi] {
        assert_eq!(
            name(ks.cancel_key_deletion(k)),
            "KMSInvalidStateException",
            "{k}"
        );
    }
    // Aliases: not to a key pending deletion.
    assert_eq!(
        name(ks.create_alias("alias/pd", &pd)),
        "KMSInvalidStateException"
    );
    assert_eq!(name(ks.create_alias("alias/dis", &dis)), "ok");
    assert_eq!(name(ks.create_alias("alias/pi", &pi)), "ok");
    assert_eq!(
        name(ks.update_alias("alias/dis", &pd)),
        "KMSInvalidStateException"
    );
    // Schedule deletion again: already pending.
    assert_eq!(
        name(ks.schedule_key_deletion(&pd, None).map(|_| ())),
        "KMSInvalidStateException"
    );
    // Enable/disable on pending keys.
    assert_eq!(name(ks.enable_key(&pd)), "KMSInvalidStateException");
    assert_eq!(name(ks.disable_key(&pi)), "KMSInvalidStateException");
    assert_eq!(name(ks.enable_key(&dis)), "ok");
    // Describe works in every state.
    for k in [&en, &dis, &pd, &pi] {
        assert!(ks.describe(k).is_ok());
    }
    // Cancel leaves the key Disabled.
    ks.cancel_key_deletion(&pd).unwrap();
    assert_eq!(f.state(&pd), DISABLED);
    assert!(f.ks.describe(&pd).unwrap().deletion_date.is_none());
}

#[test]
fn rotation_keeps_old_material() {
    let mut f = fixture();
    let k = f.ks.create_key("rot", "AWS_KMS").unwrap().key_id;
    let mut blobs = vec![f.ks.encrypt(&k, b"gen0", &ctx()).unwrap()];
    for i in 1..=3 {
        let m = f.ks.rotate_key_on_demand(&k).unwrap();
        let b =
            f.ks.encrypt(&k, format!("gen{i}").as_bytes(), &ctx())
                .unwrap();
        assert_eq!(b.2, m, "new blobs use the current material");
        blobs.push(b);
    }
    // Automatic rotation, when due, on the next use of the store.
    f.ks.enable_key_rotation(&k, Some(90)).unwrap();
    f.advance_days(91);
    f.reopen();
    let r = f.ks.describe(&k).unwrap();
    assert_eq!(r.materials.len(), 5);
    assert_eq!(r.materials.last().unwrap().rotation_type, "AUTOMATIC");
    for (i, (blob, _, _)) in blobs.iter().enumerate() {
        assert_eq!(
            &f.ks.decrypt(blob, &ctx(), None).unwrap().plaintext[..],
            format!("gen{i}").as_bytes()
        );
    }
    // Disabled keys do not rotate; re-enabled past due, they rotate at once.
    f.ks.disable_key(&k).unwrap();
    f.advance_days(100);
    f.reopen();
    assert_eq!(f.ks.describe(&k).unwrap().materials.len(), 5);
    f.ks.enable_key(&k).unwrap();
    assert_eq!(f.ks.describe(&k).unwrap().materials.len(), 6);
    // The on-demand limit.
    for _ in 3..MAX_ON_DEMAND_ROTATIONS {
        f.ks.rotate_key_on_demand(&k).unwrap();
    }
    assert!(matches!(
        f.ks.rotate_key_on_demand(&k),
        Err(KmsError::LimitExceeded(_))
    ));
    assert!(matches!(
        f.ks.enable_key_rotation(&k, Some(89)),
        Err(KmsError::Validation(_))
    ));
    assert!(matches!(
        f.ks.enable_key_rotation(&k, Some(2561)),
        Err(KmsError::Validation(_))
    ));
}

#[test]
fn deletion_window_and_destruction() {
    let mut f = fixture();
    let k = f.ks.create_key("doomed", "AWS_KMS").unwrap().key_id;
    f.ks.create_alias("alias/doomed", &k).unwrap();
    let blob = f.ks.encrypt(&k, b"secret", &ctx()).unwrap().0;
    assert!(matches!(
        f.ks.schedule_key_deletion(&k, Some(6)),
        Err(KmsError::Validation(_))
    ));
    assert!(matches!(
        f.ks.schedule_key_deletion(&k, Some(31)),
        Err(KmsError::Validation(_))
    ));
    let (when, days) = f.ks.schedule_key_deletion(&k, None).unwrap();
    assert_eq!(days, 30);
    assert_eq!(when, f.clock.load(Ordering::SeqCst) + 30 * DAY);
    f.advance_days(29);
    f.reopen();
    assert_eq!(f.state(&k), PENDING_DELETION);
    f.advance_days(2);
    f.reopen();
    assert!(matches!(f.ks.describe(&k), Err(KmsError::NotFound(_))));
    assert!(!f.ks.list_aliases().contains_key("alias/doomed"));
    assert!(matches!(
        f.ks.decrypt(&blob, &ctx(), None),
        Err(KmsError::AccessDenied(_))
    ));
}

#[test]
fn managed_default_key_rules() {
    let f = fixture();
    let d = f.ks.default_key().unwrap();
    let r = f.ks.describe(DEFAULT_ALIAS).unwrap();
    assert_eq!(
        (
            r.key_manager.as_str(),
            r.rotation_enabled,
            r.rotation_period_days
        ),
        ("AWS", true, 365)
    );
    assert!(matches!(
        f.ks.disable_key(&d),
        Err(KmsError::UnsupportedOperation(_))
    ));
    assert!(matches!(
        f.ks.schedule_key_deletion(&d, None),
        Err(KmsError::UnsupportedOperation(_))
    ));
    assert!(matches!(
        f.ks.disable_key_rotation(&d),
        Err(KmsError::UnsupportedOperation(_))
    ));
    assert!(matches!(
        f.ks.update_alias(DEFAULT_ALIAS, &d),
        Err(KmsError::InvalidAliasName(_))
    ));
    assert!(matches!(
        f.ks.delete_alias(DEFAULT_ALIAS),
        Err(KmsError::InvalidAliasName(_))
    ));
}

#[test]
fn alias_rules() {
    let f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap().key_id;
    let k2 = f.ks.create_key("k2", "AWS_KMS").unwrap().key_id;
    f.ks.create_alias("alias/app_prod_1-x/y", &k).unwrap();
    for bad in [
        "app",
        "alias/",
        "alias/sp ace",
        "alias/é",
        "alias/envelopefs/x",
        "alias/aws/x",
    ] {
        assert!(
            matches!(
                f.ks.create_alias(bad, &k),
                Err(KmsError::InvalidAliasName(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        f.ks.create_alias("alias/app_prod_1-x/y", &k2),
        Err(KmsError::AlreadyExists(_))
    ));
    // Cryptographic operations take all four identifiers.
    let arn = f.ks.arn(&k);
    let alias_arn = f.ks.alias_arn("alias/app_prod_1-x/y");
    for id in [
        k.as_str(),
        arn.as_str(),
        "alias/app_prod_1-x/y",
        alias_arn.as_str(),
    ] {
        f.ks.encrypt(id, b"x", &ctx()).unwrap();
    }
    // Management operations take key ID or ARN only.
    assert!(matches!(
        f.ks.disable_key("alias/app_prod_1-x/y"),
        Err(KmsError::Validation(_))
    ));
    f.ks.disable_key(&arn).unwrap();
    f.ks.update_alias("alias/app_prod_1-x/y", &k2).unwrap();
    assert_eq!(f.ks.key_id_of("alias/app_prod_1-x/y").unwrap(), k2);
    f.ks.delete_alias("alias/app_prod_1-x/y").unwrap();
    assert!(matches!(
        f.ks.key_id_of("alias/app_prod_1-x/y"),
        Err(KmsError::NotFound(_))
    ));
    assert!(matches!(
        f.ks.update_alias("alias/none", &k),
        Err(KmsError::NotFound(_))
    ));
}

#[test]
fn imported_key_material() {
    let mut f = fixture();
    let k = f.ks.create_key("byok", "EXTERNAL").unwrap().key_id;
    assert!(f.ks.describe(&k).unwrap().current_material.is_empty());
    let material = [42u8; 32];
    let (token, pk, valid) =
        f.ks.get_parameters_for_import(&k, IMPORT_WRAPPING_ALGORITHM, None)
            .unwrap();
    assert_eq!(valid, f.clock.load(Ordering::SeqCst) + DAY);
    let wrapped = wrap_key_material(&pk, &k, &material).unwrap();
    assert!(matches!(
        f.ks.import_key_material(&k, "bad token", &wrapped, None, EXISTING),
        Err(KmsError::InvalidImportToken(_))
    ));
    let mut bad = wrapped.clone();
    bad[40] ^= 1;
    assert!(matches!(
        f.ks.import_key_material(&k, &token, &bad, None, EXISTING),
        Err(KmsError::InvalidCiphertext)
    ));
    let in_a_week = f.clock.load(Ordering::SeqCst) + 7 * DAY;
    let mid =
        f.ks.import_key_material(&k, &token, &wrapped, Some(in_a_week), EXISTING)
            .unwrap();
    assert_eq!(f.state(&k), ENABLED);
    let blob = f.ks.encrypt(&k, b"byok", &ctx()).unwrap().0;
    // Delete the material: PendingImport, unusable; the same material restores it.
    f.ks.delete_imported_key_material(&k).unwrap();
    assert_eq!(f.state(&k), PENDING_IMPORT);
    assert!(matches!(
        f.ks.decrypt(&blob, &ctx(), None),
        Err(KmsError::InvalidState(_))
    ));
    let (t2, pk2, _) =
        f.ks.get_parameters_for_import(&k, IMPORT_WRAPPING_ALGORITHM, None)
            .unwrap();
    let other = wrap_key_material(&pk2, &k, &[7u8; 32]).unwrap();
    assert!(matches!(
        f.ks.import_key_material(&k, &t2, &other, None, EXISTING),
        Err(KmsError::IncorrectKeyMaterial(_))
    ));
    let (t3, pk3, _) =
        f.ks.get_parameters_for_import(&k, IMPORT_WRAPPING_ALGORITHM, None)
            .unwrap();
    let same = wrap_key_material(&pk3, &k, &material).unwrap();
    assert_eq!(
        f.ks.import_key_material(&k, &t3, &same, Some(in_a_week), EXISTING)
            .unwrap(),
        mid
    );
    assert_eq!(
        &f.ks.decrypt(&blob, &ctx(), None).unwrap().plaintext[..],
        b"byok"
    );
    // Expiry: the material goes at ValidTo, on the next use of the store.
    f.advance_days(8);
    f.reopen();
    assert_eq!(f.state(&k), PENDING_IMPORT);
    // An expired import token is refused.
    let (t4, pk4, _) =
        f.ks.get_parameters_for_import(&k, IMPORT_WRAPPING_ALGORITHM, None)
            .unwrap();
    f.advance_days(2);
    let w4 = wrap_key_material(&pk4, &k, &material).unwrap();
    assert!(matches!(
        f.ks.import_key_material(&k, &t4, &w4, None, EXISTING),
        Err(KmsError::ExpiredImportToken(_))
    ));
    // Not for AWS_KMS keys; no automatic rotation for imported keys.
    let normal = f.ks.create_key("n", "AWS_KMS").unwrap().key_id;
    assert!(matches!(
        f.ks.get_parameters_for_import(&normal, IMPORT_WRAPPING_ALGORITHM, None),
        Err(KmsError::UnsupportedOperation(_))
    ));
}

#[test]
fn reencrypt_moves_to_current_material() {
    let f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap().key_id;
    let (blob, _, m0) = f.ks.encrypt(&k, b"vk", &ctx()).unwrap();
    let m1 = f.ks.rotate_key_on_demand(&k).unwrap();
    let (nb, src, dst, mat) = f.ks.re_encrypt(&blob, &ctx(), &k, &ctx()).unwrap();
    assert_eq!((src.clone(), mat.clone()), (dst, m1.clone()));
    assert_ne!(m0, m1);
    assert_eq!(
        &f.ks.decrypt(&nb, &ctx(), None).unwrap().plaintext[..],
        b"vk"
    );
    assert!(matches!(
        f.ks.re_encrypt(&blob, &EncryptionContext::new(), &k, &ctx()),
        Err(KmsError::InvalidCiphertext)
    ));
}

#[test]
fn corrupt_store_refused() {
    let f = fixture();
    let p = LocalKeyService::store_path(f.ks.dir());
    let raw = std::fs::read(&p).unwrap();
    std::fs::write(&p, &raw[..raw.len() / 2]).unwrap();
    assert!(matches!(
        LocalKeyService::open(f.ks.dir(), "test passphrase"),
        Err(KmsError::StoreCorrupt { .. })
    ));
    let mut flipped = raw.clone();
    let i = raw.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    std::fs::write(&p, &flipped).unwrap();
    assert!(LocalKeyService::open(f.ks.dir(), "test passphrase").is_err());
}

#[test]
fn backup_and_passphrase_change() {
    let mut f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap().key_id;
    let blob = f.ks.encrypt(&k, b"kept", &ctx()).unwrap().0;
    let backup = f.ks.dir().parent().unwrap().join("backup.json");
    f.ks.export_backup(&backup, "backup pass").unwrap();
    let other = f.ks.dir().parent().unwrap().join("restored");
    let cost = KdfCost {
        m_cost_kib: 64,
        t_cost: 1,
    };
    assert!(matches!(
        LocalKeyService::import_backup(&other, &backup, "wrong", "new", cost),
        Err(KmsError::WrongPassphrase(_))
    ));
    let r = LocalKeyService::import_backup(&other, &backup, "backup pass", "new store pass", cost)
        .unwrap();
    assert_eq!(r.arn(&k), f.ks.arn(&k), "ARNs survive a restore");
    assert_eq!(
        &r.decrypt(&blob, &ctx(), None).unwrap().plaintext[..],
        b"kept"
    );
    assert!(matches!(
        LocalKeyService::import_backup(&other, &backup, "backup pass", "x", cost),
        Err(KmsError::AlreadyExists(_))
    ));
    f.ks.change_passphrase("changed").unwrap();
    assert!(LocalKeyService::open(f.ks.dir(), "test passphrase").is_err());
    let s = LocalKeyService::open(f.ks.dir(), "changed").unwrap();
    assert_eq!(
        &s.decrypt(&blob, &ctx(), None).unwrap().plaintext[..],
        b"kept"
    );
}

#[test]
fn every_operation_is_audited_without_secrets() {
    let f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap().key_id;
    f.ks.create_alias("alias/a", &k).unwrap();
    let g = f.ks.generate_data_key(&k, 32, &ctx()).unwrap();
    f.ks.decrypt(&g.ciphertext_blob, &ctx(), None).unwrap();
    let _ =
        f.ks.decrypt(&g.ciphertext_blob, &EncryptionContext::new(), None);
    f.ks.re_encrypt(&g.ciphertext_blob, &ctx(), &k, &ctx())
        .unwrap();
    f.ks.encrypt(&k, b"x", &ctx()).unwrap();
    f.ks.rotate_key_on_demand(&k).unwrap();
    f.ks.enable_key_rotation(&k, None).unwrap();
    f.ks.disable_key(&k).unwrap();
    f.ks.enable_key(&k).unwrap();
    f.ks.schedule_key_deletion(&k, Some(7)).unwrap();
    f.ks.cancel_key_deletion(&k).unwrap();
    let ops: Vec<String> = audit::read(f.ks.dir(), &Default::default())
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.operation, r.outcome))
        .collect();
    for want in [
        "CreateKey ok",
        "CreateAlias ok",
        "GenerateDataKey ok",
        "Decrypt ok",
        "Decrypt InvalidCiphertextException",
        "ReEncrypt ok",
        "Encrypt ok",
        "RotateKeyOnDemand ok",
        "EnableKeyRotation ok",
        "DisableKey ok",
        "EnableKey ok",
        "ScheduleKeyDeletion ok",
        "CancelKeyDeletion ok",
    ] {
        assert!(ops.iter().any(|o| o == want), "missing {want} in {ops:?}");
    }
    let log = std::fs::read_to_string(audit::audit_path(f.ks.dir())).unwrap();
    assert!(
        !log.contains(&B64.encode(&g.plaintext[..])),
        "no data key in the audit log"
    );
    let one = audit::read(
        f.ks.dir(),
        &audit::AuditFilter {
            key: Some(k.clone()),
            operation: Some("decrypt".into()),
            since: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(one.len(), 2);
    assert_eq!(one[0].encryption_context.as_ref(), Some(&ctx()));
    assert!(one[0].key_material_id.is_some());
}

#[test]
fn time_format() {
    assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(fmt_time(1_800_000_000), "2027-01-15T08:00:00Z");
}

mod bugs;

/// The trait's recipient-key calls, as a write-only volume makes them:
/// each is one audited key-service call with AWS's answer.
#[test]
fn recipient_key_calls_through_the_trait() {
    use crate::crypto::asym::{self, EncryptionAlgorithm};
    let f = fixture();
    let ks: &dyn KeyService = &f.ks;
    let rsa =
        f.ks.create_key_with_spec("r", "AWS_KMS", "RSA_2048", "ENCRYPT_DECRYPT")
            .unwrap();
    let ecc =
        f.ks.create_key_with_spec("e", "AWS_KMS", "ECC_NIST_P384", "KEY_AGREEMENT")
            .unwrap();
    let before = audit::read(f.ks.dir(), &audit::AuditFilter::default())
        .unwrap()
        .len();
    let p = ks.get_public_key(&rsa.key_id).unwrap();
    assert_eq!(
        (
            p.key_arn.as_str(),
            p.key_spec.as_str(),
            p.key_usage.as_str()
        ),
        (
            f.ks.arn(&rsa.key_id).as_str(),
            "RSA_2048",
            "ENCRYPT_DECRYPT"
        )
    );
    let ct = asym::encrypt(&p.der, EncryptionAlgorithm::RsaesOaepSha256, b"k").unwrap();
    assert_eq!(
        &ks.decrypt_rsa_oaep_sha256(&rsa.key_id, &ct).unwrap()[..],
        b"k"
    );
    // SHA-1 OAEP is another algorithm: it does not decrypt as SHA-256.
    let ct1 = asym::encrypt(&p.der, EncryptionAlgorithm::RsaesOaepSha1, b"k").unwrap();
    assert!(matches!(
        ks.decrypt_rsa_oaep_sha256(&rsa.key_id, &ct1),
        Err(KmsError::InvalidCiphertext)
    ));
    let pe = ks.get_public_key(&ecc.key_id).unwrap();
    assert_eq!(pe.key_usage, "KEY_AGREEMENT");
    let (eph, z) = asym::ecdh_ephemeral(asym::KeySpec::EccNistP384, &pe.der).unwrap();
    assert_eq!(*ks.derive_shared_secret(&ecc.key_id, &eph).unwrap(), *z);
    // The wrong usage is refused as AWS refuses it.
    assert!(matches!(
        ks.derive_shared_secret(&rsa.key_id, &eph),
        Err(KmsError::InvalidKeyUsage(_))
    ));
    let after = audit::read(f.ks.dir(), &audit::AuditFilter::default())
        .unwrap()
        .len();
    assert_eq!(after - before, 6, "one audit line per call");
}
