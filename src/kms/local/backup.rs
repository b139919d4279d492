//! The store as a whole: backups and the passphrase.

use std::path::Path;

use super::{parse_store_data, store_json, Audit, KdfCost, LocalKeyService};
use crate::kms::store;
use crate::kms::KmsError;

impl LocalKeyService {
    /// Write the store, re-sealed under a backup passphrase, to `file`.
    pub fn export_backup(&self, file: &Path, backup_pass: &str) -> Result<(), KmsError> {
        let kdf = KdfCost::of(&self.kdf).params();
        let key = store::derive_store_key(backup_pass, &kdf).map_err(KmsError::Passphrase)?;
        let plain = store_json(&self.data.lock())?;
        let out = store::seal_store(&self.store_id, &kdf, key.bytes(), plain.as_slice())?;
        store::write_atomic(file, &out)?;
        self.audit("ExportBackup", Audit::default(), &Ok(()));
        Ok(())
    }

    /// Create a store at `dir` (which must hold none) from a backup file.
    pub fn import_backup(
        dir: &Path,
        file: &Path,
        backup_pass: &str,
        new_pass: &str,
        cost: KdfCost,
    ) -> Result<LocalKeyService, KmsError> {
        let raw = store::read_store(file)?;
        let (f, _, plain) = store::unlock(&raw, backup_pass, &file.display().to_string())?;
        let data = parse_store_data(&plain, &file.display().to_string())?;
        let svc = Self::create_with(dir, new_pass, cost, f.store_id, data)?;
        svc.audit("ImportBackup", Audit::default(), &Ok(()));
        Ok(svc)
    }

    /// Re-seal the store under a new passphrase; no key changes.
    pub fn change_passphrase(&mut self, new_pass: &str) -> Result<(), KmsError> {
        let _l = store::lock(&self.dir)?;
        let mut data = self.reload()?;
        let kdf = KdfCost::of(&self.kdf).params();
        let key = store::derive_store_key(new_pass, &kdf).map_err(KmsError::Passphrase)?;
        self.kdf = kdf;
        self.key = key;
        self.write(&mut data)?;
        *self.data.lock() = data;
        self.audit("ChangePassphrase", Audit::default(), &Ok(()));
        Ok(())
    }
}
