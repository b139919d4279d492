#![no_main]
//! The decrypted key store: the input is the store's content (JSON), which
//! the harness seals under the fixed store key and writes as the store file,
//! then opens with that key (`open_with_store_key`: no Argon2id per input).
//! Opening carries out what is due (deletions, expiries, rotations); then
//! every key is described and, where encryption works, its blob must
//! decrypt to the plaintext, under its context only.
#[path = "common.rs"]
mod common;
use std::sync::Arc;

use envelopefs::kms::local::{KdfCost, LocalKeyService};
use envelopefs::kms::store::seal_store;
use envelopefs::kms::{EncryptionContext, KeyService};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

/// The store's clock: fixed, so that what is due does not depend on the day.
const NOW: u64 = 1_800_000_000;

/// A key or material ID as the service writes it (blobs carry the UUID's
/// bytes and name it canonically again on decryption).
fn canonical_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.to_string() == s)
}

fn check(ks: &LocalKeyService) {
    let ctx = EncryptionContext::new().with("fuzz", "1");
    for alias in ks.list_aliases().keys() {
        let _ = ks.describe(alias);
    }
    for rec in ks.list_keys() {
        let Ok(described) = ks.describe(&rec.key_id) else {
            continue;
        };
        let Ok((blob, _, material)) = ks.encrypt(&described.key_id, b"plain", &ctx) else {
            continue;
        };
        if !(canonical_uuid(&described.key_id) && canonical_uuid(&material)) {
            continue;
        }
        let back = ks
            .decrypt(&blob, &ctx, Some(&described.key_id))
            .expect("a blob the store made does not decrypt");
        assert_eq!(&back.plaintext[..], b"plain");
        assert_eq!(back.key_material_id, material);
        assert!(ks.decrypt(&blob, &EncryptionContext::new(), None).is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let kdf = KdfCost::default().params();
    let sealed = seal_store("fuzzstore01", &kdf, &common::STORE_KEY, data).expect("seal");
    common::dump_seed("keystore-sealed", &sealed);
    std::fs::write(LocalKeyService::store_path(dir.path()), &sealed).expect("write store");
    let clock = Arc::new(|| NOW);
    let other = Zeroizing::new(common::OTHER_KEY);
    assert!(
        LocalKeyService::open_with_store_key(dir.path(), other, clock.clone()).is_err(),
        "the store opened under another key"
    );
    let key = Zeroizing::new(common::STORE_KEY);
    if let Ok(ks) = LocalKeyService::open_with_store_key(dir.path(), key, clock) {
        check(&ks);
    }
});
