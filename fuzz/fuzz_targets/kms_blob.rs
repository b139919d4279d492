#![no_main]
//! Key-service ciphertext blobs: Decrypt of untrusted bytes, and (byte 0
//! odd) the rest as a plaintext the store wraps itself: it must unwrap to
//! the same bytes under its context only.
#[path = "common.rs"]
mod common;
use envelopefs::kms::local::DEFAULT_ALIAS;
use envelopefs::kms::{EncryptionContext, KeyService};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ks = &common::store().ks;
    let ctx = EncryptionContext::new().with("a", "b");
    if data.first().is_some_and(|m| m & 1 == 1) {
        let plain = &data[1..];
        match ks.encrypt(DEFAULT_ALIAS, plain, &ctx) {
            Ok((blob, _, _)) => {
                let back = ks
                    .decrypt(&blob, &ctx, Some(DEFAULT_ALIAS))
                    .expect("unwraps");
                assert_eq!(&back.plaintext[..], plain);
                assert!(ks.decrypt(&blob, &EncryptionContext::new(), None).is_err());
            }
            Err(_) => assert!(plain.is_empty() || plain.len() > 4096),
        }
        return;
    }
    let _ = ks.decrypt(data, &EncryptionContext::new(), None);
    let _ = ks.decrypt(data, &ctx, Some(DEFAULT_ALIAS));
});
