//! Aliases: names (alias/NAME) that point at keys.

use super::{LocalKeyService, PENDING_DELETION};
use crate::kms::KmsError;

impl LocalKeyService {
    /// AWS's alias rules: `alias/` and a name, 1 to 256 characters in all,
    /// of `[a-zA-Z0-9/_-]`; `alias/aws/` is reserved for managed keys, and
    /// here `alias/envelopefs/` too (the default key's).
    pub fn validate_alias(name: &str) -> Result<(), KmsError> {
        let invalid = |why: &str| Err(KmsError::InvalidAliasName(format!("{name:?} {why}")));
        let Some(body) = name.strip_prefix("alias/") else {
            return invalid("must begin with alias/");
        };
        if body.is_empty() || name.len() > 256 {
            return invalid("must be alias/ and a name, 1 to 256 characters in all");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))
        {
            return invalid("may contain only a-z, A-Z, 0-9, /, _ and -");
        }
        if name.starts_with("alias/aws/") || name.starts_with("alias/envelopefs/") {
            return invalid("uses a reserved prefix (alias/aws/, alias/envelopefs/)");
        }
        Ok(())
    }

    pub fn create_alias(&self, alias: &str, target: &str) -> Result<(), KmsError> {
        self.audited("CreateAlias", Some(target), |_| {
            Self::validate_alias(alias)?;
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
            Self::validate_alias(alias)?;
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
            Self::validate_alias(alias)?;
            self.update(|d| {
                d.aliases
                    .remove(alias)
                    .map(|_| ())
                    .ok_or_else(|| KmsError::NotFound(format!("Alias {alias} is not found.")))
            })
        })
    }
}
