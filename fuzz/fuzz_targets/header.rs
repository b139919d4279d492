#![no_main]
//! File header parsing and unwrapping of untrusted bytes.
use envelopefs::crypto::header::FileHeader;
use envelopefs::crypto::keys::{VolumeId, VolumeKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = FileHeader::parse(data) {
        let vk = VolumeKey::from_bytes([7; 32]);
        // Must fail cleanly: nobody but us holds this key.
        let _ = h.open(&vk, &VolumeId([1; 16]));
    }
});
