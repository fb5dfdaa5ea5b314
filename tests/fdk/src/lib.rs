//! A tiny function development kit (FDK) for the test functions.
//!
//! It speaks every format the agent supports, chosen the way real Fn FDKs choose it:
//! `FN_LISTENER` set → `http-stream` (HTTP/1.1 over a unix socket), otherwise `FN_FORMAT`
//! (`default`, `http`, `json`). It only uses `std` and `serde_json`, so the test binaries build
//! quickly as small static executables that run in `FROM scratch` images.
//!
//! ```no_run
//! fdk::run(|req| fdk::Response::ok(req.body.clone()));
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::panic::{self, AssertUnwindSafe};

/// One call as the function sees it, whatever the wire format.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// HTTP method of the original request.
    pub method: String,
    /// Request URL (full URL for stdio formats, `/call` for http-stream).
    pub url: String,
    /// Headers as received (names as sent by the agent).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Call id, from `Fn-Call-Id`/`Fn_call_id`/`FN_CALL_ID`/the json envelope.
    pub call_id: String,
    /// Deadline (RFC3339) as given by the agent.
    pub deadline: String,
}

impl Request {
    /// First header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the function answers.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status the function wants the caller to see.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with a body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Response { status: 200, headers: Vec::new(), body: body.into() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// Runs the handler for every call, in the format the agent asked for, until the agent stops
/// the container (or, for `default`, once).
///
/// Like Fn's FDKs, it frames each call's output when the agent asks for it (`FN_LOGFRAME_NAME`,
/// `FN_LOGFRAME_HDR`): before the handler runs, it writes `\n<name>=<value of that header>\n` to
/// stderr (and to stdout for http-stream, where stdout is a log too), so the agent can tell which
/// call each line of output belongs to. In the stdio formats the call id comes from the format's
/// own field when the header is `Fn-Call-Id`.
///
/// Test hooks: `FDK_START_DELAY_MS` delays opening the http-stream socket (init timeouts),
/// `FDK_ABSOLUTE_SYMLINK` exposes it through an absolute symlink (which the agent refuses),
/// `FDK_NO_LOGFRAME` turns log framing off (a function on an FDK that does not frame).
pub fn run<F: FnMut(&Request) -> Response + Send + 'static>(mut handler: F) {
    if let Some(ms) = std::env::var("FDK_START_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let result = if let Ok(listener) = std::env::var("FN_LISTENER") {
        run_http_stream(&listener, handler)
    } else {
        match std::env::var("FN_FORMAT").unwrap_or_default().as_str() {
            "http" => run_http_stdio(&mut handler),
            "json" => run_json(&mut handler),
            _ => run_default(&mut handler),
        }
    };
    if let Err(e) = result {
        eprintln!("fdk: {e}");
        std::process::exit(1);
    }
}

/// Writes Fn's log frame for this call (see [`run`]); `stdout` too for http-stream.
fn log_frame(req: &Request, stdout: bool) {
    if std::env::var_os("FDK_NO_LOGFRAME").is_some() {
        return;
    }
    let (Ok(name), Ok(hdr)) = (std::env::var("FN_LOGFRAME_NAME"), std::env::var("FN_LOGFRAME_HDR")) else {
        return;
    };
    // The stdio formats carry the call id in their own field (json) or header (`Fn_call_id`).
    let value = req.header(&hdr).or_else(|| {
        let call_id = hdr.eq_ignore_ascii_case("Fn-Call-Id");
        call_id.then_some(req.call_id.as_str())
    });
    match value {
        Some(value) if !name.is_empty() && !value.is_empty() => {
            let frame = format!("\n{name}={value}\n");
            let _ = io::stderr().write_all(frame.as_bytes());
            if stdout {
                let mut out = io::stdout().lock();
                let _ = out.write_all(frame.as_bytes());
                let _ = out.flush();
            }
        }
        _ => {}
    }
}

/// Calls the handler; a panic becomes `None` so that the format can report a function error.
fn call<F: FnMut(&Request) -> Response>(handler: &mut F, req: &Request) -> Option<Response> {
    panic::catch_unwind(AssertUnwindSafe(|| handler(req))).ok()
}

fn run_default<F: FnMut(&Request) -> Response>(handler: &mut F) -> io::Result<()> {
    let mut body = Vec::new();
    io::stdin().read_to_end(&mut body)?;
    let headers =
        std::env::vars().filter_map(|(k, v)| k.strip_prefix("FN_HEADER_").map(|n| (n.to_string(), v))).collect();
    let req = Request {
        method: std::env::var("FN_METHOD").unwrap_or_default(),
        url: std::env::var("FN_REQUEST_URL").unwrap_or_default(),
        headers,
        body,
        call_id: std::env::var("FN_CALL_ID").unwrap_or_default(),
        deadline: std::env::var("FN_DEADLINE").unwrap_or_default(),
    };
    let resp = call(handler, &req).unwrap_or_else(|| std::process::exit(2));
    let mut out = io::stdout().lock();
    out.write_all(&resp.body)?;
    out.flush()
}

