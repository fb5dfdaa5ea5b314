//! Fn's "gateway" mapping for HTTP triggers (docs/fn-compatibility.md, "Invoke paths").
//!
//! Request: every header but `Content-Type` travels as `Fn-Http-H-<Name>`, plus `Fn-Http-Method`,
//! `Fn-Http-Request-Url` and `Fn-Intent: httprequest`. Response: only `Content-Type`, `Fn-Call-Id`
//! and `Fn-Http-H-*` (prefix removed) survive, and `Fn-Http-Status` sets the status.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::call::CallResponse;
use crate::protocol::{canonical_header, strip_hop_headers};

const H_PREFIX: &str = "Fn-Http-H-";

/// The headers the function receives for a trigger request.
pub fn request_headers(incoming: &HeaderMap, method: &str, url: &str) -> HeaderMap {
    let mut incoming = incoming.clone();
    strip_hop_headers(&mut incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 3);
    for (name, value) in &incoming {
        if name == http::header::CONTENT_TYPE {
            out.append(name.clone(), value.clone());
            continue;
        }
        let mapped = format!("{H_PREFIX}{}", canonical_header(name.as_str()));
        if let Ok(n) = HeaderName::from_bytes(mapped.as_bytes()) {
            out.append(n, value.clone());
        }
    }
    let mut add = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    add("fn-http-method", method);
    add("fn-http-request-url", url);
    add("fn-intent", "httprequest");
    out
}

/// The status and headers the trigger caller receives from a function's response.
pub fn response(resp: &CallResponse) -> (u16, HeaderMap) {
    let mut status = resp.status;
    let mut out = HeaderMap::new();
    for (name, value) in &resp.headers {
        let n = name.as_str();
        if name == http::header::CONTENT_TYPE || n == "fn-call-id" {
            out.append(name.clone(), value.clone());
        } else if n == "fn-http-status" {
            if let Some(s) =
                value.to_str().ok().and_then(|s| s.trim().parse::<u16>().ok()).filter(|s| (100..=999).contains(s))
            {
                status = s;
            }
        } else if let Some(rest) = n.strip_prefix("fn-http-h-") {
            if let Ok(h) = HeaderName::from_bytes(rest.as_bytes()) {
                out.append(h, value.clone());
            }
        }
    }
    strip_hop_headers(&mut out);
    (status, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn requests_are_wrapped() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("x-thing", "1".parse().unwrap());
        h.insert("connection", "keep-alive".parse().unwrap());
        let out = request_headers(&h, "PUT", "http://host/t/app/x?y=1");
        assert_eq!(out["content-type"], "text/plain");
        assert_eq!(out["fn-http-h-x-thing"], "1");
        assert!(out.get("x-thing").is_none() && out.get("fn-http-h-connection").is_none());
        assert_eq!(out["fn-http-method"], "PUT");
        assert_eq!(out["fn-http-request-url"], "http://host/t/app/x?y=1");
        assert_eq!(out["fn-intent"], "httprequest");
    }

    #[test]
    fn responses_are_unwrapped() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("fn-http-status", "418".parse().unwrap());
        h.insert("fn-http-h-x-out", "yes".parse().unwrap());
        h.insert("x-dropped", "no".parse().unwrap());
        let (status, out) = response(&CallResponse { status: 200, headers: h, body: Bytes::new() });
        assert_eq!(status, 418);
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["x-out"], "yes");
        assert!(out.get("x-dropped").is_none());
        assert_eq!(out.len(), 2);
    }
}
