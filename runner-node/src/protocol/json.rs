//! `json` format: one JSON object per line on stdin per call, one JSON object back on stdout.

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Limits, Outcome};
use crate::call::{CallResponse, CallSpec};
use crate::error::AgentError;

/// The json format's pipes: stdin, stdout chunks, and bytes read but not yet parsed.
pub(crate) struct JsonConn {
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    pub stdout: mpsc::Receiver<Bytes>,
    pub buf: BytesMut,
}

/// How many bytes of JSON output may be buffered for a body limit of `max_body` (0 = unlimited): the
/// body is a JSON string, so escapes may double it, plus room for the envelope and headers.
fn raw_limit(max_body: u64) -> u64 {
    match max_body {
        0 => 0,
        n => n.saturating_mul(2).saturating_add(64 * 1024),
    }
}

/// Finds where the first JSON object in a growing buffer ends, looking at each byte once.
#[derive(Debug, Default)]
struct ObjectEnd {
    /// Bytes of the buffer already looked at.
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl ObjectEnd {
    /// Looks at the bytes of `buf` not seen yet; `Some(end)` once the object is complete (`end` is
    /// just past its closing brace), an error if the output does not start with an object.
    fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, &'static str> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            self.pos += 1;
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Some(self.pos));
                    }
                }
                b'"' if self.depth > 0 => self.in_string = true,
                _ if self.depth == 0 && !b.is_ascii_whitespace() => {
                    return Err("expected a JSON object");
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

#[derive(Serialize)]
struct JsonIn<'a> {
    call_id: &'a str,
    deadline: String,
    body: String,
    content_type: &'a str,
    protocol: ProtoIn<'a>,
}

#[derive(Serialize)]
struct ProtoIn<'a> {
    #[serde(rename = "type")]
    typ: &'static str,
    method: &'a str,
    request_url: &'a str,
    headers: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct JsonOut {
    #[serde(default)]
    body: String,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    protocol: ProtoOut,
}

#[derive(Deserialize, Default)]
struct ProtoOut {
    #[serde(default)]
    status_code: u16,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
}

