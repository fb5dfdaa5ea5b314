//! From an HTTP request and the domain models to what the agent runs ([`CallSpec`]) or what the
//! queue keeps ([`QueuedCall`]), and helpers to write the HTTP answer.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use shared::{App, Call, CallStatus, Func, QueuedCall, Route};

use super::error::InvokeError;
use crate::call::CallSpec;
use crate::protocol::{canonical_header, strip_platform_headers};

/// The parts of an incoming request a call needs.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The call id assigned to this request.
    pub id: String,
    /// HTTP method.
    pub method: String,
    /// Full request URL (scheme, host, path, query).
    pub url: String,
    /// Request headers, without `Host` (the function's request has its own) and without any
    /// header the platform sets for the function (`Fn-Call-Id`, `Fn-Deadline`, ...).
    pub headers: http::HeaderMap,
    /// Request body.
    pub body: Bytes,
}

impl Incoming {
    /// Reads the request: headers and a body of at most `max_body` bytes (0 = unlimited).
    /// A `Content-Length` over the limit is refused before reading anything.
    pub async fn read(
        req: &HttpRequest,
        mut payload: web::Payload,
        id: &str,
        max_body: u64,
    ) -> Result<Incoming, InvokeError> {
        let declared =
            req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if max_body > 0 && declared.is_some_and(|n| n > max_body) {
            return Err(InvokeError::RequestTooLarge);
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| InvokeError::InvalidPayload)?;
            if max_body > 0 && (body.len() + chunk.len()) as u64 > max_body {
                return Err(InvokeError::RequestTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut headers = http::HeaderMap::with_capacity(req.headers().len());
        for (name, value) in req.headers() {
            if name.as_str() == "host" {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                headers.append(n, v);
            }
        }
        strip_platform_headers(&mut headers);
        let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Ok(Incoming {
            id: id.to_string(),
            method: req.method().to_string(),
            url: request_url(req, path),
            headers,
            body: body.freeze(),
        })
    }

    /// The request part of a call spec; the function's settings are filled in by the caller.
    fn into_spec(self, app: &App, image: &str) -> CallSpec {
        let mut c = CallSpec::new(self.id, image);
        c.app_id = app.id.clone();
        c.app_name = app.name.clone();
        c.method = self.method;
        c.url = self.url;
        c.headers = self.headers;
        c.body = self.body;
        if let Some(syslog) = &app.syslog_url {
            c.extra_key.insert("syslog_url".into(), syslog.clone());
        }
        c
    }

    /// The queue entry for an async route call or a detached invoke: record `queued` plus the
    /// request to replay (headers by canonical name, body in base64).
    pub fn queued(&self, app_id: &str, fn_id: &str, path: &str) -> QueuedCall {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &self.headers {
            headers
                .entry(canonical_header(name.as_str()))
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        QueuedCall {
            call: Call {
                fn_id: fn_id.to_string(),
                path: path.to_string(),
                ..Call::new(&self.id, app_id, CallStatus::Queued)
            },
            method: self.method.clone(),
            url: self.url.clone(),
            headers,
            body: base64::engine::general_purpose::STANDARD.encode(&self.body),
            priority: 0,
        }
    }
}

/// App config overlaid by the function's own (the function wins).
fn merged_config(app: &App, own: &shared::Config) -> BTreeMap<String, String> {
    let mut config = app.config.0.clone();
    config.extend(own.0.iter().map(|(k, v)| (k.clone(), v.clone())));
    config
}

/// Annotations change the container (docs/fn-compatibility.md, "Agent"), so they are part of the key.
fn annotation_keys(spec: &mut CallSpec, annotations: &shared::Annotations) {
    for (k, v) in annotations.as_map() {
        spec.extra_key.insert(format!("annotation.{k}"), v.to_string());
    }
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(s.max(1) as u64)
}

/// The call of a v2 fn (for `/invoke` and `/t/`).
pub fn fn_spec(app: &App, f: &Func, req: Incoming) -> CallSpec {
    let mut c = req.into_spec(app, &f.image);
    c.fn_id = f.id.clone();
    c.format = f.format;
    c.memory_mb = f.memory.max(1);
    c.timeout = secs(f.timeout);
    c.idle_timeout = secs(f.idle_timeout);
    c.config = merged_config(app, &f.config);
    annotation_keys(&mut c, &f.annotations);
    c
}

/// The call of a v1 route (for `/r/`).
pub fn route_spec(app: &App, r: &Route, req: Incoming) -> CallSpec {
    let mut c = req.into_spec(app, &r.image);
    c.path = r.path.clone();
    c.format = r.format;
    c.memory_mb = r.memory.max(1);
    c.cpus_mcpu = r.cpus.0;
    c.tmpfs_mb = u64::from(r.tmpfs_size);
    c.timeout = secs(r.timeout);
    c.idle_timeout = secs(r.idle_timeout);
    c.config = merged_config(app, &r.config);
    annotation_keys(&mut c, &r.annotations);
    c
}

/// Appends every header of `headers` to a response.
pub fn append_headers(resp: &mut HttpResponseBuilder, headers: &http::HeaderMap) {
    for (name, value) in headers {
        resp.append_header((name.as_str(), value.as_bytes()));
    }
}

/// Whether the caller asked for the call to be queued (`Fn-Invoke-Type: detached`).
pub fn wants_detached(req: &HttpRequest) -> bool {
    req.headers().get("fn-invoke-type").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"detached"))
}

/// The 202 answer to a queued call: `{"call_id":"..."}`.
pub fn accepted(resp: &mut HttpResponseBuilder, call_id: &str) -> HttpResponse {
    resp.status(actix_web::http::StatusCode::ACCEPTED).json(serde_json::json!({ "call_id": call_id }))
}

pub use shared::clean_path;

/// The URL the caller asked for. `Forwarded` and `X-Forwarded-*` come from the client: when they do
/// not make a valid URL they are ignored for what the connection itself says (its `Host` header, else
/// the server's name), so no header can break a call.
fn request_url(req: &HttpRequest, path: &str) -> String {
    let conn = req.connection_info();
    let forwarded = format!("{}://{}{}", conn.scheme(), conn.host(), path);
    if forwarded.parse::<http::Uri>().is_ok() {
        return forwarded;
    }
    let config = req.app_config();
    let scheme = if config.secure() { "https" } else { "http" };
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .unwrap_or_else(|| config.host());
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_like_go() {
        assert_eq!(clean_path(""), "/");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("hello"), "/hello");
        assert_eq!(clean_path("a//b/./c/../d/"), "/a/b/d");
        assert_eq!(clean_path("/../x"), "/x");
    }
}
