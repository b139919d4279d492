#![no_main]
//! The key store file (outer JSON) of untrusted bytes, KDF skipped: what
//! parses and opens under the fixed store key (the sealed seed) seals again
//! to a file that parses and opens to the same content, and opens under no
//! other key.
#[path = "common.rs"]
mod common;
use envelopefs::kms::store::{parse_store_file, seal_store, unseal_store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = parse_store_file(data) else {
        return;
    };
    assert!(
        !matches!(unseal_store(&f, &common::OTHER_KEY), Ok(_)),
        "opened under another key"
    );
    if let Ok(plain) = unseal_store(&f, &common::STORE_KEY) {
        let again = seal_store(&f.store_id, &f.kdf, &common::STORE_KEY, &plain).expect("seal");
        let g = parse_store_file(&again).expect("a sealed store parses");
        assert_eq!(g.store_id, f.store_id);
        let back = unseal_store(&g, &common::STORE_KEY).expect("a sealed store opens");
        assert_eq!(&back[..], &plain[..]);
    }
});
