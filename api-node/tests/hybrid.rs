//! The hybrid API end to end in one process: runner-node's HTTP and gRPC clients against the API node's
//! HTTP and gRPC servers, over the real datastore (SQLite and PostgreSQL) and queue. Both transports run
//! the same checks.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use api_node::datastore::Datastore;
use api_node::direct::{AsyncPolicy, DirectDataAccess};
use api_node::hybrid::grpc::{serve_on, GrpcTls};
use api_node::hybrid::http::{configure, HybridState};
use api_node::queue::MemoryQueue;
use api_node::testing::{fresh_store, Backend};
use runner_node::hybrid::{ClientTls, GrpcClient, HttpClient};
use runner_node::DataAccess;
use serde_json::json;
use shared::time::DateTime;
use shared::{App, Call, CallStatus, Error, Func, QueuedCall, Route, Trigger};

const TOKEN: &str = "s3cret";

struct World {
    store: Arc<dyn Datastore>,
    data: Arc<dyn DataAccess>,
    app: App,
    func: Func,
    route: Route,
    trigger: Trigger,
}

async fn world(backend: Backend) -> World {
    let (store, _) = fresh_store(backend).await;
    let store: Arc<dyn Datastore> = Arc::new(store);
    let app =
        store.insert_app(&App::new(serde_json::from_value(json!({"name": "myapp"})).unwrap()).unwrap()).await.unwrap();
    let func =
        Func::new(serde_json::from_value(json!({"name": "f", "app_id": app.id, "image": "img:1"})).unwrap()).unwrap();
    let func = store.insert_fn(&func).await.unwrap();
    let route =
        Route::new(&app.id, serde_json::from_value(json!({"path": "/a b/c", "image": "img:1"})).unwrap()).unwrap();
    let route = store.insert_route(&route).await.unwrap();
    let trigger = Trigger::new(
        serde_json::from_value(
            json!({"name": "t", "app_id": app.id, "fn_id": func.id, "type": "http", "source": "/hook/x y"}),
        )
        .unwrap(),
    )
    .unwrap();
    let trigger = store.insert_trigger(&trigger).await.unwrap();
    let policy = AsyncPolicy { lease: Duration::from_secs(30), max_attempts: 2, backoff: Duration::from_millis(10) };
    let data = Arc::new(DirectDataAccess::new(store.clone(), Arc::new(MemoryQueue::default()), policy));
    World { store, data, app, func, route, trigger }
}

fn call(w: &World) -> Call {
    Call { fn_id: w.func.id.clone(), ..Call::new(shared::id::new_id(), &w.app.id, CallStatus::Queued) }
}

