//! Content encryption of one file's blocks.
//!
//! Nonce budget: random 96-bit GCM nonces are safe for about 2^32 encryptions
//! under one key. Blocks are therefore not encrypted under the data key
//! itself but under a *generation subkey* `HKDF(data key, file ID, prefix)`,
//! where `prefix` is a random 64-bit value stored in each block. A writer
//! picks a fresh prefix when it starts and again after `GENERATION_LIMIT`
//! block writes, so no subkey ever sees more than 2^30 nonces, however long a
//! file is rewritten in place.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::aead::{AuthError, Cipher, NONCE_LEN};
use super::keys::{derive, DataKey, FileId, SubKey};
use super::offsets::{BlockIndex, BLOCK_OVERHEAD};

pub const PREFIX_LEN: usize = 8;
/// Block writes one generation subkey may take.
pub const GENERATION_LIMIT: u64 = 1 << 30;
const SUBKEY_CACHE: usize = 64;

struct Generation {
    prefix: [u8; PREFIX_LEN],
    key: SubKey,
    used: u64,
}

/// The block cipher state of one open file: its data key and subkeys.
pub struct FileCrypto {
    file_id: FileId,
    key: DataKey,
    writer: Mutex<Option<Generation>>,
    subkeys: Mutex<HashMap<[u8; PREFIX_LEN], SubKey>>,
}

impl std::fmt::Debug for FileCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCrypto")
            .field("file_id", &self.file_id)
            .finish_non_exhaustive()
    }
}

fn block_aad(fid: &FileId, b: BlockIndex) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..16].copy_from_slice(&fid.0);
    a[16..].copy_from_slice(&b.0.to_be_bytes());
    a
}

impl FileCrypto {
    pub fn new(file_id: FileId, key: DataKey) -> FileCrypto {
        FileCrypto {
            file_id,
            key,
            writer: Mutex::new(None),
            subkeys: Mutex::new(HashMap::new()),
        }
    }

    pub fn file_id(&self) -> FileId {
        self.file_id
    }

    pub fn data_key(&self) -> &DataKey {
        &self.key
    }

    /// The cipher for this file's xattr values.
    pub fn xattr_cipher(&self) -> Cipher {
        Cipher::new(
            derive(
                self.key.expose(),
                &self.file_id.0,
                &[b"envelopefs xattr v1"],
            )
            .expose(),
        )
    }

    fn subkey(&self, prefix: &[u8; PREFIX_LEN]) -> SubKey {
        derive(
            self.key.expose(),
            &self.file_id.0,
            &[b"envelopefs block v1", prefix],
        )
    }

    /// Reserve `n` block writes; returns the prefix and key to use.
    fn reserve(&self, n: u64) -> ([u8; PREFIX_LEN], SubKey) {
        let mut w = self.writer.lock();
        let fresh = match &*w {
            Some(g) => g.used + n > GENERATION_LIMIT,
            None => true,
        };
        if fresh {
            let prefix = super::random_array();
            *w = Some(Generation {
                prefix,
                key: self.subkey(&prefix),
                used: 0,
            });
        }
        let g = w.as_mut().expect("generation was just set");
        g.used += n;
        (g.prefix, g.key.clone())
    }

    #[cfg(test)]
    fn generation_prefix(&self) -> Option<[u8; PREFIX_LEN]> {
        self.writer.lock().as_ref().map(|g| g.prefix)
    }

    #[cfg(test)]
    fn set_used(&self, used: u64) {
        if let Some(g) = self.writer.lock().as_mut() {
            g.used = used;
        }
    }

