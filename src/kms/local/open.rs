//! The store's lifecycle: create, open (carrying out what fell due), the
//! locked read-modify-write of every change, and the audit line of each
//! operation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::keys::missing_material;
use super::{
    new_material, parse_store_data, store_json, Audit, Clock, KdfCost, LocalKeyService, StoreData,
    DAY, ENABLED, PENDING_DELETION, PENDING_IMPORT,
};
use crate::crypto::secmem::Slot;
use crate::kms::audit::{self, AuditRecord};
use crate::kms::passphrase::PassphraseSource;
use crate::kms::store::{self, parse_store_file};
use crate::kms::KmsError;

impl LocalKeyService {
    pub fn store_path(dir: &Path) -> PathBuf {
        store::store_path(dir)
    }

    pub fn exists(dir: &Path) -> bool {
        Self::store_path(dir).exists()
    }

    /// Create a new, empty store. Fails if one exists.
    pub fn create(dir: &Path, pass: &str, cost: KdfCost) -> Result<Self, KmsError> {
        let store_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self::create_with(dir, pass, cost, store_id, StoreData::default())
    }

    /// Write a store that must not exist yet, with the given identity and content.
    pub(super) fn create_with(
        dir: &Path,
        pass: &str,
        cost: KdfCost,
        store_id: String,
        data: StoreData,
    ) -> Result<Self, KmsError> {
        let _l = store::lock(dir)?;
        if Self::exists(dir) {
            return Err(KmsError::AlreadyExists(format!(
                "a key store already exists at {}",
                dir.display()
            )));
        }
        let kdf = cost.params();
        let key = store::derive_store_key(pass, &kdf).map_err(KmsError::Passphrase)?;
        let svc = LocalKeyService {
            dir: dir.to_owned(),
            store_id,
            kdf,
            key,
            data: parking_lot::Mutex::new(data),
            clock: Arc::new(crate::sys::now_secs),
        };
        svc.write(&mut svc.data.lock())?;
        Ok(svc)
    }

    /// Open (unlock) an existing store; due deletions, rotations and
    /// expiries are carried out now.
    pub fn open(dir: &Path, pass: &str) -> Result<Self, KmsError> {
        Self::open_with_clock(dir, pass, Arc::new(crate::sys::now_secs))
    }

    /// Open with a clock of the caller's (tests move time through this).
    pub fn open_with_clock(dir: &Path, pass: &str, clock: Clock) -> Result<Self, KmsError> {
        let p = Self::store_path(dir);
        if !p.exists() {
            return Err(KmsError::NoStore(dir.display().to_string()));
        }
        let raw = store::read_store(&p)?;
        let what = p.display().to_string();
        let (f, key, plain) = store::unlock(&raw, pass, &dir.display().to_string())
            .inspect_err(|e| Self::audit_failed_unlock(dir, e, clock()))?;
        Self::from_unsealed(dir, f, key, &plain, &what, clock)
    }

    /// A wrong passphrase is an event of its own, written without the store
    /// key (so unsealed); the next holder's event seals it into the head.
    fn audit_failed_unlock(dir: &Path, e: &KmsError, now: u64) {
        if !matches!(e, KmsError::WrongPassphrase(_)) {
            return;
        }
        let who = audit::acting();
        let (uid, pid) = who
            .as_ref()
            .map_or((crate::sys::getuid(), std::process::id()), |w| {
                (w.uid, w.pid)
            });
        audit::append(
            dir,
            &AuditRecord {
                time: now,
                operation: "UnlockKeyStore".to_owned(),
                key_arn: None,
                key_material_id: None,
                encryption_context: None,
                uid,
                pid,
                principal_arn: who.map(|w| w.principal_arn),
                outcome: e.name().to_owned(),
            },
        );
    }

    /// The service over a store whose contents were just unsealed with `key`;
    /// what is due is carried out at once.
    pub(super) fn from_unsealed(
        dir: &Path,
        f: store::StoreFile,
        key: Slot,
        plain: &[u8],
        what: &str,
        clock: Clock,
    ) -> Result<Self, KmsError> {
        let data = parse_store_data(plain, what)?;
        let svc = LocalKeyService {
            dir: dir.to_owned(),
            store_id: f.store_id,
            kdf: f.kdf,
            key,
            data: parking_lot::Mutex::new(data),
            clock,
        };
        svc.maintain()?;
        Ok(svc)
    }

    /// Open the store, creating it (with a new passphrase) if there is none.
    pub fn open_or_create(dir: &Path, src: &PassphraseSource) -> Result<(Self, bool), KmsError> {
        if Self::exists(dir) {
            let pass = src.existing()?;
            return Ok((Self::open(dir, &pass)?, false));
        }
        let pass = src.new_passphrase()?;
        // Whether the store exists is decided under the store lock, in
        // `create`: when another process created it since the look above,
        // that store is the one to open.
        match Self::create(dir, &pass, KdfCost::default()) {
            Err(KmsError::AlreadyExists(_)) => Ok((Self::open(dir, &pass)?, false)),
            created => Ok((created?, true)),
        }
    }

    /// Replace the clock (tests only need this through the library).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub(super) fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Seal and write the store, anchoring the audit log's head in it.
    pub(super) fn write(&self, data: &mut StoreData) -> Result<(), KmsError> {
        if let Some(h) = audit::head(&self.dir) {
            data.audit_head = Some(h);
        }
        let plain = store_json(data)?;
        let out = store::seal_store(
            &self.store_id,
            &self.kdf,
            self.key.bytes(),
            plain.as_slice(),
        )?;
        store::write_atomic(&Self::store_path(&self.dir), &out)
    }

