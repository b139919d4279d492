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

    /// Seal `data` as block `b` in a generation of its own.
    fn enc_new_generation(fc: &FileCrypto, b: u64, data: &[u8]) -> Vec<u8> {
        fc.set_used(GENERATION_LIMIT);
        enc(fc, b, data)
    }

    #[test]
    fn debug_shows_the_file_id_not_the_key() {
        let key = DataKey::from_bytes([0xab; 32]);
        let fc = FileCrypto::new(FileId([0x5c; 16]), key);
        let shown = format!("{fc:?}");
        assert!(shown.starts_with("FileCrypto"), "{shown}");
        assert!(
            shown.contains(&format!("{:?}", FileId([0x5c; 16]))),
            "{shown}"
        );
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
    }

    #[test]
    fn accessors_return_what_was_given() {
        let fc = FileCrypto::new(FileId([4; 16]), DataKey::from_bytes([6; 32]));
        assert_eq!(fc.file_id(), FileId([4; 16]));
        assert_eq!(fc.data_key().expose(), &[6; 32]);
    }

    /// The block and xattr formats of FORMAT.md, rebuilt here from `derive` and
    /// `Cipher` alone: key `HKDF(data key, file ID, label)`, associated data
    /// `file ID || block index (big-endian u64)`.
    #[test]
    fn block_and_xattr_formats_match_the_spec() {
        let (fid, dk) = (FileId([8; 16]), [9u8; 32]);
        let fc = FileCrypto::new(fid, DataKey::from_bytes(dk));
        let c = enc(&fc, 0x0102_0304_0506_0708, b"spec");
        let (prefix, rest) = c.split_at(PREFIX_LEN);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let key = derive(&dk, &fid.0, &[b"envelopefs block v1", prefix]);
        let mut aad = fid.0.to_vec();
        aad.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut buf = body.to_vec();
        let n = Cipher::new(key.expose())
            .open_within(nonce.try_into().unwrap(), &aad, &mut buf, 0)
            .unwrap();
        assert_eq!(&buf[..n], b"spec");

        let xkey = derive(&dk, &fid.0, &[b"envelopefs xattr v1"]);
        let blob = fc.xattr_cipher().seal_to_vec(b"x", b"value");
        let opened = Cipher::new(xkey.expose()).open_from_slice(b"x", &blob);
        assert_eq!(&opened.unwrap()[..], b"value");
    }

    #[test]
    fn a_run_of_blocks_round_trips_in_place() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let chunks: [&[u8]; 3] = [&[1; 64], &[2; 64], &[3; 10]];
        let mut c = Vec::new();
        fc.encrypt_blocks(BlockIndex(5), &chunks, &mut c);
        let oh = BLOCK_OVERHEAD as usize;
        assert_eq!(c.len(), 138 + 3 * oh);
        let blocks = [&c[..64 + oh], &c[64 + oh..128 + 2 * oh], &c[128 + 2 * oh..]];
        // One generation: one prefix; a fresh nonce per block.
        assert!(blocks.iter().all(|b| b[..PREFIX_LEN] == c[..PREFIX_LEN]));
        let nonces: Vec<&[u8]> = blocks
            .iter()
            .map(|b| &b[PREFIX_LEN..][..NONCE_LEN])
            .collect();
        assert!(nonces[0] != nonces[1] && nonces[1] != nonces[2] && nonces[0] != nonces[2]);
        for (i, (block, chunk)) in blocks.iter().zip(chunks).enumerate() {
            let mut out = vec![0u8; chunk.len()];
            fc.decrypt_block(BlockIndex(5 + i as u64), block, &mut out)
                .unwrap();
            assert_eq!(out, chunk, "block {i}");
        }
        let mut buf = c.clone();
        assert_eq!(
            fc.decrypt_blocks_in_place(BlockIndex(5), &mut buf, &[64, 64, 10]),
            Ok(138)
        );
        assert_eq!(&buf[..138], &chunks.concat()[..]);
        // The run read from the wrong index fails at its first block.
        let mut buf = c.clone();
        assert_eq!(
            fc.decrypt_blocks_in_place(BlockIndex(4), &mut buf, &[64, 64, 10]),
            Err(BlockIndex(4))
        );
    }

    #[test]
    fn a_run_mixes_holes_and_generations() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let oh = BLOCK_OVERHEAD as usize;
        let mut c = enc(&fc, 2, &[7; 32]);
        c.extend_from_slice(&vec![0; 32 + oh]);
        c.extend(enc_new_generation(&fc, 4, &[8; 32]));
        c.extend(enc(&fc, 5, &[9; 20]));
        c.extend(enc_new_generation(&fc, 6, &[10; 32]));
        let lens = [32, 32, 32, 20, 32];
        let mut buf = c.clone();
        assert_eq!(
            fc.decrypt_blocks_in_place(BlockIndex(2), &mut buf, &lens),
            Ok(148)
        );
        let want = [[7; 32], [0; 32], [8; 32]].concat();
        assert_eq!(&buf[..96], &want[..]);
        assert_eq!(&buf[96..116], &[9; 20]);
        assert_eq!(&buf[116..148], &[10; 32]);
        // A damaged block in the middle names itself.
        let mut buf = c.clone();
        buf[3 * (32 + oh) + 30] ^= 1;
        assert_eq!(
            fc.decrypt_blocks_in_place(BlockIndex(2), &mut buf, &lens),
            Err(BlockIndex(5))
        );
        // A buffer shorter than the lengths say fails at the block it cuts.
        let mut buf = c[..c.len() - 1].to_vec();
        assert_eq!(
            fc.decrypt_blocks_in_place(BlockIndex(2), &mut buf, &lens),
            Err(BlockIndex(6))
        );
    }

    #[test]
    fn empty_and_almost_zero_blocks_are_refused() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let oh = BLOCK_OVERHEAD as usize;
        // A block never holds zero plaintext bytes, not even a valid empty seal.
        let sealed_empty = enc(&fc, 3, b"");
        for mut block in [sealed_empty, vec![0; oh]] {
            assert_eq!(
                fc.decrypt_blocks_in_place(BlockIndex(3), &mut block, &[0]),
                Err(BlockIndex(3))
            );
        }
        // An all-zero block is a hole; any one bit set makes it a forgery.
        for i in 0..(4 + oh) * 8 {
            let mut block = vec![0u8; 4 + oh];
            block[i / 8] ^= 1 << (i % 8);
            let mut out = [0u8; 4];
            assert!(
                fc.decrypt_block(BlockIndex(0), &block, &mut out).is_err(),
                "bit {i}"
            );
        }
    }

    #[test]
    fn generation_lasts_exactly_its_limit() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let _ = enc(&fc, 0, b"a");
        let p1 = fc.generation_prefix().unwrap();
        fc.set_used(GENERATION_LIMIT - 3);
        let mut out = Vec::new();
        fc.encrypt_blocks(BlockIndex(0), &[b"b", b"c"], &mut out);
        assert_eq!(fc.generation_prefix(), Some(p1));
        // The limit's own write still belongs to the generation.
        let _ = enc(&fc, 0, b"d");
        assert_eq!(fc.generation_prefix(), Some(p1));
        let _ = enc(&fc, 0, b"e");
        assert_ne!(fc.generation_prefix(), Some(p1));
    }

    #[test]
    fn subkey_cache_is_bounded() {
        let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
        let mut out = [0u8; 1];
        let first = enc(&fc, 0, b"a");
        for round in 0..2 {
            fc.decrypt_block(BlockIndex(0), &first, &mut out).unwrap();
            assert_eq!(fc.subkeys.lock().len(), 1, "round {round}");
        }
        for n in 2..=SUBKEY_CACHE {
            let c = enc_new_generation(&fc, 0, b"a");
            fc.decrypt_block(BlockIndex(0), &c, &mut out).unwrap();
            assert_eq!(fc.subkeys.lock().len(), n);
        }
        // Full: the next new subkey starts the cache afresh.
        let c = enc_new_generation(&fc, 0, b"a");
        fc.decrypt_block(BlockIndex(0), &c, &mut out).unwrap();
        assert_eq!(fc.subkeys.lock().len(), 1);
        assert_eq!(&out, b"a");
    }
}
