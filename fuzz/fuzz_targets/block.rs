#![no_main]
//! Content blocks of untrusted bytes.
use envelopefs::crypto::content::FileCrypto;
use envelopefs::crypto::keys::{DataKey, FileId};
use envelopefs::crypto::offsets::{BlockIndex, BLOCK_OVERHEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fc = FileCrypto::new(FileId([1; 16]), DataKey::from_bytes([2; 32]));
    let mut out = vec![0u8; data.len().saturating_sub(BLOCK_OVERHEAD as usize)];
    let r = fc.decrypt_block(BlockIndex(0), data, &mut out);
    if r.is_ok() {
        // Only a hole (all zeros) can pass without the key.
        assert!(data.iter().all(|b| *b == 0));
    }
});
