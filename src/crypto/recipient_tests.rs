use super::*;
use crate::crypto::asym::ALL_SPECS;

fn key_pair(spec: KeySpec) -> (Zeroizing<Vec<u8>>, RecipientPublicKey) {
    let pkcs8 = asym::generate(spec).unwrap();
    let der = asym::public_key_der(spec, &pkcs8).unwrap();
    (pkcs8, RecipientPublicKey::from_der(&der).unwrap())
}

/// What the key service answers, computed here from the private key.
fn answer(spec: KeySpec, pkcs8: &[u8], f: &SessionFile) -> Zeroizing<Vec<u8>> {
    match f.request() {
        UnsealRequest::RsaOaepSha256(ct) => {
            asym::decrypt(spec, pkcs8, EncryptionAlgorithm::RsaesOaepSha256, ct).unwrap()
        }
        UnsealRequest::Ecdh(peer) => asym::derive_shared_secret(spec, pkcs8, peer).unwrap(),
    }
}

#[test]
fn sessions_unseal_for_every_supported_spec() {
    let vid = VolumeId([7; 16]);
    for spec in ALL_SPECS
        .into_iter()
        .filter(|s| *s != KeySpec::EccSecgP256k1)
    {
        let (pkcs8, r) = key_pair(spec);
        assert_eq!(r.spec(), spec);
        let s = new_session(&r, &vid).unwrap();
        assert!(s.file.len() <= MAX_SESSION_FILE_LEN, "{}", spec.name());
        let f = SessionFile::parse(&s.file, &s.id, &r).unwrap();
        let key = f.finish(&answer(spec, &pkcs8, &f), &vid).unwrap();
        assert_eq!(key.expose(), s.key.expose(), "{}", spec.name());
        // Another volume ID gives another key (RSA) or fails (ECDH binds it).
        match f.finish(&answer(spec, &pkcs8, &f), &VolumeId([8; 16])) {
            Ok(k) => assert_ne!(k.expose(), s.key.expose()),
            Err(e) => assert_eq!(e, SessionError::Unseal),
        }
    }
}

#[test]
fn secp256k1_and_garbage_are_not_recipients() {
    let pkcs8 = asym::generate(KeySpec::EccSecgP256k1).unwrap();
    let der = asym::public_key_der(KeySpec::EccSecgP256k1, &pkcs8).unwrap();
    assert_eq!(
        RecipientPublicKey::from_der(&der),
        Err(RecipientError::NotAPublicKey)
    );
    assert_eq!(
        RecipientPublicKey::parse(b"hello"),
        Err(RecipientError::NotAPublicKey)
    );
    assert_eq!(
        RecipientPublicKey::parse(b"-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n"),
        Err(RecipientError::NotAPublicKey)
    );
}

#[test]
fn pem_and_der_give_the_same_key() {
    let (_, r) = key_pair(KeySpec::EccNistP256);
    let b64 = B64.encode(r.der());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let p = RecipientPublicKey::parse(pem.as_bytes()).unwrap();
    assert_eq!(p, r);
    assert_eq!(RecipientPublicKey::parse(r.der()).unwrap(), r);
    assert_eq!(r.fingerprint(), &<[u8; 32]>::from(Sha256::digest(r.der())));
    assert_eq!(r.fingerprint_hex().len(), 64);
}

#[test]
fn session_files_are_checked_before_any_key_service_call() {
    let vid = VolumeId([7; 16]);
    for spec in [KeySpec::Rsa2048, KeySpec::EccNistP256] {
        let (pkcs8, r) = key_pair(spec);
        let (_, other) = key_pair(spec);
        let s = new_session(&r, &vid).unwrap();
        assert_eq!(
            SessionFile::parse(&s.file, &s.id, &other).unwrap_err(),
            SessionError::OtherRecipient
        );
        assert!(matches!(
            SessionFile::parse(&s.file, &SessionId([0; 16]), &r),
            Err(SessionError::Garbled(_))
        ));
        for cut in [0, 10, PREFIX_LEN, s.file.len() - 1] {
            assert!(matches!(
                SessionFile::parse(&s.file[..cut], &s.id, &r),
                Err(SessionError::Garbled(_))
            ));
        }
        let mut long = s.file.clone();
        long.push(0);
        assert!(SessionFile::parse(&long, &s.id, &r).is_err());
        // Every byte flipped: refused when parsed, or the unsealed key
        // differs / fails (RSA's ciphertext is the key service's to check).
        for i in 0..s.file.len() {
            let mut bad = s.file.clone();
            bad[i] ^= 0x40;
            let Ok(f) = SessionFile::parse(&bad, &s.id, &r) else {
                continue;
            };
            let ans = match f.request() {
                UnsealRequest::RsaOaepSha256(ct) => {
                    match asym::decrypt(spec, &pkcs8, EncryptionAlgorithm::RsaesOaepSha256, ct) {
                        Ok(a) => a,
                        Err(_) => continue,
                    }
                }
                UnsealRequest::Ecdh(peer) => match asym::derive_shared_secret(spec, &pkcs8, peer) {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            assert_eq!(
                f.finish(&ans, &vid).unwrap_err(),
                SessionError::Unseal,
                "{i}"
            );
        }
    }
}

#[test]
fn session_names_and_blobs() {
    let id = SessionId([0xfb; 16]);
    let name = id.file_name();
    assert!(name.starts_with(SESSION_FILE_PREFIX));
    assert_eq!(SessionId::from_file_name(OsStr::new(&name)), Some(id));
    assert_eq!(
        SessionId::from_file_name(OsStr::new("envelopefs.session.x")),
        None
    );
    let s = SessionKey::random();
    let vid = VolumeId([1; 16]);
    let blob = seal_blob(&s, &id, &vid, b"label", b"aad", b"plain");
    assert_eq!(SessionId::of_blob(&blob), Some(id));
    assert_eq!(
        &open_blob(&s, &vid, b"label", b"aad", &blob).unwrap()[..],
        b"plain"
    );
    assert!(open_blob(&s, &vid, b"other", b"aad", &blob).is_none());
    assert!(open_blob(&s, &vid, b"label", b"aaD", &blob).is_none());
    assert!(open_blob(&SessionKey::random(), &vid, b"label", b"aad", &blob).is_none());
    assert!(open_blob(&s, &vid, b"label", b"aad", &blob[..20]).is_none());
}
