//! Fns (v2): a function of an app, addressed by ID and invoked at `/invoke/{fn_id}` or through triggers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    non_empty, Annotations, Config, Format, DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S,
    MAX_IDLE_TIMEOUT_S, MAX_MEMORY_MB, MAX_NAME_LEN,
};
use crate::time::DateTime;
use crate::Error;

/// Longest timeout, in seconds, of a fn.
pub const MAX_FN_TIMEOUT_S: i32 = 300;

/// A function (Fn's `Fn`; named `Func` here so as not to shadow Rust's `Fn` trait), as stored and as
/// returned by the v2 API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Func {
    /// Server-made ID.
    pub id: String,
    /// Unique within the app; immutable.
    pub name: String,
    /// The owning app's ID.
    pub app_id: String,
    /// Container image.
    pub image: String,
    /// Memory in MB.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub memory: u64,
    /// Seconds a call may run.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub timeout: i32,
    /// Seconds a hot container may sit idle.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub idle_timeout: i32,
    /// I/O format. Defaults to `http-stream`, the only format Fn's FDKs speak, so that functions deployed
    /// by Fn's CLI (which sends none) run as they do on Fn's current server.
    pub format: Format,
    /// Environment for the function, over the app's.
    #[serde(default)]
    pub config: Config,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
    /// When the fn was made.
    pub created_at: DateTime,
    /// When the fn last changed.
    pub updated_at: DateTime,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// What a client sends to create or update a fn; nothing in it is checked yet.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FuncInput {
    /// Must be absent on create; on update, must match the path's ID.
    #[serde(default)]
    pub id: Option<String>,
    /// Required on create; cannot change.
    #[serde(default)]
    pub name: Option<String>,
    /// Required on create; the app must exist.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Required on create; a non-empty value replaces on update.
    #[serde(default)]
    pub image: Option<String>,
    /// MB; a non-zero value replaces on update.
    #[serde(default)]
    pub memory: Option<u64>,
    /// Seconds; a non-zero value replaces on update.
    #[serde(default)]
    pub timeout: Option<i32>,
    /// Seconds; a non-zero value replaces on update.
    #[serde(default)]
    pub idle_timeout: Option<i32>,
    /// I/O format name.
    #[serde(default)]
    pub format: Option<String>,
    /// On update, an empty value deletes a key.
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// On update, `""` or `null` deletes a key.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, Value>>,
}

impl Func {
    /// Makes a new fn from a create request. Whether its app exists is the store's to check.
    pub fn new(input: FuncInput) -> Result<Func, Error> {
        if non_empty(&input.id).is_some() {
            return Err(Error::FnIdProvided);
        }
        let name = input.name.clone().unwrap_or_default();
        check_name(&name)?;
        let app_id = non_empty(&input.app_id).ok_or(Error::FnMissingAppId)?.to_string();
        let now = DateTime::now();
        let f = Func {
            id: crate::id::new_id(),
            name,
            app_id,
            image: input.image.clone().unwrap_or_default(),
            memory: input.memory.filter(|m| *m != 0).unwrap_or(DEFAULT_MEMORY_MB),
            timeout: input.timeout.filter(|t| *t != 0).unwrap_or(DEFAULT_TIMEOUT_S),
            idle_timeout: input.idle_timeout.filter(|t| *t != 0).unwrap_or(DEFAULT_IDLE_TIMEOUT_S),
            format: parse_format(non_empty(&input.format).unwrap_or("http-stream"))?,
            config: Config(input.config.unwrap_or_default()),
            annotations: Annotations::new(input.annotations.unwrap_or_default())?,
            created_at: now,
            updated_at: now,
        };
        f.check()?;
        Ok(f)
    }

    /// The fn with an update merged in and validated. Fn's server silently ignored a new name; we refuse
    /// it with 409 so the caller knows it did not take.
    pub fn apply(&self, patch: FuncInput) -> Result<Func, Error> {
        if non_empty(&patch.id).is_some_and(|id| id != self.id) {
            return Err(Error::FnIdMismatch);
        }
        if non_empty(&patch.name).is_some_and(|n| n != self.name) {
            return Err(Error::NameImmutable);
        }
        let mut next = self.clone();
        if let Some(image) = non_empty(&patch.image) {
            next.image = image.to_string();
        }
        if let Some(m) = patch.memory.filter(|m| *m != 0) {
            next.memory = m;
        }
        if let Some(t) = patch.timeout.filter(|t| *t != 0) {
            next.timeout = t;
        }
        if let Some(t) = patch.idle_timeout.filter(|t| *t != 0) {
            next.idle_timeout = t;
        }
        if let Some(f) = non_empty(&patch.format) {
            next.format = parse_format(f)?;
        }
        if let Some(c) = &patch.config {
            next.config = self.config.merge(c);
        }
        if let Some(a) = &patch.annotations {
            next.annotations = self.annotations.merge(a)?;
        }
        next.check()?;
        if next != *self {
            next.updated_at = DateTime::now().max(self.updated_at);
        }
        Ok(next)
    }

