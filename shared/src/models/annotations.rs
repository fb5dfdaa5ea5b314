//! Annotations: free-form JSON values under printable-ASCII keys, with Fn's limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::Error;

const MAX_KEY_BYTES: usize = 128;
const MAX_VALUE_BYTES: usize = 512;
const MAX_KEYS: usize = 100;

/// Validated annotations. Values are kept as parsed JSON and serialised compactly, as Fn stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Annotations(BTreeMap<String, Value>);

impl Annotations {
    /// Validates a complete set, as sent on create: every key and value must pass.
    pub fn new(map: BTreeMap<String, Value>) -> Result<Self, Error> {
        for (k, v) in &map {
            check_key(k)?;
            check_value(v)?;
        }
        if map.len() > MAX_KEYS {
            return Err(Error::AnnotationTooMany);
        }
        Ok(Annotations(map))
    }

    /// Applies an update: `""` or `null` deletes a key, any other value sets it; the result is validated.
    pub fn merge(&self, patch: &BTreeMap<String, Value>) -> Result<Self, Error> {
        let mut out = self.0.clone();
        for (k, v) in patch {
            check_key(k)?;
            if is_deletion(v) {
                out.remove(k);
            } else {
                check_value(v)?;
                out.insert(k.clone(), v.clone());
            }
        }
        if out.len() > MAX_KEYS {
            return Err(Error::AnnotationTooMany);
        }
        Ok(Annotations(out))
    }

    /// Whether there are no annotations (Fn omits them from JSON then).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets a value the server computes (such as an endpoint URL); not for client input.
    pub fn set(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_string(), value);
    }

    /// The annotations as a map.
    pub fn as_map(&self) -> &BTreeMap<String, Value> {
        &self.0
    }

    /// Loads stored annotations, which were validated when written.
    pub fn from_stored(map: BTreeMap<String, Value>) -> Self {
        Annotations(map)
    }
}

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Annotations(Option::<BTreeMap<String, Value>>::deserialize(d)?.unwrap_or_default()))
    }
}

fn is_deletion(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

fn check_key(k: &str) -> Result<(), Error> {
    if k.is_empty() || !k.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(Error::AnnotationKeyInvalid);
    }
    if k.len() > MAX_KEY_BYTES {
        return Err(Error::AnnotationKeyTooLong);
    }
    Ok(())
}

fn check_value(v: &Value) -> Result<(), Error> {
    if is_deletion(v) {
        return Err(Error::AnnotationValueInvalid);
    }
    if v.to_string().len() > MAX_VALUE_BYTES {
        return Err(Error::AnnotationValueTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn limits_and_messages() {
        assert!(Annotations::new(map(json!({"a": 1, "b": "x", "c": {"d": [1]}}))).is_ok());
        assert_eq!(Annotations::new(map(json!({"a b": 1}))), Err(Error::AnnotationKeyInvalid));
        assert_eq!(Annotations::new(map(json!({"": 1}))), Err(Error::AnnotationKeyInvalid));
        assert_eq!(Annotations::new(map(json!({"k".repeat(129): 1}))), Err(Error::AnnotationKeyTooLong));
        assert_eq!(Annotations::new(map(json!({"a": ""}))), Err(Error::AnnotationValueInvalid));
        assert_eq!(Annotations::new(map(json!({"a": null}))), Err(Error::AnnotationValueInvalid));
        assert_eq!(Annotations::new(map(json!({"a": "v".repeat(511)}))), Err(Error::AnnotationValueTooLong));
        let many: BTreeMap<String, Value> = (0..101).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(Annotations::new(many), Err(Error::AnnotationTooMany));
    }

    #[test]
    fn merge_deletes_and_counts_the_result() {
        let full: BTreeMap<String, Value> = (0..100).map(|i| (format!("k{i}"), json!(i))).collect();
        let a = Annotations::new(full).unwrap();
        assert_eq!(a.merge(&map(json!({"new": 1}))), Err(Error::AnnotationTooMany));
        let swapped = a.merge(&map(json!({"k0": null, "new": 1}))).unwrap();
        assert!(swapped.get("k0").is_none() && swapped.get("new").is_some());
        assert!(a.merge(&map(json!({"k1": ""}))).unwrap().get("k1").is_none());
    }
}
