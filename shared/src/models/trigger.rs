//! Triggers (v2): an HTTP source path of an app bound to a fn, invoked at `/t/{app}{source}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{is_plain_name, non_empty, Annotations, MAX_NAME_LEN};
use crate::time::DateTime;
use crate::Error;

/// What kind of event fires the trigger. Only HTTP exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerType {
    /// An HTTP request to `/t/{app}{source}`.
    Http,
}

impl TriggerType {
    /// The name on the wire.
    pub fn as_str(&self) -> &'static str {
        "http"
    }
}

/// A trigger, as stored and as returned by the v2 API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Server-made ID.
    pub id: String,
    /// Unique per `(app, fn)`.
    pub name: String,
    /// The owning app's ID; fixed at creation.
    pub app_id: String,
    /// The fn it invokes; must belong to the app.
    pub fn_id: String,
    /// Event kind.
    #[serde(rename = "type")]
    pub trigger_type: TriggerType,
    /// Path under `/t/{app}`; unique per `(app, type)`.
    pub source: String,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
    /// When the trigger was made.
    pub created_at: DateTime,
    /// When the trigger last changed.
    pub updated_at: DateTime,
}

/// What a client sends to create or update a trigger; nothing in it is checked yet.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TriggerInput {
    /// Must be absent on create; on update, must match the path's ID.
    #[serde(default)]
    pub id: Option<String>,
    /// Required on create.
    #[serde(default)]
    pub name: Option<String>,
    /// Required on create; cannot change.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Required on create.
    #[serde(default)]
    pub fn_id: Option<String>,
    /// Must be `http`.
    #[serde(default, rename = "type")]
    pub trigger_type: Option<String>,
    /// Required on create; starts with `/`.
    #[serde(default)]
    pub source: Option<String>,
    /// On update, `""` or `null` deletes a key.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, Value>>,
    /// Must be unset on create (Go's zero time counts as unset).
    #[serde(default, deserialize_with = "crate::time::optional_input")]
    pub created_at: Option<DateTime>,
    /// Must be unset on create (Go's zero time counts as unset).
    #[serde(default, deserialize_with = "crate::time::optional_input")]
    pub updated_at: Option<DateTime>,
}

impl Trigger {
    /// Makes a new trigger from a create request. That the app and fn exist, and that the fn belongs to
    /// the app, is the store's to check in the same transaction as the insert.
    pub fn new(input: TriggerInput) -> Result<Trigger, Error> {
        if non_empty(&input.id).is_some() {
            return Err(Error::TriggerIdProvided);
        }
        if input.created_at.is_some() {
            return Err(Error::TriggerCreatedAtProvided);
        }
        if input.updated_at.is_some() {
            return Err(Error::TriggerUpdatedAtProvided);
        }
        let name = input.name.clone().unwrap_or_default();
        check_name(&name)?;
        let app_id = non_empty(&input.app_id).ok_or(Error::TriggerMissingAppId)?.to_string();
        let fn_id = non_empty(&input.fn_id).ok_or(Error::TriggerMissingFnId)?.to_string();
        let trigger_type = parse_type(input.trigger_type.as_deref().unwrap_or(""))?;
        let source = check_source(input.source.as_deref().unwrap_or(""))?;
        let now = DateTime::now();
        Ok(Trigger {
            id: crate::id::new_id(),
            name,
            app_id,
            fn_id,
            trigger_type,
            source,
            annotations: Annotations::new(input.annotations.unwrap_or_default())?,
            created_at: now,
            updated_at: now,
        })
    }

