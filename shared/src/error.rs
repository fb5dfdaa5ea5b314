//! The one error type of the domain layer.
//!
//! Every variant knows the HTTP status and the exact message Fn's server answers with, so that Fn's CLI and
//! clients, which match on both, behave the same against this platform. Transports render the two body
//! shapes Fn uses: v1 (and `/r/`) wrap the message as `{"error":{"message":...}}`, v2 answers it flat as
//! `{"message":...}`. [`Error::Internal`] keeps its cause for the log and shows callers only
//! "internal server error".

use std::borrow::Cow;

/// Status code and message for a failure, the way Fn reports it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // ---- request shape -----------------------------------------------------------------------
    /// The body is not JSON, or not of the expected shape.
    #[error("Invalid JSON")]
    InvalidJson,
    /// A 400 whose text is built at run time (a bad syslog URL, a bad query value, ...).
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    /// No route is served at this path.
    #[error("Path not found: {0}")]
    PathNotFound(String),
    /// The path exists but not for this method.
    #[error("Method not allowed: {method} {path}")]
    MethodNotAllowed {
        /// HTTP method the caller used.
        method: String,
        /// Path the caller asked for.
        path: String,
    },
    /// The body is larger than the node accepts.
    #[error("Request content too large")]
    RequestTooLarge,
    /// The `Accept` header names nothing this endpoint can produce.
    #[error("unable to respond within acceptable response content types")]
    NotAcceptable,

    // ---- apps --------------------------------------------------------------------------------
    /// v1 body without its `app` key.
    #[error("Missing new application")]
    MissingNewApp,
    /// An empty app name in the URL.
    #[error("Missing app name")]
    MissingAppName,
    /// An app body without a name.
    #[error("Missing Name")]
    AppMissingName,
    /// App name longer than [`crate::models::MAX_NAME_LEN`].
    #[error("App name must be 30 characters or less")]
    AppNameTooLong,
    /// App name with a character other than a letter, digit, `_` or `-`.
    #[error("Invalid app name")]
    AppInvalidName,
    /// Create with an ID: IDs are the server's to make.
    #[error("App ID cannot be supplied on create")]
    AppIdProvided,
    /// PUT whose body ID differs from the path's.
    #[error("App ID in path does not match ID in body")]
    AppIdMismatch,
    /// No app with that name or ID.
    #[error("App not found")]
    AppNotFound,
    /// App names are unique.
    #[error("App already exists")]
    AppAlreadyExists,
    /// App names cannot change.
    #[error("Could not update - name is immutable")]
    NameImmutable,
    /// A syslog URL entry that is not `udp://`, `tcp://` or `tls://`.
    #[error("invalid syslog url: \"{0}\"")]
    InvalidSyslogUrl(String),

    // ---- routes ------------------------------------------------------------------------------
    /// v1 body without its `route` key.
    #[error("Missing new route")]
    MissingNewRoute,
    /// A route with no app.
    #[error("Missing route AppName")]
    RouteMissingApp,
    /// A route with no path.
    #[error("Missing route Path")]
    RouteMissingPath,
    /// A route path that does not parse as a URL path.
    #[error("Path malformed")]
    RoutePathMalformed,
    /// Route paths are matched exactly; `:param` segments are not supported.
    #[error("Dynamic URL is not allowed")]
    RouteDynamicPath,
    /// A relative route path.
    #[error("Invalid route path format")]
    RouteInvalidPath,
    /// A route path longer than the store keeps.
    #[error("Route path must be 512 characters or less")]
    RoutePathTooLong,
    /// Route paths cannot change.
    #[error("Could not update - path is immutable")]
    RoutePathImmutable,
    /// A route with no image.
    #[error("Missing route Image")]
    RouteMissingImage,
    /// A route type other than `sync` or `async`.
    #[error("Invalid route Type")]
    RouteInvalidType,
    /// A route format outside the supported set.
    #[error("Invalid route Format")]
    RouteInvalidFormat,
    /// Route timeout out of range for its type.
    #[error("timeout value is out of range. Sync should be between 0 and 120, async should be between 0 and 3600")]
    RouteInvalidTimeout,
    /// Route idle timeout out of range.
    #[error("idle_timeout value is out of range. It should be between 0 and 3600")]
    RouteInvalidIdleTimeout,
    /// `(app, path)` is unique.
    #[error("Route already exists")]
    RouteAlreadyExists,
    /// No route at that path.
    #[error("Route not found")]
    RouteNotFound,

    // ---- shared by routes and fns ------------------------------------------------------------
    /// Memory outside 1..=8192 MB.
    #[error("memory value is out of range. It should be between 0 and 8192")]
    InvalidMemory,
    /// A `cpus` string that is not a valid amount of CPU.
    #[error(
        "Cpus is invalid. Value should be either between [0.000 and 1024.000] or [0m and 1024000m] milliCPU units"
    )]
    InvalidCpus,

    // ---- fns ---------------------------------------------------------------------------------
    /// Create with an ID.
    #[error("ID cannot be provided for Fn creation")]
    FnIdProvided,
    /// A fn with no name.
    #[error("Missing Fn name")]
    FnMissingName,
    /// Fn name longer than the limit.
    #[error("Fn name must be 30 characters or less")]
    FnNameTooLong,
    /// A fn name that would need escaping in a URL path.
    #[error("name must be a valid string")]
    FnInvalidName,
    /// A fn with no app.
    #[error("Missing AppID on Fn")]
    FnMissingAppId,
    /// A fn with no image.
    #[error("Missing image on Fn")]
    FnMissingImage,
    /// Fn timeout outside 1..=300 s.
    #[error("timeout value is out of range, must be between 0 and 300")]
    FnInvalidTimeout,
    /// Fn idle timeout outside 1..=3600 s.
    #[error("idle_timeout value is out of range, must be between 0 and 3600")]
    FnInvalidIdleTimeout,
    /// A fn format outside the supported set.
    #[error("Invalid format on Fn")]
    FnInvalidFormat,
    /// PUT whose body ID differs from the path's.
    #[error("Fn ID in path does not match that in body")]
    FnIdMismatch,
    /// `(app, name)` is unique for fns.
    #[error("Fn with specified name already exists")]
    FnAlreadyExists,
    /// No fn with that ID.
    #[error("Fn not found")]
    FnNotFound,

    // ---- triggers ----------------------------------------------------------------------------
    /// Create with an ID.
    #[error("ID cannot be provided for Trigger creation")]
    TriggerIdProvided,
    /// Create with `created_at`.
    #[error("Trigger Created At Provided for Create")]
    TriggerCreatedAtProvided,
    /// Create with `updated_at`. Fn reports "Trigger ID Provided for Create" here (a quirk); we name the field.
    #[error("Trigger Updated At Provided for Create")]
    TriggerUpdatedAtProvided,
    /// A trigger with no name.
    #[error("Missing name on Trigger")]
    TriggerMissingName,
    /// Trigger name longer than the limit.
    #[error("Trigger name must be 30 characters or less")]
    TriggerNameTooLong,
    /// Trigger name with a character other than a letter, digit, `_` or `-`.
    #[error("Invalid name for Trigger")]
    TriggerInvalidName,
    /// A trigger with no app.
    #[error("Missing App ID on Trigger")]
    TriggerMissingAppId,
    /// A trigger with no fn.
    #[error("Missing Fn ID on Trigger")]
    TriggerMissingFnId,
    /// The trigger's fn belongs to another app.
    #[error("Invalid Fn ID - not owned by specified app")]
    TriggerFnNotInApp,
    /// Only `http` triggers exist.
    #[error("Trigger Type Not Supported")]
    TriggerTypeUnsupported,
    /// A trigger with no source.
    #[error("Missing Trigger Source")]
    TriggerMissingSource,
    /// Trigger sources are paths and start with `/`.
    #[error("Missing Trigger Source Prefix '/'")]
    TriggerSourceNoSlash,
    /// A trigger source longer than the store keeps.
    #[error("Trigger source must be 512 characters or less")]
    TriggerSourceTooLong,
    /// PUT whose body ID differs from the path's.
    #[error("ID in path does not match ID in body")]
    TriggerIdMismatch,
    /// A trigger cannot move to another app.
    #[error("Could not update - app_id is immutable")]
    TriggerAppImmutable,
    /// `(app, fn, name)` is unique for triggers.
    #[error("Trigger already exists")]
    TriggerAlreadyExists,
    /// `(app, type, source)` is unique for triggers.
    #[error("Trigger with the same type and source exists on this app")]
    TriggerSourceExists,
    /// No trigger with that ID.
    #[error("Trigger not found")]
    TriggerNotFound,

    // ---- annotations -------------------------------------------------------------------------
    /// Key empty or with characters outside printable ASCII.
    #[error("Invalid annotation key, annotation keys must be non-empty ascii strings excluding whitespace")]
    AnnotationKeyInvalid,
    /// Key over 128 bytes.
    #[error("Invalid annotation key length, annotation keys may not be larger than 128 bytes")]
    AnnotationKeyTooLong,
    /// Value `""` or `null` where a value is required.
    #[error("Invalid annotation value, annotation values may only be non-empty strings, numbers, objects, or arrays")]
    AnnotationValueInvalid,
    /// Value over 512 bytes as compact JSON.
    #[error(
        "Invalid annotation value length, annotation values may not be larger than 512 bytes when serialized as JSON"
    )]
    AnnotationValueTooLong,
    /// More than 100 keys.
    #[error("Invalid annotation change, new key(s) exceed maximum permitted number of annotations keys (100)")]
    AnnotationTooMany,

    // ---- calls and logs ----------------------------------------------------------------------
    /// No call with that ID (for that app or fn).
    #[error("Call not found")]
    CallNotFound,
    /// No log stored for that call.
    #[error("Call log not found")]
    CallLogNotFound,
    /// Call operations need a call ID.
    #[error("Missing call ID")]
    MissingCallId,
    /// Call operations need an app ID.
    #[error("Missing App ID")]
    MissingAppId,

    // ---- server ------------------------------------------------------------------------------
    /// A runner presented no token, or the wrong one, to the hybrid API.
    #[error("Invalid runner token")]
    Unauthorized,
    /// The node cannot take the work now; the caller should retry (`Retry-After: 15`).
    #[error("Timed out - server too busy")]
    ServerBusy,
    /// A dependency (database, queue) does not answer; the caller may retry.
    #[error("{0}")]
    Unavailable(Cow<'static, str>),
    /// Anything unexpected. The cause is for the log only; callers see "internal server error".
    #[error("internal server error")]
    Internal(String),
}

