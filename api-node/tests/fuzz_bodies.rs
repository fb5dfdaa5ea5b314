//! Property test: random, truncated and ill-typed JSON bodies (and huge values) sent to every create and
//! update endpoint never produce a 5xx or a panic, and a rejected request leaves the store exactly as it
//! was (compared through a full dump of apps, routes, fns and triggers before and after).

mod common;

use api_node::datastore::{
    AppFilter, AppStore, FnFilter, FnStore, RouteFilter, RouteStore, TriggerFilter, TriggerStore,
};
use api_node::testing::Backend;
use common::Node;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// Everything the management API can change, in a comparable form.
async fn dump(n: &Node) -> Value {
    let s = &n.store;
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_apps(&AppFilter { name: None, cursor, per_page: 100 }).await.unwrap();
        for app in page.items {
            let id = app.id.clone();
            let fns = s.list_fns(&FnFilter { app_id: id.clone(), per_page: 100, ..Default::default() }).await.unwrap();
            let trs = s
                .list_triggers(&TriggerFilter { app_id: id.clone(), per_page: 100, ..Default::default() })
                .await
                .unwrap();
            let routes =
                s.list_routes(&RouteFilter { app_id: id.clone(), per_page: 100, ..Default::default() }).await.unwrap();
            out.push(json!({ "app": app, "fns": fns.items, "triggers": trs.items, "routes": routes.items }));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Value::Array(out)
}

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

/// Arbitrary JSON values, including wrong types and huge ones.
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        (1usize..200_000).prop_map(|n| Value::String("x".repeat(n))),
        Just(json!("")),
        Just(json!("100m")),
        Just(json!("/")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// How to spoil a valid body.
#[derive(Debug, Clone)]
enum Mutation {
    /// Random bytes instead of JSON.
    Bytes(Vec<u8>),
    /// The valid body cut after `n` bytes (modulo its length).
    Truncate(usize),
    /// One field (picked by index) set to an arbitrary value, at the top level or inside the wrapper.
    SetField(usize, Value),
    /// An extra field.
    AddField(String, Value),
    /// The whole body replaced by an arbitrary value.
    Replace(Value),
    /// A number too big for any integer type in one field.
    HugeNumber(usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Mutation::Bytes),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), arb_value()).prop_map(|(i, v)| Mutation::SetField(i, v)),
        (".{0,10}", arb_value()).prop_map(|(k, v)| Mutation::AddField(k, v)),
        arb_value().prop_map(Mutation::Replace),
        any::<usize>().prop_map(Mutation::HugeNumber),
    ]
}

/// The object whose fields are mutated: the body itself (v2) or its `app`/`route` wrapper (v1).
fn fields_of(body: &mut Value) -> &mut Map<String, Value> {
    let obj = body.as_object_mut().unwrap();
    if obj.len() == 1 && obj.values().next().unwrap().is_object() {
        obj.values_mut().next().unwrap().as_object_mut().unwrap()
    } else {
        obj
    }
}

fn apply(body: &Value, m: &Mutation) -> Vec<u8> {
    let mut body = body.clone();
    match m {
        Mutation::Bytes(b) => return b.clone(),
        Mutation::Truncate(n) => {
            let text = serde_json::to_vec(&body).unwrap();
            return text[..n % text.len()].to_vec();
        }
        Mutation::SetField(i, v) => {
            let fields = fields_of(&mut body);
            let key = fields.keys().nth(i % fields.len()).unwrap().clone();
            fields.insert(key, v.clone());
        }
        Mutation::AddField(k, v) => {
            fields_of(&mut body).insert(k.clone(), v.clone());
        }
        Mutation::Replace(v) => body = v.clone(),
        Mutation::HugeNumber(i) => {
            let fields = fields_of(&mut body);
            let key = fields.keys().nth(i % fields.len()).unwrap().clone();
            let text = serde_json::to_string(&body).unwrap();
            // Splice a literal no integer or float type can hold.
            let marker = format!("\"{key}\":");
            let at = text.find(&marker).unwrap() + marker.len();
            let end =
                serde_json::to_string(&body).unwrap()[at..].find([',', '}']).map(|e| at + e).unwrap_or(text.len());
            return format!("{}{}{}", &text[..at], "9".repeat(400), &text[end..]).into_bytes();
        }
    }
    serde_json::to_vec(&body).unwrap()
}

fn fuzz(backend: Backend, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let node = rt.block_on(common::node(backend));
    let seeded = rt.block_on(seed(&node));
    let targets = targets(&seeded);
    let baseline = std::cell::RefCell::new(rt.block_on(dump(&node)));
    // The server is stateful across cases, so shrinking would replay against a changed store and blame
    // the wrong request: report the first failing request as is.
    let mut runner =
        TestRunner::new(Config { cases, failure_persistence: None, max_shrink_iters: 0, ..Config::default() });
    let strategy = (0..targets.len(), arb_mutation());
    let rejected = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(t, m)| {
            let (method, path, valid) = &targets[t];
            let body = apply(valid, &m);
            let r = rt.block_on(node.raw(method, path, Some(body), &[]));
            prop_assert!(r.status < 500, "{method} {path} {m:?} -> {} {}", r.status, r.text);
            let after = rt.block_on(dump(&node));
            if r.status >= 400 {
                rejected.set(rejected.get() + 1);
                let msg = r.message();
                prop_assert!(!msg.is_empty(), "error without a message: {}", r.text);
                if after != *baseline.borrow() {
                    let before = baseline.replace(after.clone());
                    return Err(TestCaseError::fail(format!(
                        "{method} {path} with {m:?} rejected ({} {}) but changed the store:\nbefore {before}\nafter  {after}",
                        r.status, r.text
                    )));
                }
            } else {
                *baseline.borrow_mut() = after;
            }
            Ok(())
        })
        .unwrap();
    let rejected = rejected.get();
    eprintln!("{backend:?}: {rejected} of {cases} requests rejected, the rest accepted");
    assert!(rejected > cases / 4, "the mutations should mostly be rejected ({rejected}/{cases})");
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
