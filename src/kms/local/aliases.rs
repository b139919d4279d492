//! Aliases: names (alias/NAME) that point at keys.

use super::{LocalKeyService, PENDING_DELETION};
use crate::kms::KmsError;

impl LocalKeyService {
    pub fn validate_alias(name: &str, user: bool) -> Result<(), KmsError> {
        let body = name.strip_prefix("alias/").ok_or_else(|| {
            KmsError::Validation(format!("alias {name:?} must begin with alias/"))
        })?;
        if body.is_empty()
            || name.len() > 256
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'))
        {
            return Err(KmsError::Validation(format!(
                "alias {name:?} must match ^alias/[a-zA-Z0-9:/_-]+$"
            )));
        }
        if user && (name.starts_with("alias/envelopefs/") || name.starts_with("alias/aws/")) {
            return Err(KmsError::Validation(format!(
                "alias {name:?} uses a reserved prefix"
            )));
        }
        Ok(())
    }

    pub fn create_alias(&self, alias: &str, target: &str) -> Result<(), KmsError> {
        self.audited("CreateAlias", Some(target), |_| {
            Self::validate_alias(alias, true)?;
            self.update(|d| {
                let id = self.mgmt_id(d, target)?;
                if d.aliases.contains_key(alias) {
                    return Err(KmsError::AlreadyExists(format!(
                        "An alias with the name {alias} already exists"
                    )));
                }
                let r = Self::rec(d, &id)?;
                if r.key_state == PENDING_DELETION {
                    return Err(self.state_err(r));
                }
                d.aliases.insert(alias.to_owned(), id);
                Ok(())
            })
        })
    }

    pub fn update_alias(&self, alias: &str, target: &str) -> Result<(), KmsError> {
        self.audited("UpdateAlias", Some(target), |_| {
            Self::validate_alias(alias, true)?;
            self.update(|d| {
                if !d.aliases.contains_key(alias) {
                    return Err(KmsError::NotFound(format!("Alias {alias} is not found.")));
                }
                let id = self.mgmt_id(d, target)?;
                let r = Self::rec(d, &id)?;
                if r.key_state == PENDING_DELETION {
                    return Err(self.state_err(r));
                }
                d.aliases.insert(alias.to_owned(), id);
                Ok(())
            })
        })
    }

    pub fn delete_alias(&self, alias: &str) -> Result<(), KmsError> {
        self.audited("DeleteAlias", Some(alias), |_| {
            Self::validate_alias(alias, true)?;
            self.update(|d| {
                d.aliases
                    .remove(alias)
                    .map(|_| ())
                    .ok_or_else(|| KmsError::NotFound(format!("Alias {alias} is not found.")))
            })
        })
    }
}