/// The checks both transports pass; `bad` presents a wrong token.
async fn exercise(w: &World, client: &dyn DataAccess, bad: &dyn DataAccess) {
    assert_eq!(client.app_by_id(&w.app.id).await.unwrap(), w.app);
    assert_eq!(client.app_by_name("myapp").await.unwrap(), w.app);
    assert_eq!(client.app_by_name("nope").await.unwrap_err(), Error::AppNotFound);
    assert_eq!(client.fn_by_id(&w.func.id).await.unwrap(), w.func);
    assert_eq!(client.fn_by_id("gone").await.unwrap_err(), Error::FnNotFound);
    assert_eq!(client.route(&w.app.id, "/a b/c").await.unwrap(), w.route);
    assert_eq!(client.route(&w.app.id, "/x").await.unwrap_err(), Error::RouteNotFound);
    assert_eq!(client.trigger_by_source(&w.app.id, "http", "/hook/x y").await.unwrap(), w.trigger);
    assert_eq!(client.trigger_by_source(&w.app.id, "http", "/").await.unwrap_err(), Error::TriggerNotFound);

    // The async life of a call: queued, handed out, started, finished, completed.
    let queued = QueuedCall {
        call: call(w),
        method: "POST".into(),
        url: "http://x/invoke/f".into(),
        headers: Default::default(),
        body: "aGk=".into(),
        priority: 0,
    };
    client.enqueue(&queued).await.unwrap();
    assert_eq!(w.store.get_call(&queued.call.id).await.unwrap().status, CallStatus::Queued);
    let d = client.dequeue(Duration::from_millis(500)).await.unwrap().expect("the queued call");
    assert_eq!((d.call.clone(), d.attempt), (queued.clone(), 1));
    let mut running = queued.call.clone();
    running.status = CallStatus::Running;
    running.started_at = Some(DateTime::now());
    client.call_started(&running).await.unwrap();
    assert_eq!(w.store.get_call(&running.id).await.unwrap().status, CallStatus::Running);
    let mut done = running.clone();
    done.status = CallStatus::Success;
    done.completed_at = Some(DateTime::now());
    client.call_finished(&done, "line1\nline2").await.unwrap();
    client.complete(&d, &done).await.unwrap();
    let stored = w.store.get_call(&done.id).await.unwrap();
    assert_eq!(
        (stored.status, stored.completed_at, stored.dead_letter),
        (CallStatus::Success, done.completed_at, false)
    );
    assert_eq!(
        stored.attempts.iter().map(|a| (a.attempt, a.status)).collect::<Vec<_>>(),
        vec![(1, CallStatus::Success)]
    );
    assert_eq!(w.store.get_log(&done.id).await.unwrap().log, "line1\nline2");
    assert_eq!(client.dequeue(Duration::from_millis(100)).await.unwrap(), None, "acked");

    // Only the holder completes or extends a queued call: an empty or made-up token gets a 400, which a
    // runner does not retry, and changes nothing.
    let other = QueuedCall { call: call(w), ..queued.clone() };
    client.enqueue(&other).await.unwrap();
    let success = Call { status: CallStatus::Success, completed_at: Some(DateTime::now()), ..other.call.clone() };
    for token in [String::new(), "0".repeat(32)] {
        let forged = runner_node::Delivery { call: other.clone(), token, attempt: 1 };
        for e in [client.complete(&forged, &success).await.unwrap_err(), client.heartbeat(&forged).await.unwrap_err()] {
            assert!(e.status() == 400 && e.message().contains("not held"), "{e:?}");
        }
    }
    assert_eq!(w.store.get_call(&other.call.id).await.unwrap().status, CallStatus::Queued);
    let held = client.dequeue(Duration::from_millis(500)).await.unwrap().expect("still queued");
    assert_eq!(client.heartbeat(&held).await.unwrap(), Duration::from_secs(30));
    client.complete(&held, &success).await.unwrap();
    assert_eq!(w.store.get_call(&other.call.id).await.unwrap().status, CallStatus::Success);

    // A wrong token gets 401 and changes nothing.
    assert_eq!(bad.app_by_id(&w.app.id).await.unwrap_err(), Error::Unauthorized);
    let mut sneaky = call(w);
    sneaky.status = CallStatus::Running;
    assert_eq!(bad.call_started(&sneaky).await.unwrap_err(), Error::Unauthorized);
    let q = QueuedCall { call: sneaky.clone(), ..queued.clone() };
    assert_eq!(bad.enqueue(&q).await.unwrap_err(), Error::Unauthorized);
    assert_eq!(bad.dequeue(Duration::ZERO).await.unwrap_err(), Error::Unauthorized);
    assert_eq!(w.store.get_call(&sneaky.id).await.unwrap_err().to_string(), "Call not found");
}

