//! The agent's one error type. Each variant knows the HTTP status and the message Fn shows for it
//! (the error table in docs/fn-compatibility.md, "Invoke paths"), so transports can render it without a
//! lookup.

use std::time::Duration;

use shared::error::ErrorReply;

/// Everything that can go wrong while running a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// The call waited longer than its timeout for a slot or for capacity.
    #[error("Timed out - server too busy")]
    TooBusy,
    /// The agent is shutting down and accepts no new calls.
    #[error("Timed out - server too busy")]
    ShuttingDown,
    /// The call asks for more memory/CPU than the node will ever have.
    #[error("Requested CPU/Memory cannot be allocated")]
    CannotAllocate,
    /// The call names a format this agent cannot run (`cloudevent`).
    #[error("Format {0} is not supported by this runner")]
    UnsupportedFormat(shared::Format),
    /// The request body is larger than `FN_MAX_REQUEST_SIZE`.
    #[error("Request content too large")]
    RequestTooLarge,
    /// The call ran past its timeout; the container was killed.
    #[error("Timed out")]
    Timeout,
    /// The container exited with a non-zero code.
    #[error("container exit code {0}")]
    ExitCode(i64),
    /// The container was killed by the OOM killer (or exited with 137).
    #[error("container out of memory, you may want to raise route.memory for this route (default: 128MB)")]
    OutOfMemory,
    /// An `http` format function wrote something that is not an HTTP response.
    #[error("invalid http response from function err: {0}")]
    InvalidHttpResponse(String),
    /// A `json` format function wrote something that is not the expected JSON object.
    #[error("invalid json response from function err: {0}")]
    InvalidJsonResponse(String),
    /// An http-stream function answered 502: the function itself failed (the container lives on).
    #[error("function failed")]
    FunctionFailed,
    /// An http-stream function answered with a status outside the 200/502/504 contract.
    #[error("invalid function response")]
    InvalidFunctionResponse,
    /// The connection to an http-stream container broke mid-call.
    #[error("error receiving function response")]
    ReceiveFailed,
    /// The response body exceeded `FN_MAX_RESPONSE_SIZE`.
    #[error("function response too large")]
    ResponseTooLarge,
    /// The response headers exceeded `FN_MAX_HDR_RESPONSE_SIZE`.
    #[error("function response header too large")]
    ResponseHeadersTooLarge,
    /// The container died (or made a bad socket) before it was ready for calls.
    #[error("Container failed to initialize, please ensure you are using the latest fdk and check the logs")]
    ContainerInitFailed,
    /// The container did not open its socket within `FN_HOT_START_TIMEOUT_MSECS`.
    #[error("Container initialization timed out, please ensure you are using the latest fdk and check the logs")]
    ContainerInitTimeout,
    /// Pulling the image failed; `status` is Docker's status (401/404) or 500. Docker's own message
    /// (registry hosts, auth detail) is only logged by the node.
    #[error("Failed to pull image '{image}': image not found or not accessible")]
    ImagePull {
        /// The image as the fn names it.
        image: String,
        /// HTTP status to answer with.
        status: u16,
    },
    /// The image is not a Docker image reference; nothing is pulled.
    #[error("Invalid image '{0}': must be a Docker image reference")]
    InvalidImage(String),
    /// Pulling the image took longer than `FN_HOT_PULL_TIMEOUT_MSECS`.
    #[error("Image pull timed out")]
    PullTimeout,
    /// Docker refused an operation; shown to callers as a 500.
    #[error("docker: {0}")]
    Docker(String),
    /// Anything else unexpected; shown to callers as a 500.
    #[error("internal: {0}")]
    Internal(String),
}

impl AgentError {
    /// HTTP status Fn answers with.
    pub fn status(&self) -> u16 {
        use AgentError::*;
        match self {
            TooBusy | ShuttingDown => 503,
            CannotAllocate | UnsupportedFormat(_) | InvalidImage(_) => 400,
            RequestTooLarge => 413,
            Timeout | ContainerInitTimeout | PullTimeout => 504,
            ExitCode(_)
            | OutOfMemory
            | InvalidHttpResponse(_)
            | InvalidJsonResponse(_)
            | FunctionFailed
            | InvalidFunctionResponse
            | ReceiveFailed
            | ResponseTooLarge
            | ResponseHeadersTooLarge
            | ContainerInitFailed => 502,
            ImagePull { status, .. } => *status,
            Docker(_) | Internal(_) => 500,
        }
    }

    /// The message to show the caller. Unexpected errors hide their cause (log it instead).
    pub fn message(&self) -> String {
        match self {
            AgentError::Docker(_) | AgentError::Internal(_) => "internal server error".to_string(),
            other => other.to_string(),
        }
    }

    /// `Retry-After` to send with the error (the "server too busy" family), by the one rule of
    /// [`ErrorReply::retry_after`].
    pub fn retry_after(&self) -> Option<Duration> {
        ErrorReply::retry_after(self).map(|secs| Duration::from_secs(secs.into()))
    }

    /// Maps a container's exit to Fn's error: 0 is fine, 137 or an OOM kill is "out of memory".
    pub fn from_exit(code: i64, oom_killed: bool) -> Option<AgentError> {
        match code {
            _ if oom_killed => Some(AgentError::OutOfMemory),
            0 => None,
            137 => Some(AgentError::OutOfMemory),
            n => Some(AgentError::ExitCode(n)),
        }
    }
}

impl ErrorReply for AgentError {
    fn status(&self) -> u16 {
        AgentError::status(self)
    }
    fn message(&self) -> String {
        AgentError::message(self)
    }
}

impl From<bollard::errors::Error> for AgentError {
    fn from(e: bollard::errors::Error) -> Self {
        AgentError::Docker(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_messages_follow_the_reference_table() {
        assert_eq!(AgentError::from_exit(3, false).unwrap().to_string(), "container exit code 3");
        assert_eq!(AgentError::from_exit(137, false).unwrap().status(), 502);
        assert!(AgentError::from_exit(137, false).unwrap().to_string().contains("raise route.memory"));
        assert!(AgentError::from_exit(0, false).is_none());
        assert!(matches!(AgentError::from_exit(0, true), Some(AgentError::OutOfMemory)));
        assert_eq!(AgentError::TooBusy.status(), 503);
        assert_eq!(AgentError::TooBusy.retry_after(), Some(Duration::from_secs(15)));
        assert_eq!(AgentError::CannotAllocate.status(), 400);
        assert_eq!(AgentError::Timeout.status(), 504);
        assert_eq!(AgentError::Docker("boom".into()).message(), "internal server error");
    }
}
