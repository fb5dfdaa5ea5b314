//! Fuzz tests of the servers a node runs besides the management API (which `api-node/tests/fuzz_bodies.rs`
//! covers): the invoke paths of a full node running a real function on the real Docker engine, and the
//! hybrid API for runners over HTTP (`/v2/runner`, with the right token) and gRPC. Random bodies, headers,
//! paths, and gRPC message bytes and fields: never a server error (5xx, gRPC `Internal`/`Unknown`), never
//! a panic in the node's log, and a refused request leaves the store as it was. Generators, store dump and
//! runner are shared ([`api_node::testing::fuzz`]).

use std::time::{Duration, Instant};

use api_node::datastore::sql::{DbUrl, SqlStore};
use api_node::datastore::LogStore;
use api_node::testing::fuzz::{self, apply, arb_headers, arb_mutation, arb_segment, Mutation, Verdict};
use api_node::testing::Backend;
use e2e::hybrid::{docker, unique, ApiNode, Client};
use proptest::prelude::*;
use prost::Message;
use proto::hybrid as pb;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use shared::{Call, CallStatus, QueuedCall};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataValue};

const TOKEN: &str = "fuzz-token";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The node's store, opened beside it (the node owns the schema).
async fn store_of(node: &ApiNode) -> SqlStore {
    let url: DbUrl = node.db_url.parse().unwrap();
    SqlStore::connect(&url, 0).await.unwrap()
}

/// Fails when the node's log shows a panic.
fn assert_no_panic(node: &ApiNode) {
    let log = std::fs::read_to_string(&node.node.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "the node panicked:\n{log}");
}

/// Sends a request with `headers` added (those the client cannot send are skipped: they cannot reach a
/// server either); the status and the body.
async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    body: Vec<u8>,
    headers: &[(String, Vec<u8>)],
    own: &[(&str, &str)],
) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = http.request(method, url);
    for (k, v) in own {
        rb = rb.header(*k, *v);
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
            rb = rb.header(k, v);
        }
    }
    let r = rb.body(body).send().await.map_err(|e| format!("no answer: {e:?}"))?;
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    Ok((status, headers, r.text().await.unwrap_or_default()))
}

/// The verdict on an HTTP answer: 5xx is a server error; a refusal must say why in a JSON message.
fn http_verdict(what: &str, status: u16, text: &str) -> Result<Verdict, String> {
    if status >= 500 {
        return Err(format!("{what} -> {status} {text}"));
    }
    if status < 400 {
        return Ok(Verdict::Accepted);
    }
    if what.starts_with("HEAD ") {
        return Ok(Verdict::Refused(status.to_string())); // no body, by definition
    }
    let body: Value = serde_json::from_str(text).map_err(|_| format!("{what} -> {status} not JSON: {text:?}"))?;
    let message = body["message"].as_str().or(body["error"]["message"].as_str()).unwrap_or_default();
    if message.is_empty() {
        return Err(format!("{what} -> {status} without a message: {text}"));
    }
    Ok(Verdict::Refused(format!("{status} {message}")))
}

// ---- invoke paths --------------------------------------------------------------------------------

/// Where an invoke request goes: the seeded fn, route and trigger, or random ones.
#[derive(Debug, Clone)]
enum InvokePath {
    Fn,
    FnWithQuery(String),
    FnRandom(String),
    Route,
    RouteRandom(String),
    AppRandom(String),
    Trigger,
    TriggerRandom(String),
}

fn arb_invoke_path() -> impl Strategy<Value = InvokePath> {
    prop_oneof![
        3 => Just(InvokePath::Fn),
        1 => arb_segment().prop_map(InvokePath::FnWithQuery),
        1 => arb_segment().prop_map(InvokePath::FnRandom),
        2 => Just(InvokePath::Route),
        1 => arb_segment().prop_map(InvokePath::RouteRandom),
        1 => arb_segment().prop_map(InvokePath::AppRandom),
        2 => Just(InvokePath::Trigger),
        1 => arb_segment().prop_map(InvokePath::TriggerRandom),
    ]
}

fn arb_method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"])
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..2000),
        1 => (1usize..200_000).prop_map(|n| vec![b'b'; n]),
    ]
}

