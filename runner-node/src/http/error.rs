//! The invoke endpoints' one error type, and how it is rendered in each path's body shape.
//!
//! `/r/` answers in the v1 shape `{"error":{"message":"..."}}`, `/invoke` and `/t/` in the v2 shape
//! `{"message":"..."}` (docs/fn-compatibility.md, "Invoke paths"). Every error response carries the
//! call's `Fn-Call-Id`, and "server too busy" answers carry `Retry-After: 15`.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use crate::error::AgentError;

/// The error body shape of an invoke path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error":{"message":"..."}}` (`/r/`).
    V1,
    /// `{"message":"..."}` (`/invoke`, `/t/`).
    V2,
}

/// Everything an invoke request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// A lookup failed: app, route, fn or trigger missing (404), or storage trouble.
    #[error(transparent)]
    Lookup(shared::Error),
    /// Queueing an async route call or a detached invoke failed: 503 with the queue's message.
    #[error("{0}")]
    Enqueue(shared::Error),
    /// The request body is larger than `FN_MAX_REQUEST_SIZE`.
    #[error("Request content too large")]
    RequestTooLarge,
    /// The request body could not be read.
    #[error("Invalid payload")]
    InvalidPayload,
    /// The agent could not run the call, or the function failed (its status and Fn's message).
    #[error(transparent)]
    Agent(AgentError),
}

impl InvokeError {
    /// HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            InvokeError::Lookup(e) => e.status(),
            InvokeError::Enqueue(_) => 503,
            InvokeError::RequestTooLarge => 413,
            InvokeError::InvalidPayload => 400,
            InvokeError::Agent(e) => e.status(),
        }
    }

    /// The message callers see; unexpected causes are hidden (and logged by [`Self::render`]).
    pub fn message(&self) -> String {
        match self {
            InvokeError::Lookup(e) | InvokeError::Enqueue(e) => e.message(),
            InvokeError::Agent(e) => e.message(),
            other => other.to_string(),
        }
    }

    /// `Retry-After` seconds, for the "server too busy" family.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            InvokeError::Lookup(e) => e.retry_after().map(u64::from),
            InvokeError::Agent(e) => e.retry_after().map(|d| d.as_secs()),
            _ => None,
        }
    }

    /// The HTTP answer in `shape`, with the call id header when one was assigned.
    pub fn render(&self, shape: Shape, call_id: &str) -> HttpResponse {
        let status = self.status();
        if status >= 500 {
            tracing::warn!(call_id, status, error = ?self, "invoke failed");
        }
        let message = self.message();
        let body = match shape {
            Shape::V1 => serde_json::json!({ "error": { "message": message } }),
            Shape::V2 => serde_json::json!({ "message": message }),
        };
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = HttpResponse::build(code);
        if !call_id.is_empty() {
            resp.insert_header((super::CALL_ID_HEADER, call_id));
        }
        if let Some(secs) = self.retry_after() {
            resp.insert_header(("Retry-After", secs.to_string()));
        }
        resp.json(body)
    }
}

impl From<AgentError> for InvokeError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::RequestTooLarge => InvokeError::RequestTooLarge,
            other => InvokeError::Agent(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(resp: HttpResponse) -> String {
        let bytes = resp.into_body().try_into_bytes().unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn shapes_statuses_and_headers() {
        let e = InvokeError::Lookup(shared::Error::AppNotFound);
        let r = e.render(Shape::V1, "CALL");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers().get("fn-call-id").unwrap(), "CALL");
        assert_eq!(body(r), r#"{"error":{"message":"App not found"}}"#);

        let r = InvokeError::Agent(AgentError::TooBusy).render(Shape::V2, "C");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers().get("retry-after").unwrap(), "15");
        assert_eq!(body(r), r#"{"message":"Timed out - server too busy"}"#);

        let e = InvokeError::Enqueue(shared::Error::Unavailable("queue is down".into()));
        assert_eq!((e.status(), e.message().as_str()), (503, "queue is down"));
        let e = InvokeError::Agent(AgentError::Docker("socket gone".into()));
        assert_eq!(
            (e.status(), e.message().as_str()),
            (500, "internal server error")
        );
        let e: InvokeError = AgentError::RequestTooLarge.into();
        assert_eq!(
            (e.status(), e.message().as_str()),
            (413, "Request content too large")
        );
    }
}
