//! Issue 18's "Bugs found", one test each, at the library.

use super::*;

#[test]
fn cancelled_deletion_of_a_key_without_material_stays_pending_import() {
    let f = fixture();
    // Never imported.
    let never = f.ks.create_key("byok", "EXTERNAL").unwrap().key_id;
    f.ks.schedule_key_deletion(&never, Some(7)).unwrap();
    f.ks.cancel_key_deletion(&never).unwrap();
    assert_eq!(f.state(&never), PENDING_IMPORT);
    assert!(matches!(
        f.ks.enable_key(&never),
        Err(KmsError::InvalidState(_))
    ));
    // Imported, then its material deleted.
    let gone = f.ks.create_key("byok2", "EXTERNAL").unwrap().key_id;
    let (token, pk, _) =
        f.ks.get_parameters_for_import(&gone, IMPORT_WRAPPING_ALGORITHM, None)
            .unwrap();
    let wrapped = wrap_key_material(&pk, &gone, &[9u8; 32]).unwrap();
    f.ks.import_key_material(&gone, &token, &wrapped, None, EXISTING)
        .unwrap();
    f.ks.delete_imported_key_material(&gone).unwrap();
    f.ks.schedule_key_deletion(&gone, Some(7)).unwrap();
    f.ks.cancel_key_deletion(&gone).unwrap();
    assert_eq!(f.state(&gone), PENDING_IMPORT);
    // With its material, the key comes back Disabled, as AWS documents.
    let kept = f.ks.create_key("byok3", "EXTERNAL").unwrap().key_id;
    let (token, pk, _) =
        f.ks.get_parameters_for_import(&kept, IMPORT_WRAPPING_ALGORITHM, None)
            .unwrap();
    let wrapped = wrap_key_material(&pk, &kept, &[8u8; 32]).unwrap();
    f.ks.import_key_material(&kept, &token, &wrapped, None, EXISTING)
        .unwrap();
    f.ks.schedule_key_deletion(&kept, Some(7)).unwrap();
    f.ks.cancel_key_deletion(&kept).unwrap();
    assert_eq!(f.state(&kept), DISABLED);
}

