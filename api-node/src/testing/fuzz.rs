//! Fuzzing support shared by the fuzz tests of every server (management API, invoke paths, hybrid HTTP
//! and gRPC): generators of spoiled bodies, random headers and path segments, a full dump of the store,
//! and a runner that sends one random request per case and checks that the server never fails (no 5xx,
//! no `Internal`) and that a refused request leaves the store exactly as it was.
//!
//! The servers are stateful across cases, so the runner neither shrinks (a replay would meet a changed
//! store and blame the wrong request) nor persists failures: it reports the first failing request as is.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

use crate::datastore::{AppFilter, CallFilter, Datastore, FnFilter, RouteFilter, TriggerFilter};

/// Everything a server can change in the store (apps with their fns, triggers and routes; every call
/// with its log), in a comparable form.
pub async fn dump(s: &dyn Datastore) -> Value {
    let mut apps = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_apps(&AppFilter { name: None, cursor, per_page: 100 }).await.expect("list apps");
        for app in page.items {
            let id = app.id.clone();
            let fns = s.list_fns(&FnFilter { app_id: id.clone(), per_page: 100, ..Default::default() }).await;
            let trs = s.list_triggers(&TriggerFilter { app_id: id.clone(), per_page: 100, ..Default::default() }).await;
            let routes = s.list_routes(&RouteFilter { app_id: id.clone(), per_page: 100, ..Default::default() }).await;
            let (fns, trs) = (fns.expect("list fns").items, trs.expect("list triggers").items);
            let routes = routes.expect("list routes").items;
            apps.push(json!({ "app": app, "fns": fns, "triggers": trs, "routes": routes }));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut calls = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_calls(&CallFilter { cursor, per_page: 100, ..Default::default() }).await.expect("list calls");
        for call in page.items {
            let log = s.get_log(&call.id).await.ok().map(|l| l.log);
            calls.push(json!({ "call": call, "log": log }));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    json!({ "apps": apps, "calls": calls })
}

/// Arbitrary JSON values, including wrong types and huge ones.
pub fn arb_value() -> impl Strategy<Value = Value> {
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

/// How to spoil a valid JSON body.
#[derive(Debug, Clone)]
pub enum Mutation {
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

/// Any [`Mutation`].
pub fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Mutation::Bytes),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), arb_value()).prop_map(|(i, v)| Mutation::SetField(i, v)),
        (".{0,10}", arb_value()).prop_map(|(k, v)| Mutation::AddField(k, v)),
        arb_value().prop_map(Mutation::Replace),
        any::<usize>().prop_map(Mutation::HugeNumber),
    ]
}

/// The object whose fields are mutated: the body itself, or its only member when that is an object
/// (v1's `app`/`route` wrappers, a `{"call": …}` envelope).
fn fields_of(body: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = body.as_object_mut()?;
    if obj.len() == 1 && obj.values().next().is_some_and(Value::is_object) {
        obj.values_mut().next().and_then(Value::as_object_mut)
    } else {
        Some(obj)
    }
}

/// The bytes of `body` spoiled by `m`. Field mutations of a body without fields replace it whole.
pub fn apply(body: &Value, m: &Mutation) -> Vec<u8> {
    let mut body = body.clone();
    match m {
        Mutation::Bytes(b) => return b.clone(),
        Mutation::Truncate(n) => {
            let text = serde_json::to_vec(&body).expect("JSON");
            return text[..n % text.len()].to_vec();
        }
        Mutation::SetField(i, v) => match fields_of(&mut body).filter(|f| !f.is_empty()) {
            Some(fields) => {
                let key = fields.keys().nth(i % fields.len()).expect("a field").clone();
                fields.insert(key, v.clone());
            }
            None => body = v.clone(),
        },
        Mutation::AddField(k, v) => match fields_of(&mut body) {
            Some(fields) => {
                fields.insert(k.clone(), v.clone());
            }
            None => body = v.clone(),
        },
        Mutation::Replace(v) => body = v.clone(),
        Mutation::HugeNumber(i) => {
            let Some(fields) = fields_of(&mut body).filter(|f| !f.is_empty()) else {
                return "9".repeat(400).into_bytes();
            };
            let key = fields.keys().nth(i % fields.len()).expect("a field").clone();
            let text = serde_json::to_string(&body).expect("JSON");
            // Splice a literal no integer or float type can hold.
            let marker = format!("\"{key}\":");
            let at = text.find(&marker).expect("the field") + marker.len();
            let end = text[at..].find([',', '}']).map(|e| at + e).unwrap_or(text.len());
            return format!("{}{}{}", &text[..at], "9".repeat(400), &text[end..]).into_bytes();
        }
    }
    serde_json::to_vec(&body).expect("JSON")
}

