#![no_main]
//! Key store file parsing and unsealing of untrusted bytes (KDF skipped).
use envelopefs::kms::store::{parse_store_file, unseal_store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = parse_store_file(data) {
        let _ = unseal_store(&f, &[3; 32]);
    }
});