/// Waits until call `id` has its final record (the agent stores it after answering).
async fn settled(store: &SqlStore, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = store.get_call(id).await {
            if c.completed_at.is_some() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("call {id} was answered but its record never completed"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn fuzz_invoke_paths() {
    let rt = runtime();
    let node = rt.block_on(ApiNode::start(Backend::Sqlite, true, Some(TOKEN))).unwrap();
    let store = rt.block_on(store_of(&node));
    let echo = rt.block_on(runner_node::testing::function_image(&docker(), "echo")).unwrap();
    let c = Client::new();
    let api = node.url().to_string();
    let app = unique("fz");
    let fn_id = rt.block_on(async {
        let app_id = c.create_app(&api, &app).await.unwrap();
        let fn_id = c.create_fn(&api, &app_id, "echo", &echo, json!({})).await.unwrap();
        c.create_trigger(&api, &app_id, &fn_id, "hook", "/hook").await.unwrap();
        let route = json!({"route": {"image": echo, "format": "http-stream", "memory": 64}});
        c.ok(reqwest::Method::PUT, &format!("{api}/v1/apps/{app}/routes/echo"), Some(route)).await.unwrap();
        fn_id
    });
    let strategy = (arb_method(), arb_invoke_path(), arb_body(), arb_headers());
    let cases = 120;
    let refused = fuzz::run(
        cases,
        strategy,
        || rt.block_on(fuzz::dump(&store)),
        |(method, path, body, headers)| {
            let path = match path {
                InvokePath::Fn => format!("/invoke/{fn_id}"),
                InvokePath::FnWithQuery(q) => format!("/invoke/{fn_id}?{q}"),
                InvokePath::FnRandom(s) => format!("/invoke/{s}"),
                InvokePath::Route => format!("/r/{app}/echo"),
                InvokePath::RouteRandom(s) => format!("/r/{app}/{s}"),
                InvokePath::AppRandom(s) => format!("/r/{s}/echo"),
                InvokePath::Trigger => format!("/t/{app}/hook"),
                InvokePath::TriggerRandom(s) => format!("/t/{app}/{s}"),
            };
            let what = format!("{method} {path}");
            rt.block_on(async {
                let (status, h, text) =
                    send(&c.http, method, &format!("{api}{path}"), body.clone(), headers, &[]).await?;
                let verdict = http_verdict(&what, status, &text)?;
                if verdict == Verdict::Accepted {
                    let id = h.get("fn-call-id").and_then(|v| v.to_str().ok());
                    let id = id.ok_or_else(|| format!("{what} -> {status} without Fn-Call-Id"))?;
                    settled(&store, id).await?;
                }
                Ok(verdict)
            })
        },
    );
    eprintln!("invoke paths: {refused} of {cases} requests refused, the rest ran the function");
    assert!(refused > cases / 10 && refused < cases * 9 / 10, "both refusals and calls ({refused}/{cases})");
    let calls = rt.block_on(fuzz::dump(&store))["calls"].as_array().unwrap().len();
    assert!(calls > 0, "the calls that ran are recorded");
    assert_no_panic(&node);
}

// ---- hybrid API ---------------------------------------------------------------------------------

/// Valid hybrid request bodies about the seeded app and fn, for the fuzzer to spoil.
struct Bodies {
    app_id: String,
    queued: Value,
    running: Value,
    finished: Value,
    delivery: Value,
}

/// An API node (no agent, so nothing runs queued calls behind the fuzzer's back) with an app and a fn.
fn api_node_with_bodies(rt: &tokio::runtime::Runtime) -> (ApiNode, SqlStore, Bodies) {
    let node = rt.block_on(ApiNode::start(Backend::Sqlite, false, Some(TOKEN))).unwrap();
    let store = rt.block_on(store_of(&node));
    let c = Client::new();
    let (app_id, fn_id) = rt.block_on(async {
        let app_id = c.create_app(node.url(), &unique("fz")).await.unwrap();
        let fn_id = c.create_fn(node.url(), &app_id, "f", "img:1", json!({})).await.unwrap();
        (app_id, fn_id)
    });
    let call = |status| Call { fn_id: fn_id.clone(), ..Call::new(shared::id::new_id(), &app_id, status) };
    let queued = QueuedCall {
        call: call(CallStatus::Queued),
        method: "POST".into(),
        url: format!("http://x/invoke/{fn_id}"),
        headers: Default::default(),
        body: "aGk=".into(),
        priority: 0,
    };
    let mut running = call(CallStatus::Running);
    running.started_at = Some(shared::time::DateTime::now());
    let mut finished = running.clone();
    finished.status = CallStatus::Success;
    finished.completed_at = Some(shared::time::DateTime::now());
    let delivery = runner_node::Delivery { call: queued.clone(), token: "forged".into(), attempt: 1 };
    let bodies = Bodies {
        app_id,
        queued: serde_json::to_value(&queued).unwrap(),
        running: serde_json::to_value(&running).unwrap(),
        finished: json!({"call": finished, "log": "line"}),
        delivery: json!({"delivery": delivery, "call": finished}),
    };
    (node, store, bodies)
}

/// A hybrid HTTP request: a body endpoint with a spoiled valid body, or a lookup with random segments.
#[derive(Debug, Clone)]
enum HybridHttp {
    Body(usize, Mutation),
    Get(usize, String, String),
}

fn arb_hybrid_http() -> impl Strategy<Value = HybridHttp> {
    prop_oneof![
        2 => (0..4usize, arb_mutation()).prop_map(|(t, m)| HybridHttp::Body(t, m)),
        1 => (0..6usize, arb_segment(), prop_oneof![(0u64..50).prop_map(|n| n.to_string()), arb_segment()])
            .prop_map(|(t, a, b)| HybridHttp::Get(t, a, b)),
    ]
}

#[test]
fn fuzz_hybrid_http() {
    let rt = runtime();
    let (node, store, b) = api_node_with_bodies(&rt);
    let http = reqwest::Client::new();
    let base = format!("{}/v2/runner", node.url());
    let bodies = [
        ("PUT", "/async", &b.queued),
        ("POST", "/start", &b.running),
        ("POST", "/finish", &b.finished),
        ("POST", "/complete", &b.delivery),
    ];
    let auth = format!("Bearer {TOKEN}");
    let cases = 150;
    let refused = fuzz::run(
        cases,
        (arb_hybrid_http(), arb_headers()),
        || rt.block_on(fuzz::dump(&store)),
        |(req, headers)| {
            let (method, path, body) = match req {
                HybridHttp::Body(t, m) => {
                    let (method, path, valid) = bodies[*t];
                    (method, path.to_string(), apply(valid, m))
                }
                HybridHttp::Get(t, x, y) => {
                    let app = &b.app_id;
                    let path = match t {
                        0 => format!("/apps/{x}"),
                        1 => format!("/appsByName/{x}"),
                        2 => format!("/fns/{x}"),
                        3 => format!("/apps/{x}/route?path={y}"),
                        4 => format!("/apps/{app}/triggerBySource/{x}/{y}"),
                        _ => format!("/async?wait_ms={y}"),
                    };
                    ("GET", path, Vec::new())
                }
            };
            let what = format!("{method} /v2/runner{path}");
            let own = [("authorization", auth.as_str()), ("content-type", "application/json")];
            let (status, _, text) = rt.block_on(send(&http, method, &format!("{base}{path}"), body, headers, &own))?;
            http_verdict(&what, status, &text)
        },
    );
    eprintln!("hybrid HTTP: {refused} of {cases} requests refused, the rest accepted");
    assert!(refused > cases / 4, "the spoiled requests should mostly be refused ({refused}/{cases})");
    assert_no_panic(&node);
}

/// Unary gRPC with messages as raw bytes, so the fuzzer controls every byte on the wire.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

/// How the encoded message reaches the wire.
#[derive(Debug, Clone)]
enum Wire {
    /// As encoded.
    Intact,
    /// Random bytes instead.
    Random(Vec<u8>),
    /// Cut after `n` bytes (modulo its length).
    Truncate(usize),
    /// With random bytes after it (unknown or repeated fields, or garbage).
    Append(Vec<u8>),
}

fn arb_wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        3 => Just(Wire::Intact),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Wire::Random),
        1 => any::<usize>().prop_map(Wire::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..50).prop_map(Wire::Append),
    ]
}

