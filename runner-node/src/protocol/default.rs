//! `default` format (cold): the request body goes to stdin, which is then closed; stdout is
//! the response body (status always 200); stderr is the call log. Per-call details travel in
//! the environment, fixed when the container is created.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::canonical_header;
use crate::call::CallSpec;
use crate::driver::{Attached, Output};
use crate::error::AgentError;
use crate::recorder::LogBuffer;

/// Per-call environment of a cold container, added to the base environment (docs/fn-compatibility.md,
/// "Function formats and environment").
/// Header names keep Go's canonical form (`FN_HEADER_Content-Type`), as Fn does.
pub(crate) fn call_env(call: &CallSpec, deadline: DateTime<Utc>) -> Vec<String> {
    let mut env = vec![
        format!("FN_DEADLINE={}", deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        format!("FN_METHOD={}", call.method),
        format!("FN_REQUEST_URL={}", call.url),
        format!("FN_CALL_ID={}", call.id),
    ];
    for name in call.headers.keys() {
        let values: Vec<String> =
            call.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        env.push(format!("FN_HEADER_{}={}", canonical_header(name.as_str()), values.join(", ")));
    }
    env
}

/// Feeds the body to stdin, closes it, and collects stdout (at most `max_body` bytes,
/// 0 = unlimited) until the container's output ends; stderr goes to `log`.
pub(crate) async fn exchange(
    attached: Attached,
    body: Bytes,
    max_body: u64,
    log: &mut LogBuffer,
) -> Result<Bytes, AgentError> {
    let Attached { mut stdin, mut output } = attached;
    let writer = tokio::spawn(async move {
        // A function may exit without reading its input; a broken pipe is not an error then.
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
        stdin
    });
    let mut out = BytesMut::new();
    while let Some(item) = output.next().await {
        match item {
            Ok(Output::Stdout(b)) => {
                if max_body > 0 && (out.len() + b.len()) as u64 > max_body {
                    writer.abort();
                    return Err(AgentError::ResponseTooLarge);
                }
                out.extend_from_slice(&b);
            }
            Ok(Output::Stderr(b)) => log.write(&b),
            Err(e) => {
                tracing::debug!(error = %e, "cold container output ended with an error");
                break;
            }
        }
    }
    // Keep the write half alive until the output ended: dropping it early may close the attach.
    let _ = writer.await;
    Ok(out.freeze())
}
