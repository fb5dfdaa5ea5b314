//! The invoke endpoints (`/r/`, `/invoke/`, `/t/`) served by actix on a random port, over the
//! real Docker engine and an in-memory `DataAccess` (the storage seam; full-mode tests with the
//! real database live in api-node).
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p test-functions
//! cargo test -p runner-node --features testing --test invoke
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use base64::Engine;
use runner_node::http::{configure, DataAccessRecorder, InvokeState};
use runner_node::memory_data::MemoryDataAccess;
use runner_node::{Agent, AgentConfig, Format};
use serde_json::{json, Value};
use shared::{CallStatus, Func, Route, Trigger};
use tokio::sync::OnceCell;

/// Label key on every container of this suite; each test has its own instance id (value).
const LABEL: &str = "fn-invoke-test";

const ALL_FORMATS: [Format; 4] = [Format::HttpStream, Format::Http, Format::Json, Format::Default];

async fn images() {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
            let d = bollard::Docker::connect_with_local_defaults().unwrap();
            for name in ["echo", "envdump", "sleep", "crash", "oom", "huge"] {
                runner_node::testing::function_image(&d, name).await.unwrap();
            }
        })
        .await;
}

/// A served node: the endpoints on `base`, the data behind them and the agent.
struct Node {
    base: String,
    data: Arc<MemoryDataAccess>,
    agent: Arc<Agent>,
    app_id: String,
    client: reqwest::Client,
    server: actix_web::dev::ServerHandle,
}

fn test_config(test: &str) -> AgentConfig {
    AgentConfig {
        container_label_tag: LABEL.to_string(),
        instance_id: format!("{test}-{}", ulid::Ulid::new().to_string().to_lowercase()),
        iofs_path: std::env::temp_dir().join("fn-iofs-tests"),
        ..AgentConfig::default()
    }
}

async fn serve(cfg: AgentConfig) -> Node {
    images().await;
    let data = Arc::new(MemoryDataAccess::default());
    let agent = Arc::new(Agent::new(cfg, Arc::new(DataAccessRecorder(data.clone()))).await.unwrap());
    let app = shared::App::new(
        serde_json::from_value(json!({
            "name": "myapp",
            "config": {"APP_ONLY": "app", "SHARED": "from app"}
        }))
        .unwrap(),
    )
    .unwrap();
    let app_id = app.id.clone();
    data.apps.lock().unwrap().push(app);
    let state = InvokeState::new(agent.clone(), data.clone());
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().configure(move |cfg| configure(cfg, state))
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Node {
        base: format!("http://127.0.0.1:{port}"),
        data,
        agent,
        app_id,
        client: reqwest::Client::new(),
        server: handle,
    }
}

impl Node {
    /// Adds a fn running test function `func` in `format`; `extra` is merged into its JSON.
    fn add_fn(&self, name: &str, func: &str, format: Format, extra: Value) -> Func {
        let mut input = json!({
            "name": name,
            "app_id": self.app_id,
            "image": format!("fn-test/{func}:latest"),
            "format": format.as_str(),
            "config": {"SHARED": "from fn", "FN_ONLY": "fn"},
        });
        merge(&mut input, extra);
        let f = Func::new(serde_json::from_value(input).unwrap()).unwrap();
        self.data.fns.lock().unwrap().push(f.clone());
        f
    }

    /// Adds a route at `path` running test function `func` in `format`.
    fn add_route(&self, path: &str, func: &str, format: Format, extra: Value) -> Route {
        let mut input = json!({
            "path": path,
            "image": format!("fn-test/{func}:latest"),
            "format": format.as_str(),
            "headers": {"X-Route": ["r1"]},
            "config": {"SHARED": "from route", "ROUTE_ONLY": "route"},
        });
        merge(&mut input, extra);
        let r = Route::new(&self.app_id, serde_json::from_value(input).unwrap()).unwrap();
        self.data.routes.lock().unwrap().push(r.clone());
        r
    }

    fn add_trigger(&self, source: &str, f: &Func) {
        let t = Trigger::new(
            serde_json::from_value(json!({
                "name": "hook",
                "app_id": self.app_id,
                "fn_id": f.id,
                "type": "http",
                "source": source,
            }))
            .unwrap(),
        )
        .unwrap();
        self.data.triggers.lock().unwrap().push(t);
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).timeout(Duration::from_secs(60))
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        Answer::from(self.req(reqwest::Method::POST, path).body(body).send().await.unwrap()).await
    }

    /// Stops serving and the agent (which flushes call records); every container is gone after.
    async fn finish(self) {
        self.server.stop(true).await;
        self.agent.shutdown().await;
    }
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
}