    /// The trigger with an update merged in: non-empty name, fn_id and source replace, annotations merge.
    /// A different `fn_id` must again belong to the app, which the store checks.
    pub fn apply(&self, patch: TriggerInput) -> Result<Trigger, Error> {
        if non_empty(&patch.id).is_some_and(|id| id != self.id) {
            return Err(Error::TriggerIdMismatch);
        }
        if non_empty(&patch.app_id).is_some_and(|a| a != self.app_id) {
            return Err(Error::TriggerAppImmutable);
        }
        let mut next = self.clone();
        if let Some(name) = non_empty(&patch.name) {
            check_name(name)?;
            next.name = name.to_string();
        }
        if let Some(fn_id) = non_empty(&patch.fn_id) {
            next.fn_id = fn_id.to_string();
        }
        if let Some(t) = non_empty(&patch.trigger_type) {
            next.trigger_type = parse_type(t)?;
        }
        if let Some(source) = non_empty(&patch.source) {
            next.source = check_source(source)?;
        }
        if let Some(a) = &patch.annotations {
            next.annotations = self.annotations.merge(a)?;
        }
        if next != *self {
            next.updated_at = DateTime::now().max(self.updated_at);
        }
        Ok(next)
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::TriggerMissingName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::TriggerNameTooLong);
    }
    if !is_plain_name(name) {
        return Err(Error::TriggerInvalidName);
    }
    Ok(())
}

fn parse_type(s: &str) -> Result<TriggerType, Error> {
    match s {
        "http" => Ok(TriggerType::Http),
        _ => Err(Error::TriggerTypeUnsupported),
    }
}

fn check_source(source: &str) -> Result<String, Error> {
    if source.is_empty() {
        return Err(Error::TriggerMissingSource);
    }
    if !source.starts_with('/') {
        return Err(Error::TriggerSourceNoSlash);
    }
    if source.len() > super::MAX_PATH_LEN {
        return Err(Error::TriggerSourceTooLong);
    }
    Ok(source.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> TriggerInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_and_errors() {
        let ok = json!({"name": "t", "app_id": "A", "fn_id": "F", "type": "http", "source": "/s"});
        let t = Trigger::new(input(ok.clone())).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap()["type"], "http");
        let bad = |patch: Value| {
            let mut v = ok.clone();
            v.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
            Trigger::new(input(v)).unwrap_err()
        };
        assert_eq!(bad(json!({"id": "x"})), Error::TriggerIdProvided);
        assert_eq!(bad(json!({"created_at": "2018-01-01T00:00:00Z"})), Error::TriggerCreatedAtProvided);
        assert_eq!(bad(json!({"updated_at": "2018-01-01T00:00:00Z"})), Error::TriggerUpdatedAtProvided);
        let mut go = ok.clone();
        go["created_at"] = json!("0001-01-01T00:00:00.000Z");
        go["updated_at"] = json!("0001-01-01T00:00:00.000Z");
        assert!(Trigger::new(input(go)).is_ok(), "Go's zero time means unset");
        assert_eq!(bad(json!({"name": ""})), Error::TriggerMissingName);
        assert_eq!(bad(json!({"name": "a.b"})), Error::TriggerInvalidName);
        assert_eq!(bad(json!({"name": "n".repeat(31)})), Error::TriggerNameTooLong);
        assert_eq!(bad(json!({"app_id": ""})), Error::TriggerMissingAppId);
        assert_eq!(bad(json!({"fn_id": ""})), Error::TriggerMissingFnId);
        assert_eq!(bad(json!({"type": "cron"})), Error::TriggerTypeUnsupported);
        assert_eq!(bad(json!({"source": ""})), Error::TriggerMissingSource);
        assert_eq!(bad(json!({"source": "s"})), Error::TriggerSourceNoSlash);
    }

    #[test]
    fn update() {
        let t = Trigger::new(input(json!({"name": "t", "app_id": "A", "fn_id": "F", "type": "http", "source": "/s"})))
            .unwrap();
        let u = t.apply(input(json!({"name": "u", "source": "/v", "annotations": {"k": 1}}))).unwrap();
        assert_eq!((u.name.as_str(), u.source.as_str()), ("u", "/v"));
        assert_eq!(t.apply(input(json!({"app_id": "B"}))).unwrap_err(), Error::TriggerAppImmutable);
        assert_eq!(t.apply(input(json!({"id": "B"}))).unwrap_err(), Error::TriggerIdMismatch);
        assert_eq!(t.apply(input(json!({"source": "x"}))).unwrap_err(), Error::TriggerSourceNoSlash);
    }
}