/// Sends one call and reads one object back. Protocol errors retire the container; bytes
/// after the object (excess data) also retire it, but the call still succeeds (Fn's rule).
pub(crate) async fn dispatch(conn: &mut JsonConn, call: &CallSpec, deadline: DateTime<Utc>, limits: Limits) -> Outcome {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &call.headers {
        headers
            .entry(super::canonical_header(k.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let content_type = call.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let input = JsonIn {
        call_id: &call.id,
        deadline: deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        body: String::from_utf8_lossy(&call.body).into_owned(),
        content_type,
        protocol: ProtoIn { typ: "http", method: &call.method, request_url: &call.url, headers },
    };
    let mut line = serde_json::to_vec(&input).expect("serialisable");
    line.push(b'\n');
    if conn.stdin.write_all(&line).await.is_err() || conn.stdin.flush().await.is_err() {
        return Outcome::fatal(AgentError::InvalidJsonResponse("cannot write to function".into()));
    }
    // Find the end of the object as bytes arrive (each byte looked at once), then parse it once.
    let raw_limit = raw_limit(limits.max_body);
    let mut scan = ObjectEnd::default();
    let end = loop {
        match scan.feed(&conn.buf) {
            Ok(Some(end)) => break end,
            Ok(None) => {}
            Err(e) => return Outcome::fatal(AgentError::InvalidJsonResponse(e.into())),
        }
        if raw_limit > 0 && conn.buf.len() as u64 > raw_limit {
            return Outcome::fatal(AgentError::ResponseTooLarge);
        }
        match conn.stdout.recv().await {
            Some(chunk) => conn.buf.extend_from_slice(&chunk),
            None => return Outcome::fatal(AgentError::InvalidJsonResponse("unexpected EOF".into())),
        }
    };
    let out: JsonOut = match serde_json::from_slice(&conn.buf[..end]) {
        Ok(out) => out,
        Err(e) => return Outcome::fatal(AgentError::InvalidJsonResponse(e.to_string())),
    };
    let _ = conn.buf.split_to(end);
    let excess = conn.buf.iter().any(|b| !b.is_ascii_whitespace());
    conn.buf.clear();
    if limits.max_body > 0 && out.body.len() as u64 > limits.max_body {
        return Outcome::fatal(AgentError::ResponseTooLarge);
    }
    let mut resp_headers = http::HeaderMap::new();
    for (k, vals) in &out.protocol.headers {
        for v in vals {
            if let (Ok(name), Ok(val)) =
                (http::HeaderName::try_from(k.as_str()), http::HeaderValue::try_from(v.as_str()))
            {
                resp_headers.append(name, val);
            }
        }
    }
    if !out.content_type.is_empty() {
        if let Ok(v) = http::HeaderValue::try_from(out.content_type.as_str()) {
            resp_headers.insert(http::header::CONTENT_TYPE, v);
        }
    }
    let status = if out.protocol.status_code == 0 { 200 } else { out.protocol.status_code };
    if let Err(e) = super::check_status(status, &resp_headers) {
        return Outcome { result: Err(e), retire: excess };
    }
    Outcome { result: Ok(CallResponse { status, headers: resp_headers, body: Bytes::from(out.body) }), retire: excess }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(chunks: Vec<Bytes>) -> JsonConn {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for c in chunks {
            tx.try_send(c).unwrap();
        }
        JsonConn { stdin: Box::pin(tokio::io::sink()), stdout: rx, buf: BytesMut::new() }
    }

    fn limits(max_body: u64) -> Limits {
        Limits { max_body, max_headers: 0 }
    }

    fn reply(body: &str) -> Vec<u8> {
        let v = serde_json::json!({"body": body, "protocol": {"status_code": 201, "headers": {"X-A": ["{b}"]}}});
        v.to_string().into_bytes()
    }

    #[tokio::test]
    async fn a_large_response_in_many_small_chunks_is_read_whole() {
        // Quotes, braces and escapes inside the body must not end the object early.
        let body = format!("{}\"}}{{\\", "y".repeat(4 << 20));
        let raw = reply(&body);
        let chunks = raw.chunks(1024).map(Bytes::copy_from_slice).collect();
        let mut c = conn(chunks);
        let call = CallSpec::new("c1", "img");
        let out = dispatch(&mut c, &call, Utc::now(), limits(0)).await;
        assert!(!out.retire);
        let r = out.result.unwrap();
        assert_eq!((r.status, r.body.len()), (201, body.len()));
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(r.headers.get("x-a").unwrap(), "{b}");
    }

    #[tokio::test]
    async fn limits_bad_output_and_excess_data() {
        let call = CallSpec::new("c1", "img");
        let raw = reply(&"z".repeat(1000));
        let mut c = conn(vec![Bytes::from(raw.clone())]);
        let out = dispatch(&mut c, &call, Utc::now(), limits(999)).await;
        assert!(matches!(out.result, Err(AgentError::ResponseTooLarge)));
        let mut c = conn(vec![Bytes::from(raw)]);
        assert!(dispatch(&mut c, &call, Utc::now(), limits(1000)).await.result.is_ok());
        // Output far beyond the limit is refused before it is all buffered.
        let flood: Vec<Bytes> = (0..100).map(|_| Bytes::from(vec![b' '; 64 * 1024])).collect();
        let mut c = conn(flood);
        let out = dispatch(&mut c, &call, Utc::now(), limits(1000)).await;
        assert!(matches!(out.result, Err(AgentError::ResponseTooLarge)));
        assert!(!c.stdout.is_empty(), "stopped reading at the limit");
        let mut c = conn(vec![Bytes::from_static(b"not json")]);
        let out = dispatch(&mut c, &call, Utc::now(), limits(0)).await;
        assert!(matches!(out.result, Err(AgentError::InvalidJsonResponse(_))) && out.retire);
        let mut c = conn(vec![Bytes::from_static(b"{\"body\":\"a\"} {\"extra\":1}")]);
        let out = dispatch(&mut c, &call, Utc::now(), limits(0)).await;
        assert_eq!(out.result.unwrap().body, "a");
        assert!(out.retire, "excess data retires the container");
    }
}
