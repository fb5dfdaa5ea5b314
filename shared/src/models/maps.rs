//! Config (string to string) and headers (string to list of strings), with Fn's merge rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Key/value configuration, passed to the function as environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Config(pub BTreeMap<String, String>);

impl Config {
    /// Whether there are no keys (Fn omits empty config from JSON).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies an update: an empty value deletes the key, any other value sets it.
    pub fn merge(&self, patch: &BTreeMap<String, String>) -> Config {
        Config(merge(&self.0, patch, String::is_empty))
    }
}

impl<'de> Deserialize<'de> for Config {
    /// `null` reads as empty, as Go's nil map does.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Config(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default()))
    }
}

/// Extra HTTP response headers of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, Vec<String>>);

impl Headers {
    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies an update: an empty list deletes the header, any other list replaces it.
    pub fn merge(&self, patch: &BTreeMap<String, Vec<String>>) -> Headers {
        Headers(merge(&self.0, patch, Vec::is_empty))
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Headers(Option::<BTreeMap<String, Vec<String>>>::deserialize(d)?.unwrap_or_default()))
    }
}

/// Fn's merge of a map update: each patched key is set, or removed when `deletes` says its value means so.
fn merge<V: Clone>(
    base: &BTreeMap<String, V>,
    patch: &BTreeMap<String, V>,
    deletes: fn(&V) -> bool,
) -> BTreeMap<String, V> {
    let mut out = base.clone();
    for (k, v) in patch {
        if deletes(v) {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_delete_on_merge() {
        let c = Config([("A".into(), "1".into()), ("B".into(), "2".into())].into());
        let merged = c.merge(&[("A".into(), "".into()), ("C".into(), "3".into())].into());
        assert_eq!(merged.0, [("B".into(), "2".into()), ("C".into(), "3".into())].into());
        let h = Headers([("X".into(), vec!["1".into()])].into());
        assert!(h.merge(&[("X".into(), vec![])].into()).is_empty());
        let null: Config = serde_json::from_str("null").unwrap();
        assert!(null.is_empty());
    }
}
