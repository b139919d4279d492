//! Rotation: automatic at a period, and on demand; old material stays for
//! decryption.

use super::{
    new_material, KeyRecord, LocalKeyService, DAY, DISABLED, ENABLED, MAX_ON_DEMAND_ROTATIONS,
    PENDING_DELETION, PENDING_IMPORT,
};
use crate::kms::KmsError;

impl LocalKeyService {
    fn rotation_state_check(&self, r: &KeyRecord) -> Result<(), KmsError> {
        self.refuse_asymmetric_rotation(r)?;
        match r.key_state.as_str() {
            ENABLED if r.origin == "EXTERNAL" => Err(KmsError::UnsupportedOperation(format!(
                "{} has imported key material: automatic rotation is not supported",
                self.arn(&r.key_id)
            ))),
            ENABLED => Ok(()),
            DISABLED => Err(self.state_err(r)),
            PENDING_IMPORT => Err(KmsError::UnsupportedOperation(format!(
                "{} has imported key material: automatic rotation is not supported",
                self.arn(&r.key_id)
            ))),
            _ => Err(self.state_err(r)),
        }
    }

    pub fn enable_key_rotation(&self, key: &str, period_days: Option<u32>) -> Result<(), KmsError> {
        let days = period_days.unwrap_or(365);
        if !(90..=2560).contains(&days) {
            return Err(KmsError::Validation(format!(
                "RotationPeriodInDays must be between 90 and 2560, not {days}"
            )));
        }
        self.manage("EnableKeyRotation", key, |r, now| {
            self.rotation_state_check(r)?;
            if r.is_managed() && days != 365 {
                return Err(KmsError::UnsupportedOperation(
                    "a managed key rotates every 365 days".into(),
                ));
            }
            r.rotation_enabled = true;
            r.rotation_period_days = days;
            r.next_rotation_date = Some(now + days as u64 * DAY);
            Ok(())
        })
    }

    pub fn disable_key_rotation(&self, key: &str) -> Result<(), KmsError> {
        self.manage("DisableKeyRotation", key, |r, _| {
            self.unsupported_for_managed(r, "turning off its rotation")?;
            self.rotation_state_check(r)?;
            r.rotation_enabled = false;
            r.next_rotation_date = None;
            Ok(())
        })
    }

    /// (enabled, period, next rotation date).
    pub fn get_key_rotation_status(&self, key: &str) -> Result<(bool, u32, Option<u64>), KmsError> {
        let r = self.describe(key)?;
        let enabled = r.rotation_enabled && r.key_state != PENDING_DELETION;
        Ok((
            enabled,
            r.rotation_period_days,
            if enabled { r.next_rotation_date } else { None },
        ))
    }

    /// Returns the new key material ID.
    pub fn rotate_key_on_demand(&self, key: &str) -> Result<String, KmsError> {
        self.manage("RotateKeyOnDemand", key, |r, now| {
            self.refuse_asymmetric_rotation(r)?;
            self.unsupported_for_managed(r, "on-demand rotation")?;
            self.usable(r)?;
            if r.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
                return Err(KmsError::LimitExceeded(format!(
                    "{} has had its {MAX_ON_DEMAND_ROTATIONS} on-demand rotations",
                    self.arn(&r.key_id)
                )));
            }
            if r.origin == "EXTERNAL" {
                return self.rotate_to_imported(r);
            }
            let m = new_material("ON_DEMAND", now);
            let id = m.id.clone();
            r.current_material = id.clone();
            r.materials.push(m);
            r.on_demand_rotations += 1;
            Ok(id)
        })
    }

    /// On-demand rotation of an imported key: the material imported with
    /// ImportType NEW_KEY_MATERIAL becomes current.
    fn rotate_to_imported(&self, r: &mut KeyRecord) -> Result<String, KmsError> {
        let arn = self.arn(&r.key_id);
        let Some(m) = r
            .materials
            .iter_mut()
            .find(|m| m.pending_rotation && m.material.is_some())
        else {
            return Err(KmsError::UnsupportedOperation(format!(
                "{arn} has imported key material: import new material with ImportType NEW_KEY_MATERIAL first"
            )));
        };
        m.pending_rotation = false;
        m.rotation_type = "ON_DEMAND".into();
        let id = m.id.clone();
        r.current_material = id.clone();
        r.on_demand_rotations += 1;
        Ok(id)
    }
}