#[test]
fn decrypt_of_a_blob_without_magic_is_not_audited_against_its_bytes() {
    let f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap().key_id;
    let g = f.ks.generate_data_key(&k, 32, &ctx()).unwrap();
    let mut forged = g.ciphertext_blob.clone();
    forged[..4].copy_from_slice(b"XXXX");
    assert!(matches!(
        f.ks.decrypt(&forged, &ctx(), None),
        Err(KmsError::InvalidCiphertext)
    ));
    let decrypts = audit::read(
        f.ks.dir(),
        &audit::AuditFilter {
            key: None,
            operation: Some("Decrypt".into()),
            since: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(decrypts.len(), 1);
    assert_eq!(decrypts[0].outcome, "InvalidCiphertextException");
    assert_eq!(decrypts[0].key_arn, None);
}

#[test]
fn the_managed_default_key_refuses_on_demand_rotation() {
    let f = fixture();
    let d = f.ks.default_key().unwrap();
    let before = f.ks.describe(&d).unwrap().materials.len();
    assert!(matches!(
        f.ks.rotate_key_on_demand(&d),
        Err(KmsError::UnsupportedOperation(_))
    ));
    assert_eq!(f.ks.describe(&d).unwrap().materials.len(), before);
}

#[test]
fn an_empty_encryption_context_key_is_refused() {
    let f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap().key_id;
    let empty_key = EncryptionContext::new().with("", "v");
    assert!(matches!(
        f.ks.encrypt(&k, b"x", &empty_key),
        Err(KmsError::Validation(_))
    ));
    assert!(matches!(
        f.ks.generate_data_key(&k, 32, &empty_key),
        Err(KmsError::Validation(_))
    ));
    let blob = f.ks.encrypt(&k, b"x", &ctx()).unwrap().0;
    assert!(matches!(
        f.ks.decrypt(&blob, &empty_key, None),
        Err(KmsError::Validation(_))
    ));
    assert!(matches!(
        f.ks.re_encrypt(&blob, &ctx(), &k, &empty_key),
        Err(KmsError::Validation(_))
    ));
}

#[test]
fn bad_alias_names_are_invalid_alias_name_exceptions() {
    let f = fixture();
    let k = f.ks.create_key("k", "AWS_KMS").unwrap().key_id;
    let longest = format!("alias/{}", "a".repeat(250));
    assert_eq!(longest.len(), 256);
    f.ks.create_alias(&longest, &k).unwrap();
    f.ks.create_alias("alias/App_1-x/y", &k).unwrap();
    let too_long = format!("alias/{}", "a".repeat(251));
    for bad in [
        "app",
        "alias/",
        "alias/sp ace",
        "alias/é",
        "alias/a:b",
        "alias/a.b",
        too_long.as_str(),
        "alias/aws/x",
        "alias/envelopefs/x",
    ] {
        let r = f.ks.create_alias(bad, &k);
        assert!(
            matches!(r, Err(KmsError::InvalidAliasName(_))),
            "{bad}: {:?}",
            r.err().map(|e| e.to_string())
        );
        assert!(
            matches!(
                f.ks.update_alias(bad, &k),
                Err(KmsError::InvalidAliasName(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        f.ks.delete_alias(DEFAULT_ALIAS),
        Err(KmsError::InvalidAliasName(_))
    ));
    assert_eq!(
        KmsError::InvalidAliasName("x".into()).name(),
        "InvalidAliasNameException"
    );
}

/// Import `material` into `k` with HPKE wrapping.
fn import(f: &Fixture, k: &str, material: &[u8; 32], how: ImportType) -> Result<String, KmsError> {
    let (token, pk, _) =
        f.ks.get_parameters_for_import(k, IMPORT_WRAPPING_ALGORITHM, None)
            .unwrap();
    let wrapped = wrap_key_material(&pk, k, material).unwrap();
    f.ks.import_key_material(k, &token, &wrapped, None, how)
}

#[test]
fn imported_keys_rotate_on_demand_to_new_key_material() {
    let f = fixture();
    let k = f.ks.create_key("byok", "EXTERNAL").unwrap().key_id;
    let first = import(&f, &k, &[1u8; 32], EXISTING).unwrap();
    let old_blob = f.ks.encrypt(&k, b"old", &ctx()).unwrap().0;
    // Nothing to rotate to yet.
    assert!(matches!(
        f.ks.rotate_key_on_demand(&k),
        Err(KmsError::UnsupportedOperation(_))
    ));
    let second = import(&f, &k, &[2u8; 32], ImportType::NewKeyMaterial).unwrap();
    assert_ne!(first, second);
    // Pending rotation: not current until the rotation.
    assert_eq!(f.ks.describe(&k).unwrap().current_material, first);
    assert_eq!(f.ks.encrypt(&k, b"x", &ctx()).unwrap().2, first);
    assert!(matches!(
        import(&f, &k, &[1u8; 32], ImportType::NewKeyMaterial),
        Err(KmsError::IncorrectKeyMaterial(_))
    ));
    assert!(matches!(
        import(&f, &k, &[3u8; 32], ImportType::NewKeyMaterial),
        Err(KmsError::InvalidState(_))
    ));
    assert_eq!(f.ks.rotate_key_on_demand(&k).unwrap(), second);
    let r = f.ks.describe(&k).unwrap();
    assert_eq!(r.current_material, second);
    assert_eq!(r.on_demand_rotations, 1);
    let new_blob = f.ks.encrypt(&k, b"new", &ctx()).unwrap();
    assert_eq!(new_blob.2, second);
    // Both materials belong to the key now: with either missing it is
    // PendingImport, and each comes back with EXISTING_KEY_MATERIAL.
    f.ks.delete_imported_key_material(&k).unwrap();
    import(&f, &k, &[2u8; 32], EXISTING).unwrap();
    assert_eq!(f.state(&k), PENDING_IMPORT);
    assert!(matches!(
        import(&f, &k, &[4u8; 32], EXISTING),
        Err(KmsError::IncorrectKeyMaterial(_))
    ));
    assert_eq!(import(&f, &k, &[1u8; 32], EXISTING).unwrap(), first);
    assert_eq!(f.state(&k), ENABLED);
    for (blob, want) in [(&old_blob, &b"old"[..]), (&new_blob.0, &b"new"[..])] {
        assert_eq!(
            &f.ks.decrypt(blob, &ctx(), None).unwrap().plaintext[..],
            want
        );
    }
    // Automatic rotation stays refused for imported keys, as in AWS.
    assert!(matches!(
        f.ks.enable_key_rotation(&k, None),
        Err(KmsError::UnsupportedOperation(_))
    ));
}
