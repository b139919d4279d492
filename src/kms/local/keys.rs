//! Keys: resolving names to keys, creating them, their states (enabled,
//! disabled, pending deletion) and the checks every operation makes of them.

use std::collections::BTreeMap;

use super::{
    asymmetric, fmt_time, new_material, Audit, KeyRecord, LocalKeyService, StoreData, DAY,
    DEFAULT_ALIAS, DISABLED, ENABLED, PENDING_DELETION, PENDING_IMPORT,
};
use crate::kms::KmsError;

impl LocalKeyService {
    pub fn arn(&self, key_id: &str) -> String {
        format!("arn:envelopefs:kms:local:{}:key/{}", self.store_id, key_id)
    }

    pub fn alias_arn(&self, alias: &str) -> String {
        format!("arn:envelopefs:kms:local:{}:{}", self.store_id, alias)
    }

    fn alias_arn_prefix(&self) -> String {
        format!("arn:envelopefs:kms:local:{}:", self.store_id)
    }

    /// Key ID of a key ID, key ARN, alias name or alias ARN.
    pub fn key_id_of(&self, key: &str) -> Result<String, KmsError> {
        let d = self.data.lock();
        Self::resolve_in(&d, &self.alias_arn_prefix(), key)
    }

    fn resolve_in(d: &StoreData, arn_prefix: &str, key: &str) -> Result<String, KmsError> {
        let k = key.strip_prefix(arn_prefix).unwrap_or(key);
        let id = if let Some(id) = k.strip_prefix("key/") {
            id.to_owned()
        } else if k.starts_with("alias/") {
            d.aliases
                .get(k)
                .cloned()
                .ok_or_else(|| KmsError::NotFound(format!("Alias {key} is not found.")))?
        } else if key.starts_with("arn:") {
            return Err(KmsError::NotFound(format!("Key '{key}' does not exist")));
        } else {
            k.to_owned()
        };
        if d.keys.iter().any(|r| r.key_id == id) {
            Ok(id)
        } else {
            Err(KmsError::NotFound(format!("Key '{key}' does not exist")))
        }
    }

    /// Management operations take a key ID or key ARN only.
    pub(super) fn mgmt_id(&self, d: &StoreData, key: &str) -> Result<String, KmsError> {
        let k = key.strip_prefix(&self.alias_arn_prefix()).unwrap_or(key);
        if k.starts_with("alias/") {
            return Err(KmsError::Validation(format!(
                "{key}: this operation takes a key ID or key ARN, not an alias"
            )));
        }
        Self::resolve_in(d, &self.alias_arn_prefix(), key)
    }