/// A response, read whole.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    async fn from(r: reqwest::Response) -> Answer {
        Answer { status: r.status().as_u16(), headers: r.headers().clone(), body: r.bytes().await.unwrap().to_vec() }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    /// The call id header is on every answer and looks like one of our ids.
    fn call_id(&self) -> String {
        let id = self.header("fn-call-id");
        assert!(shared::id::is_id(id), "Fn-Call-Id {id:?} on a {} answer", self.status);
        id.to_string()
    }
}

fn slug(f: Format) -> &'static str {
    match f {
        Format::HttpStream => "stream",
        Format::Http => "http",
        Format::Json => "json",
        Format::Default => "default",
        Format::CloudEvent => "ce",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_status_headers_config_and_env_through_r_and_invoke_in_every_format() {
    let node = serve(test_config("echo")).await;
    for format in ALL_FORMATS {
        let s = slug(format);
        let echo_fn = node.add_fn(&format!("echo-{s}"), "echo", format, json!({}));
        let env_fn = node.add_fn(&format!("env-{s}"), "envdump", format, json!({}));
        node.add_route(&format!("/echo/{s}"), "echo", format, json!({}));
        node.add_route(&format!("/env/{s}"), "envdump", format, json!({"memory": 64}));

        for (path, v1) in [(format!("/invoke/{}", echo_fn.id), false), (format!("/r/myapp/echo/{s}/"), true)] {
            let r = Answer::from(
                node.req(reqwest::Method::POST, &path)
                    .header("X-Status", "201")
                    .header("X-Header-X-Custom", "yes")
                    .body("hello")
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            let id = r.call_id();
            assert_eq!(r.text(), "hello", "{format:?} {path}");
            match format {
                Format::Default => assert_eq!(r.status, 200),
                // http-stream's contract is 200 with the function's status in Fn-Http-Status;
                // only triggers map it.
                Format::HttpStream => {
                    assert_eq!(r.status, 200);
                    assert_eq!(r.header("fn-http-status"), "201");
                }
                _ => assert_eq!(r.status, 201, "{format:?} {path}"),
            }
            if format != Format::Default {
                assert_eq!(r.header("x-custom"), "yes", "{format:?} {path}");
                assert_eq!(r.header("x-call-id"), id, "the function saw the same call id");
                assert_eq!(r.header("content-type"), "text/plain");
            } else if v1 {
                assert_eq!(r.header("content-type"), "text/plain; charset=utf-8", "detected");
            }
            if v1 {
                assert_eq!(r.header("x-route"), "r1", "route headers are added");
            }
        }

        for (path, fn_id, route_path) in [
            (format!("/invoke/{}", env_fn.id), env_fn.id.as_str(), ""),
            (format!("/r/myapp/env/{s}"), "", &*format!("/env/{s}")),
        ] {
            let r = node.post(&path, "").await;
            assert_eq!(r.status, 200, "{format:?} {path}: {}", r.text());
            let v = r.json();
            let env = &v["env"];
            assert_eq!(v["call_id"], r.call_id().as_str());
            assert_eq!(env["APP_ONLY"], "app");
            assert_eq!(env["FN_FORMAT"], format.as_str());
            assert_eq!(env["FN_APP_NAME"], "myapp");
            assert_eq!(env["FN_APP_ID"], node.app_id.as_str());
            assert_eq!(env["FN_FN_ID"], fn_id);
            assert_eq!(env["FN_PATH"], route_path);
            if route_path.is_empty() {
                assert_eq!(env["SHARED"], "from fn", "fn config wins over app config");
                assert_eq!(env["FN_ONLY"], "fn");
                assert_eq!(env["FN_MEMORY"], "128");
            } else {
                assert_eq!(env["SHARED"], "from route");
                assert_eq!(env["ROUTE_ONLY"], "route");
                assert_eq!(env["FN_MEMORY"], "64");
            }
        }
    }
    let (data, app_id) = (node.data.clone(), node.app_id.clone());
    node.finish().await;
    let records = data.records.lock().unwrap();
    assert!(
        records.iter().any(|(e, c, _)| e == "finished" && c.status == CallStatus::Success && c.app_id == app_id),
        "calls are recorded through DataAccess"
    );
    assert!(records.iter().any(|(e, c, _)| e == "started" && c.path == "/env/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_wrap_requests_and_unwrap_responses() {
    let node = serve(test_config("trigger")).await;
    let f = node.add_fn("hook", "echo", Format::HttpStream, json!({}));
    node.add_trigger("/hook/deep", &f);
    let r = Answer::from(
        node.req(reqwest::Method::PUT, "/t/myapp/hook/deep?q=1")
            .header("X-Status", "202")
            .header("X-Header-X-Out", "yes")
            .header("Content-Type", "text/plain")
            .body("ping")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.call_id();
    assert_eq!(r.status, 202, "Fn-Http-Status sets the status: {}", r.text());
    assert_eq!(r.text(), "ping");
    // X-Header-X-Out reached the function as Fn-Http-H-X-Header-X-Out (the FDK unwraps it), and
    // the function's X-Out came back as Fn-Http-H-X-Out, unwrapped here.
    assert_eq!(r.header("x-out"), "yes");
    assert_eq!(r.header("x-method"), "PUT", "Fn-Http-Method");
    assert_eq!(r.header("x-request-url"), format!("{}/t/myapp/hook/deep?q=1", node.base), "Fn-Http-Request-Url");
    assert_eq!(r.header("content-type"), "text/plain");
    assert!(r.headers.get("fn-http-status").is_none());
    assert!(r.headers.get("fn-http-h-x-out").is_none());

    let r = node.post("/t/myapp/hook/nope", "").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Trigger not found"})));
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_things_answer_404_in_each_shape() {
    let node = serve(test_config("notfound")).await;
    let f = node.add_fn("orphan", "echo", Format::HttpStream, json!({}));
    node.data.apps.lock().unwrap().clear();
    for (path, status, body) in [
        ("/r/nope/x", 404, json!({"error": {"message": "App not found"}})),
        ("/invoke/01NOPE", 404, json!({"message": "Fn not found"})),
        ("/t/nope/x", 404, json!({"message": "App not found"})),
        (&*format!("/invoke/{}", f.id), 404, json!({"message": "App not found"})),
    ] {
        let r = node.post(path, "x").await;
        assert_eq!((r.status, r.json()), (status, body), "{path}");
        r.call_id();
    }
    let app = shared::App::new(serde_json::from_value(json!({"name": "myapp"})).unwrap()).unwrap();
    node.data.apps.lock().unwrap().push(app);
    let r = node.post("/r/myapp/missing", "").await;
    assert_eq!((r.status, r.json()), (404, json!({"error": {"message": "Route not found"}})));
    let r = Answer::from(node.req(reqwest::Method::GET, "/invoke/x").send().await.unwrap()).await;
    assert_eq!((r.status, r.json()), (405, json!({"message": "Method not allowed: GET /invoke/x"})));
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_size_limits() {
    let mut cfg = test_config("limits");
    cfg.max_request_size = 1000;
    cfg.max_response_size = 1 << 20;
    let node = serve(cfg).await;
    let echo = node.add_fn("echo", "echo", Format::HttpStream, json!({}));
    let huge = node.add_fn("huge", "huge", Format::HttpStream, json!({}));
    node.add_route("/echo", "echo", Format::Default, json!({}));

    let r = node.post(&format!("/invoke/{}", echo.id), "x".repeat(1001)).await;
    assert_eq!((r.status, r.json()), (413, json!({"message": "Request content too large"})));
    r.call_id();
    let r = node.post("/r/myapp/echo", "x".repeat(1001)).await;
    assert_eq!((r.status, r.json()), (413, json!({"error": {"message": "Request content too large"}})));
    // Without Content-Length (chunked), the limit holds while reading.
    let chunks =
        futures_util::stream::iter((0..11).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 100]))));
    let r = Answer::from(
        node.req(reqwest::Method::POST, &format!("/invoke/{}", echo.id))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 413);
    let r = node.post(&format!("/invoke/{}", echo.id), "x".repeat(1000)).await;
    assert_eq!((r.status, r.body.len()), (200, 1000), "exactly the limit is fine");

    let r = node.post(&format!("/invoke/{}", huge.id), (2 << 20).to_string()).await;
    assert_eq!((r.status, r.json()), (502, json!({"message": "function response too large"})));
    r.call_id();
    let r = node.post(&format!("/invoke/{}", huge.id), "1000").await;
    assert_eq!((r.status, r.body.len()), (200, 1000));
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_of_6_mib_hold_in_every_format() {
    // No overrides: the defaults are the limits.
    let node = serve(test_config("deflimits")).await;
    let limit = runner_node::config::DEFAULT_MAX_BODY_SIZE as usize;
    assert_eq!(limit, 6 << 20);
    for format in ALL_FORMATS {
        let echo = node.add_fn(&format!("echo-{}", slug(format)), "echo", format, json!({}));
        let huge = node.add_fn(&format!("huge-{}", slug(format)), "huge", format, json!({}));
        let path = format!("/invoke/{}", echo.id);

        let r = node.post(&path, vec![b'x'; limit + 1]).await;
        assert_eq!((r.status, r.json()), (413, json!({"message": "Request content too large"})), "{format:?}");
        // Without Content-Length (chunked), the limit holds while reading.
        let chunks = futures_util::stream::iter(
            (0..=limit / 65536).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 65536]))),
        );
        let r = Answer::from(
            node.req(reqwest::Method::POST, &path).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap(),
        )
        .await;
        assert_eq!(r.status, 413, "{format:?}");
        let r = node.post(&path, vec![b'x'; limit]).await;
        assert_eq!((r.status, r.body.len()), (200, limit), "{format:?}: exactly the limit is fine");
        if format != Format::Default {
            assert_eq!(r.header("x-count"), "1", "{format:?}: the function never saw the refused bodies");
        }

        let r = node.post(&format!("/invoke/{}", huge.id), (limit + 1).to_string()).await;
        assert_eq!((r.status, r.json()), (502, json!({"message": "function response too large"})), "{format:?}");
        let r = node.post(&format!("/invoke/{}", huge.id), limit.to_string()).await;
        assert_eq!((r.status, r.body.len()), (200, limit), "{format:?}");
    }
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_oom_and_timeouts_follow_the_error_table() {
    let node = serve(test_config("errors")).await;
    let crash = node.add_fn("crash", "crash", Format::HttpStream, json!({}));
    let oom = node.add_fn("oom", "oom", Format::HttpStream, json!({"memory": 32}));
    let slow = node.add_fn("slow", "sleep", Format::HttpStream, json!({"timeout": 1}));
    node.add_route("/crash", "crash", Format::Default, json!({}));
    node.add_route("/slow", "sleep", Format::Default, json!({"timeout": 1}));

    let r = node.post(&format!("/invoke/{}", crash.id), "3").await;
    assert_eq!((r.status, r.json()), (502, json!({"message": "container exit code 3"})));
    r.call_id();
    let r = node.post("/r/myapp/crash", "3").await;
    assert_eq!((r.status, r.json()), (502, json!({"error": {"message": "container exit code 3"}})));

    let r = node.post(&format!("/invoke/{}", oom.id), "").await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json()["message"],
        "container out of memory, you may want to raise route.memory for this route (default: 128MB)"
    );

    let r = node.post(&format!("/invoke/{}", slow.id), "10000").await;
    assert_eq!((r.status, r.json()), (504, json!({"message": "Timed out"})));
    r.call_id();
    let r = node.post("/r/myapp/slow", "10000").await;
    assert_eq!((r.status, r.json()), (504, json!({"error": {"message": "Timed out"}})));

    // A format the agent cannot run.
    node.add_route("/ce", "echo", Format::HttpStream, json!({}));
    let r = Answer::from(
        node.req(reqwest::Method::POST, "/r/myapp/ce")
            .header("Content-Type", "application/cloudevents+json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_routes_and_detached_invokes_answer_202_after_enqueue_and_503_without_queue() {
    let node = serve(test_config("async")).await;
    let f = node.add_fn("later", "echo", Format::HttpStream, json!({}));
    node.add_route("/later", "echo", Format::HttpStream, json!({"type": "async"}));

    let r = Answer::from(
        node.req(reqwest::Method::PUT, "/r/myapp/later?x=1")
            .header("X-Thing", "a")
            .body("payload")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 202);
    let id = r.call_id();
    assert_eq!(r.json(), json!({"call_id": id}));
    assert_eq!(r.header("x-route"), "r1");
    let r = Answer::from(
        node.req(reqwest::Method::POST, &format!("/invoke/{}", f.id))
            .header("Fn-Invoke-Type", "detached")
            .body("later please")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 202);
    let detached_id = r.call_id();
    assert_eq!(r.json(), json!({"call_id": detached_id}));

    {
        let queued = node.data.queued.lock().unwrap();
        assert_eq!(queued.len(), 2);
        let (a, d) = (&queued[0], &queued[1]);
        assert_eq!((a.call.id.as_str(), a.call.status), (id.as_str(), CallStatus::Queued));
        assert_eq!((a.call.path.as_str(), a.call.fn_id.as_str()), ("/later", ""));
        assert_eq!(a.method, "PUT");
        assert_eq!(a.url, format!("{}/r/myapp/later?x=1", node.base));
        assert_eq!(a.headers["X-Thing"], vec!["a".to_string()]);
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(b64.decode(&a.body).unwrap(), b"payload");
        assert_eq!((d.call.id.as_str(), d.call.fn_id.as_str()), (detached_id.as_str(), f.id.as_str()));
        assert_eq!(b64.decode(&d.body).unwrap(), b"later please");
    }

    node.data.set_fail_enqueue(true);
    let r = node.post("/r/myapp/later", "x").await;
    assert_eq!((r.status, r.json()), (503, json!({"error": {"message": "queue unavailable"}})));
    let r = Answer::from(
        node.req(reqwest::Method::POST, &format!("/invoke/{}", f.id))
            .header("Fn-Invoke-Type", "detached")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.json()), (503, json!({"message": "queue unavailable"})));
    assert_eq!(node.data.queued.lock().unwrap().len(), 2);
    assert!(node.data.records.lock().unwrap().is_empty(), "nothing ran");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_call_records_do_not_delay_answers() {
    let node = serve(test_config("slowrec")).await;
    let f = node.add_fn("echo", "echo", Format::HttpStream, json!({}));
    let path = format!("/invoke/{}", f.id);
    assert_eq!(node.post(&path, "warm").await.status, 200);
    node.data.record_delay_ms.store(1000, std::sync::atomic::Ordering::SeqCst);
    let start = std::time::Instant::now();
    for i in 0..2 {
        let r = node.post(&path, format!("call {i}")).await;
        assert_eq!((r.status, r.text()), (200, format!("call {i}")));
    }
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "two calls whose records each take 1 s to store answered in {:?}",
        start.elapsed()
    );
    let data = node.data.clone();
    node.finish().await;
    let finished = data.records.lock().unwrap().iter().filter(|(e, _, _)| e == "finished").count();
    assert_eq!(finished, 3, "every record is written by shutdown");
}

/// A client cannot pass the platform's own headers to a function: its `Fn-Call-Id`, `Fn-Deadline`,
/// `Fn-Intent`, ... are dropped, and the function sees the platform's values only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_platform_headers_never_reach_the_function() {
    let node = serve(test_config("forged")).await;
    for format in ALL_FORMATS {
        let env_fn = node.add_fn(&format!("env-{}", slug(format)), "envdump", format, json!({}));
        let r = Answer::from(
            node.req(reqwest::Method::POST, &format!("/invoke/{}", env_fn.id))
                .header("Fn-Call-Id", "forged-call-id")
                .header("Fn-Deadline", "2000-01-01T00:00:00.000Z")
                .header("Fn-Intent", "httprequest")
                .header("Fn-Http-Method", "forged-method")
                .header("Fn-Http-Request-Url", "http://forged/")
                .header("Fn_call_id", "forged-call-id")
                .header("Fn_deadline", "2000-01-01T00:00:00.000Z")
                .header("X-Kept", "yes")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{format:?}: {}", r.text());
        let v = r.json();
        assert_eq!(v["call_id"], r.call_id().as_str(), "{format:?}");
        assert_ne!(v["deadline"], "2000-01-01T00:00:00.000Z", "{format:?}");
        let seen = v["headers"].to_string() + &v["env"].to_string();
        for forged in ["forged", "2000-01-01", "httprequest"] {
            assert!(!seen.contains(forged), "{format:?} saw {forged:?}: {seen}");
        }
        assert!(seen.contains("X-Kept") || seen.contains("x-kept"), "{format:?}: other headers pass: {seen}");
    }
    node.finish().await;
}

/// A function status outside 200-599 is not passed on: the caller gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_statuses_outside_200_to_599_answer_502() {
    let node = serve(test_config("badstatus")).await;
    for format in [Format::HttpStream, Format::Http, Format::Json] {
        let echo_fn = node.add_fn(&format!("echo-{}", slug(format)), "echo", format, json!({}));
        node.add_trigger(&format!("/echo-{}", slug(format)), &echo_fn);
        // The http format's 1xx would be read as an interim answer: it is HTTP's, not the function's.
        let bad: &[&str] = if format == Format::Http { &["600", "99"] } else { &["600", "150", "99"] };
        for status in bad {
            let mut paths = vec![format!("/invoke/{}", echo_fn.id)];
            // Behind a trigger, the fdk reads the request's gateway form (http-stream).
            if format == Format::HttpStream {
                paths.push(format!("/t/myapp/echo-{}", slug(format)));
            }
            for path in paths {
                let r = Answer::from(
                    node.req(reqwest::Method::POST, &path).header("X-Status", *status).body("x").send().await.unwrap(),
                )
                .await;
                assert_eq!(r.status, 502, "{format:?} {path} status {status}: {}", r.text());
            }
        }
        let ok_path = match format {
            Format::HttpStream => format!("/t/myapp/echo-{}", slug(format)),
            _ => format!("/invoke/{}", echo_fn.id),
        };
        let r = Answer::from(node.req(reqwest::Method::POST, &ok_path).header("X-Status", "599").send().await.unwrap())
            .await;
        assert_eq!(r.status, 599, "{format:?}: 599 is a status the function may answer");
    }
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_forwarded_host_or_scheme_is_ignored() {
    let node = serve(test_config("fwdhost")).await;
    let f = node.add_fn("echo-http", "echo", Format::Http, json!({}));
    let path = format!("/invoke/{}", f.id);
    let own = format!("{}{path}", node.base);
    for (name, value) in [
        ("X-Forwarded-Host", "bad host"),
        ("X-Forwarded-Host", "a\"b{}"),
        ("Forwarded", "host=\"a b\""),
        ("Forwarded", "proto=\"ht tp\""),
        ("X-Forwarded-Proto", "no/scheme"),
    ] {
        let r =
            Answer::from(node.req(reqwest::Method::POST, &path).header(name, value).body("hi").send().await.unwrap())
                .await;
        assert_eq!((r.status, r.text()), (200, "hi".into()), "{name}: {value}");
        assert_eq!(r.header("x-request-url"), own, "{name}: {value}");
    }
    let r = Answer::from(
        node.req(reqwest::Method::POST, &path)
            .header("X-Forwarded-Host", "fn.example.com:8080")
            .body("hi")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-request-url"),
        format!("http://fn.example.com:8080{path}"),
        "a valid forwarded host is used"
    );
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_deadline_and_timeout_headers_do_not_panic() {
    let node = serve(test_config("absurd")).await;
    for format in ALL_FORMATS {
        let f = node.add_fn(&format!("echo-{}", slug(format)), "echo", format, json!({}));
        let r = Answer::from(
            node.req(reqwest::Method::POST, &format!("/invoke/{}", f.id))
                .header("Fn-Deadline", "99999-12-31T23:59:59.999Z")
                .header("Fn-Timeout", "18446744073709551616")
                .header("Fn-Idle-Timeout", "-9223372036854775808")
                .header("Fn-Invoke-Type", "sync")
                .body("hi")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((r.status, r.text()), (200, "hi".into()), "{format:?}");
    }
    node.finish().await;
}

/// The invoke endpoints answer errors through the API node's renderer: Fn's content type on every error,
/// and `Retry-After: 15` on every 503 (a queue that fails to take an async call included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_fn_content_type_and_every_503_says_when_to_retry() {
    let node = serve(test_config("errrender")).await;
    let f = node.add_fn("later", "echo", Format::HttpStream, json!({}));
    node.add_route("/later", "echo", Format::HttpStream, json!({"type": "async"}));

    let r = node.post("/invoke/01NOPE", "x").await;
    assert_eq!((r.status, r.header("content-type")), (404, "application/json; charset=utf-8"));
    assert_eq!(r.header("retry-after"), "");
    r.call_id();

    node.data.set_fail_enqueue(true);
    let detached = node.req(reqwest::Method::POST, &format!("/invoke/{}", f.id)).header("Fn-Invoke-Type", "detached");
    for r in [node.post("/r/myapp/later", "x").await, Answer::from(detached.send().await.unwrap()).await] {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
        assert_eq!(r.header("retry-after"), "15");
        r.call_id();
    }
    node.finish().await;
}
