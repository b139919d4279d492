//! Offset arithmetic between plaintext and ciphertext, pure and exhaustively
//! tested (as gocryptfs's `contentenc/offsets.go`).
//!
//! Backing file: `[header][block 0][block 1]...[last block, maybe short]`.
//! Each ciphertext block is `prefix(8) || nonce(12) || ciphertext || tag(16)`.

/// Bytes each ciphertext block adds to its plaintext.
pub const BLOCK_OVERHEAD: u64 = 8 + 12 + 16;

/// Index of a plaintext block within a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockIndex(pub u64);

/// The backing size cannot be produced by any plaintext: a torn or truncated
/// block. `plain_floor` is the plaintext size of the intact part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptSize {
    pub plain_floor: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    block_size: u64,
    header_len: u64,
}

impl Layout {
    /// `block_size` must be a power of two in 512..=1 MiB (checked by the config).
    pub fn new(block_size: u32, header_len: u64) -> Layout {
        Layout {
            block_size: block_size as u64,
            header_len,
        }
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    pub fn cipher_block_size(&self) -> u64 {
        self.block_size + BLOCK_OVERHEAD
    }

    /// Plaintext size of a backing file of `cipher_size` bytes.
    /// A zero-length backing file is an empty file whose header was never
    /// written (a crash right after create).
    pub fn plain_size(&self, cipher_size: u64) -> Result<u64, CorruptSize> {
        if cipher_size == 0 {
            return Ok(0);
        }
        if cipher_size < self.header_len {
            return Err(CorruptSize { plain_floor: 0 });
        }
        let c = cipher_size - self.header_len;
        let cbs = self.cipher_block_size();
        let full = c / cbs;
        let rem = c % cbs;
        let floor = full * self.block_size;
        match rem {
            0 => Ok(floor),
            r if r <= BLOCK_OVERHEAD => Err(CorruptSize { plain_floor: floor }),
            r => Ok(floor + r - BLOCK_OVERHEAD),
        }
    }

    /// Plaintext size, or the intact part's size when the tail is torn.
    pub fn plain_size_lenient(&self, cipher_size: u64) -> u64 {
        self.plain_size(cipher_size)
            .unwrap_or_else(|e| e.plain_floor)
    }

    /// Backing size for a plaintext size (the header is always counted).
    pub fn cipher_size(&self, plain_size: u64) -> u64 {
        let full = plain_size / self.block_size;
        let rem = plain_size % self.block_size;
        let mut c = self.header_len + full * self.cipher_block_size();
        if rem > 0 {
            c += rem + BLOCK_OVERHEAD;
        }
        c
    }

    pub fn block_of(&self, plain_offset: u64) -> BlockIndex {
        BlockIndex(plain_offset / self.block_size)
    }

    /// Backing offset where block `b` starts.
    pub fn cipher_offset(&self, b: BlockIndex) -> u64 {
        self.header_len + b.0 * self.cipher_block_size()
    }

    /// Plaintext offset where block `b` starts.
    pub fn plain_offset(&self, b: BlockIndex) -> u64 {
        b.0 * self.block_size
    }

    /// Number of blocks a file of `plain_size` bytes has.
    pub fn block_count(&self, plain_size: u64) -> u64 {
        plain_size.div_ceil(self.block_size)
    }

    /// Plaintext length of block `b` in a file of `plain_size` bytes (0 past the end).
    pub fn block_plain_len(&self, b: BlockIndex, plain_size: u64) -> u64 {
        let start = self.plain_offset(b);
        if start >= plain_size {
            0
        } else {
            (plain_size - start).min(self.block_size)
        }
    }

    /// The blocks touched by the plaintext range `[offset, offset+len)`, as an
    /// inclusive-exclusive index range. Empty for `len == 0`.
    pub fn blocks_touched(&self, offset: u64, len: u64) -> std::ops::Range<u64> {
        if len == 0 {
            return 0..0;
        }
        let first = offset / self.block_size;
        let last = (offset + len - 1) / self.block_size;
        first..last + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layouts() -> Vec<Layout> {
        vec![
            Layout::new(512, 0),
            Layout::new(512, 84),
            Layout::new(4096, 84),
            Layout::new(4096, 0),
        ]
    }

    #[test]
    fn plain_cipher_round_trip_exhaustive() {
        for l in layouts() {
            let bs = l.block_size();
            for p in 0..(bs * 4 + 3) {
                let c = l.cipher_size(p);
                assert_eq!(l.plain_size(c), Ok(p), "layout {l:?} plain {p}");
            }
            // Large sizes do not overflow or drift.
            for p in [1u64 << 40, (1u64 << 40) + 1, (1 << 40) - 1] {
                assert_eq!(l.plain_size(l.cipher_size(p)), Ok(p));
            }
        }
    }

    #[test]
    fn every_cipher_size_is_valid_or_torn() {
        for l in layouts() {
            let mut valid = 0;
            for c in 0..(l.cipher_block_size() * 3 + l.header_len() + 5) {
                match l.plain_size(c) {
                    Ok(p) => {
                        valid += 1;
                        // Valid sizes are exactly the image of cipher_size (or the empty file).
                        if c != 0 {
                            assert_eq!(l.cipher_size(p), c);
                        }
                    }
                    Err(e) => {
                        assert!(l.cipher_size(e.plain_floor) < c || c < l.header_len());
                        assert_eq!(e.plain_floor % l.block_size(), 0);
                    }
                }
            }
            assert!(valid > 0);
        }
    }

    #[test]
    fn torn_tail_is_corrupt() {
        let l = Layout::new(4096, 84);
        assert_eq!(l.plain_size(10), Err(CorruptSize { plain_floor: 0 }));
        assert_eq!(l.plain_size(84 + 1), Err(CorruptSize { plain_floor: 0 }));
        assert_eq!(l.plain_size(84 + 36), Err(CorruptSize { plain_floor: 0 }));
        assert_eq!(l.plain_size(84 + 37), Ok(1));
        let full = 84 + 4096 + 36;
        assert_eq!(l.plain_size(full), Ok(4096));
        assert_eq!(
            l.plain_size(full + 20),
            Err(CorruptSize { plain_floor: 4096 })
        );
        assert_eq!(l.plain_size_lenient(full + 20), 4096);
    }

    #[test]
    fn block_ranges() {
        let l = Layout::new(4096, 84);
        assert_eq!(l.blocks_touched(0, 0), 0..0);
        assert_eq!(l.blocks_touched(0, 1), 0..1);
        assert_eq!(l.blocks_touched(4095, 1), 0..1);
        assert_eq!(l.blocks_touched(4095, 2), 0..2);
        assert_eq!(l.blocks_touched(4096, 4096), 1..2);
        assert_eq!(l.blocks_touched(4096, 4097), 1..3);
        assert_eq!(l.block_plain_len(BlockIndex(0), 5000), 4096);
        assert_eq!(l.block_plain_len(BlockIndex(1), 5000), 904);
        assert_eq!(l.block_plain_len(BlockIndex(2), 5000), 0);
        assert_eq!(l.cipher_offset(BlockIndex(2)), 84 + 2 * 4132);
        assert_eq!(l.block_count(0), 0);
        assert_eq!(l.block_count(4096), 1);
        assert_eq!(l.block_count(4097), 2);
        // Exhaustive: every byte of a range lies in exactly the blocks touched.
        for off in 0..9000u64 {
            for len in [1u64, 2, 100, 4095, 4096, 4097] {
                let r = l.blocks_touched(off, len);
                assert_eq!(r.start, off / 4096);
                assert_eq!(r.end - 1, (off + len - 1) / 4096);
            }
        }
    }

    #[test]
    fn block_of_and_offsets_agree() {
        for l in layouts() {
            let bs = l.block_size();
            for off in 0..(bs * 3 + 2) {
                let b = l.block_of(off);
                assert_eq!(b, BlockIndex(off / bs), "layout {l:?} offset {off}");
                assert!(l.plain_offset(b) <= off && off < l.plain_offset(b) + bs);
            }
            for b in 0..5 {
                let b = BlockIndex(b);
                assert_eq!(l.plain_offset(b), b.0 * bs);
                // A block starts in the backing file where the plaintext before it ends.
                assert_eq!(l.cipher_offset(b), l.cipher_size(l.plain_offset(b)));
            }
        }
    }
}
