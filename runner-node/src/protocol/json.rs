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
pub(crate) async fn dispatch(
    conn: &mut JsonConn,
    call: &CallSpec,
    deadline: DateTime<Utc>,
    limits: Limits,
) -> Outcome {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &call.headers {
        headers
            .entry(super::canonical_header(k.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let content_type = call
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let input = JsonIn {
        call_id: &call.id,
        deadline: deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        body: String::from_utf8_lossy(&call.body).into_owned(),
        content_type,
        protocol: ProtoIn {
            typ: "http",
            method: &call.method,
            request_url: &call.url,
            headers,
        },
    };
    let mut line = serde_json::to_vec(&input).expect("serialisable");
    line.push(b'\n');
    if conn.stdin.write_all(&line).await.is_err() || conn.stdin.flush().await.is_err() {
        return Outcome::fatal(AgentError::InvalidJsonResponse(
            "cannot write to function".into(),
        ));
    }
    let (out, consumed) = loop {
        let mut it = serde_json::Deserializer::from_slice(&conn.buf).into_iter::<JsonOut>();
        match it.next() {
            Some(Ok(out)) => break (out, it.byte_offset()),
            Some(Err(e)) if !e.is_eof() => {
                return Outcome::fatal(AgentError::InvalidJsonResponse(e.to_string()))
            }
            _ => {}
        }
        if limits.max_body > 0 && conn.buf.len() as u64 > limits.max_body {
            return Outcome::fatal(AgentError::ResponseTooLarge);
        }
        match conn.stdout.recv().await {
            Some(chunk) => conn.buf.extend_from_slice(&chunk),
            None => {
                return Outcome::fatal(AgentError::InvalidJsonResponse("unexpected EOF".into()))
            }
        }
    };
    let _ = conn.buf.split_to(consumed);
    let excess = conn.buf.iter().any(|b| !b.is_ascii_whitespace());
    conn.buf.clear();
    if limits.max_body > 0 && out.body.len() as u64 > limits.max_body {
        return Outcome::fatal(AgentError::ResponseTooLarge);
    }
    let mut resp_headers = http::HeaderMap::new();
    for (k, vals) in &out.protocol.headers {
        for v in vals {
            if let (Ok(name), Ok(val)) = (
                http::HeaderName::try_from(k.as_str()),
                http::HeaderValue::try_from(v.as_str()),
            ) {
                resp_headers.append(name, val);
            }
        }
    }
    if !out.content_type.is_empty() {
        if let Ok(v) = http::HeaderValue::try_from(out.content_type.as_str()) {
            resp_headers.insert(http::header::CONTENT_TYPE, v);
        }
    }
    let status = if out.protocol.status_code == 0 {
        200
    } else {
        out.protocol.status_code
    };
    if let Err(e) = super::check_status(status, &resp_headers) {
        return Outcome {
            result: Err(e),
            retire: excess,
        };
    }
    Outcome {
        result: Ok(CallResponse {
            status,
            headers: resp_headers,
            body: Bytes::from(out.body),
        }),
        retire: excess,
    }
}