/// Header names a server may read (with values that are wrong for them), and random ones. Never
/// `Authorization` (the tests present their own), nor the framing headers the client sets.
pub fn arb_header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Content-Type",
            "Accept",
            "Accept-Encoding",
            "Content-Encoding",
            "Fn-Invoke-Type",
            "Fn-Call-Id",
            "Fn-Deadline",
            "Fn-Intent",
            "Fn-Http-Method",
            "Fn-Http-Request-Url",
            "Fn-Http-H-X",
            "Fn-Fdk-Version",
            "Cookie",
            "Expect",
            "Range",
            "If-Match",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "Origin",
            "Forwarded",
            "User-Agent",
        ])
        .prop_map(String::from),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}",
    ]
}

/// Header values: printable text, the bytes HTTP allows beyond ASCII, values meaningful to some
/// header, and long ones.
pub fn arb_header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[ -~]{0,60}".prop_map(String::into_bytes),
        prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..60),
        prop::sample::select(vec![
            "application/json",
            "application/json; charset=utf-16",
            "multipart/form-data; boundary=x",
            "gzip",
            "br",
            "sync",
            "",
            "*/*",
            "100-continue",
            "bytes=5-1",
            "-1",
            "99999999999999999999999",
            "2030-01-01T00:00:00.000Z",
            "not a date",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        (1usize..6000).prop_map(|n| vec![b'v'; n]),
    ]
}

/// Zero to eight random headers. Values that would queue the call (`detached`) are left out: a queued
/// call runs later and would change the store between cases.
pub fn arb_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec((arb_header_name(), arb_header_value()), 0..8).prop_map(|hs| {
        hs.into_iter().filter(|(_, v)| !v.to_ascii_lowercase().windows(8).any(|w| w == b"detached")).collect()
    })
}

/// A path segment: printable text, percent-encoded bytes, dots, or long.
pub fn arb_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{0,30}",
        prop::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| b.iter().map(|c| format!("%{c:02X}")).collect::<String>()),
        prop::sample::select(vec![".", "..", "%2e%2e", "%2F", "%00", "a%2Fb", "~", "@", ":"]).prop_map(String::from),
        (1usize..3000).prop_map(|n| "s".repeat(n)),
    ]
}

/// What the server did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It did what was asked (the store may have changed).
    Accepted,
    /// It refused the request (4xx, or a gRPC error other than a server error) with this message.
    Refused(String),
}

/// Sends `cases` random requests through `send` (after `dump` took a baseline of the store) and checks
/// each: `send` returns `Err` for a server error (5xx, `Internal`, a dropped connection, …), failing the
/// test with its text; after a refused request the store must equal the baseline, after an accepted one
/// it becomes the new baseline. Returns how many requests were refused.
pub fn run<S: Strategy>(
    cases: u32,
    strategy: S,
    dump: impl Fn() -> Value,
    send: impl Fn(&S::Value) -> Result<Verdict, String>,
) -> u32
where
    S::Value: std::fmt::Debug,
{
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 0, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let baseline = std::cell::RefCell::new(dump());
    let refused = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |input| {
        let verdict = send(&input).map_err(|e| TestCaseError::fail(format!("{input:?}\n  -> server error: {e}")))?;
        let after = dump();
        match verdict {
            Verdict::Accepted => *baseline.borrow_mut() = after,
            Verdict::Refused(message) => {
                refused.set(refused.get() + 1);
                if after != *baseline.borrow() {
                    let before = baseline.replace(after.clone());
                    return Err(TestCaseError::fail(format!(
                        "{input:?}\n  -> refused ({message}) but changed the store:\nbefore {before}\nafter  {after}"
                    )));
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    refused.get()
}
