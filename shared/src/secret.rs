//! Values that must never reach a log line, an error message or `Debug` output.
//!
//! Settings that hold secrets keep them in a [`Secret`] (tokens, private keys) or a [`SecretUrl`]
//! (database and queue URLs, which carry passwords in their userinfo or query string). Both print
//! redacted through `Debug` and `Display`, so deriving `Debug` on a settings struct, logging a field or
//! formatting it into an error cannot leak; the real value is reached only through `expose`, at the one
//! place that hands it to a driver or compares it. [`redact_url`] is the one URL-redaction rule.

use std::fmt;

/// What a redacted value or password prints as.
pub const REDACTED: &str = "***";

/// A secret value (token, key): `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The real value, for the driver or comparison that needs it; never for logs or messages.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl Secret<String> {
    /// Whether `presented` equals this secret, in time that does not depend on where they first
    /// differ, so response times do not reveal how much of a guess was right.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Compares every byte (no early exit on the first difference); only the lengths leak.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A URL that may carry credentials (`FN_DB_URL`, `FN_MQ_URL`): `Debug` and `Display` print it through
/// [`redact_url`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL as given, for the driver that connects with it; never for logs or messages.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its secrets replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Query parameters whose values are secrets: any name containing one of these (case-insensitive),
/// e.g. `password`, `sslpassword`, `pwd`, `secret`, `token`, `access_token`, `api_key`, `sslkey`.
const SECRET_PARAMS: &[&str] = &["pass", "pwd", "secret", "token", "key", "auth", "credential"];

/// `url` with the password of its userinfo and the values of secret-looking query parameters replaced
/// by `***`: `postgres://fn:pw@db/fn?sslpassword=x` → `postgres://fn:***@db/fn?sslpassword=***`. Also
/// serves Go-style DSNs (`mysql://u:pw@tcp(db:3306)/fn`). When in doubt it masks more, never less.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: it may be anything, including a bare secret.
        return if url.contains(['@', '?', ':']) { REDACTED.to_string() } else { url.to_string() };
    };
    // The userinfo ends at the last '@' before the query string; when there is none there, a password
    // may hold an unencoded '?', so the last '@' anywhere counts (masking too much rather than too little).
    let query_start = rest.find('?').unwrap_or(rest.len());
    let at = rest[..query_start].rfind('@').or_else(|| rest.rfind('@'));
    let (userinfo, after) = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{REDACTED}@"),
                None => format!("{userinfo}@"),
            };
            (masked, &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let after = match after.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if is_secret_param(name) => format!("{name}={REDACTED}"),
                    _ => param.to_string(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", params.join("&"))
        }
        None => after.to_string(),
    };
    format!("{scheme}://{userinfo}{after}")
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_redacted_and_compare() {
        let s = Secret::new("s3cret".to_string());
        assert_eq!((format!("{s:?}"), format!("{s}")), ("***".to_string(), "***".to_string()));
        assert_eq!(format!("{:?}", Some(Secret::new(vec![1u8, 2]))), "Some(***)");
        assert!(s.matches("s3cret"));
        assert!(!s.matches("s3cre") && !s.matches("s3cret!") && !s.matches("S3cret") && !s.matches(""));
    }

    #[test]
    fn urls_lose_passwords_in_userinfo_and_query() {
        for (url, want) in [
            (
                "postgres://fn:pw@127.0.0.1:5432/fn?sslmode=disable",
                "postgres://fn:***@127.0.0.1:5432/fn?sslmode=disable",
            ),
            ("mysql://root:pw@tcp(db:3306)/funcs", "mysql://root:***@tcp(db:3306)/funcs"),
            ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
            ("redis://user@host:6379", "redis://user@host:6379"),
            (
                "postgres://h/db?user=fn&password=pw&sslmode=require",
                "postgres://h/db?user=fn&password=***&sslmode=require",
            ),
            ("postgres://h/db?sslpassword=pw&PWD=x#frag", "postgres://h/db?sslpassword=***&PWD=***#frag"),
            ("http://h/x?access_token=t&api_key=k&Secret=s", "http://h/x?access_token=***&api_key=***&Secret=***"),
            ("postgres://u:p@ss/w@rd@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p?ss@h/db?x=1", "postgres://u:***@h/db?x=1"),
            ("postgres://u@h/db?application_name=a@b", "postgres://u@h/db?application_name=a@b"),
            ("sqlite3://./data/fn.db", "sqlite3://./data/fn.db"),
            ("memory://", "memory://"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
        assert_eq!(redact_url("user:pw@host"), "***");
        let u = SecretUrl::new("postgres://fn:pw@h/db?password=pw2");
        assert_eq!(format!("{u}"), "postgres://fn:***@h/db?password=***");
        assert!(!format!("{u:?}").contains("pw"));
    }
}
