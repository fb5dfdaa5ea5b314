//! Reading Fn's `FN_*` environment variables.
//!
//! Each node keeps its own settings struct; this module gives them one way to read a variable with Fn's
//! default and to fail at start-up, naming the variable, when a value does not parse (Fn exits on a bad
//! integer too). Millisecond settings follow Fn: a negative value means "never".

use std::str::FromStr;
use std::time::Duration;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The variable is set but does not parse.
    #[error("invalid value {value:?} for {name}: {reason}")]
    Invalid {
        /// Variable name.
        name: String,
        /// The value found.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A variable the node cannot run without.
    #[error("{0}")]
    Missing(String),
}

/// Where to read variables from: the process environment, or a map in tests.
pub trait Source {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// `name` parsed as `T`, or `default` when unset or empty.
pub fn parse_or<T: FromStr>(src: &dyn Source, name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match src.get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name: name.to_string(),
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}

/// `name` as a string, or `default` when unset.
pub fn string_or(src: &dyn Source, name: &str, default: &str) -> String {
    src.get(name).unwrap_or_else(|| default.to_string())
}

/// Whether `name` is set at all: Fn's switches (`FN_DISABLE_READONLY_ROOTFS`, ...) act on presence.
pub fn is_set(src: &dyn Source, name: &str) -> bool {
    src.get(name).is_some()
}

/// "Never" as a duration: about 100 years. Every `*_MSECS` setting is capped at it, so a deadline computed
/// from a setting (an `Instant` or a date plus it, milliseconds since the epoch plus it) cannot overflow,
/// whatever the value (up to `i64::MAX`).
pub const NEVER: Duration = Duration::from_millis(100 * 365 * 24 * 3600 * 1000);

/// `d`, at most [`NEVER`]: safe to add to any instant or date.
pub fn bounded(d: Duration) -> Duration {
    d.min(NEVER)
}

/// Milliseconds as a duration, capped at [`NEVER`]; `None` for a negative value.
fn millis(ms: i64) -> Option<Duration> {
    (ms >= 0).then(|| bounded(Duration::from_millis(ms as u64)))
}

/// A `*_MSECS` variable: milliseconds, with a negative value meaning "never" (`None`).
pub fn msecs_or(src: &dyn Source, name: &str, default_ms: i64) -> Result<Option<Duration>, ConfigError> {
    Ok(millis(parse_or(src, name, default_ms)?))
}

/// A `*_MSECS` timeout, lifetime or interval: a negative value means "never", which is [`NEVER`].
pub fn msecs_or_never(src: &dyn Source, name: &str, default_ms: i64) -> Result<Duration, ConfigError> {
    Ok(msecs_or(src, name, default_ms)?.unwrap_or(NEVER))
}

/// A `*_MSECS` delay that has no "never" (a backoff, say): a negative value is refused, naming the
/// variable.
pub fn msecs_at_least_zero(src: &dyn Source, name: &str, default_ms: i64) -> Result<Duration, ConfigError> {
    let ms: i64 = parse_or(src, name, default_ms)?;
    millis(ms).ok_or_else(|| ConfigError::Invalid {
        name: name.to_string(),
        value: ms.to_string(),
        reason: "must be 0 or more (this delay cannot be never)".into(),
    })
}

/// `FN_MAX_LOG_SIZE_BYTES` default: the largest call log kept, in bytes.
pub const DEFAULT_MAX_LOG_SIZE: u64 = 1 << 20;

/// Default limit on invoke request bodies and function responses (`FN_MAX_REQUEST_SIZE`,
/// `FN_MAX_RESPONSE_SIZE`): 6 MiB, like the large public FaaS platforms, so one call cannot make a
/// node buffer an unbounded body. 0 turns a limit off.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 6 << 20;

/// The largest body taken when `FN_MAX_REQUEST_SIZE` is 0 (Fn's "unlimited"): the management API's
/// own cap (app, fn, route and trigger bodies are small, and an unbounded body would let one request
/// exhaust memory), and so the largest call body the hybrid API carries.
pub const UNLIMITED_REQUEST_BODY: u64 = 16 << 20;

/// Room for a call record, a queued call's headers and the JSON around them.
const HYBRID_ENVELOPE: u64 = 1 << 20;

/// The largest message (HTTP body or gRPC message) runners and API nodes exchange on the hybrid API,
/// from `FN_MAX_LOG_SIZE_BYTES` and `FN_MAX_REQUEST_SIZE` (0 is [`UNLIMITED_REQUEST_BODY`]): a report
/// holds a log of up to `max_log` bytes, which is text with each byte not valid UTF-8 replaced by the
/// 3-byte U+FFFD, and in JSON each control byte escaped as 6 (`\u0000`); a queued call holds a body
/// of up to `max_request` bytes in base64 with its headers. Both nodes derive the limit from the same
/// variables, so whatever one may send the other takes.
pub fn hybrid_message_limit(max_log: u64, max_request: u64) -> usize {
    let body = if max_request == 0 { UNLIMITED_REQUEST_BODY } else { max_request };
    let limit = max_log.saturating_mul(6).saturating_add(body.saturating_mul(2)).saturating_add(HYBRID_ENVELOPE);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// [`hybrid_message_limit`] with both variables at their defaults.
pub fn default_hybrid_message_limit() -> usize {
    hybrid_message_limit(DEFAULT_MAX_LOG_SIZE, DEFAULT_MAX_BODY_SIZE)
}

/// [`hybrid_message_limit`] from the variables in `src`.
pub fn hybrid_message_limit_from(src: &dyn Source) -> Result<usize, ConfigError> {
    let max_log: i64 = parse_or(src, "FN_MAX_LOG_SIZE_BYTES", DEFAULT_MAX_LOG_SIZE as i64)?;
    let max_request: i64 = parse_or(src, "FN_MAX_REQUEST_SIZE", DEFAULT_MAX_BODY_SIZE as i64)?;
    Ok(hybrid_message_limit(max_log.max(0) as u64, max_request.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_defaults_values_and_errors() {
        let mut env = HashMap::new();
        env.insert("FN_PORT".to_string(), "9000".to_string());
        env.insert("FN_BAD".to_string(), "nine".to_string());
        env.insert("FN_FREEZE_IDLE_MSECS".to_string(), "-1".to_string());
        assert_eq!(parse_or(&env, "FN_PORT", 8080u16), Ok(9000));
        assert_eq!(parse_or(&env, "FN_UNSET", 8080u16), Ok(8080));
        let err = parse_or(&env, "FN_BAD", 1u32).unwrap_err();
        assert!(err.to_string().contains("FN_BAD"));
        assert_eq!(msecs_or(&env, "FN_FREEZE_IDLE_MSECS", 50), Ok(None));
        assert_eq!(msecs_or(&env, "FN_OTHER_MSECS", 50), Ok(Some(Duration::from_millis(50))));
    }

    #[test]
    fn hybrid_limit_covers_the_largest_log_and_body() {
        // A 1 MiB log of control bytes is 6 MiB of JSON; a 16 MiB body is about 21.4 MiB of base64.
        let d = hybrid_message_limit(DEFAULT_MAX_LOG_SIZE, 0);
        assert!(d >= (16 << 20) * 4 / 3 + (1 << 20), "{d}");
        let small = hybrid_message_limit(1 << 20, 1024);
        assert!(small >= 6 << 20, "{small}");
        assert_eq!(hybrid_message_limit(u64::MAX, u64::MAX), usize::MAX);
        let mut env = HashMap::new();
        env.insert("FN_MAX_LOG_SIZE_BYTES".to_string(), "-5".to_string());
        env.insert("FN_MAX_REQUEST_SIZE".to_string(), "100".to_string());
        assert_eq!(hybrid_message_limit_from(&env), Ok(hybrid_message_limit(0, 100)));
        assert_eq!(hybrid_message_limit_from(&HashMap::new()), Ok(default_hybrid_message_limit()));
    }

    #[test]
    fn msecs_never_and_huge_values_are_bounded() {
        let mut env = HashMap::new();
        env.insert("FN_A_MSECS".to_string(), "-1".to_string());
        env.insert("FN_B_MSECS".to_string(), i64::MAX.to_string());
        env.insert("FN_C_MSECS".to_string(), i64::MIN.to_string());
        assert_eq!(msecs_or(&env, "FN_A_MSECS", 5), Ok(None));
        assert_eq!(msecs_or(&env, "FN_B_MSECS", 5), Ok(Some(NEVER)));
        assert_eq!(msecs_or_never(&env, "FN_A_MSECS", 5), Ok(NEVER));
        assert_eq!(msecs_or_never(&env, "FN_C_MSECS", 5), Ok(NEVER));
        assert_eq!(msecs_or_never(&env, "FN_UNSET_MSECS", 5), Ok(Duration::from_millis(5)));
        let err = msecs_at_least_zero(&env, "FN_A_MSECS", 5).unwrap_err();
        assert!(err.to_string().contains("FN_A_MSECS") && err.to_string().contains("0 or more"), "{err}");
        assert_eq!(msecs_at_least_zero(&env, "FN_B_MSECS", 5), Ok(NEVER));
        // Never is far enough to mean never, and near enough to add to now.
        assert!(NEVER > Duration::from_secs(50 * 365 * 24 * 3600));
        let _ = std::time::Instant::now() + NEVER;
        let _ = std::time::SystemTime::now() + NEVER;
        assert!(bounded(Duration::MAX) == NEVER);
    }
}