    pub(super) fn rec<'a>(d: &'a mut StoreData, id: &str) -> Result<&'a mut KeyRecord, KmsError> {
        d.keys
            .iter_mut()
            .find(|r| r.key_id == id)
            .ok_or_else(|| KmsError::NotFound(format!("Key '{id}' does not exist")))
    }

    /// Imported-material operations need a key created with Origin EXTERNAL.
    pub(super) fn require_external(&self, rec: &KeyRecord) -> Result<(), KmsError> {
        if rec.origin == "EXTERNAL" {
            return Ok(());
        }
        Err(KmsError::UnsupportedOperation(format!(
            "{} was not created with Origin EXTERNAL",
            self.arn(&rec.key_id)
        )))
    }

    pub(super) fn state_err(&self, rec: &KeyRecord) -> KmsError {
        let arn = self.arn(&rec.key_id);
        match rec.key_state.as_str() {
            DISABLED => KmsError::Disabled(format!("{arn} is disabled.")),
            PENDING_IMPORT => KmsError::InvalidState(format!("{arn} is pending import.")),
            PENDING_DELETION => KmsError::InvalidState(format!(
                "{arn} is pending deletion (deletion date {}).",
                rec.deletion_date.map(fmt_time).unwrap_or_default()
            )),
            s => KmsError::InvalidState(format!("{arn} is {s}.")),
        }
    }

    pub(super) fn usable(&self, rec: &KeyRecord) -> Result<(), KmsError> {
        if rec.key_state == ENABLED {
            Ok(())
        } else {
            Err(self.state_err(rec))
        }
    }

    /// Create a symmetric key (`origin` AWS_KMS or EXTERNAL).
    pub fn create_key(&self, description: &str, origin: &str) -> Result<KeyRecord, KmsError> {
        self.create_key_with_spec(
            description,
            origin,
            asymmetric::SYMMETRIC_DEFAULT,
            asymmetric::ENCRYPT_DECRYPT,
        )
    }

    /// CreateKey with a KeySpec and KeyUsage (AWS's rule of which spec
    /// allows which usage); an asymmetric key's pair is made here.
    pub fn create_key_with_spec(
        &self,
        description: &str,
        origin: &str,
        key_spec: &str,
        key_usage: &str,
    ) -> Result<KeyRecord, KmsError> {
        self.create_key_with_policy(description, origin, key_spec, key_usage, None, false)
    }

    /// CreateKey with a key policy (`None`: the default key policy); the
    /// policy is checked as PutKeyPolicy checks it, before the key is made.
    pub fn create_key_with_policy(
        &self,
        description: &str,
        origin: &str,
        key_spec: &str,
        key_usage: &str,
        policy: Option<&str>,
        bypass_lockout_check: bool,
    ) -> Result<KeyRecord, KmsError> {
        self.audited("CreateKey", None, |a| {
            if origin != "AWS_KMS" && origin != "EXTERNAL" {
                return Err(KmsError::Validation(format!(
                    "Origin must be AWS_KMS or EXTERNAL, not {origin}"
                )));
            }
            let spec = asymmetric::check_spec_usage(key_spec, key_usage)?;
            if let Some(p) = policy {
                self.check_new_policy(p, key_spec, key_usage, bypass_lockout_check)?;
            }
            let with_policy = |d: &mut StoreData, rec: KeyRecord| {
                Self::attach_policy(d, rec, policy.map(str::to_owned))
            };
            let now = self.now();
            let rec = match spec {
                None => self.update(|d| {
                    let rec = Self::new_key(d, description, false, origin, now);
                    Ok(with_policy(d, rec))
                })?,
                Some(_) if origin != "AWS_KMS" => {
                    return Err(KmsError::UnsupportedOperation(format!(
                        "the local key service makes asymmetric keys with Origin AWS_KMS only, not {origin}"
                    )))
                }
                Some(spec) => {
                    // Made before taking the store's lock: RSA takes seconds.
                    let pkcs8 = crate::crypto::asym::generate(spec).map_err(|e| {
                        KmsError::Unavailable(format!("{} key generation: {e}", spec.name()))
                    })?;
                    self.update(|d| {
                        let rec = Self::new_asymmetric_key(
                            d,
                            description,
                            spec,
                            key_usage,
                            &pkcs8,
                            now,
                        );
                        Ok(with_policy(d, rec))
                    })?
                }
            };
            a.key_arn = Some(self.arn(&rec.key_id));
            a.material = Some(rec.current_material.clone()).filter(|m| !m.is_empty());
            Ok(rec)
        })
    }

    /// Give a key just made its policy, in the store and in the copy returned.
    fn attach_policy(d: &mut StoreData, mut rec: KeyRecord, policy: Option<String>) -> KeyRecord {
        rec.policy = policy;
        if let Some(stored) = d.keys.iter_mut().find(|r| r.key_id == rec.key_id) {
            stored.policy = rec.policy.clone();
        }
        rec
    }

    pub(super) fn new_key(
        d: &mut StoreData,
        description: &str,
        managed: bool,
        origin: &str,
        now: u64,
    ) -> KeyRecord {
        let external = origin == "EXTERNAL";
        let mats = if external {
            vec![]
        } else {
            vec![new_material("CREATION", now)]
        };
        let rec = KeyRecord {
            key_id: uuid::Uuid::new_v4().to_string(),
            description: description.to_owned(),
            creation_date: now,
            key_state: if external { PENDING_IMPORT } else { ENABLED }.into(),
            key_manager: if managed { "AWS" } else { "CUSTOMER" }.into(),
            origin: origin.into(),
            current_material: mats.first().map(|m| m.id.clone()).unwrap_or_default(),
            materials: mats,
            deletion_date: None,
            pending_window_in_days: None,
            // Managed keys rotate yearly, always.
            rotation_enabled: managed,
            rotation_period_days: 365,
            next_rotation_date: managed.then_some(now + 365 * DAY),
            on_demand_rotations: 0,
            import: None,
            key_spec: super::symmetric_default(),
            key_usage: super::encrypt_decrypt(),
            tags: BTreeMap::new(),
            policy: None,
            grants: Vec::new(),
        };
        d.keys.push(rec.clone());
        rec
    }

    /// The managed default key, created on first use.
    pub fn default_key(&self) -> Result<String, KmsError> {
        if let Ok(id) = self.key_id_of(DEFAULT_ALIAS) {
            return Ok(id);
        }
        let now = self.now();
        let id = self.update(|d| {
            if let Some(id) = d.aliases.get(DEFAULT_ALIAS) {
                return Ok(id.clone());
            }
            let rec = Self::new_key(
                d,
                "Default key that protects envelopefs volumes",
                true,
                "AWS_KMS",
                now,
            );
            d.aliases.insert(DEFAULT_ALIAS.into(), rec.key_id.clone());
            Ok(rec.key_id)
        })?;
        self.audit(
            "CreateKey",
            Audit {
                key_arn: Some(self.arn(&id)),
                ..Audit::default()
            },
            &Ok(()),
        );
        Ok(id)
    }

    pub fn list_keys(&self) -> Vec<KeyRecord> {
        self.data.lock().keys.clone()
    }

    pub fn list_aliases(&self) -> BTreeMap<String, String> {
        self.data.lock().aliases.clone()
    }

    pub fn describe(&self, key: &str) -> Result<KeyRecord, KmsError> {
        let id = self.key_id_of(key)?;
        let d = self.data.lock();
        d.keys
            .iter()
            .find(|r| r.key_id == id)
            .cloned()
            .ok_or_else(|| KmsError::NotFound(key.to_owned()))
    }

    /// A management operation on one key, under the lock, audited.
    pub(super) fn manage<T>(
        &self,
        op: &str,
        key: &str,
        f: impl FnOnce(&mut KeyRecord, u64) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        self.audited(op, Some(key), |_| {
            let now = self.now();
            self.update(|d| {
                let id = self.mgmt_id(d, key)?;
                let rec = Self::rec(d, &id)?;
                f(rec, now)
            })
        })
    }

    pub(super) fn unsupported_for_managed(
        &self,
        rec: &KeyRecord,
        what: &str,
    ) -> Result<(), KmsError> {
        if rec.is_managed() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is a managed key: {what} is not allowed",
                self.arn(&rec.key_id)
            )));
        }
        Ok(())
    }

    pub fn enable_key(&self, key: &str) -> Result<(), KmsError> {
        self.manage("EnableKey", key, |r, now| {
            match r.key_state.as_str() {
                ENABLED | DISABLED => {}
                _ => return Err(self.state_err(r)),
            }
            let was_disabled = r.key_state == DISABLED;
            r.key_state = ENABLED.into();
            // A key re-enabled after missing its rotation rotates now.
            if was_disabled && r.rotation_enabled && r.next_rotation_date.is_some_and(|t| t <= now)
            {
                let m = new_material("AUTOMATIC", now);
                r.current_material = m.id.clone();
                r.materials.push(m);
                r.next_rotation_date = Some(now + r.rotation_period_days as u64 * DAY);
            }
            Ok(())
        })
    }

    pub fn disable_key(&self, key: &str) -> Result<(), KmsError> {
        self.manage("DisableKey", key, |r, _| {
            self.unsupported_for_managed(r, "disabling it")?;
            match r.key_state.as_str() {
                ENABLED | DISABLED => {
                    r.key_state = DISABLED.into();
                    Ok(())
                }
                _ => Err(self.state_err(r)),
            }
        })
    }

    /// Returns (deletion date, window).
    pub fn schedule_key_deletion(
        &self,
        key: &str,
        days: Option<u32>,
    ) -> Result<(u64, u32), KmsError> {
        let days = days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(KmsError::Validation(format!(
                "PendingWindowInDays must be between 7 and 30, not {days}"
            )));
        }
        self.manage("ScheduleKeyDeletion", key, |r, now| {
            self.unsupported_for_managed(r, "scheduling its deletion")?;
            if r.key_state == PENDING_DELETION {
                return Err(self.state_err(r));
            }
            let when = now + days as u64 * DAY;
            r.key_state = PENDING_DELETION.into();
            r.deletion_date = Some(when);
            r.pending_window_in_days = Some(days);
            Ok((when, days))
        })
    }

    pub fn cancel_key_deletion(&self, key: &str) -> Result<(), KmsError> {
        self.manage("CancelKeyDeletion", key, |r, _| {
            if r.key_state != PENDING_DELETION {
                return Err(KmsError::InvalidState(format!(
                    "{} is not pending deletion.",
                    self.arn(&r.key_id)
                )));
            }
            // A key whose imported material is gone cannot be used until
            // it is imported again.
            r.key_state = if missing_material(r) {
                PENDING_IMPORT
            } else {
                DISABLED
            }
            .into();
            r.deletion_date = None;
            r.pending_window_in_days = None;
            Ok(())
        })
    }
}

/// An EXTERNAL key lacks material it needs: none was ever imported, or a
/// material permanently associated with it was deleted or expired.
pub(super) fn missing_material(r: &KeyRecord) -> bool {
    r.origin == "EXTERNAL"
        && (r.materials.is_empty()
            || r.materials
                .iter()
                .any(|m| !m.pending_rotation && m.material.is_none()))
}
