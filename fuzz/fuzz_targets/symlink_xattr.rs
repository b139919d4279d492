#![no_main]
//! Encrypted symlink targets and xattr values of untrusted bytes.
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = common::fixture();
    let _ = f.vol.decrypt_symlink(data);
    let _ = f.vol.decrypt_xattr(None, data);
    let _ = f.vol.xattr_backing_name(data);
});
