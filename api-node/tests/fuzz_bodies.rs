//! Property test of the management API: random, truncated and ill-typed JSON bodies (and huge values),
//! with random headers, sent to every create and update endpoint never produce a 5xx or a panic, and a
//! refused request leaves the store exactly as it was (compared through a full dump of the store before
//! and after). The generators and the runner are shared with the other servers' fuzz tests
//! ([`api_node::testing::fuzz`]).

mod common;

use api_node::testing::fuzz::{self, apply, arb_headers, arb_mutation, Verdict};
use api_node::testing::Backend;
use common::{Node, Resp};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

/// IDs of the seeded objects the update endpoints address.
struct Seed {
    app_id: String,
    fn_id: String,
    trigger_id: String,
}

async fn seed(n: &Node) -> Seed {
    let app = n.req("POST", "/v2/apps", Some(json!({"name": "fz"}))).await.json();
    let app_id = app["id"].as_str().unwrap().to_string();
    let f = n.req("POST", "/v2/fns", Some(json!({"name": "f", "app_id": app_id, "image": "i"}))).await.json();
    let fn_id = f["id"].as_str().unwrap().to_string();
    let t = n
        .req(
            "POST",
            "/v2/triggers",
            Some(json!({"name": "t", "app_id": app_id, "fn_id": fn_id, "type": "http", "source": "/s"})),
        )
        .await
        .json();
    let trigger_id = t["id"].as_str().unwrap().to_string();
    let r = n.req("PUT", "/v1/apps/fz/routes/r", Some(json!({"route": {"image": "i"}}))).await;
    assert_eq!(r.status, 200);
    Seed { app_id, fn_id, trigger_id }
}

/// (method, path, a valid body to mutate) for every create and update endpoint.
fn targets(s: &Seed) -> Vec<(&'static str, String, Value)> {
    let fn_body = json!({"name": "g", "app_id": s.app_id, "image": "img", "memory": 256, "timeout": 10, "idle_timeout": 20,
                         "config": {"A": "b"}, "annotations": {"k": "v"}});
    let trigger_body = json!({"name": "u", "app_id": s.app_id, "fn_id": s.fn_id, "type": "http", "source": "/x",
                              "annotations": {"k": [1, 2]}});
    let app_body =
        json!({"name": "other", "config": {"A": "b"}, "annotations": {"k": {"n": 1}}, "syslog_url": "tcp://h:1"});
    let route_body = json!({"path": "/p", "image": "img", "memory": 64, "cpus": "100m", "type": "sync", "format": "http",
                            "timeout": 10, "idle_timeout": 10, "tmpfs_size": 1, "headers": {"X": ["1"]}, "config": {"A": "b"}});
    vec![
        ("POST", "/v2/apps".into(), app_body.clone()),
        ("PUT", format!("/v2/apps/{}", s.app_id), app_body.clone()),
        ("POST", "/v2/fns".into(), fn_body.clone()),
        ("PUT", format!("/v2/fns/{}", s.fn_id), fn_body),
        ("POST", "/v2/triggers".into(), trigger_body.clone()),
        ("PUT", format!("/v2/triggers/{}", s.trigger_id), trigger_body),
        ("POST", "/v1/apps".into(), json!({ "app": app_body })),
        ("PATCH", "/v1/apps/fz".into(), json!({ "app": app_body })),
        ("POST", "/v1/apps/fz/routes".into(), json!({ "route": route_body })),
        ("PUT", "/v1/apps/fz/routes/r".into(), json!({ "route": route_body })),
        ("PATCH", "/v1/apps/fz/routes/r".into(), json!({ "route": route_body })),
    ]
}

/// Sends `method path` with `body` (as JSON) and the random `headers` after the client's own.
async fn send(n: &Node, method: &str, path: &str, body: Vec<u8>, headers: &[(String, Vec<u8>)]) -> Resp {
    let mut rb = n
        .http
        .request(method.parse().unwrap(), format!("{}{}", n.base, path))
        .header("content-type", "application/json");
    for (k, v) in headers {
        // A header the client cannot even send (reqwest refuses it) cannot reach the server either.
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
            rb = rb.header(k, v);
        }
    }
    let r = rb.body(body).send().await.expect("request");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    Resp { status, headers, text: r.text().await.unwrap_or_default() }
}

fn fuzz(backend: Backend, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let node = rt.block_on(common::node(backend));
    let seeded = rt.block_on(seed(&node));
    let targets = targets(&seeded);
    let strategy = (0..targets.len(), arb_mutation(), arb_headers());
    let refused = fuzz::run(
        cases,
        strategy,
        || rt.block_on(fuzz::dump(&node.store)),
        |(t, m, headers)| {
            let (method, path, valid) = &targets[*t];
            let r = rt.block_on(send(&node, method, path, apply(valid, m), headers));
            if r.status >= 500 {
                return Err(format!("{method} {path} -> {} {}", r.status, r.text));
            }
            if r.status < 400 {
                return Ok(Verdict::Accepted);
            }
            let msg = r.message();
            if msg.is_empty() {
                return Err(format!("{method} {path} -> {} without a message: {}", r.status, r.text));
            }
            Ok(Verdict::Refused(format!("{} {msg}", r.status)))
        },
    );
    eprintln!("{backend:?}: {refused} of {cases} requests refused, the rest accepted");
    assert!(refused > cases / 4, "the mutations should mostly be refused ({refused}/{cases})");
    rt.block_on(node.shutdown());
}

#[test]
fn fuzz_bodies_sqlite() {
    fuzz(Backend::Sqlite, 400);
}

#[test]
fn fuzz_bodies_postgres() {
    fuzz(Backend::Postgres, 200);
}

#[test]
fn fuzz_bodies_mysql() {
    fuzz(Backend::Mysql, 150);
}
