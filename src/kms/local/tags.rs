//! Tags and descriptions of customer managed keys: TagResource,
//! UntagResource and UpdateKeyDescription, with AWS's rules: tag keys of
//! 1-128 characters and values of 0-256, letters, digits, Unicode space
//! separators and `_ . : / = + - @` only (AWS's `[\p{L}\p{Z}\p{N}_.:/=+\-@]`:
//! no tab or line break), no `aws:` prefix (reserved for AWS), at most 50
//! tags a key; descriptions of at most 8192 characters. As every
//! management operation, they take a key ID or key ARN (not an alias) and
//! are refused on a key pending deletion and on the managed default key.

use super::{KeyRecord, LocalKeyService, PENDING_DELETION};
use crate::kms::KmsError;

pub const MAX_TAGS_PER_KEY: usize = 50;
const MAX_TAG_KEY_CHARS: usize = 128;
const MAX_TAG_VALUE_CHARS: usize = 256;
const MAX_DESCRIPTION_CHARS: usize = 8192;

/// A tag key or value: lengths are ValidationExceptions (the API's shape),
/// characters and the reserved prefix TagExceptions (the tag rules).
fn check_tag_part(what: &str, s: &str, min: usize, max: usize) -> Result<(), KmsError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(KmsError::Validation(format!(
            "{what} {s:?} must be {min} to {max} characters long, not {n}"
        )));
    }
    // \p{Z}: the white space that is not a control character.
    let space = |c: char| c.is_whitespace() && !c.is_control();
    let allowed = |c: char| c.is_alphanumeric() || space(c) || "_.:/=+-@".contains(c);
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(KmsError::Tag(format!(
            "{what} {s:?} has the character {c:?}: tags take letters, digits, spaces and _ . : / = + - @"
        )));
    }
    Ok(())
}

fn check_tag_key(k: &str) -> Result<(), KmsError> {
    check_tag_part("tag key", k, 1, MAX_TAG_KEY_CHARS)?;
    if k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return Err(KmsError::Tag(format!(
            "tag key {k:?}: the prefix aws: is reserved for AWS"
        )));
    }
    Ok(())
}

impl LocalKeyService {
    /// The checks of a key's tags and description: a customer managed key
    /// not pending deletion.
    fn check_taggable(&self, r: &KeyRecord, what: &str) -> Result<(), KmsError> {
        self.unsupported_for_managed(r, what)?;
        if r.key_state == PENDING_DELETION {
            return Err(self.state_err(r));
        }
        Ok(())
    }

    /// TagResource: adds the tags, replacing the values of keys it has.
    pub fn tag_resource(&self, key: &str, tags: &[(String, String)]) -> Result<(), KmsError> {
        self.manage("TagResource", key, |r, _| {
            for (i, (k, v)) in tags.iter().enumerate() {
                check_tag_key(k)?;
                check_tag_part("tag value", v, 0, MAX_TAG_VALUE_CHARS)?;
                if tags[..i].iter().any(|(earlier, _)| earlier == k) {
                    return Err(KmsError::Tag(format!(
                        "tag key {k:?} is given twice: a key has one tag of each key"
                    )));
                }
            }
            self.check_taggable(r, "tagging it")?;
            let mut merged = r.tags.clone();
            merged.extend(tags.iter().cloned());
            if merged.len() > MAX_TAGS_PER_KEY {
                return Err(KmsError::LimitExceeded(format!(
                    "{} would have {} tags; a key has at most {MAX_TAGS_PER_KEY}",
                    self.arn(&r.key_id),
                    merged.len()
                )));
            }
            r.tags = merged;
            Ok(())
        })
    }

    /// UntagResource: removes the tags of these keys (keys it does not
    /// have are no error).
    pub fn untag_resource(&self, key: &str, tag_keys: &[String]) -> Result<(), KmsError> {
        self.manage("UntagResource", key, |r, _| {
            for k in tag_keys {
                check_tag_key(k)?;
            }
            self.check_taggable(r, "untagging it")?;
            for k in tag_keys {
                r.tags.remove(k);
            }
            Ok(())
        })
    }

    /// UpdateKeyDescription.
    pub fn update_key_description(&self, key: &str, description: &str) -> Result<(), KmsError> {
        self.manage("UpdateKeyDescription", key, |r, _| {
            let n = description.chars().count();
            if n > MAX_DESCRIPTION_CHARS {
                return Err(KmsError::Validation(format!(
                    "Description must be at most {MAX_DESCRIPTION_CHARS} characters long, not {n}"
                )));
            }
            self.check_taggable(r, "changing its description")?;
            r.description = description.to_owned();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_parts_follow_aws_rules() {
        for ok in ["Purpose", "a", "cost-center/team_1 x.y:z=+@", "ünïcode"] {
            check_tag_key(ok).unwrap();
        }
        let name = |r: Result<(), KmsError>| r.unwrap_err().name();
        assert_eq!(name(check_tag_key("")), "ValidationException");
        assert_eq!(name(check_tag_key(&"k".repeat(129))), "ValidationException");
        check_tag_key(&"k".repeat(128)).unwrap();
        assert_eq!(name(check_tag_key("aws:x")), "TagException");
        assert_eq!(name(check_tag_key("AwS:x")), "TagException");
        assert_eq!(name(check_tag_key("a,b")), "TagException");
        assert_eq!(name(check_tag_key("a*")), "TagException");
        for control in ["a\tb", "a\nb", "a\rb", "\u{85}", "\u{b}"] {
            assert_eq!(name(check_tag_key(control)), "TagException", "{control:?}");
        }
        check_tag_key("a b\u{a0}c\u{2028}d\u{3000}").unwrap();
        check_tag_part("v", "", 0, MAX_TAG_VALUE_CHARS).unwrap();
        assert_eq!(
            name(check_tag_part(
                "v",
                &"v".repeat(257),
                0,
                MAX_TAG_VALUE_CHARS
            )),
            "ValidationException"
        );
    }
}
