//! Routes (v1): a path of an app bound to an image, invoked at `/r/{app}{path}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    non_empty, Annotations, Config, Format, Headers, MilliCpus, DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S, MAX_IDLE_TIMEOUT_S, MAX_MEMORY_MB,
};
use crate::time::DateTime;
use crate::Error;

/// Longest timeout, in seconds, of a sync route.
pub const MAX_SYNC_TIMEOUT_S: i32 = 120;
/// Longest timeout, in seconds, of an async route.
pub const MAX_ASYNC_TIMEOUT_S: i32 = 3600;

/// Whether the caller waits for the function's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    /// The caller waits for the response.
    Sync,
    /// The call is queued and the caller gets its ID at once (202).
    Async,
}

impl RouteType {
    /// Parses `sync` or `async`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sync" => Some(RouteType::Sync),
            "async" => Some(RouteType::Async),
            _ => None,
        }
    }

    /// The name on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            RouteType::Sync => "sync",
            RouteType::Async => "async",
        }
    }
}

/// A route, as stored and as returned by the v1 API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The owning app's ID.
    pub app_id: String,
    /// Absolute, cleaned path; unique within the app and immutable.
    pub path: String,
    /// Container image.
    pub image: String,
    /// Memory in MB.
    pub memory: u64,
    /// CPU limit; 0 is none.
    pub cpus: MilliCpus,
    /// Headers added to every response.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Sync or async.
    #[serde(rename = "type")]
    pub route_type: RouteType,
    /// I/O format.
    pub format: Format,
    /// Seconds a call may run.
    pub timeout: i32,
    /// Seconds a hot container may sit idle.
    pub idle_timeout: i32,
    /// Size of the container's `/tmp` in MB; 0 is none.
    pub tmpfs_size: u32,
    /// Environment for the function, over the app's.
    #[serde(default, skip_serializing_if = "Config::is_empty")]
    pub config: Config,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
    /// When the route was made.
    pub created_at: DateTime,
    /// When the route last changed.
    pub updated_at: DateTime,
}

/// What a client sends to create or update a route; nothing in it is checked yet.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteInput {
    /// Ignored: the app comes from the URL.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Required on create (from the body or the URL); cannot change.
    #[serde(default)]
    pub path: Option<String>,
    /// Container image; a non-empty value replaces on update.
    #[serde(default)]
    pub image: Option<String>,
    /// MB; a non-zero value replaces on update.
    #[serde(default)]
    pub memory: Option<u64>,
    /// CPU string; a non-zero value replaces on update.
    #[serde(default)]
    pub cpus: Option<Value>,
    /// On update, an empty list deletes a header.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// `sync` or `async`.
    #[serde(default, rename = "type")]
    pub route_type: Option<String>,
    /// I/O format name.
    #[serde(default)]
    pub format: Option<String>,
    /// Seconds; a non-zero value replaces on update.
    #[serde(default)]
    pub timeout: Option<i32>,
    /// Seconds; a non-zero value replaces on update.
    #[serde(default)]
    pub idle_timeout: Option<i32>,
    /// MB; a non-zero value replaces on update.
    #[serde(default)]
    pub tmpfs_size: Option<u32>,
    /// On update, an empty value deletes a key.
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// On update, `""` or `null` deletes a key.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, Value>>,
}

