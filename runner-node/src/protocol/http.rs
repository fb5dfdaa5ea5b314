//! `http` format: one HTTP/1.1 request per call written to the container's stdin, one HTTP/1.1
//! response read from its stdout (Content-Length or chunked framing required, as in Fn).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

use super::{check_status, header_size, read_body, strip_hop_headers, Limits, Outcome};
use crate::call::{CallResponse, CallSpec};
use crate::error::AgentError;

/// Sends one call: the original request (URI = full request URL) plus Fn's `Fn_deadline`,
/// `Fn_method`, `Fn_request_url`, `Fn_call_id` headers; the function's status and headers are
/// passed through.
pub(crate) async fn dispatch(
    sender: &mut SendRequest<Full<Bytes>>,
    call: &CallSpec,
    deadline: DateTime<Utc>,
    limits: Limits,
) -> Outcome {
    let mut headers = call.headers.clone();
    strip_hop_headers(&mut headers);
    let host = call.url.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_string));
    // The platform's values replace any the request carried.
    let fn_headers = [
        ("host", host.unwrap_or_else(|| "localhost".into())),
        ("fn_deadline", deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        ("fn_method", call.method.clone()),
        ("fn_request_url", call.url.clone()),
        ("fn_call_id", call.id.clone()),
        ("content-length", call.body.len().to_string()),
    ];
    if let Err(e) = super::set_platform_headers(&mut headers, fn_headers) {
        return Outcome { result: Err(e), retire: false };
    }
    let mut req = http::Request::builder().method(call.method.as_str()).uri(call.url.as_str());
    // An unparsable URL leaves the builder in error (reported below), with no headers to set.
    if let Some(h) = req.headers_mut() {
        *h = headers;
    }
    let req = req.body(Full::new(call.body.clone()));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Outcome { result: Err(AgentError::Internal(format!("bad request: {e}"))), retire: false },
    };
    if sender.ready().await.is_err() {
        return Outcome::fatal(AgentError::InvalidHttpResponse("connection closed".into()));
    }
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::fatal(AgentError::InvalidHttpResponse(e.to_string())),
    };
    let (parts, body) = resp.into_parts();
    if limits.max_headers > 0 && header_size(&parts.headers) > limits.max_headers {
        return Outcome::fatal(AgentError::ResponseHeadersTooLarge);
    }
    match read_body(body, limits.max_body).await {
        Ok(body) => {
            let mut headers = parts.headers;
            strip_hop_headers(&mut headers);
            if let Err(e) = check_status(parts.status.as_u16(), &headers) {
                return Outcome { result: Err(e), retire: false };
            }
            Outcome::ok(CallResponse { status: parts.status.as_u16(), headers, body })
        }
        Err(AgentError::ReceiveFailed) => Outcome::fatal(AgentError::InvalidHttpResponse("body".into())),
        Err(e) => Outcome::fatal(e),
    }
}
