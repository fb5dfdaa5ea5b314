//! Calls: the record of one invocation, and its captured log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::DateTime;

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// Accepted, waiting for its delay to pass.
    Delayed,
    /// Accepted and durably queued, waiting for a runner.
    Queued,
    /// Running in a container.
    Running,
    /// Finished without error.
    Success,
    /// Finished with an error (see `error`).
    Error,
    /// Ran past its timeout.
    Timeout,
    /// Cancelled by the caller.
    Cancelled,
}

impl CallStatus {
    /// The name on the wire and in the store.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallStatus::Delayed => "delayed",
            CallStatus::Queued => "queued",
            CallStatus::Running => "running",
            CallStatus::Success => "success",
            CallStatus::Error => "error",
            CallStatus::Timeout => "timeout",
            CallStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "delayed" => CallStatus::Delayed,
            "queued" => CallStatus::Queued,
            "running" => CallStatus::Running,
            "success" => CallStatus::Success,
            "error" => CallStatus::Error,
            "timeout" => CallStatus::Timeout,
            "cancelled" => CallStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the call has ended (no further status follows).
    pub fn is_final(&self) -> bool {
        matches!(self, CallStatus::Success | CallStatus::Error | CallStatus::Timeout | CallStatus::Cancelled)
    }
}

/// The record of one invocation, as stored and as returned by the calls API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The call's ID, also sent to the caller as `Fn-Call-Id`.
    pub id: String,
    /// Where the call is in its life.
    pub status: CallStatus,
    /// The app the call ran in.
    pub app_id: String,
    /// The fn called, for calls made through `/invoke` or a trigger.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fn_id: String,
    /// The route path called, for calls made through `/r/`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// When the call was accepted.
    pub created_at: DateTime,
    /// When the call got a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime>,
    /// When the call ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime>,
    /// Why the call failed, for status `error` or `timeout`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Container resource samples taken while the call ran (at most 240).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stats: Vec<serde_json::Value>,
    /// Every run of an async call so far, oldest first: retries are visible, not silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<CallAttempt>,
    /// The async call failed on every attempt it was allowed and was given up.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dead_letter: bool,
}

impl Call {
    /// A new record of call `id` in app `app_id`, created now, with `status` and nothing else yet; the
    /// fn ID or route path is set by the caller.
    pub fn new(id: impl Into<String>, app_id: impl Into<String>, status: CallStatus) -> Call {
        Call {
            id: id.into(),
            status,
            app_id: app_id.into(),
            fn_id: String::new(),
            path: String::new(),
            created_at: DateTime::now(),
            started_at: None,
            completed_at: None,
            error: String::new(),
            stats: Vec::new(),
            attempts: Vec::new(),
            dead_letter: false,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One run of an async call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAttempt {
    /// 1 for the first run.
    pub attempt: u32,
    /// How the run ended.
    pub status: CallStatus,
    /// When the run got a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime>,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// An accepted async call: its record and the request to replay when a runner takes it from the queue.
/// Runners look the fn (or route) up by ID when they run it, so the queue holds no copy of its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedCall {
    /// The call's record (status `queued` when accepted).
    pub call: Call,
    /// HTTP method of the original request.
    pub method: String,
    /// Full URL of the original request.
    pub url: String,
    /// Headers of the original request.
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Body of the original request, base64 (standard alphabet).
    #[serde(default)]
    pub body: String,
    /// 0 (lowest) to 2 (highest).
    #[serde(default)]
    pub priority: u8,
}

/// The captured stderr of a call, as the v1 log endpoint returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLog {
    /// The call's ID.
    pub call_id: String,
    /// The log text (capped by `FN_MAX_LOG_SIZE_BYTES`).
    pub log: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_omits_empty_fields() {
        let c = Call {
            path: "/p".into(),
            created_at: DateTime::parse("2018-01-01T00:00:00Z").unwrap(),
            ..Call::new("C", "A", CallStatus::Queued)
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"id":"C","status":"queued","app_id":"A","path":"/p","created_at":"2018-01-01T00:00:00.000Z"}"#
        );
        for s in ["delayed", "queued", "running", "success", "error", "timeout", "cancelled"] {
            assert_eq!(CallStatus::parse(s).unwrap().as_str(), s);
        }
    }
}