    fn check(&self) -> Result<(), Error> {
        if self.image.is_empty() {
            return Err(Error::FnMissingImage);
        }
        if !super::is_valid_image(&self.image) {
            return Err(super::invalid_image());
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory) {
            return Err(Error::InvalidMemory);
        }
        if !(1..=MAX_FN_TIMEOUT_S).contains(&self.timeout) {
            return Err(Error::FnInvalidTimeout);
        }
        if !(1..=MAX_IDLE_TIMEOUT_S).contains(&self.idle_timeout) {
            return Err(Error::FnInvalidIdleTimeout);
        }
        Ok(())
    }
}

fn parse_format(s: &str) -> Result<Format, Error> {
    Format::parse(s).ok_or(Error::FnInvalidFormat)
}

/// Fn names must survive a URL path segment unescaped (Go's `url.PathEscape(name) == name`).
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::FnMissingName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::FnNameTooLong);
    }
    let unescaped = |c: char| c.is_ascii_alphanumeric() || "-_.~$&+:=@".contains(c);
    if !name.chars().all(unescaped) {
        return Err(Error::FnInvalidName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> FuncInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_defaults_and_errors() {
        let f = Func::new(input(json!({"name": "f.1", "app_id": "A", "image": "i"}))).unwrap();
        assert_eq!((f.memory, f.timeout, f.idle_timeout, f.format), (128, 30, 30, Format::HttpStream));
        let j = serde_json::to_value(&f).unwrap();
        assert_eq!(j["config"], json!({}));
        assert_eq!(j["format"], "http-stream");
        let bad = |v: Value| Func::new(input(v)).unwrap_err();
        assert_eq!(bad(json!({"app_id": "A", "image": "i"})), Error::FnMissingName);
        assert_eq!(bad(json!({"name": "a/b", "app_id": "A", "image": "i"})), Error::FnInvalidName);
        assert_eq!(bad(json!({"name": "a b", "app_id": "A", "image": "i"})), Error::FnInvalidName);
        assert_eq!(bad(json!({"name": "f", "image": "i"})), Error::FnMissingAppId);
        assert_eq!(bad(json!({"name": "f", "app_id": "A"})), Error::FnMissingImage);
        for image in ["Hello", "a b", "--help", "evil.example.com/x:tag with space", "a@sha256:x"] {
            let e = bad(json!({"name": "f", "app_id": "A", "image": image}));
            assert_eq!(e.status(), 400, "{image}");
            assert!(e.message().starts_with("Invalid image"), "{image}: {}", e.message());
        }
        assert_eq!(bad(json!({"name": "f", "app_id": "A", "image": "i", "timeout": 301})), Error::FnInvalidTimeout);
        assert_eq!(
            bad(json!({"name": "f", "app_id": "A", "image": "i", "idle_timeout": -5})),
            Error::FnInvalidIdleTimeout
        );
        assert_eq!(bad(json!({"name": "f", "app_id": "A", "image": "i", "memory": 9000})), Error::InvalidMemory);
        assert_eq!(bad(json!({"name": "f", "app_id": "A", "image": "i", "format": "x"})), Error::FnInvalidFormat);
        assert_eq!(bad(json!({"id": "x", "name": "f", "app_id": "A", "image": "i"})), Error::FnIdProvided);
    }

    #[test]
    fn update() {
        let f = Func::new(input(json!({"name": "f", "app_id": "A", "image": "i", "config": {"K": "v"}}))).unwrap();
        let u = f.apply(input(json!({"image": "j", "timeout": 60, "config": {"K": ""}}))).unwrap();
        assert_eq!((u.image.as_str(), u.timeout, u.config.is_empty()), ("j", 60, true));
        assert_eq!(f.apply(input(json!({"name": "g"}))).unwrap_err(), Error::NameImmutable);
        assert_eq!(f.apply(input(json!({"id": "other"}))).unwrap_err(), Error::FnIdMismatch);
        assert_eq!(f.apply(input(json!({"image": "i"}))).unwrap(), f);
    }
}