impl Error {
    /// The HTTP status Fn answers this error with.
    pub fn status(&self) -> u16 {
        use Error::*;
        match self {
            AppNotFound | RouteNotFound | FnNotFound | TriggerNotFound | CallNotFound | CallLogNotFound
            | PathNotFound(_) => 404,
            AppAlreadyExists | NameImmutable | RoutePathImmutable | RouteAlreadyExists | FnAlreadyExists
            | TriggerAlreadyExists | TriggerSourceExists | TriggerAppImmutable => 409,
            MethodNotAllowed { .. } => 405,
            Unauthorized => 401,
            NotAcceptable => 406,
            RequestTooLarge => 413,
            ServerBusy | Unavailable(_) => 503,
            Internal(_) => 500,
            _ => 400,
        }
    }

    /// The message a caller sees; internal causes are never shown.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Builds an [`Error::Internal`] from any cause, for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Error::Internal(cause.to_string())
    }

    /// Rebuilds an error from the status and message another node answered with (the hybrid API's
    /// clients), so a runner reports the API node's 404 "App not found" as the same error.
    pub fn from_wire(status: u16, message: &str) -> Error {
        if let Some(known) = FIXED.iter().find(|e| e.status() == status && e.to_string() == message) {
            return known.clone();
        }
        if let Some(url) = message.strip_prefix("invalid syslog url: \"").and_then(|m| m.strip_suffix('"')) {
            return Error::InvalidSyslogUrl(url.to_string());
        }
        let method_path = message.strip_prefix("Method not allowed: ").and_then(|m| m.split_once(' '));
        match (status, method_path) {
            (405, Some((method, path))) => {
                Error::MethodNotAllowed { method: method.to_string(), path: path.to_string() }
            }
            (404, _) => Error::PathNotFound(message.strip_prefix("Path not found: ").unwrap_or(message).to_string()),
            (503, _) => Error::Unavailable(message.to_string().into()),
            (400..=499, _) => Error::BadRequest(message.to_string().into()),
            _ => Error::Internal(format!("remote error {status}: {message}")),
        }
    }
}

