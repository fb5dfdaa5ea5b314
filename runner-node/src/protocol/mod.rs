//! How one call crosses into a container, per format (docs/fn-compatibility.md, "Function formats and
//! environment").
//!
//! - [`default`]: cold, body on stdin, response on stdout, one container per call;
//! - [`http`]: hot, one HTTP/1.1 exchange per call over the attached stdin/stdout;
//! - [`json`]: hot, one JSON object per line each way over stdin/stdout;
//! - [`http_stream`]: hot, HTTP/1.1 over the unix socket the function listens on;
//! - [`logs`]: a hot container's output split into its calls' logs (Fn's log framing).
//!
//! Hot formats keep one persistent connection per container ([`HotConn`]); the Docker API is
//! never used on the hot path.

pub mod default;
pub mod http;
pub mod http_stream;
pub mod json;
pub mod logs;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::call::CallResponse;
use crate::error::AgentError;

/// The open channel to a hot container.
pub(crate) enum HotConn {
    /// An HTTP/1.1 client connection (http-stream over the socket, http over stdio).
    Hyper(SendRequest<Full<Bytes>>),
    /// The json format's stdio pipes.
    Json(json::JsonConn),
}

/// Size limits applied while reading a function's response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Body bytes, 0 = unlimited.
    pub max_body: u64,
    /// Header bytes, 0 = unlimited.
    pub max_headers: u64,
}

/// What a hot dispatch produced: the answer, and whether the container must be retired.
pub(crate) struct Outcome {
    pub result: Result<CallResponse, AgentError>,
    pub retire: bool,
}

impl Outcome {
    pub fn ok(resp: CallResponse) -> Self {
        Outcome { result: Ok(resp), retire: false }
    }
    pub fn fatal(e: AgentError) -> Self {
        Outcome { result: Err(e), retire: true }
    }
}

/// Headers that only concern one connection and must not be forwarded.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Removes hop-by-hop headers (and Content-Length, which the body framing decides).
pub(crate) fn strip_hop_headers(h: &mut ::http::HeaderMap) {
    for name in HOP_HEADERS {
        h.remove(*name);
    }
}

/// Request headers the platform itself sets for the function (call id, deadline, the trigger
/// gateway's request description, the `http` format's `Fn_*` headers). A client's copy of any of
/// them is dropped on the way in, so a function never mistakes a forged value for the platform's.
pub(crate) const PLATFORM_HEADERS: &[&str] = &[
    "fn-call-id",
    "fn-deadline",
    "fn-intent",
    "fn-http-method",
    "fn-http-request-url",
    "fn_call_id",
    "fn_deadline",
    "fn_method",
    "fn_request_url",
];

/// Removes every client-sent header the platform sets itself ([`PLATFORM_HEADERS`]).
pub(crate) fn strip_platform_headers(h: &mut ::http::HeaderMap) {
    for name in PLATFORM_HEADERS {
        h.remove(*name);
    }
}

/// Checks the status a function answered with (its own, or the `Fn-Http-Status` it sets for
/// the trigger gateway): only 200–599 is a response a caller can be given; anything else
/// Sets the platform's own headers on a request to a function, replacing any the caller sent.
pub(crate) fn set_platform_headers<const N: usize>(
    h: &mut ::http::HeaderMap,
    values: [(&'static str, String); N],
) -> Result<(), AgentError> {
    for (name, value) in values {
        let v = ::http::HeaderValue::try_from(value)
            .map_err(|e| AgentError::Internal(format!("bad header {name}: {e}")))?;
        h.insert(name, v);
    }
    Ok(())
}

/// (1xx, 600+, garbage) is the function breaking its contract, answered with 502.
pub(crate) fn check_status(status: u16, headers: &::http::HeaderMap) -> Result<(), AgentError> {
    let valid = |s: u16| (200..=599).contains(&s);
    let gateway_ok = headers
        .get_all("fn-http-status")
        .iter()
        .all(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u16>().ok()).is_some_and(valid));
    if valid(status) && gateway_ok {
        Ok(())
    } else {
        tracing::debug!(status, "function answered a status outside 200-599");
        Err(AgentError::InvalidFunctionResponse)
    }
}

/// Size of a header block as it would be on the wire.
pub(crate) fn header_size(h: &::http::HeaderMap) -> u64 {
    h.iter().map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64).sum()
}

/// Reads a response body, failing with "too large" past `limit` (0 = unlimited).
pub(crate) async fn read_body(mut body: Incoming, limit: u64) -> Result<Bytes, AgentError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| AgentError::ReceiveFailed)?;
        if let Ok(data) = frame.into_data() {
            if limit > 0 && (buf.len() + data.len()) as u64 > limit {
                return Err(AgentError::ResponseTooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Go's header canonicalisation (`content-type` → `Content-Type`), used where Fn shows header
/// names to functions.
pub(crate) fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        upper = c == '-';
    }
    out
}

/// A container's attached stdin/stdout as one byte stream, so a hyper client can speak HTTP
/// over it (the `http` format).
pub(crate) struct StdioIo {
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    pub stdout: mpsc::Receiver<Bytes>,
    pub pending: Bytes,
}

impl AsyncRead for StdioIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match self.stdout.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.pending = chunk,
                Poll::Ready(None) => return Poll::Ready(Ok(())), // EOF
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for StdioIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.stdin.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stdin.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stdin.as_mut().poll_shutdown(cx)
    }
}

/// Starts an HTTP/1.1 client over `io`, driving the connection in a background task.
pub(crate) async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, AgentError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| AgentError::Internal(format!("handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "container connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_like_go() {
        assert_eq!(canonical_header("content-type"), "Content-Type");
        assert_eq!(canonical_header("x-SOME-thing"), "X-Some-Thing");
    }

    #[test]
    fn statuses_outside_200_to_599_are_refused() {
        let none = ::http::HeaderMap::new();
        for ok in [200, 201, 404, 599] {
            assert!(check_status(ok, &none).is_ok(), "{ok}");
        }
        for bad in [0, 100, 199, 600, 999] {
            assert!(check_status(bad, &none).is_err(), "{bad}");
        }
        for (gw, ok) in [("418", true), ("150", false), ("700", false), ("teapot", false)] {
            let mut h = ::http::HeaderMap::new();
            h.insert("fn-http-status", gw.parse().unwrap());
            assert_eq!(check_status(200, &h).is_ok(), ok, "{gw}");
        }
    }

    #[test]
    fn strips_platform_headers() {
        let mut h = ::http::HeaderMap::new();
        for name in ["Fn-Call-Id", "fn-deadline", "Fn-Intent", "Fn_call_id", "Fn-Http-Method"] {
            h.insert(::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), "forged".parse().unwrap());
        }
        h.insert("fn-invoke-type", "detached".parse().unwrap());
        h.insert("fn-http-h-x", "kept".parse().unwrap());
        strip_platform_headers(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
    }

    #[test]
    fn strips_hop_headers() {
        let mut h = ::http::HeaderMap::new();
        h.insert("connection", "close".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_headers(&mut h);
        assert_eq!(h.len(), 1);
    }
}