impl Route {
    /// Makes a new route of app `app_id`, applying Fn's defaults. The path is cleaned (`/a//b/` is `/a/b`).
    pub fn new(app_id: &str, input: RouteInput) -> Result<Route, Error> {
        if app_id.is_empty() {
            return Err(Error::RouteMissingApp);
        }
        let path = check_path(non_empty(&input.path).ok_or(Error::RouteMissingPath)?)?;
        let now = DateTime::now();
        let route = Route {
            app_id: app_id.to_string(),
            path,
            image: input.image.clone().unwrap_or_default(),
            memory: input.memory.filter(|m| *m != 0).unwrap_or(DEFAULT_MEMORY_MB),
            cpus: input.cpus.as_ref().map(MilliCpus::from_json).transpose()?.unwrap_or_default(),
            headers: Headers(input.headers.unwrap_or_default()),
            route_type: parse_type(non_empty(&input.route_type).unwrap_or("sync"))?,
            format: parse_format(non_empty(&input.format).unwrap_or("default"))?,
            timeout: input.timeout.filter(|t| *t != 0).unwrap_or(DEFAULT_TIMEOUT_S),
            idle_timeout: input.idle_timeout.filter(|t| *t != 0).unwrap_or(DEFAULT_IDLE_TIMEOUT_S),
            tmpfs_size: input.tmpfs_size.unwrap_or(0),
            config: Config(input.config.unwrap_or_default()),
            annotations: Annotations::new(input.annotations.unwrap_or_default())?,
            created_at: now,
            updated_at: now,
        };
        route.check()?;
        Ok(route)
    }

    /// The route with an update merged in (non-zero scalars replace, maps merge) and validated.
    pub fn apply(&self, patch: RouteInput) -> Result<Route, Error> {
        if let Some(p) = non_empty(&patch.path) {
            if clean_path(p) != self.path {
                return Err(Error::RoutePathImmutable);
            }
        }
        let mut next = self.clone();
        if let Some(image) = non_empty(&patch.image) {
            next.image = image.to_string();
        }
        if let Some(m) = patch.memory.filter(|m| *m != 0) {
            next.memory = m;
        }
        if let Some(c) = patch.cpus.as_ref().map(MilliCpus::from_json).transpose()?.filter(|c| !c.is_zero()) {
            next.cpus = c;
        }
        if let Some(t) = non_empty(&patch.route_type) {
            next.route_type = parse_type(t)?;
        }
        if let Some(f) = non_empty(&patch.format) {
            next.format = parse_format(f)?;
        }
        if let Some(t) = patch.timeout.filter(|t| *t != 0) {
            next.timeout = t;
        }
        if let Some(t) = patch.idle_timeout.filter(|t| *t != 0) {
            next.idle_timeout = t;
        }
        if let Some(t) = patch.tmpfs_size.filter(|t| *t != 0) {
            next.tmpfs_size = t;
        }
        if let Some(h) = &patch.headers {
            next.headers = self.headers.merge(h);
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

    /// Rules that hold for a route however it was made.
    fn check(&self) -> Result<(), Error> {
        if self.image.is_empty() {
            return Err(Error::RouteMissingImage);
        }
        if !super::is_valid_image(&self.image) {
            return Err(super::invalid_image());
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory) {
            return Err(Error::InvalidMemory);
        }
        let max_timeout = match self.route_type {
            RouteType::Sync => MAX_SYNC_TIMEOUT_S,
            RouteType::Async => MAX_ASYNC_TIMEOUT_S,
        };
        if !(1..=max_timeout).contains(&self.timeout) {
            return Err(Error::RouteInvalidTimeout);
        }
        if !(1..=MAX_IDLE_TIMEOUT_S).contains(&self.idle_timeout) {
            return Err(Error::RouteInvalidIdleTimeout);
        }
        Ok(())
    }
}

fn parse_type(s: &str) -> Result<RouteType, Error> {
    RouteType::parse(s).ok_or(Error::RouteInvalidType)
}

fn parse_format(s: &str) -> Result<Format, Error> {
    Format::parse(s).ok_or(Error::RouteInvalidFormat)
}

/// Checks a route path and returns it cleaned. Paths are matched exactly, so a query, a fragment, a bad
/// percent-escape or a control character could never match and is rejected as malformed.
pub fn check_path(path: &str) -> Result<String, Error> {
    if path.is_empty() {
        return Err(Error::RouteMissingPath);
    }
    if path.len() > super::MAX_PATH_LEN {
        return Err(Error::RoutePathTooLong);
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_control()) || !valid_escapes(path) {
        return Err(Error::RoutePathMalformed);
    }
    if path.contains(':') {
        return Err(Error::RouteDynamicPath);
    }
    if !path.starts_with('/') {
        return Err(Error::RouteInvalidPath);
    }
    Ok(clean_path(path))
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Lexical cleaning of an absolute path, as Go's `path.Clean`: collapses `//`, resolves `.` and `..` (never
/// above the root), drops a trailing slash. The result always starts with `/`, whether `p` did or not, so
/// a URL tail such as `a/b` and a stored route path `/a/b` compare equal once cleaned.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> RouteInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_json() {
        let r = Route::new("app", input(json!({"path": "/a//b/", "image": "img"}))).unwrap();
        assert_eq!((r.path.as_str(), r.memory, r.timeout, r.idle_timeout), ("/a/b", 128, 30, 30));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["type"], "sync");
        assert_eq!(j["format"], "default");
        assert_eq!(j["cpus"], "");
        assert_eq!(j["tmpfs_size"], 0);
        assert!(j.get("headers").is_none() && j.get("config").is_none());
    }

