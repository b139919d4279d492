#![no_main]
//! Content blocks. Byte 0 picks the case:
//! - even: the rest is one ciphertext block from the disk: without the
//!   file's key only a hole (all zeros) passes, and the one-block and the
//!   run-of-blocks decryptions agree;
//! - odd: byte 1 sets a block length (1..64), bytes 2-3 a position and
//!   byte 4 a mask; the rest is plaintext the harness encrypts under the
//!   fixed file key, damages at the position (when the mask is not 0) and
//!   decrypts block by block and as one run: both must agree on every
//!   block, give back the plaintext when undamaged, and refuse exactly the
//!   damaged block.
#[path = "common.rs"]
mod common;
use envelopefs::crypto::content::FileCrypto;
use envelopefs::crypto::keys::{DataKey, FileId};
use envelopefs::crypto::offsets::{BlockIndex, BLOCK_OVERHEAD};
use libfuzzer_sys::fuzz_target;

const OH: usize = BLOCK_OVERHEAD as usize;

fn file() -> &'static FileCrypto {
    static F: std::sync::OnceLock<FileCrypto> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        FileCrypto::new(
            FileId(common::FILE_ID),
            DataKey::from_bytes(common::DATA_KEY),
        )
    })
}

fn untrusted(data: &[u8]) {
    let fc = FileCrypto::new(FileId([1; 16]), DataKey::from_bytes(common::OTHER_KEY));
    let mut out = vec![0u8; data.len().saturating_sub(OH)];
    let one = fc.decrypt_block(BlockIndex(0), data, &mut out);
    if one.is_ok() {
        // Only a hole (all zeros) can pass without the key.
        assert!(data.iter().all(|b| *b == 0));
    }
    if data.len() > OH {
        let mut buf = data.to_vec();
        let run = fc.decrypt_blocks_in_place(BlockIndex(0), &mut buf, &[data.len() - OH]);
        assert_eq!(run.is_ok(), one.is_ok(), "the two decryptions disagree");
    }
}

fn sealed(len: usize, pos: usize, mask: u8, plain: &[u8]) {
    let fc = file();
    let chunks: Vec<&[u8]> = plain.chunks(len).collect();
    let first = BlockIndex(3);
    let mut ct = Vec::new();
    fc.encrypt_blocks(first, &chunks, &mut ct);
    let damaged = (mask != 0).then(|| pos % ct.len());
    if let Some(p) = damaged {
        ct[p] ^= mask;
    }
    let bad_block = damaged.map(|p| p / (len + OH));
    // Block by block.
    let mut at = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let cl = chunk.len() + OH;
        let mut out = vec![0u8; chunk.len()];
        let r = fc.decrypt_block(BlockIndex(first.0 + i as u64), &ct[at..at + cl], &mut out);
        if bad_block == Some(i) {
            assert!(r.is_err(), "a damaged block decrypted");
        } else {
            assert!(r.is_ok(), "an undamaged block failed");
            assert_eq!(&out[..], *chunk);
        }
        at += cl;
    }
    // As one run.
    let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
    let mut buf = ct.clone();
    match fc.decrypt_blocks_in_place(first, &mut buf, &lens) {
        Ok(n) => {
            assert_eq!(bad_block, None, "a damaged run decrypted");
            assert_eq!(&buf[..n], plain);
        }
        Err(b) => assert_eq!(Some(b.0 - first.0), bad_block.map(|b| b as u64)),
    }
    // Blocks are bound to their place: the run does not open one block on.
    if !plain.is_empty() {
        let mut buf = ct;
        assert!(fc
            .decrypt_blocks_in_place(BlockIndex(first.0 + 1), &mut buf, &lens)
            .is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        untrusted(rest);
    } else if rest.len() > 4 {
        let len = 1 + usize::from(rest[0] % 64);
        let pos = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let plain = &rest[4..];
        if !plain.is_empty() {
            sealed(len, pos, rest[3], plain);
        }
    }
});
