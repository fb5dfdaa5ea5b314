//! Timestamps in Fn's wire form: RFC3339 in UTC with exactly three fractional digits
//! (`2006-01-02T15:04:05.000Z`).
//!
//! Values are truncated to the millisecond when made, so what is stored, returned and compared is the
//! same value; the fixed-width text also sorts in time order, which the SQL store relies on.

use std::fmt;

use chrono::{DurationRound, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(chrono::DateTime<Utc>);

impl DateTime {
    /// The current time, truncated to the millisecond.
    pub fn now() -> Self {
        Self::from_chrono(Utc::now())
    }

    /// Wraps a chrono instant, truncating it to the millisecond.
    pub fn from_chrono(t: chrono::DateTime<Utc>) -> Self {
        Self(t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t))
    }

    /// The instant `secs` seconds after the Unix epoch (v1 call filters take epoch seconds).
    pub fn from_unix_seconds(secs: i64) -> Option<Self> {
        chrono::DateTime::from_timestamp(secs, 0).map(Self)
    }

    /// Parses RFC3339 with any fractional precision (micro, milli, none, nano), as Fn accepts.
    pub fn parse(s: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| Self::from_chrono(t.with_timezone(&Utc)))
    }

    /// The underlying chrono value.
    pub fn as_chrono(&self) -> chrono::DateTime<Utc> {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Whether this is Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which Go clients send for a
    /// timestamp they never set.
    pub fn is_go_zero(&self) -> bool {
        self.unix_millis() == GO_ZERO_UNIX_MILLIS
    }
}

/// Go's zero `time.Time` in milliseconds since the Unix epoch.
const GO_ZERO_UNIX_MILLIS: i64 = -62_135_596_800_000;

/// Deserialises a timestamp a client sent in a create or update body. Absent, `null`, `""` and Go's zero
/// time all mean "not set": Fn's Go client (go-openapi `strfmt.DateTime`) always sends every timestamp
/// field, as `0001-01-01T00:00:00.000Z` when unset. Any other value must be a valid RFC3339 time.
/// Use with `#[serde(default, deserialize_with = "crate::time::optional_input")]`.
pub fn optional_input<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => {
            let t = DateTime::parse(s).ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp {s:?}")))?;
            Ok((!t.is_go_zero()).then_some(t))
        }
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_parses_variants() {
        let t = DateTime::parse("2018-06-25T10:11:12.123456Z").unwrap();
        assert_eq!(t.to_string(), "2018-06-25T10:11:12.123Z");
        assert_eq!(DateTime::parse("2018-06-25T10:11:12Z").unwrap().to_string(), "2018-06-25T10:11:12.000Z");
        assert_eq!(DateTime::parse("2018-06-25T12:11:12.5+02:00").unwrap().to_string(), "2018-06-25T10:11:12.500Z");
        assert!(DateTime::parse("yesterday").is_none());
        let now = DateTime::now();
        assert_eq!(DateTime::parse(&now.to_string()), Some(now));
    }

    #[derive(Deserialize)]
    struct Input {
        #[serde(default, deserialize_with = "optional_input")]
        at: Option<DateTime>,
    }

    fn input_at(json: &str) -> Result<Option<String>, serde_json::Error> {
        serde_json::from_str::<Input>(json).map(|i| i.at.map(|t| t.to_string()))
    }

    #[test]
    fn input_timestamps_treat_go_zero_time_as_absent() {
        for unset in [
            r#"{}"#,
            r#"{"at":null}"#,
            r#"{"at":""}"#,
            r#"{"at":"0001-01-01T00:00:00.000Z"}"#,
            r#"{"at":"0001-01-01T00:00:00Z"}"#,
        ] {
            assert_eq!(input_at(unset).unwrap(), None, "{unset}");
        }
        assert_eq!(
            input_at(r#"{"at":"0001-01-01T00:00:00.001Z"}"#).unwrap().as_deref(),
            Some("0001-01-01T00:00:00.001Z")
        );
        assert_eq!(input_at(r#"{"at":"2018-06-25T10:11:12Z"}"#).unwrap().as_deref(), Some("2018-06-25T10:11:12.000Z"));
        assert!(input_at(r#"{"at":"yesterday"}"#).is_err());
        assert!(input_at(r#"{"at":1}"#).is_err());
    }
}
