//! Echoes the body; reports method, call id, container hostname and a per-container call counter
//! in headers; honours `X-Status` (response status) and `X-Header-*` (extra response headers).
//! `X-Request-Url` reports the request URL the function saw.
fn main() {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_string();
    let mut count = 0u64;
    fdk::run(move |req| {
        count += 1;
        let status = req.header("X-Status").and_then(|s| s.parse().ok()).unwrap_or(200);
        let mut resp = fdk::Response::ok(req.body.clone())
            .status(status)
            .header("Content-Type", "text/plain")
            .header("X-Method", &req.method)
            .header("X-Call-Id", &req.call_id)
            .header("X-Hostname", &host)
            .header("X-Count", &count.to_string())
            .header("X-Request-Url", &req.url);
        for (k, v) in &req.headers {
            if let Some(name) = k.strip_prefix("X-Header-").or(k.strip_prefix("x-header-")) {
                resp = resp.header(name, v);
            }
        }
        resp
    });
}
