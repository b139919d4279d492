#![no_main]
//! File headers of untrusted bytes. A header that parses re-serialises to
//! the same bytes (nothing dropped or normalised: the bytes are what the
//! MAC covers). Under the fixed volume key a header opens only if it is one
//! the harness could have sealed; then its key survives a rewrap and back,
//! and it opens under no other volume.
#[path = "common.rs"]
mod common;
use envelopefs::crypto::header::{FileHeader, HEADER_LEN};
use envelopefs::crypto::keys::{DataKey, FileId, VolumeId, VolumeKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vk = VolumeKey::from_bytes(common::VOLUME_KEY);
    let vid = VolumeId(common::VOLUME_ID);
    if data.len() == 48 {
        // A file ID and a data key: sealed by the harness, they come back.
        let fid = FileId(data[..16].try_into().expect("16 bytes"));
        let dk = DataKey::from_slice(&data[16..]).expect("32 bytes");
        let h = FileHeader::seal(&vk, &vid, fid, &dk);
        common::dump_seed("header-sealed", h.as_bytes());
        let p = FileHeader::parse(h.as_bytes()).expect("a sealed header parses");
        assert_eq!(p.file_id, fid);
        let back = p.open(&vk, &vid).expect("a sealed header opens");
        assert_eq!(back.expose(), dk.expose());
    }
    let Ok(h) = FileHeader::parse(data) else {
        assert!(data.len() != HEADER_LEN || data[..4] != *b"EFSH" || data[4..8] != [1, 0, 0, 0]);
        return;
    };
    assert_eq!(
        &h.as_bytes()[..],
        data,
        "a parsed header re-serialises differently"
    );
    assert_eq!(h.file_id.0[..], data[8..24]);
    let other = VolumeKey::from_bytes(common::OTHER_KEY);
    assert!(h.open(&other, &vid).is_err(), "opened under another key");
    if let Ok(k) = h.open(&vk, &vid) {
        assert!(
            h.open(&vk, &VolumeId([0x13; 16])).is_err(),
            "opened in another volume"
        );
        let moved = h.rewrap((&vk, &vid), (&other, &vid)).expect("rewrap");
        let home = moved
            .rewrap((&other, &vid), (&vk, &vid))
            .expect("rewrap back");
        assert_eq!(home.file_id, h.file_id);
        assert_eq!(home.open(&vk, &vid).expect("opens").expose(), k.expose());
    }
});
