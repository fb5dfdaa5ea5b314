//! The invoke endpoints' one error type, and the one place any error becomes an HTTP answer.
//!
//! `/r/` answers in the v1 shape `{"error":{"message":"..."}}`, `/invoke` and `/t/` in the v2 shape
//! `{"message":"..."}` (docs/fn-compatibility.md, "Invoke paths"). [`respond`] renders every
//! [`ErrorReply`] (the API node's errors too): status, body, content type and `Retry-After: 15` on 503.
//! Every invoke error response also carries the call's `Fn-Call-Id`.

use actix_web::http::header::{self, HeaderValue, TryIntoHeaderPair};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
pub use shared::error::Shape;
use shared::error::{ErrorReply, ERROR_CONTENT_TYPE};

use crate::error::AgentError;

/// `error` as an HTTP answer in `shape`: Fn's status, message, content type and `Retry-After`.
/// Logging the cause is the caller's business; the body never shows it.
pub fn respond(error: &(impl ErrorReply + ?Sized), shape: Shape) -> HttpResponse {
    let mut resp = HttpResponse::build(status_code(error));
    if let Some(secs) = error.retry_after() {
        resp.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
    }
    resp.content_type(ERROR_CONTENT_TYPE).body(error.body(shape).to_string())
}

/// `error`'s status for actix (500 should a status be out of range).
pub fn status_code(error: &(impl ErrorReply + ?Sized)) -> StatusCode {
    StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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

impl ErrorReply for InvokeError {
    fn status(&self) -> u16 {
        match self {
            InvokeError::Lookup(e) => e.status(),
            InvokeError::Enqueue(_) => 503,
            InvokeError::RequestTooLarge => 413,
            InvokeError::InvalidPayload => 400,
            InvokeError::Agent(e) => e.status(),
        }
    }

    fn message(&self) -> String {
        match self {
            InvokeError::Lookup(e) | InvokeError::Enqueue(e) => e.message(),
            InvokeError::Agent(e) => e.message(),
            other => other.to_string(),
        }
    }
}

impl InvokeError {
    /// The HTTP answer in `shape`, with the call id header when one was assigned; 5xx causes are logged.
    pub fn render(&self, shape: Shape, call_id: &str) -> HttpResponse {
        let status = self.status();
        if status >= 500 {
            tracing::warn!(call_id, status, error = ?self, "invoke failed");
        }
        let mut resp = respond(self, shape);
        if !call_id.is_empty() {
            if let Ok((name, value)) = (super::CALL_ID_HEADER, call_id).try_into_pair() {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
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
        assert_eq!((e.status(), e.message().as_str()), (500, "internal server error"));
        let e: InvokeError = AgentError::RequestTooLarge.into();
        assert_eq!((e.status(), e.message().as_str()), (413, "Request content too large"));
    }

    #[test]
    fn one_renderer_for_every_error_type() {
        // The API node's error, the agent's and the invoke endpoints' render alike when Fn says the same.
        let api = respond(&shared::Error::ServerBusy, Shape::V2);
        let agent = respond(&AgentError::ShuttingDown, Shape::V2);
        let invoke = InvokeError::Agent(AgentError::TooBusy).render(Shape::V2, "");
        for r in [api, agent, invoke] {
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers().get("retry-after").unwrap(), "15");
            assert_eq!(r.headers().get("content-type").unwrap(), "application/json; charset=utf-8");
            assert!(r.headers().get("fn-call-id").is_none());
            assert_eq!(body(r), r#"{"message":"Timed out - server too busy"}"#);
        }
        // Every 503 says when to retry, a failed enqueue too.
        let r = InvokeError::Enqueue(shared::Error::Unavailable("queue is down".into())).render(Shape::V1, "C");
        assert_eq!(r.headers().get("retry-after").unwrap(), "15");
        assert_eq!(body(r), r#"{"error":{"message":"queue is down"}}"#);
        // Hidden causes stay hidden, whatever the type.
        let r = respond(&shared::Error::internal("disk on fire"), Shape::V1);
        assert_eq!(r.status(), 500);
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(body(r), r#"{"error":{"message":"internal server error"}}"#);
    }
}
