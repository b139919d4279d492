//! The entry point of the decrypted-key-store fuzz target (fuzz/): a store
//! opened with its store key instead of a passphrase, so the target reaches
//! the parsing and upkeep after authentication without running Argon2id for
//! every input. The target seals each input under a fixed key it holds.

use std::path::Path;

use zeroize::Zeroizing;

use super::{parse_store_file, Clock, KmsError, LocalKeyService};
use crate::kms::store;

impl LocalKeyService {
    /// Open the store in `dir` with its store key, as `open_with_clock` does
    /// after deriving the key from the passphrase.
    #[doc(hidden)]
    pub fn open_with_store_key(
        dir: &Path,
        key: Zeroizing<[u8; 32]>,
        clock: Clock,
    ) -> Result<Self, KmsError> {
        let p = Self::store_path(dir);
        let raw = store::read_store(&p)?;
        let what = p.display().to_string();
        let corrupt = |why: String| KmsError::StoreCorrupt {
            path: what.clone(),
            why,
        };
        let f = parse_store_file(&raw).map_err(corrupt)?;
        let plain = store::unseal_store(&f, &key).map_err(|e| match e {
            None => KmsError::WrongPassphrase(what.clone()),
            Some(why) => corrupt(why),
        })?;
        let mut slot = crate::crypto::secmem::Slot::new();
        slot.bytes_mut().copy_from_slice(&key[..]);
        Self::from_unsealed(dir, f, slot, &plain, &what, clock)
    }
}