    /// The audit log's head anchored at the last write of the store.
    pub fn audit_anchor(&self) -> Option<audit::AuditHead> {
        self.data.lock().audit_head.clone()
    }

    /// Take in what another process (root with the passphrase) changed in
    /// the store since it was read: the store file is re-read under the
    /// store lock, and taken in when it differs from the copy in memory.
    pub fn refresh(&self) -> Result<(), KmsError> {
        let _l = store::lock(&self.dir)?;
        let fresh = self.reload()?;
        *self.data.lock() = fresh;
        Ok(())
    }

    pub(super) fn reload(&self) -> Result<StoreData, KmsError> {
        let p = Self::store_path(&self.dir);
        let raw = store::read_store(&p)?;
        let what = p.display().to_string();
        let f = parse_store_file(&raw).map_err(|why| KmsError::StoreCorrupt {
            path: what.clone(),
            why,
        })?;
        let plain =
            store::unseal_store(&f, self.key.bytes()).map_err(|e| KmsError::StoreCorrupt {
                path: what.clone(),
                why: e.unwrap_or_else(|| "authentication failed".into()),
            })?;
        parse_store_data(&plain, &what)
    }

    /// Apply a change under the store lock, on the newest copy of the store.
    pub(super) fn update<T>(
        &self,
        f: impl FnOnce(&mut StoreData) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let _l = store::lock(&self.dir)?;
        let fresh = self.reload()?;
        let mut data = self.data.lock();
        *data = fresh;
        let mut work = data.clone();
        let r = f(&mut work)?;
        self.write(&mut work)?;
        *data = work;
        Ok(r)
    }

    pub(super) fn audit(&self, op: &str, a: Audit, outcome: &Result<(), &KmsError>) {
        let who = audit::acting();
        let (uid, pid) = who
            .as_ref()
            .map_or((crate::sys::getuid(), std::process::id()), |w| {
                (w.uid, w.pid)
            });
        audit::append_sealed(
            &self.dir,
            &AuditRecord {
                time: self.now(),
                operation: op.to_owned(),
                key_arn: a.key_arn,
                key_material_id: a.material,
                encryption_context: a.context,
                uid,
                pid,
                principal_arn: who.map(|w| w.principal_arn),
                outcome: match outcome {
                    Ok(()) => "ok".into(),
                    Err(e) => e.name().to_owned(),
                },
            },
            Some(&self.head_seal_key()),
        );
    }

    /// The key that seals the audit log's head beside it.
    pub fn head_seal_key(&self) -> audit::HeadSealKey {
        audit::HeadSealKey::derive(self.key.bytes())
    }

    /// Run a read-only call of the CLI (DescribeKey, List*, Get*) and write
    /// its audit line, as every call to the store has one.
    pub fn audited_read<T>(
        &self,
        op: &str,
        key_hint: Option<&str>,
        f: impl FnOnce() -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        self.audited(op, key_hint, |_| f())
    }

    /// Run an operation and write its audit line.
    pub(super) fn audited<T>(
        &self,
        op: &str,
        key_hint: Option<&str>,
        f: impl FnOnce(&mut Audit) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let mut a = Audit::default();
        if let Some(k) = key_hint {
            a.key_arn = self.key_id_of(k).ok().map(|id| self.arn(&id));
        }
        let r = f(&mut a);
        self.audit(op, a, &r.as_ref().map(|_| ()));
        r
    }

    /// Carry out what is due: deletions after their window, expiries of
    /// imported material, automatic rotations.
    pub(super) fn maintain(&self) -> Result<(), KmsError> {
        let now = self.now();
        let due = {
            let d = self.data.lock();
            d.keys.iter().any(|k| {
                (k.key_state == PENDING_DELETION && k.deletion_date.is_some_and(|t| t <= now))
                    || k.materials
                        .iter()
                        .any(|m| m.material.is_some() && m.valid_to.is_some_and(|t| t <= now))
                    || (k.key_state == ENABLED
                        && k.rotation_enabled
                        && k.next_rotation_date.is_some_and(|t| t <= now))
            })
        };
        if !due {
            return Ok(());
        }
        let mut events = Vec::new();
        self.update(|d| {
            let mut gone = Vec::new();
            d.keys.retain(|k| {
                let del =
                    k.key_state == PENDING_DELETION && k.deletion_date.is_some_and(|t| t <= now);
                if del {
                    gone.push(k.key_id.clone());
                }
                !del
            });
            d.aliases.retain(|_, v| !gone.contains(v));
            for id in gone {
                events.push(("DeleteKey", id, None));
            }
            for k in d.keys.iter_mut() {
                let mut expired = false;
                for m in k.materials.iter_mut() {
                    if m.material.is_some() && m.valid_to.is_some_and(|t| t <= now) {
                        m.material = None;
                        expired = true;
                        events.push(("ExpireKeyMaterial", k.key_id.clone(), Some(m.id.clone())));
                    }
                }
                if expired && k.key_state != PENDING_DELETION && missing_material(k) {
                    k.key_state = PENDING_IMPORT.into();
                }
                if k.key_state == ENABLED
                    && k.rotation_enabled
                    && k.next_rotation_date.is_some_and(|t| t <= now)
                {
                    let m = new_material("AUTOMATIC", now);
                    events.push(("RotateKey", k.key_id.clone(), Some(m.id.clone())));
                    k.current_material = m.id.clone();
                    k.materials.push(m);
                    k.next_rotation_date = Some(now + k.rotation_period_days as u64 * DAY);
                }
            }
            Ok(())
        })?;
        for (op, id, mat) in events {
            self.audit(
                op,
                Audit {
                    key_arn: Some(self.arn(&id)),
                    material: mat,
                    context: None,
                },
                &Ok(()),
            );
        }
        Ok(())
    }
}
