//! http-stream: HTTP/1.1 over the unix socket `lsnr.sock` that the function opens in a
//! directory bind-mounted at `/tmp/iofs` (reference §3.3).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::{header_size, read_body, strip_hop_headers, Limits, Outcome};
use crate::call::{CallResponse, CallSpec};
use crate::error::AgentError;

/// Where the container sees the socket directory.
pub const CONTAINER_DIR: &str = "/tmp/iofs";
/// `FN_LISTENER` value given to the function.
pub const LISTENER: &str = "unix:/tmp/iofs/lsnr.sock";
/// Socket file name.
pub const SOCKET: &str = "lsnr.sock";

/// Checks the socket once: `None` if not there yet, an error if it is there but unusable.
/// The FDK may expose it through a symlink, but only a relative one to a file in the same
/// directory; anything else could point the agent at a socket outside the container.
fn check_socket(dir: &Path) -> Result<Option<PathBuf>, AgentError> {
    let path = dir.join(SOCKET);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    let target = if meta.file_type().is_symlink() {
        let link = std::fs::read_link(&path).map_err(|_| AgentError::ContainerInitFailed)?;
        if link.is_absolute()
            || link.components().count() != 1
            || link.to_string_lossy().contains("..")
        {
            tracing::warn!(link = %link.display(), "rejecting http-stream socket symlink");
            return Err(AgentError::ContainerInitFailed);
        }
        dir.join(link)
    } else {
        path.clone()
    };
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(_) => return Ok(None), // dangling for now: the FDK may still be binding
    };
    if !meta.file_type().is_socket() || meta.permissions().mode() & 0o666 != 0o666 {
        tracing::warn!(path = %target.display(), "http-stream socket has the wrong type or permissions");
        return Err(AgentError::ContainerInitFailed);
    }
    Ok(Some(path))
}

/// Waits for the function's socket and connects to it. Gives up with the init-timeout error
/// after `timeout`, or with the init-failed error as soon as `exited` resolves.
pub(crate) async fn connect(
    dir: &Path,
    timeout: Duration,
    exited: impl std::future::Future<Output = ()>,
) -> Result<SendRequest<Full<Bytes>>, AgentError> {
    let deadline = Instant::now() + shared::config::bounded(timeout);
    tokio::pin!(exited);
    let path = loop {
        if let Some(p) = check_socket(dir)? {
            break p;
        }
        tokio::select! {
            _ = &mut exited => return Err(AgentError::ContainerInitFailed),
            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
        if Instant::now() >= deadline {
            return Err(AgentError::ContainerInitTimeout);
        }
    };
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot connect to http-stream socket");
        AgentError::ContainerInitFailed
    })?;
    super::handshake(stream).await
}

/// Sends one call: `POST /call` with the request headers plus `Fn-Call-Id` and `Fn-Deadline`,
/// then applies the 200/502/504 contract.
pub(crate) async fn dispatch(
    sender: &mut SendRequest<Full<Bytes>>,
    call: &CallSpec,
    deadline: DateTime<Utc>,
    limits: Limits,
) -> Outcome {
    let mut headers = call.headers.clone();
    strip_hop_headers(&mut headers);
    let mut req = http::Request::builder().method("POST").uri("/call");
    *req.headers_mut().expect("builder") = headers;
    let req = req
        .header("Host", "localhost")
        .header("Fn-Call-Id", call.id.as_str())
        .header(
            "Fn-Deadline",
            deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .body(Full::new(call.body.clone()));
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                result: Err(AgentError::Internal(format!("bad request: {e}"))),
                retire: false,
            }
        }
    };
    if sender.ready().await.is_err() {
        return Outcome::fatal(AgentError::ReceiveFailed);
    }
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "http-stream transport error");
            return Outcome::fatal(AgentError::ReceiveFailed);
        }
    };
    let (parts, body) = resp.into_parts();
    if limits.max_headers > 0 && header_size(&parts.headers) > limits.max_headers {
        return Outcome::fatal(AgentError::ResponseHeadersTooLarge);
    }
    let body = match read_body(body, limits.max_body).await {
        Ok(b) => b,
        Err(e) => return Outcome::fatal(e),
    };
    match parts.status.as_u16() {
        200 => {
            let mut headers = parts.headers;
            strip_hop_headers(&mut headers);
            Outcome::ok(CallResponse {
                status: 200,
                headers,
                body,
            })
        }
        // The function reported its own failure; the container is healthy.
        502 => Outcome {
            result: Err(AgentError::FunctionFailed),
            retire: false,
        },
        504 => Outcome::fatal(AgentError::Timeout),
        other => {
            tracing::warn!(
                status = other,
                "http-stream function broke the response contract"
            );
            Outcome::fatal(AgentError::InvalidFunctionResponse)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_symlinks_must_stay_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_socket(dir.path()).unwrap().is_none());
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(SOCKET)).unwrap();
        assert!(matches!(
            check_socket(dir.path()),
            Err(AgentError::ContainerInitFailed)
        ));
        std::fs::remove_file(dir.path().join(SOCKET)).unwrap();
        std::os::unix::fs::symlink("../x.sock", dir.path().join(SOCKET)).unwrap();
        assert!(matches!(
            check_socket(dir.path()),
            Err(AgentError::ContainerInitFailed)
        ));
        std::fs::remove_file(dir.path().join(SOCKET)).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(dir.path().join("phony.sock")).unwrap();
        std::fs::set_permissions(
            dir.path().join("phony.sock"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::os::unix::fs::symlink("phony.sock", dir.path().join(SOCKET)).unwrap();
        assert_eq!(
            check_socket(dir.path()).unwrap(),
            Some(dir.path().join(SOCKET))
        );
    }
}