/// The two error body shapes Fn answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error":{"message":"..."}}`: v1, `/r/`, and paths outside the APIs.
    V1,
    /// `{"message":"..."}`: v2, `/invoke`, `/t/`. Fn's swagger documents the wrapped form, but Fn's server
    /// (and its clients) use this flat one, so we do too.
    V2,
}

impl Shape {
    /// `message` as a body of this shape.
    pub fn body(self, message: &str) -> serde_json::Value {
        match self {
            Shape::V1 => serde_json::json!({ "error": { "message": message } }),
            Shape::V2 => serde_json::json!({ "message": message }),
        }
    }
}

/// Content type of every error body, as Fn sends it.
pub const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// An error as a caller sees it: status, message, `Retry-After` and body. Every layer's error type
/// implements it, so the transports render all of them one way (and in one place).
pub trait ErrorReply {
    /// The HTTP status Fn answers with.
    fn status(&self) -> u16;

    /// The message the caller sees; unexpected causes are never shown.
    fn message(&self) -> String;

    /// Seconds a client should wait before retrying: Fn sends `Retry-After: 15` with its 503s, and so do
    /// we with every 503 (busy, shutting down, or a dependency down).
    fn retry_after(&self) -> Option<u32> {
        (self.status() == 503).then_some(15)
    }