    #[test]
    fn validation_messages() {
        let bad = |v: Value| Route::new("app", input(v)).unwrap_err();
        assert_eq!(bad(json!({"image": "i"})), Error::RouteMissingPath);
        assert_eq!(bad(json!({"path": "/a"})), Error::RouteMissingImage);
        let e = bad(json!({"path": "/a", "image": "Reg.Example.com/UPPER"}));
        assert_eq!(e.status(), 400);
        assert!(e.message().starts_with("Invalid image"), "{}", e.message());
        assert_eq!(bad(json!({"path": "/a/:id", "image": "i"})), Error::RouteDynamicPath);
        assert_eq!(bad(json!({"path": "a", "image": "i"})), Error::RouteInvalidPath);
        assert_eq!(bad(json!({"path": "/a%zz", "image": "i"})), Error::RoutePathMalformed);
        assert_eq!(bad(json!({"path": "/a%2", "image": "i"})), Error::RoutePathMalformed);
        assert_eq!(bad(json!({"path": "/a", "image": "i", "memory": 8193})), Error::InvalidMemory);
        assert_eq!(bad(json!({"path": "/a", "image": "i", "timeout": 121})), Error::RouteInvalidTimeout);
        assert!(Route::new("app", input(json!({"path": "/a", "image": "i", "type": "async", "timeout": 3600}))).is_ok());
        assert_eq!(bad(json!({"path": "/a", "image": "i", "timeout": -1})), Error::RouteInvalidTimeout);
        assert_eq!(bad(json!({"path": "/a", "image": "i", "idle_timeout": 3601})), Error::RouteInvalidIdleTimeout);
        assert_eq!(bad(json!({"path": "/a", "image": "i", "type": "x"})), Error::RouteInvalidType);
        assert_eq!(bad(json!({"path": "/a", "image": "i", "format": "x"})), Error::RouteInvalidFormat);
        assert_eq!(bad(json!({"path": "/a", "image": "i", "cpus": "lots"})), Error::InvalidCpus);
        assert_eq!(Route::new("", input(json!({"path": "/a", "image": "i"}))).unwrap_err(), Error::RouteMissingApp);
    }

    #[test]
    fn update_rules() {
        let r = Route::new("app", input(json!({"path": "/a", "image": "i", "headers": {"X": ["1"]}}))).unwrap();
        let u = r.apply(input(json!({"image": "j", "memory": 256, "headers": {"X": [], "Y": ["2"]}}))).unwrap();
        assert_eq!((u.image.as_str(), u.memory), ("j", 256));
        assert_eq!(u.headers.0, [("Y".into(), vec!["2".to_string()])].into());
        assert_eq!(r.apply(input(json!({"path": "/b"}))).unwrap_err(), Error::RoutePathImmutable);
        assert_eq!(r.apply(input(json!({"path": "/a/"}))).unwrap(), r);
        assert_eq!(r.apply(input(json!({"timeout": 500}))).unwrap_err(), Error::RouteInvalidTimeout);
    }

    #[test]
    fn cleans_like_go() {
        for (i, o) in
            [("/", "/"), ("", "/"), ("//a//b/", "/a/b"), ("/a/./b/../c", "/a/c"), ("/..", "/"), ("a/b", "/a/b")]
        {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }
}