/// A random string field: path-like text or any text.
fn arb_field() -> impl Strategy<Value = String> {
    prop_oneof![arb_segment(), ".{0,40}"]
}

#[test]
fn fuzz_hybrid_grpc() {
    let rt = runtime();
    let (node, store, b) = api_node_with_bodies(&rt);
    let channel = rt.block_on(async {
        let url = format!("http://127.0.0.1:{}", node.grpc_port);
        tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap()
    });
    let cases = 150;
    let strategy = (0..10usize, arb_field(), arb_field(), arb_field(), arb_mutation(), arb_wire(), arb_headers());
    let refused = fuzz::run(
        cases,
        strategy,
        || rt.block_on(fuzz::dump(&store)),
        |(t, x, y, z, m, wire, headers)| {
            let (x, y, z) = (x.clone(), y.clone(), z.clone());
            let (method, message) = match t {
                0 => ("GetAppById", pb::IdRequest { id: x }.encode_to_vec()),
                1 => ("GetAppByName", pb::NameRequest { name: x }.encode_to_vec()),
                2 => ("GetFnById", pb::IdRequest { id: x }.encode_to_vec()),
                3 => ("GetRoute", pb::RouteRequest { app_id: b.app_id.clone(), path: x }.encode_to_vec()),
                4 => ("GetTriggerBySource", pb::TriggerRequest { app_id: x, r#type: y, source: z }.encode_to_vec()),
                5 => ("Enqueue", pb::CallJson { json: apply(&b.queued, m) }.encode_to_vec()),
                6 => ("CallStarted", pb::CallJson { json: apply(&b.running, m) }.encode_to_vec()),
                7 => {
                    let f = pb::CallFinishedRequest { call_json: apply(&b.finished["call"], m), log: x };
                    ("CallFinished", f.encode_to_vec())
                }
                8 => {
                    let (delivery, call) = (apply(&b.delivery["delivery"], m), serde_json::to_vec(&b.delivery["call"]));
                    let c = pb::CompleteRequest { delivery_json: delivery, call_json: call.unwrap() };
                    ("Complete", c.encode_to_vec())
                }
                _ => ("Dequeue", pb::DequeueRequest { wait_ms: (x.len() % 50) as u32 }.encode_to_vec()),
            };
            let bytes = match wire {
                Wire::Intact => message,
                Wire::Random(r) => r.clone(),
                Wire::Truncate(n) => message[..n % message.len().max(1)].to_vec(),
                Wire::Append(tail) => [message, tail.clone()].concat(),
            };
            let mut req = tonic::Request::new(bytes);
            for (k, v) in headers {
                let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes());
                if let (Ok(k), Ok(v)) = (key, MetadataValue::try_from(v.as_slice())) {
                    if !k.as_str().starts_with("grpc-") && !k.as_str().ends_with("-bin") {
                        req.metadata_mut().append(k, v);
                    }
                }
            }
            req.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            let path = PathAndQuery::try_from(format!("/fnrs.hybrid.Hybrid/{method}")).unwrap();
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            let result: Result<tonic::Response<Vec<u8>>, tonic::Status> = rt.block_on(async {
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                grpc.unary(req, path, RawCodec).await
            });
            match result {
                Ok(_) => Ok(Verdict::Accepted),
                // Metadata over HTTP/2's header limit is refused by the transport with HTTP 431, which the
                // client can only report as `Unknown`.
                Err(s) if s.code() == tonic::Code::Unknown && s.message().contains("HTTP status code 431") => {
                    Ok(Verdict::Refused(format!("{method} -> 431")))
                }
                Err(s) => match s.code() {
                    tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss | tonic::Code::Unavailable => {
                        Err(format!("{method} -> {:?} {}", s.code(), s.message()))
                    }
                    code => Ok(Verdict::Refused(format!("{method} -> {code:?} {}", s.message()))),
                },
            }
        },
    );
    eprintln!("hybrid gRPC: {refused} of {cases} requests refused, the rest accepted");
    assert!(refused > cases / 4, "the spoiled requests should mostly be refused ({refused}/{cases})");
    assert_no_panic(&node);
}