    /// The body in `shape`.
    fn body(&self, shape: Shape) -> serde_json::Value {
        shape.body(&self.message())
    }
}

impl ErrorReply for Error {
    fn status(&self) -> u16 {
        Error::status(self)
    }
    fn message(&self) -> String {
        Error::message(self)
    }
}

/// Every variant without data, for [`Error::from_wire`]. Kept by hand; the test `every_variant_survives_the_wire`
/// fails when a variant is added without being listed here (or handled in `from_wire`).
const FIXED: &[Error] = {
    use Error::*;
    &[
        InvalidJson,
        RequestTooLarge,
        NotAcceptable,
        MissingNewApp,
        MissingAppName,
        AppMissingName,
        AppNameTooLong,
        AppInvalidName,
        AppIdProvided,
        AppIdMismatch,
        AppNotFound,
        AppAlreadyExists,
        NameImmutable,
        MissingNewRoute,
        RouteMissingApp,
        RouteMissingPath,
        RoutePathMalformed,
        RouteDynamicPath,
        RouteInvalidPath,
        RoutePathTooLong,
        RoutePathImmutable,
        RouteMissingImage,
        RouteInvalidType,
        RouteInvalidFormat,
        RouteInvalidTimeout,
        RouteInvalidIdleTimeout,
        RouteAlreadyExists,
        RouteNotFound,
        InvalidMemory,
        InvalidCpus,
        FnIdProvided,
        FnMissingName,
        FnNameTooLong,
        FnInvalidName,
        FnMissingAppId,
        FnMissingImage,
        FnInvalidTimeout,
        FnInvalidIdleTimeout,
        FnInvalidFormat,
        FnIdMismatch,
        FnAlreadyExists,
        FnNotFound,
        TriggerIdProvided,
        TriggerCreatedAtProvided,
        TriggerUpdatedAtProvided,
        TriggerMissingName,
        TriggerNameTooLong,
        TriggerInvalidName,
        TriggerMissingAppId,
        TriggerMissingFnId,
        TriggerFnNotInApp,
        TriggerTypeUnsupported,
        TriggerMissingSource,
        TriggerSourceNoSlash,
        TriggerSourceTooLong,
        TriggerIdMismatch,
        TriggerAppImmutable,
        TriggerAlreadyExists,
        TriggerSourceExists,
        TriggerNotFound,
        AnnotationKeyInvalid,
        AnnotationKeyTooLong,
        AnnotationValueInvalid,
        AnnotationValueTooLong,
        AnnotationTooMany,
        CallNotFound,
        CallLogNotFound,
        MissingCallId,
        MissingAppId,
        Unauthorized,
        ServerBusy,
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        assert_eq!(Error::AppNotFound.status(), 404);
        assert_eq!(Error::FnAlreadyExists.status(), 409);
        assert_eq!(Error::InvalidCpus.status(), 400);
        assert_eq!(Error::ServerBusy.retry_after(), Some(15));
        assert_eq!(Error::AppNotFound.body(Shape::V1).to_string(), r#"{"error":{"message":"App not found"}}"#);
        assert_eq!(Error::AppNotFound.body(Shape::V2).to_string(), r#"{"message":"App not found"}"#);
        let internal = Error::internal("disk on fire");
        assert_eq!(internal.status(), 500);
        assert_eq!(internal.message(), "internal server error");
        assert_eq!(Error::InvalidSyslogUrl("x".into()).message(), "invalid syslog url: \"x\"");
    }

    #[test]
    fn errors_survive_the_wire() {
        for e in FIXED {
            assert_eq!(&Error::from_wire(e.status(), &e.message()), e);
        }
        let syslog = Error::InvalidSyslogUrl("http://x".into());
        assert_eq!(Error::from_wire(400, &syslog.message()), syslog);
        assert_eq!(Error::from_wire(503, "db down").status(), 503);
        assert_eq!(Error::from_wire(418, "teapot"), Error::BadRequest("teapot".into()));
        assert_eq!(Error::from_wire(502, "x").status(), 500);
    }

    /// Position of `e`'s variant. No wildcard: a new variant does not compile until it gets the next number
    /// here, and then `every_variant_survives_the_wire` fails until it is in [`FIXED`] or in `with_data`.
    fn variant_index(e: &Error) -> usize {
        use Error::*;
        match e {
            InvalidJson => 0,
            RequestTooLarge => 1,
            NotAcceptable => 2,
            MissingNewApp => 3,
            MissingAppName => 4,
            AppMissingName => 5,
            AppNameTooLong => 6,
            AppInvalidName => 7,
            AppIdProvided => 8,
            AppIdMismatch => 9,
            AppNotFound => 10,
            AppAlreadyExists => 11,
            NameImmutable => 12,
            MissingNewRoute => 13,
            RouteMissingApp => 14,
            RouteMissingPath => 15,
            RoutePathMalformed => 16,
            RouteDynamicPath => 17,
            RouteInvalidPath => 18,
            RoutePathTooLong => 19,
            RoutePathImmutable => 20,
            RouteMissingImage => 21,
            RouteInvalidType => 22,
            RouteInvalidFormat => 23,
            RouteInvalidTimeout => 24,
            RouteInvalidIdleTimeout => 25,
            RouteAlreadyExists => 26,
            RouteNotFound => 27,
            InvalidMemory => 28,
            InvalidCpus => 29,
            FnIdProvided => 30,
            FnMissingName => 31,
            FnNameTooLong => 32,
            FnInvalidName => 33,
            FnMissingAppId => 34,
            FnMissingImage => 35,
            FnInvalidTimeout => 36,
            FnInvalidIdleTimeout => 37,
            FnInvalidFormat => 38,
            FnIdMismatch => 39,
            FnAlreadyExists => 40,
            FnNotFound => 41,
            TriggerIdProvided => 42,
            TriggerCreatedAtProvided => 43,
            TriggerUpdatedAtProvided => 44,
            TriggerMissingName => 45,
            TriggerNameTooLong => 46,
            TriggerInvalidName => 47,
            TriggerMissingAppId => 48,
            TriggerMissingFnId => 49,
            TriggerFnNotInApp => 50,
            TriggerTypeUnsupported => 51,
            TriggerMissingSource => 52,
            TriggerSourceNoSlash => 53,
            TriggerSourceTooLong => 54,
            TriggerIdMismatch => 55,
            TriggerAppImmutable => 56,
            TriggerAlreadyExists => 57,
            TriggerSourceExists => 58,
            TriggerNotFound => 59,
            AnnotationKeyInvalid => 60,
            AnnotationKeyTooLong => 61,
            AnnotationValueInvalid => 62,
            AnnotationValueTooLong => 63,
            AnnotationTooMany => 64,
            CallNotFound => 65,
            CallLogNotFound => 66,
            MissingCallId => 67,
            MissingAppId => 68,
            Unauthorized => 69,
            ServerBusy => 70,
            BadRequest(_) => 71,
            PathNotFound(_) => 72,
            MethodNotAllowed { .. } => 73,
            InvalidSyslogUrl(_) => 74,
            Unavailable(_) => 75,
            Internal(_) => 76,
        }
    }

    #[test]
    fn every_variant_survives_the_wire() {
        let with_data = [
            Error::BadRequest("bad cursor".into()),
            Error::PathNotFound("/nowhere".into()),
            Error::MethodNotAllowed { method: "PATCH".into(), path: "/v2/apps/a b".into() },
            Error::InvalidSyslogUrl("http://x".into()),
            Error::Unavailable("database is unavailable".into()),
            Error::Internal("disk on fire".into()),
        ];
        let all: Vec<&Error> = FIXED.iter().chain(&with_data).collect();
        let mut seen: Vec<usize> = all.iter().map(|e| variant_index(e)).collect();
        seen.sort_unstable();
        let expected: Vec<usize> = (0..all.len()).collect();
        assert_eq!(seen, expected, "each variant exactly once, numbered 0.., in FIXED or with_data");
        for e in all {
            let back = Error::from_wire(e.status(), &e.message());
            assert_eq!((back.status(), back.message()), (e.status(), e.message()), "{e:?}");
            match e {
                // The cause stays on the node that had it; only the variant crosses the wire.
                Error::Internal(_) => assert!(matches!(back, Error::Internal(_)), "{back:?}"),
                _ => assert_eq!(&back, e),
            }
        }
    }
}