/// Serves the hybrid HTTP API over `w` (token required) on a free port; returns its base URL.
fn serve_http(w: &World) -> String {
    let max_body = shared::config::default_hybrid_message_limit();
    let state = HybridState { data: w.data.clone(), token: Some(TOKEN.into()), max_body };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_web::HttpServer::new(move || {
        let state = state.clone();
        actix_web::App::new().configure(move |cfg| configure(cfg, state))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://{addr}")
}

async fn http_transport(backend: Backend) {
    let w = world(backend).await;
    let url = serve_http(&w);
    let client = HttpClient::new(&url, Some(TOKEN.into()), Duration::from_secs(5)).unwrap();
    let bad = HttpClient::new(&url, Some("wrong".into()), Duration::from_secs(5)).unwrap();
    exercise(&w, &client, &bad).await;
    large_messages(&w, &client).await;
}

/// Reports and queued calls as large as the defaults allow get through: a 300 KB log (over actix's
/// default 256 KiB body), a 1 MiB log of NUL bytes (6 MiB as JSON), a 1 MiB log of bytes that were not
/// UTF-8 (3 MiB once replaced) and a 5 MiB queued body (over tonic's default 4 MiB message).
async fn large_messages(w: &World, client: &dyn DataAccess) {
    let logs =
        ["x".repeat(300_000), "\0".repeat(1 << 20), String::from_utf8_lossy(&vec![0xffu8; 1 << 20]).into_owned()];
    for log in logs {
        let mut done = call(w);
        done.status = CallStatus::Success;
        client.call_finished(&done, &log).await.unwrap();
        assert_eq!(w.store.get_log(&done.id).await.unwrap().log, log);
    }
    let body = "QUJD".repeat(5 << 18); // 5 MiB of base64
    let queued = QueuedCall {
        call: call(w),
        method: "POST".into(),
        url: "http://x/invoke/f".into(),
        headers: Default::default(),
        body,
        priority: 0,
    };
    client.enqueue(&queued).await.unwrap();
    let d = client.dequeue(Duration::from_millis(500)).await.unwrap().expect("the queued call");
    assert_eq!(d.call, queued);
    let done = Call { status: CallStatus::Success, completed_at: Some(DateTime::now()), ..queued.call.clone() };
    client.complete(&d, &done).await.unwrap();
}

async fn grpc_transport(backend: Backend) {
    let w = world(backend).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_on(listener, w.data.clone(), Some(TOKEN.into()), None, std::future::pending()));
    let url = format!("grpc://{addr}");
    let client = GrpcClient::new(&url, Some(TOKEN.into()), Duration::from_secs(5), None).unwrap();
    let bad = GrpcClient::new(&url, Some("wrong".into()), Duration::from_secs(5), None).unwrap();
    exercise(&w, &client, &bad).await;
    large_messages(&w, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_on_sqlite() {
    http_transport(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_on_postgres() {
    http_transport(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_on_sqlite() {
    grpc_transport(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_on_postgres() {
    grpc_transport(Backend::Postgres).await
}

/// A CA, a server certificate for localhost and a client certificate, made with the openssl CLI.
fn certificates() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fn-tls-{}", shared::id::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sh = |script: &str| {
        let ok = Command::new("sh").arg("-ec").arg(script).current_dir(&dir).output().unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=fn-test-ca");
    sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san.ext
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile san.ext");
    sh("printf 'extendedKeyUsage=clientAuth' > cli.ext
        openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=runner
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 -extfile cli.ext");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_mutual_tls() {
    let dir = certificates();
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let w = world(Backend::Sqlite).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = GrpcTls { cert: read("server.pem"), key: read("server.key").into(), client_ca: Some(read("ca.pem")) };
    tokio::spawn(serve_on(listener, w.data.clone(), None, Some(tls), std::future::pending()));
    let url = format!("grpcs://localhost:{port}");

    let identity = ClientTls { ca_pem: read("ca.pem"), identity: Some((read("client.pem"), read("client.key"))) };
    let client = GrpcClient::new(&url, None, Duration::from_secs(5), Some(identity)).unwrap();
    assert_eq!(client.app_by_id(&w.app.id).await.unwrap(), w.app);

    // Without a client certificate the handshake fails: the runner sees the API node as unavailable.
    let anonymous = ClientTls { ca_pem: read("ca.pem"), identity: None };
    let client = GrpcClient::new(&url, None, Duration::from_secs(5), Some(anonymous)).unwrap();
    assert_eq!(client.app_by_id(&w.app.id).await.unwrap_err().status(), 503);
}

/// Every route the OpenAPI document lists for the hybrid API is served: without the token each one
/// answers 401 from its handler, never 404 or 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_route_is_served() {
    let w = world(Backend::Sqlite).await;
    let base = serve_http(&w);
    let client = reqwest::Client::new();
    for (method, path) in api_node::hybrid::http::ROUTES {
        let url = format!("{base}{}", path.replace(['{', '}'], ""));
        let resp = client.request(method.parse().unwrap(), &url).body("{}").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{method} {path}");
    }
}
