#![no_main]
//! Key-service ciphertext blobs: Decrypt of untrusted bytes.
#[path = "common.rs"]
mod common;
use envelopefs::kms::{EncryptionContext, KeyService};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = common::fixture();
    let _ = f.ks.decrypt(data, &EncryptionContext::new(), None);
    let _ = f
        .ks
        .decrypt(data, &EncryptionContext::new().with("a", "b"), Some("alias/envelopefs/default"));
});
