#![no_main]
//! Volume config parsing and MAC checking of untrusted bytes.
use envelopefs::crypto::keys::VolumeKey;
use envelopefs::volume::VolumeConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((cfg, mac)) = VolumeConfig::parse(data) {
        let _ = cfg.wrapped_key();
        assert!(cfg.verify(&mac, &VolumeKey::from_bytes([9; 32])).is_err());
    }
});
