//! Apps: named groups of fns and routes sharing config, annotations and syslog destinations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{is_plain_name, non_empty, Annotations, Config, MAX_NAME_LEN};
use crate::time::DateTime;
use crate::Error;

/// An app, as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Server-made ID.
    pub id: String,
    /// Unique, immutable name; the v1 API addresses apps by it.
    pub name: String,
    /// Environment for every function of the app.
    #[serde(default, skip_serializing_if = "Config::is_empty")]
    pub config: Config,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
    /// Comma-separated `udp://`, `tcp://` or `tls://` URLs that receive function logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog_url: Option<String>,
    /// When the app was made.
    pub created_at: DateTime,
    /// When the app last changed.
    pub updated_at: DateTime,
}

/// What a client sends to create or update an app; nothing in it is checked yet.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppInput {
    /// Must be absent on create; on update, must match the path's ID.
    #[serde(default)]
    pub id: Option<String>,
    /// Required on create; cannot change.
    #[serde(default)]
    pub name: Option<String>,
    /// On update, an empty value deletes a key.
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// On update, `""` or `null` deletes a key.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, Value>>,
    /// On update, `""` clears it.
    #[serde(default)]
    pub syslog_url: Option<String>,
}

impl App {
    /// Makes a new app from a create request, with a fresh ID and timestamps.
    pub fn new(input: AppInput) -> Result<App, Error> {
        if non_empty(&input.id).is_some() {
            return Err(Error::AppIdProvided);
        }
        let name = input.name.unwrap_or_default();
        check_name(&name)?;
        let now = DateTime::now();
        Ok(App {
            id: crate::id::new_id(),
            name,
            config: Config(input.config.unwrap_or_default()),
            annotations: Annotations::new(input.annotations.unwrap_or_default())?,
            syslog_url: check_syslog(input.syslog_url)?,
            created_at: now,
            updated_at: now,
        })
    }

    /// The app with an update merged in and validated. `updated_at` moves only when something changed.
    pub fn apply(&self, patch: AppInput) -> Result<App, Error> {
        if let Some(id) = non_empty(&patch.id) {
            if id != self.id {
                return Err(Error::AppIdMismatch);
            }
        }
        if non_empty(&patch.name).is_some_and(|n| n != self.name) {
            return Err(Error::NameImmutable);
        }
        let mut next = self.clone();
        if let Some(config) = &patch.config {
            next.config = self.config.merge(config);
        }
        if let Some(annotations) = &patch.annotations {
            next.annotations = self.annotations.merge(annotations)?;
        }
        if let Some(url) = patch.syslog_url {
            next.syslog_url = check_syslog(Some(url))?;
        }
        if next != *self {
            next.updated_at = DateTime::now().max(self.updated_at);
        }
        Ok(next)
    }
}

/// Checks an app name against Fn's rules.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::AppMissingName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::AppNameTooLong);
    }
    if !is_plain_name(name) {
        return Err(Error::AppInvalidName);
    }
    Ok(())
}

/// Every comma-separated entry must be a URL with scheme `udp`, `tcp` or `tls`. Empty means none.
fn check_syslog(url: Option<String>) -> Result<Option<String>, Error> {
    let Some(url) = url.filter(|u| !u.is_empty()) else { return Ok(None) };
    for entry in url.split(',') {
        let ok = url::Url::parse(entry.trim())
            .map(|u| matches!(u.scheme(), "udp" | "tcp" | "tls") && u.host_str().is_some_and(|h| !h.is_empty()))
            .unwrap_or(false);
        if !ok {
            return Err(Error::InvalidSyslogUrl(entry.to_string()));
        }
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> AppInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_validates_and_defaults() {
        let app = App::new(input(json!({"name": "my-app_1"}))).unwrap();
        assert_eq!(app.id.len(), 26);
        assert_eq!(app.created_at, app.updated_at);
        let json = serde_json::to_value(&app).unwrap();
        assert!(json.get("config").is_none() && json.get("annotations").is_none() && json.get("syslog_url").is_none());
        assert_eq!(App::new(input(json!({}))), Err(Error::AppMissingName));
        assert_eq!(App::new(input(json!({"name": "a".repeat(31)}))), Err(Error::AppNameTooLong));
        assert_eq!(App::new(input(json!({"name": "a b"}))), Err(Error::AppInvalidName));
        assert!(App::new(input(json!({"name": "ünïcödé"}))).is_ok());
        assert_eq!(App::new(input(json!({"name": "a", "id": "x"}))), Err(Error::AppIdProvided));
        assert_eq!(
            App::new(input(json!({"name": "a", "syslog_url": "tcp://h:1,http://h"}))),
            Err(Error::InvalidSyslogUrl("http://h".into()))
        );
        assert!(App::new(input(json!({"name": "a", "syslog_url": "tcp://h:1,udp://g:2,tls://x:3"}))).is_ok());
    }

    #[test]
    fn update_merges_and_bumps_only_on_change() {
        let app =
            App::new(input(json!({"name": "a", "config": {"A": "1", "B": "2"}, "syslog_url": "udp://x:1"}))).unwrap();
        let same = app.apply(input(json!({"name": "a", "config": {"A": "1"}}))).unwrap();
        assert_eq!(same, app);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let changed = app.apply(input(json!({"config": {"A": "", "C": "3"}, "syslog_url": ""}))).unwrap();
        assert_eq!(changed.config.0, [("B".into(), "2".into()), ("C".into(), "3".into())].into());
        assert_eq!(changed.syslog_url, None);
        assert!(changed.updated_at > app.updated_at);
        assert_eq!(app.apply(input(json!({"name": "b"}))), Err(Error::NameImmutable));
        assert_eq!(app.apply(input(json!({"id": "other"}))), Err(Error::AppIdMismatch));
    }
}