fn run_http_stdio<F: FnMut(&Request) -> Response>(handler: &mut F) -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    let mut out = io::stdout().lock();
    while let Some(mut req) = read_request(&mut input)? {
        req.call_id = req.header("Fn_call_id").or(req.header("Fn-Call-Id")).unwrap_or("").to_string();
        req.deadline = req.header("Fn_deadline").or(req.header("Fn-Deadline")).unwrap_or("").to_string();
        log_frame(&req, false);
        let resp = call(handler, &req).unwrap_or_else(|| Response::ok("function failed").status(500));
        write_response(&mut out, resp.status, &resp.headers, &resp.body)?;
    }
    Ok(())
}

fn run_json<F: FnMut(&Request) -> Response>(handler: &mut F) -> io::Result<()> {
    let input = BufReader::new(io::stdin().lock());
    let mut out = io::stdout().lock();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).map_err(io::Error::other)?;
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let proto = &v["protocol"];
        let mut headers = Vec::new();
        if let Some(h) = proto["headers"].as_object() {
            for (k, vals) in h {
                for val in vals.as_array().into_iter().flatten() {
                    headers.push((k.clone(), s(val)));
                }
            }
        }
        let req = Request {
            method: s(&proto["method"]),
            url: s(&proto["request_url"]),
            headers,
            body: s(&v["body"]).into_bytes(),
            call_id: s(&v["call_id"]),
            deadline: s(&v["deadline"]),
        };
        log_frame(&req, false);
        let resp = call(handler, &req).unwrap_or_else(|| Response::ok("function failed").status(500));
        let mut hdrs = serde_json::Map::new();
        for (k, val) in &resp.headers {
            hdrs.entry(k.clone())
                .or_insert_with(|| serde_json::Value::Array(vec![]))
                .as_array_mut()
                .expect("array")
                .push(val.clone().into());
        }
        let ct = resp
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let reply = serde_json::json!({
            "body": String::from_utf8_lossy(&resp.body),
            "content_type": ct,
            "protocol": {"status_code": resp.status, "headers": hdrs},
        });
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

fn run_http_stream<F: FnMut(&Request) -> Response + Send + 'static>(listener: &str, handler: F) -> io::Result<()> {
    let path = listener
        .strip_prefix("unix:")
        .ok_or_else(|| io::Error::other(format!("unsupported FN_LISTENER {listener}")))?;
    let path = std::path::Path::new(path);
    let dir = path.parent().ok_or_else(|| io::Error::other("listener path has no directory"))?;
    // Like the real FDKs: bind a phony name, open it up, then atomically expose it through a
    // relative symlink, so the agent never sees a half-initialised socket.
    let phony_name = format!("phony{}.sock", std::process::id());
    let phony = dir.join(&phony_name);
    let _ = std::fs::remove_file(&phony);
    let sock = UnixListener::bind(&phony)?;
    std::fs::set_permissions(&phony, std::fs::Permissions::from_mode(0o666))?;
    if std::env::var("FDK_ABSOLUTE_SYMLINK").is_ok() {
        std::os::unix::fs::symlink(&phony, path)?;
    } else {
        std::os::unix::fs::symlink(&phony_name, path)?;
    }
    // One thread per connection: the agent keeps a single connection, but tools (benchmarks,
    // debugging) may open another one beside it.
    let handler = std::sync::Arc::new(std::sync::Mutex::new(handler));
    for conn in sock.incoming() {
        let conn = conn?;
        let handler = handler.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve_connection(conn, &handler) {
                eprintln!("fdk: connection: {e}");
            }
        });
    }
    Ok(())
}

fn serve_connection<F: FnMut(&Request) -> Response>(
    conn: std::os::unix::net::UnixStream,
    handler: &std::sync::Mutex<F>,
) -> io::Result<()> {
    let mut input = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    while let Some(mut req) = read_request(&mut input)? {
        req.call_id = req.header("Fn-Call-Id").unwrap_or("").to_string();
        req.deadline = req.header("Fn-Deadline").unwrap_or("").to_string();
        log_frame(&req, true);
        let gateway = req.header("Fn-Intent").is_some_and(|v| v.eq_ignore_ascii_case("httprequest"));
        if gateway {
            unwrap_gateway_request(&mut req);
        }
        let resp = {
            let mut h = handler.lock().unwrap_or_else(|p| p.into_inner());
            call(&mut *h, &req)
        };
        match resp {
            Some(resp) => {
                let mut headers = if gateway { wrap_gateway_headers(resp.headers) } else { resp.headers };
                headers.push(("Fn-Http-Status".into(), resp.status.to_string()));
                write_response(&mut out, 200, &headers, &resp.body)?;
            }
            None => write_response(&mut out, 502, &[], b"function failed")?,
        }
    }
    Ok(())
}

