//! CPU amounts and function I/O formats.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::Error;

/// CPU in thousandths of a core. 0 means "no limit".
///
/// On the wire it is a string: `"100m"` (milliCPU) or `"0.1"` (cores), and `""` for 0, as in Fn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MilliCpus(pub u64);

impl MilliCpus {
    /// Largest amount: 1024 cores.
    pub const MAX: u64 = 1_024_000;

    /// Parses a client's `cpus` value. A JSON string is required; anything else is "Invalid JSON" (Fn's
    /// answer to an unquoted number), `null` reads as 0. Fractional cores are rounded to the nearest
    /// milliCPU (Fn truncated, so `"4.35"` became 4349m; we give 4350m).
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        match v {
            Value::Null => Ok(MilliCpus(0)),
            Value::String(s) => Self::parse(s),
            _ => Err(Error::InvalidJson),
        }
    }

    /// Parses the string form (`"100m"`, `"0.1"`, `""`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Ok(MilliCpus(0));
        }
        if let Some(m) = s.strip_suffix('m') {
            return match m.parse::<u64>() {
                Ok(v) if v <= Self::MAX && m.bytes().all(|b| b.is_ascii_digit()) => Ok(MilliCpus(v)),
                _ => Err(Error::InvalidCpus),
            };
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=(Self::MAX / 1000) as f64).contains(&v) => {
                Ok(MilliCpus((v * 1000.0).round() as u64))
            }
            _ => Err(Error::InvalidCpus),
        }
    }

    /// Whether no limit is set.
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for MilliCpus {
    /// `"<n>m"`, or empty for 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            Ok(())
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl Serialize for MilliCpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MilliCpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        MilliCpus::from_json(&v).map_err(serde::de::Error::custom)
    }
}

/// How a request crosses into the function's container (docs/fn-compatibility.md, "Function formats and
/// environment").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// Cold: one container per call, body on stdin, response on stdout.
    #[serde(rename = "default")]
    Default,
    /// Hot: HTTP/1.1 messages over stdin/stdout.
    #[serde(rename = "http")]
    Http,
    /// Hot: one JSON object per call over stdin/stdout.
    #[serde(rename = "json")]
    Json,
    /// Hot: CloudEvents 0.1 JSON over stdin/stdout.
    #[serde(rename = "cloudevent")]
    CloudEvent,
    /// Hot: HTTP/1.1 over a unix socket the function listens on; what Fn's FDKs speak.
    #[serde(rename = "http-stream")]
    HttpStream,
}

impl Format {
    /// Parses a format name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Format::Default,
            "http" => Format::Http,
            "json" => Format::Json,
            "cloudevent" => Format::CloudEvent,
            "http-stream" => Format::HttpStream,
            _ => return None,
        })
    }

    /// The format's name on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Default => "default",
            Format::Http => "http",
            Format::Json => "json",
            Format::CloudEvent => "cloudevent",
            Format::HttpStream => "http-stream",
        }
    }

    /// Whether containers of this format serve many calls.
    pub fn is_hot(&self) -> bool {
        !matches!(self, Format::Default)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpus_forms() {
        assert_eq!(MilliCpus::parse("100m"), Ok(MilliCpus(100)));
        assert_eq!(MilliCpus::parse("0.1"), Ok(MilliCpus(100)));
        assert_eq!(MilliCpus::parse("4.35"), Ok(MilliCpus(4350)));
        assert_eq!(MilliCpus::parse(""), Ok(MilliCpus(0)));
        assert_eq!(MilliCpus::parse("1024000m"), Ok(MilliCpus(1_024_000)));
        assert_eq!(MilliCpus::parse("1024000001m"), Err(Error::InvalidCpus));
        assert_eq!(MilliCpus::parse("1025"), Err(Error::InvalidCpus));
        assert_eq!(MilliCpus::parse("-1"), Err(Error::InvalidCpus));
        assert_eq!(MilliCpus::parse("NaN"), Err(Error::InvalidCpus));
        assert_eq!(MilliCpus::parse("+5m"), Err(Error::InvalidCpus));
        assert_eq!(MilliCpus::from_json(&json!(1)), Err(Error::InvalidJson));
        assert_eq!(MilliCpus::from_json(&json!(null)), Ok(MilliCpus(0)));
        assert_eq!(serde_json::to_string(&MilliCpus(100)).unwrap(), r#""100m""#);
        assert_eq!(serde_json::to_string(&MilliCpus(0)).unwrap(), r#""""#);
    }

    #[test]
    fn formats() {
        for f in ["default", "http", "json", "cloudevent", "http-stream"] {
            assert_eq!(Format::parse(f).unwrap().as_str(), f);
            assert_eq!(serde_json::to_value(Format::parse(f).unwrap()).unwrap(), json!(f));
        }
        assert_eq!(Format::parse("xml"), None);
    }
}
