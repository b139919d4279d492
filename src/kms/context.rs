//! The encryption context: authenticated, never stored in a blob. Serialized
//! sorted and length-prefixed, so `{ab: c}` and `{a: bc}` never collide.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EncryptionContext(pub BTreeMap<String, String>);

impl EncryptionContext {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, k: &str, v: &str) -> Self {
        self.0.insert(k.to_owned(), v.to_owned());
        self
    }

    /// AWS's rule for the map: every key at least one character long.
    pub fn check(&self) -> Result<(), super::KmsError> {
        if self.0.contains_key("") {
            return Err(super::KmsError::Validation(
                "encryption context keys must have length greater than or equal to 1".into(),
            ));
        }
        Ok(())
    }

    /// Canonical bytes: count, then (len, key, len, value) in key order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (k, v) in &self.0 {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out
    }

    /// Parse `k=v,k2=v2` or a JSON object, as the CLI accepts.
    pub fn parse_cli(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.starts_with('{') {
            return serde_json::from_str(t).map_err(|e| format!("bad encryption context: {e}"));
        }
        let mut m = BTreeMap::new();
        for part in t.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("bad encryption context entry {part:?}: want KEY=VALUE"))?;
            m.insert(k.to_owned(), v.to_owned());
        }
        Ok(EncryptionContext(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unambiguous() {
        let a = EncryptionContext::new().with("ab", "c");
        let b = EncryptionContext::new().with("a", "bc");
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let c = EncryptionContext::new().with("x", "1").with("a", "2");
        let d = EncryptionContext::new().with("a", "2").with("x", "1");
        assert_eq!(c.canonical_bytes(), d.canonical_bytes());
        assert_eq!(
            EncryptionContext::parse_cli("a=1,b=2").unwrap(),
            EncryptionContext::parse_cli(r#"{"b":"2","a":"1"}"#).unwrap()
        );
        assert!(EncryptionContext::parse_cli("nokey").is_err());
    }
}
