//! The crypto core: AEAD backend, key types, block/offset arithmetic, file
//! headers, content encryption and the name transform. Nothing here touches
//! the disk.

pub mod aead;
pub mod asym;
pub mod content;
pub mod header;
pub mod keys;
pub mod names;
pub mod names_v2;
pub mod offsets;
pub mod recipient;
pub mod secmem;

/// Fill a buffer from the OS random source.
pub fn random_bytes(buf: &mut [u8]) {
    // getrandom only fails when the kernel has no entropy source at all; that
    // is not a state any encryption can proceed from.
    getrandom::getrandom(buf).expect("the OS random number generator failed");
}

pub fn random_array<const N: usize>() -> [u8; N] {
    let mut a = [0u8; N];
    random_bytes(&mut a);
    a
}