/// A trigger request (`Fn-Intent: httprequest`), as Fn's FDKs present it to the handler: the
/// original method and URL, and `Fn-Http-H-<Name>` headers under their own names.
fn unwrap_gateway_request(req: &mut Request) {
    if let Some(m) = req.header("Fn-Http-Method") {
        req.method = m.to_string();
    }
    if let Some(u) = req.header("Fn-Http-Request-Url") {
        req.url = u.to_string();
    }
    req.headers = std::mem::take(&mut req.headers)
        .into_iter()
        .filter_map(|(k, v)| {
            if k.eq_ignore_ascii_case("content-type") {
                return Some((k, v));
            }
            let lower = k.to_ascii_lowercase();
            lower.strip_prefix("fn-http-h-").map(|_| (k["Fn-Http-H-".len()..].to_string(), v))
        })
        .collect();
}

/// Response headers of a trigger call: all but Content-Type travel as `Fn-Http-H-<Name>`.
fn wrap_gateway_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| if k.eq_ignore_ascii_case("content-type") { (k, v) } else { (format!("Fn-Http-H-{k}"), v) })
        .collect()
}

/// Reads one line into `line` (cleared first), bytes that are not UTF-8 replaced (HTTP allows them in
/// header values); the number of bytes read, 0 at the end of the stream.
fn read_text_line<R: BufRead>(input: &mut R, line: &mut String) -> io::Result<usize> {
    let mut bytes = Vec::new();
    let n = input.read_until(b'\n', &mut bytes)?;
    *line = String::from_utf8_lossy(&bytes).into_owned();
    Ok(n)
}

/// Reads one HTTP/1.1 request; `None` at a clean end of stream.
fn read_request<R: BufRead>(input: &mut R) -> io::Result<Option<Request>> {
    let mut line = String::new();
    loop {
        line.clear();
        if read_text_line(input, &mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let url = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if read_text_line(input, &mut line)? == 0 {
            return Err(io::Error::other("eof in headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let find =
        |n: &str| headers.iter().find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            read_text_line(input, &mut line)?;
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).map_err(io::Error::other)?;
            if size == 0 {
                line.clear();
                read_text_line(input, &mut line)?;
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            input.read_exact(&mut body[start..])?;
            line.clear();
            read_text_line(input, &mut line)?;
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(io::Error::other)?;
        body.resize(len, 0);
        input.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, url, headers, body, ..Default::default() }))
}

fn write_response<W: Write>(out: &mut W, status: u16, headers: &[(String, String)], body: &[u8]) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_requests() {
        let raw = b"POST /call HTTP/1.1\r\nContent-Length: 3\r\nFn-Call-Id: x\r\n\r\nabcPOST /call HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1\r\n!\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let a = read_request(&mut r).unwrap().unwrap();
        assert_eq!(a.body, b"abc");
        assert_eq!(a.header("fn-call-id"), Some("x"));
        let b = read_request(&mut r).unwrap().unwrap();
        assert_eq!(b.body, b"hi!");
        assert!(read_request(&mut r).unwrap().is_none());
    }

    #[test]
    fn gateway_requests_are_unwrapped_and_responses_wrapped() {
        let mut req = Request {
            method: "POST".into(),
            headers: vec![
                ("Fn-Http-Method".into(), "GET".into()),
                ("Fn-Http-Request-Url".into(), "http://h/t/a/b".into()),
                ("Fn-Http-H-X-Thing".into(), "1".into()),
                ("Content-Type".into(), "text/plain".into()),
                ("Fn-Intent".into(), "httprequest".into()),
            ],
            ..Default::default()
        };
        unwrap_gateway_request(&mut req);
        assert_eq!((req.method.as_str(), req.url.as_str()), ("GET", "http://h/t/a/b"));
        assert_eq!(req.header("X-Thing"), Some("1"));
        assert_eq!(req.headers.len(), 2);
        let out = wrap_gateway_headers(vec![("Content-Type".into(), "a/b".into()), ("X-Out".into(), "y".into())]);
        assert_eq!(out[1].0, "Fn-Http-H-X-Out");
        assert_eq!(out[0].0, "Content-Type");
    }
}