    /// Encrypt consecutive plaintext blocks starting at `first`; each chunk is
    /// at most one block. Appends the ciphertext blocks to `out`.
    pub fn encrypt_blocks(&self, first: BlockIndex, chunks: &[&[u8]], out: &mut Vec<u8>) {
        let (prefix, key) = self.reserve(chunks.len() as u64);
        let cipher = Cipher::new(key.expose());
        // One getrandom call for all nonces of the request, not one per block.
        let mut nonces = vec![0u8; chunks.len() * NONCE_LEN];
        super::random_bytes(&mut nonces);
        for (i, chunk) in chunks.iter().enumerate() {
            let b = BlockIndex(first.0 + i as u64);
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN]);
            out.extend_from_slice(&prefix);
            out.extend_from_slice(&nonce);
            let start = out.len();
            out.extend_from_slice(chunk);
            let tag = cipher.seal(&nonce, &block_aad(&self.file_id, b), &mut out[start..]);
            out.extend_from_slice(&tag);
        }
    }

    /// Decrypt one ciphertext block into `out` (which must hold
    /// `cblock.len() - BLOCK_OVERHEAD` bytes). An all-zero block is a hole and
    /// reads as zeros (see FORMAT.md's threat model).
    pub fn decrypt_block(
        &self,
        b: BlockIndex,
        cblock: &[u8],
        out: &mut [u8],
    ) -> Result<(), AuthError> {
        let mut buf = cblock.to_vec();
        let n = self
            .decrypt_blocks_in_place(b, &mut buf, &[out.len()])
            .map_err(|_| AuthError)?;
        out.copy_from_slice(&buf[..n]);
        Ok(())
    }

    /// Decrypt consecutive ciphertext blocks in place: `buf` holds the blocks
    /// from `first` on, block i being `plain_lens[i] + BLOCK_OVERHEAD` bytes.
    /// The plaintext ends up at the front of `buf`; returns its length. An
    /// all-zero block is a hole and reads as zeros (FORMAT.md's threat model).
    /// The cipher is built once per run of blocks from one write generation,
    /// not per block. On failure, returns the block that failed.
    pub fn decrypt_blocks_in_place(
        &self,
        first: BlockIndex,
        buf: &mut [u8],
        plain_lens: &[usize],
    ) -> Result<usize, BlockIndex> {
        let oh = BLOCK_OVERHEAD as usize;
        let head = PREFIX_LEN + NONCE_LEN;
        let mut cipher: Option<([u8; PREFIX_LEN], Cipher)> = None;
        let (mut co, mut po) = (0usize, 0usize);
        for (i, &pl) in plain_lens.iter().enumerate() {
            let b = BlockIndex(first.0 + i as u64);
            let cl = pl + oh;
            let block = match buf.get(co..co + cl) {
                Some(x) if pl > 0 => x,
                _ => return Err(b),
            };
            // A real block's random prefix and nonce are never all zero, so
            // only those bytes are checked before the whole block.
            if block[..head].iter().all(|x| *x == 0) && block.iter().all(|x| *x == 0) {
                buf[po..po + pl].fill(0);
            } else {
                let prefix: [u8; PREFIX_LEN] = block[..PREFIX_LEN].try_into().map_err(|_| b)?;
                let nonce: [u8; NONCE_LEN] = block[PREFIX_LEN..head].try_into().map_err(|_| b)?;
                let c = match cipher.take() {
                    Some((p, c)) if p == prefix => c,
                    _ => Cipher::new(self.cached_subkey(&prefix).expose()),
                };
                c.open_within(
                    &nonce,
                    &block_aad(&self.file_id, b),
                    &mut buf[po..co + cl],
                    co + head - po,
                )
                .map_err(|_| b)?;
                cipher = Some((prefix, c));
            }
            co += cl;
            po += pl;
        }
        Ok(po)
    }

    fn cached_subkey(&self, prefix: &[u8; PREFIX_LEN]) -> SubKey {
        let mut m = self.subkeys.lock();
        if let Some(k) = m.get(prefix) {
            return k.clone();
        }
        let k = self.subkey(prefix);
        if m.len() >= SUBKEY_CACHE {
            m.clear();
        }
        m.insert(*prefix, k.clone());
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(fc: &FileCrypto, b: u64, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        fc.encrypt_blocks(BlockIndex(b), &[data], &mut out);
        out
    }

    #[test]
    fn round_trip_and_binding() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let c = enc(&fc, 3, b"hello");
        assert_eq!(c.len(), 5 + BLOCK_OVERHEAD as usize);
        let mut out = [0u8; 5];
        fc.decrypt_block(BlockIndex(3), &c, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        // Moved within the file: fails.
        assert!(fc.decrypt_block(BlockIndex(4), &c, &mut out).is_err());
        // Another file (other ID, same key): fails.
        let other = FileCrypto::new(FileId([2; 16]), fc.data_key().clone());
        assert!(other.decrypt_block(BlockIndex(3), &c, &mut out).is_err());
        // Every bit flip fails.
        for i in 0..c.len() * 8 {
            let mut t = c.clone();
            t[i / 8] ^= 1 << (i % 8);
            assert!(
                fc.decrypt_block(BlockIndex(3), &t, &mut out).is_err(),
                "bit {i}"
            );
        }
        // Truncated block fails.
        assert!(fc
            .decrypt_block(BlockIndex(3), &c[..c.len() - 1], &mut out[..4])
            .is_err());
    }

    #[test]
    fn zero_block_is_hole() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let z = vec![0u8; 100 + BLOCK_OVERHEAD as usize];
        let mut out = vec![1u8; 100];
        fc.decrypt_block(BlockIndex(0), &z, &mut out).unwrap();
        assert!(out.iter().all(|b| *b == 0));
    }

    #[test]
    fn generation_rotates_at_limit() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let c1 = enc(&fc, 0, b"a");
        let p1 = fc.generation_prefix().unwrap();
        let _ = enc(&fc, 0, b"b");
        assert_eq!(fc.generation_prefix().unwrap(), p1);
        fc.set_used(GENERATION_LIMIT);
        let c3 = enc(&fc, 0, b"c");
        let p3 = fc.generation_prefix().unwrap();
        assert_ne!(p1, p3);
        assert_eq!(&c3[..8], &p3);
        // Blocks of both generations still decrypt.
        let mut o = [0u8; 1];
        fc.decrypt_block(BlockIndex(0), &c1, &mut o).unwrap();
        assert_eq!(&o, b"a");
        fc.decrypt_block(BlockIndex(0), &c3, &mut o).unwrap();
        assert_eq!(&o, b"c");
    }
}
