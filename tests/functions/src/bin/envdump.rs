//! Answers a JSON object: the environment, the uid/gid, and whether `/` and `/tmp` are writable.
fn main() {
    fdk::run(move |req| {
        let env: serde_json::Map<String, serde_json::Value> = std::env::vars().map(|(k, v)| (k, v.into())).collect();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("")
                .to_string()
        };
        let root_writable = std::fs::write("/probe", b"x").is_ok();
        let tmp_writable = std::fs::write("/tmp/probe", b"x").is_ok();
        let headers: serde_json::Map<String, serde_json::Value> =
            req.headers.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        let body = serde_json::json!({
            "env": env, "uid": field("Uid:"), "gid": field("Gid:"), "cap_eff": field("CapEff:"),
            "no_new_privs": field("NoNewPrivs:"), "root_writable": root_writable,
            "tmp_writable": tmp_writable, "headers": headers, "call_id": req.call_id,
            "deadline": req.deadline, "method": req.method, "url": req.url,
        });
        fdk::Response::ok(body.to_string()).header("Content-Type", "application/json")
    });
}
