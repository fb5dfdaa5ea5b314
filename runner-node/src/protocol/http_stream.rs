//! http-stream: HTTP/1.1 over the unix socket `lsnr.sock` that the function opens in a
//! directory bind-mounted at `/tmp/iofs` (docs/fn-compatibility.md, "Function formats and environment").

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::{check_status, header_size, read_body, strip_hop_headers, Limits, Outcome};
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
        if link.is_absolute() || link.components().count() != 1 || link.to_string_lossy().contains("..") {
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
    Ok(Some(target))
}

/// Connects to the socket file at `path` without following a symlink there. The container owns
/// the directory and can swap the checked socket for a symlink to any host socket at any time, so
/// the file is opened as a path (`O_PATH | O_NOFOLLOW`: a symlink is opened as itself), checked to
/// be a socket open to all, and connected through that descriptor: what is checked is what is
/// connected.
pub(crate) fn connect_no_follow(path: &Path) -> Result<std::os::unix::net::UnixStream, AgentError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let refuse = |why: &dyn std::fmt::Display| {
        tracing::warn!(path = %path.display(), error = %why, "refusing the http-stream socket");
        AgentError::ContainerInitFailed
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| refuse(&e))?;
    let meta = file.metadata().map_err(|e| refuse(&e))?;
    if !meta.file_type().is_socket() || meta.permissions().mode() & 0o666 != 0o666 {
        return Err(refuse(&"not a socket open to all (a symlink, or swapped)"));
    }
    let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    let stream = std::os::unix::net::UnixStream::connect(by_fd).map_err(|e| refuse(&e))?;
    drop(file);
    Ok(stream)
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
    // A blocking connect (it waits while the function's backlog is full), off the runtime threads.
    let stream = tokio::task::spawn_blocking(move || connect_no_follow(&path))
        .await
        .map_err(|_| AgentError::ContainerInitFailed)??;
    stream.set_nonblocking(true).map_err(|e| {
        tracing::warn!(error = %e, "cannot use the http-stream socket");
        AgentError::ContainerInitFailed
    })?;
    let stream = UnixStream::from_std(stream).map_err(|e| {
        tracing::warn!(error = %e, "cannot use the http-stream socket");
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
    // The platform's values replace any the request carried.
    let fn_headers = [
        ("host", "localhost".to_string()),
        ("fn-call-id", call.id.clone()),
        ("fn-deadline", deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    ];
    if let Err(e) = super::set_platform_headers(&mut headers, fn_headers) {
        return Outcome { result: Err(e), retire: false };
    }
    let mut req = http::Request::builder().method("POST").uri("/call");
    *req.headers_mut().expect("builder") = headers;
    let req = req.body(Full::new(call.body.clone()));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Outcome { result: Err(AgentError::Internal(format!("bad request: {e}"))), retire: false },
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
            if let Err(e) = check_status(200, &headers) {
                return Outcome { result: Err(e), retire: false };
            }
            Outcome::ok(CallResponse { status: 200, headers, body })
        }
        // The function reported its own failure; the container is healthy.
        502 => Outcome { result: Err(AgentError::FunctionFailed), retire: false },
        504 => Outcome::fatal(AgentError::Timeout),
        other => {
            tracing::warn!(status = other, "http-stream function broke the response contract");
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
        assert!(matches!(check_socket(dir.path()), Err(AgentError::ContainerInitFailed)));
        std::fs::remove_file(dir.path().join(SOCKET)).unwrap();
        std::os::unix::fs::symlink("../x.sock", dir.path().join(SOCKET)).unwrap();
        assert!(matches!(check_socket(dir.path()), Err(AgentError::ContainerInitFailed)));
        std::fs::remove_file(dir.path().join(SOCKET)).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(dir.path().join("phony.sock")).unwrap();
        std::fs::set_permissions(dir.path().join("phony.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::os::unix::fs::symlink("phony.sock", dir.path().join(SOCKET)).unwrap();
        assert_eq!(check_socket(dir.path()).unwrap(), Some(dir.path().join("phony.sock")));
    }

    /// The race a container can run: the socket passes the check, then is swapped for a symlink
    /// to a host socket before the agent connects. The connect opens the name without following
    /// it, so it refuses the symlink instead of reaching the host socket.
    #[test]
    fn a_socket_swapped_for_a_symlink_after_the_check_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let host_sock = host.path().join("host.sock");
        let _host = std::os::unix::net::UnixListener::bind(&host_sock).unwrap();
        std::fs::set_permissions(&host_sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let sock = dir.path().join(SOCKET);
        let _fn_listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let checked = check_socket(dir.path()).unwrap().expect("a proper socket");
        connect_no_follow(&checked).expect("the checked socket connects");
        // Swap.
        std::fs::remove_file(&sock).unwrap();
        std::os::unix::fs::symlink(&host_sock, &sock).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&checked).is_ok(), "a plain connect would follow it");
        assert!(matches!(connect_no_follow(&checked), Err(AgentError::ContainerInitFailed)));
    }
}
