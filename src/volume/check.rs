//! What `fsck` asks of a backing file's size without knowing the layout.

use super::Volume;

impl Volume {
    /// For a backing file of `cipher_size` bytes that ends mid-block (a torn
    /// write), the plaintext size of its intact part; `None` when the size
    /// is one a file can have.
    pub fn torn_tail(&self, cipher_size: u64) -> Option<u64> {
        self.layout()
            .plain_size(cipher_size)
            .err()
            .map(|e| e.plain_floor)
    }
}
