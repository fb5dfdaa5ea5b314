//! Async calls end to end: real `api-node` / `runner-node` processes, real Docker, real queue backends.
//!
//! - a detached invoke and an async route on a full node, on every queue backend (embedded SQLite,
//!   Redis, PostgreSQL): 202, then the record goes queued → (running →) success with the output logged;
//! - retries: a function that fails twice succeeds on its third attempt, one that always fails is
//!   dead-lettered after `FN_ASYNC_MAX_ATTEMPTS`;
//! - the queue unreachable (a Redis server this test owns, stopped and started again): 503, nothing
//!   accepted, then accepted again;
//! - 1,000 calls through an API node and two runners (HTTP and gRPC) while one runner is killed with
//!   `kill -9` and the API node restarts: every accepted call ends, with exactly one record.
//!
//! Every node has its own instance ID (container label), data directory and ports, so this binary runs
//! alongside the other end-to-end tests. Needs the workspace built (`cargo build --workspace
//! --all-features`) and the static test functions (see `runner_node::testing`).

mod async_common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_common::*;
use e2e::{binary, free_port, Node};
use serde_json::{json, Value};

/// Longest wait for one call to end (a cold container start included).
const FINAL_WAIT: Duration = Duration::from_secs(60);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", shared::id::new_id().to_lowercase())
}

/// The `call_id` of a 202, checked against its `Fn-Call-Id` header.
async fn accepted_id(resp: reqwest::Response) -> String {
    let status = resp.status();
    let header = resp.headers().get("fn-call-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{text}");
    let v: Value = serde_json::from_str(&text).expect("202 body is JSON");
    let id = v["call_id"].as_str().expect("call_id").to_string();
    assert_eq!(header.as_deref(), Some(id.as_str()), "Fn-Call-Id header and call_id agree");
    id
}

/// Checks one successful async run: statuses seen in order queued → (running →) success, the creation time
/// kept from acceptance, started/completed times in order, one successful attempt, not dead-lettered.
fn check_success_lifecycle(seen: &[String], first: &Value, done: &Value) {
    let order = ["queued", "running", "success"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap_or_else(|| panic!("unexpected status {s} in {seen:?}")))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "statuses go forward only: {seen:?}");
    assert_eq!(seen.first().map(String::as_str), Some("queued"), "{seen:?}");
    assert_eq!(status(done), "success", "{done}");
    assert_eq!(
        done["created_at"], first["created_at"],
        "created_at is the time the call was accepted: {first} / {done}"
    );
    let (created, started, completed) = (
        millis(done, "created_at").expect("created_at"),
        millis(done, "started_at").expect("started_at"),
        millis(done, "completed_at").expect("completed_at"),
    );
    assert!(created <= started && started <= completed, "{done}");
    let attempts = done["attempts"].as_array().unwrap_or_else(|| panic!("attempts in {done}"));
    assert_eq!(attempts.len(), 1, "{done}");
    assert_eq!((attempts[0]["attempt"].as_u64(), status(&attempts[0])), (Some(1), "success"), "{done}");
    assert_ne!(done["dead_letter"], json!(true), "{done}");
}

/// Scenario 1 on the queue `mq_url` (`None`: the embedded one): a detached invoke, then an async route.
async fn detached_and_async_route(mq_url: Option<String>) {
    let echo = image("echo").await;
    let node = full_node("api-node", mq_url, &[]).await;
    let api = Api::new(&node.url);
    let app_name = "asyncapp".to_string();
    let app_id = api.app(&app_name).await;
    // Containers open their socket 1.5 s late, so a fresh call is still queued when first read.
    let config = json!({ "FDK_START_DELAY_MS": "1500" });
    let fn_id = api.func(&app_id, json!({ "name": "echo", "image": echo, "timeout": 30, "config": config })).await;

    let body = unique("detached-body");
    let id = accepted_id(api.detached(&fn_id, &body).await.expect("invoke")).await;
    let path = format!("/v2/fns/{fn_id}/calls/{id}");
    let first = api.get(&path).await.expect("the record exists once the call is accepted");
    assert_eq!(status(&first), "queued", "{first}");
    let (seen, done) = poll_until_settled(&api, &path, |v| v, FINAL_WAIT).await;
    check_success_lifecycle(&seen, &first, &done);
    assert_eq!(done["fn_id"], json!(fn_id));
    let log = api.log_text(&format!("{path}/log")).await;
    assert!(log.contains(&body), "the function's output is in the log: {log:?}");

    api.route(
        &app_name,
        json!({ "path": "/later", "image": echo, "type": "async", "format": "http-stream", "timeout": 30, "config": config }),
    )
    .await;
    let body = unique("route-body");
    let resp =
        api.http.post(format!("{}/r/{app_name}/later", api.base)).body(body.clone()).send().await.expect("route call");
    let id = accepted_id(resp).await;
    let path = format!("/v1/apps/{app_name}/calls/{id}");
    let first = api.get(&path).await.expect("the record exists once the call is accepted")["call"].clone();
    assert_eq!(status(&first), "queued", "{first}");
    let (seen, done) = poll_until_settled(&api, &path, |v| v["call"].clone(), FINAL_WAIT).await;
    check_success_lifecycle(&seen, &first, &done);
    assert_eq!(done["path"], json!("/later"));
    let log = api.log_text(&format!("{path}/log")).await;
    assert!(log.contains(&body), "the function's output is in the log: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_detached_invoke_and_async_route_succeed() {
    detached_and_async_route(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_detached_invoke_and_async_route_succeed() {
    // The shared test Redis; database 9 keeps this node's queue apart from other users of the server's
    // default database (the queue's key prefix is fixed).
    detached_and_async_route(Some("redis://127.0.0.1:6379/9".into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_detached_invoke_and_async_route_succeed() {
    let url = api_node::testing::fresh_db_url(api_node::testing::Backend::Postgres).await;
    detached_and_async_route(Some(url)).await;
}

/// Attempt `i` of a record: (attempt number, status, started ms, completed ms, error).
fn attempt(call: &Value, i: usize) -> (u64, String, i64, i64, String) {
    let a = &call["attempts"][i];
    (
        a["attempt"].as_u64().unwrap_or(0),
        status(a).to_string(),
        millis(a, "started_at").unwrap_or_else(|| panic!("attempt {i} has started_at: {call}")),
        millis(a, "completed_at").unwrap_or_else(|| panic!("attempt {i} has completed_at: {call}")),
        a["error"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_calls_are_retried_with_backoff_then_dead_lettered() {
    let failn = image("failn").await;
    let node =
        full_node("api-node", None, &[("FN_ASYNC_MAX_ATTEMPTS", "3"), ("FN_ASYNC_RETRY_BACKOFF_MSECS", "200")]).await;
    let api = Api::new(&node.url);
    let app_id = api.app("retries").await;
    // failn fails the first FAIL_TIMES calls each container serves (the container stays up), then echoes.
    let flaky = api
        .func(&app_id, json!({ "name": "flaky", "image": failn, "timeout": 30, "config": {"FAIL_TIMES": "2"} }))
        .await;
    let broken = api
        .func(&app_id, json!({ "name": "broken", "image": failn, "timeout": 30, "config": {"FAIL_TIMES": "1000"} }))
        .await;

    // A per-fn limit overrides the node's.
    let limited = api
        .func(
            &app_id,
            json!({ "name": "limited", "image": failn, "timeout": 30, "config": {"FAIL_TIMES": "1000"},
                               "annotations": {api_node::direct::MAX_ATTEMPTS_ANNOTATION: 2} }),
        )
        .await;

    let body = unique("third-time-lucky");
    let flaky_id = accepted_id(api.detached(&flaky, &body).await.expect("invoke")).await;
    let broken_id = accepted_id(api.detached(&broken, "never").await.expect("invoke")).await;

    let flaky_path = format!("/v2/fns/{flaky}/calls/{flaky_id}");
    let (seen, done) = poll_until_settled(&api, &flaky_path, |v| v, FINAL_WAIT).await;
    assert_eq!(status(&done), "success", "{done}");
    // A failed run that will be retried never shows as the call's status: queued and running only.
    assert!(seen.iter().all(|s| s == "queued" || s == "running" || s == "success"), "statuses seen: {seen:?}");
    assert_ne!(done["dead_letter"], json!(true), "{done}");
    let attempts = done["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "every attempt is in the record: {done}");
    let runs: Vec<_> = (0..3).map(|i| attempt(&done, i)).collect();
    assert_eq!(
        runs.iter().map(|r| (r.0, r.1.as_str())).collect::<Vec<_>>(),
        vec![(1, "error"), (2, "error"), (3, "success")],
        "{done}"
    );
    assert!(!runs[0].4.is_empty() && !runs[1].4.is_empty(), "failed attempts say why: {done}");
    assert!(runs[2].4.is_empty(), "{done}");
    // Backoff: 200 ms before the second attempt, 400 ms before the third (ms-rounded timestamps).
    assert!(runs[1].2 - runs[0].3 >= 199, "first retry waited its backoff: {done}");
    assert!(runs[2].2 - runs[1].3 >= 399, "second retry waited twice as long: {done}");
    let log = api.log_text(&format!("{flaky_path}/log")).await;
    assert!(log.contains(&body), "the successful attempt's output is in the log: {log:?}");

    let broken_path = format!("/v2/fns/{broken}/calls/{broken_id}");
    let (_, done) = poll_until_settled(&api, &broken_path, |v| v, FINAL_WAIT).await;
    assert_eq!(status(&done), "error", "{done}");
    assert_eq!(done["dead_letter"], json!(true), "{done}");
    assert!(!done["error"].as_str().unwrap_or("").is_empty(), "{done}");
    let runs: Vec<_> = (0..done["attempts"].as_array().expect("attempts").len()).map(|i| attempt(&done, i)).collect();
    assert_eq!(
        runs.iter().map(|r| (r.0, r.1.as_str())).collect::<Vec<_>>(),
        vec![(1, "error"), (2, "error"), (3, "error")],
        "exactly FN_ASYNC_MAX_ATTEMPTS attempts: {done}"
    );

    let limited_id = accepted_id(api.detached(&limited, "never").await.expect("invoke")).await;
    let (_, done) = poll_until_settled(&api, &format!("/v2/fns/{limited}/calls/{limited_id}"), |v| v, FINAL_WAIT).await;
    assert_eq!((status(&done), &done["dead_letter"]), ("error", &json!(true)), "{done}");
    assert_eq!(done["attempts"].as_array().map(Vec::len), Some(2), "the fn's own limit: {done}");

    let ids = |calls: Vec<Value>| calls.iter().map(|c| c["id"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>();
    assert_eq!(ids(api.all_calls(&broken, "&dead_letter=true").await), vec![broken_id.clone()]);
    assert_eq!(ids(api.all_calls(&broken, "&dead_letter=false").await), Vec::<String>::new());
    assert_eq!(ids(api.all_calls(&flaky, "&dead_letter=true").await), Vec::<String>::new());
    assert_eq!(ids(api.all_calls(&flaky, "&dead_letter=false").await), vec![flaky_id.clone()]);
    // No further attempt runs after the dead letter.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = api.get(&broken_path).await.expect("record");
    assert_eq!(again["attempts"].as_array().map(Vec::len), Some(3), "{again}");
}

/// A `redis-server` child process owned by one test, on its own port, without persistence.
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (is it installed?)");
        let server = RedisServer { child: Some(child), port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.ping() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not answer PING within 10s");
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_queue_refuses_async_calls_with_503_until_it_is_back() {
    let echo = image("echo").await;
    let port = free_port();
    let mut redis = RedisServer::start(port);
    let node = full_node("api-node", Some(format!("redis://127.0.0.1:{port}/")), &[]).await;
    let api = Api::new(&node.url);
    let app_id = api.app("queuedown").await;
    let fn_id = api.func(&app_id, json!({ "name": "echo", "image": echo, "timeout": 30 })).await;

    let before = accepted_id(api.detached(&fn_id, "before").await.expect("invoke")).await;
    let (_, done) = poll_until_settled(&api, &format!("/v2/fns/{fn_id}/calls/{before}"), |v| v, FINAL_WAIT).await;
    assert_eq!(status(&done), "success", "{done}");

    redis.stop();
    let mut refused = Vec::new();
    for i in 0..2 {
        let started = Instant::now();
        let resp = api.detached(&fn_id, &format!("while-down-{i}")).await.expect("the node answers");
        let took = started.elapsed();
        let status_code = resp.status();
        let header = resp.headers().get("fn-call-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status_code, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{text}");
        let message = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["message"].as_str().map(str::to_string));
        let message = message.unwrap_or_else(|| panic!("a v2 error body with a message: {text}"));
        assert!(message.contains("queue") && message.contains("unavailable"), "a clear message: {message}");
        assert!(took < Duration::from_secs(15), "refused promptly, not after a long hang: {took:?}");
        if let Some(id) = header {
            refused.push(id);
        }
    }
    // Nothing refused is stored: the only calls on record are the accepted ones.
    let check_refused = |calls: &Vec<Value>, accepted: &[&str]| {
        for c in calls {
            let id = c["id"].as_str().unwrap_or("");
            assert!(accepted.contains(&id), "a refused call is not recorded: {c}");
        }
    };
    let calls = api.all_calls(&fn_id, "").await;
    check_refused(&calls, &[&before]);
    for id in &refused {
        assert!(!calls.iter().any(|c| c["id"] == json!(id)), "refused call {id} must not be stored");
    }

    let _redis = RedisServer::start(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        assert!(Instant::now() < deadline, "async calls are not accepted again within 30s of the queue's return");
        let resp = api.detached(&fn_id, "after").await.expect("the node answers");
        match resp.status().as_u16() {
            202 => break accepted_id(resp).await,
            503 => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("unexpected {other}: {}", resp.text().await.unwrap_or_default()),
        }
    };
    let path = format!("/v2/fns/{fn_id}/calls/{after}");
    let (_, done) = poll_until_settled(&api, &path, |v| v, FINAL_WAIT).await;
    assert_eq!(status(&done), "success", "{done}");
    assert!(api.log_text(&format!("{path}/log")).await.contains("after"));
    // The refused calls never ran, even with the queue back.
    check_refused(&api.all_calls(&fn_id, "").await, &[&before, &after]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_async_calls_survive_a_killed_runner_and_an_api_node_restart() {
    const TOTAL: usize = 1000;
    const CLIENTS: usize = 8;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(240);
    let echo = image("echo").await;
    let dir = tempfile::tempdir().expect("temp dir");

    let grpc_port = free_port();
    let api_env: HashMap<String, String> = [
        ("FN_NODE_TYPE", "api".to_string()),
        ("FN_GRPC_PORT", grpc_port.to_string()),
        ("FN_RUNNER_TOKEN", e2e::hybrid::TOKEN.to_string()),
        ("FN_DB_URL", format!("sqlite3://{}/fn.db", dir.path().display())),
        ("FN_MQ_URL", format!("sqlite3://{}/fn.mq", dir.path().display())),
        ("FN_ASYNC_LEASE_MSECS", "2000".to_string()),
        ("FN_ASYNC_RETRY_BACKOFF_MSECS", "200".to_string()),
        ("FN_LOG_LEVEL", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut api_node = Node::start(binary("api-node"), api_env).await.expect("api node starts");
    let (id_a, id_b) = (instance_id("runner-a"), instance_id("runner-b"));
    let (_reap_a, _reap_b) = (Reaper(id_a.clone()), Reaper(id_b.clone()));
    let mut runner_a = runner(format!("http://127.0.0.1:{}", api_node.port), dir.path(), &id_a).await;
    let runner_b = runner(format!("grpc://127.0.0.1:{grpc_port}"), dir.path(), &id_b).await;

    let api = Api::new(&api_node.url);
    let app_id = api.app("thousand").await;
    let fn_id = api.func(&app_id, json!({ "name": "echo", "image": echo, "timeout": 5 })).await;

    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let claimed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let refused_ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let unreachable = Arc::new(AtomicUsize::new(0));
    let targets = [Api::new(&runner_a.url), Api::new(&runner_b.url)];
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (accepted, claimed, refused, unreachable) =
            (accepted.clone(), claimed.clone(), refused.clone(), unreachable.clone());
        let refused_ids = refused_ids.clone();
        let (targets, fn_id) = (targets.clone(), fn_id.clone());
        clients.push(tokio::spawn(async move {
            let mut turn = c;
            while claimed.fetch_add(1, Ordering::SeqCst) < TOTAL {
                loop {
                    assert!(Instant::now() < deadline, "client {c}: calls not accepted in time");
                    let target = &targets[turn % targets.len()];
                    turn += 1;
                    match target.detached(&fn_id, &format!("client {c} call")).await {
                        Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED => {
                            let id = accepted_id(resp).await;
                            accepted.lock().unwrap().push(id);
                            break;
                        }
                        Ok(resp) if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                            // Not accepted (the API node is away): try again as a new call.
                            if let Some(id) = resp.headers().get("fn-call-id").and_then(|v| v.to_str().ok()) {
                                refused_ids.lock().unwrap().push(id.to_string());
                            }
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(resp) => {
                            let s = resp.status();
                            panic!("client {c}: unexpected {s}: {}", resp.text().await.unwrap_or_default());
                        }
                        Err(_) => {
                            // The killed runner: go to the other one. A call it was taking when it died
                            // may have been stored anyway: its outcome is unknown to this client.
                            unreachable.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
        }));
    }

    // Faults, while the clients submit: kill -9 one runner at a quarter, restart the API node at half.
    let count = || accepted.lock().unwrap().len();
    while count() < TOTAL / 4 {
        assert!(Instant::now() < deadline, "only {} calls accepted", count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runner_a.kill9();
    let killed_at = count();
    while count() < TOTAL / 2 {
        assert!(Instant::now() < deadline, "only {} calls accepted", count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restart_at = count();
    let down = Instant::now();
    assert!(api_node.terminate(), "API node stops cleanly; log: {}", api_node.log_tail());
    api_node.restart().await.expect("API node starts again on the same ports and data");
    let downtime = down.elapsed();
    for c in clients {
        c.await.expect("client task");
    }
    let submitted_in = started.elapsed();
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), TOTAL);
    let accepted_set: HashSet<&String> = accepted.iter().collect();
    assert_eq!(accepted_set.len(), TOTAL, "every accepted call has its own ID");

    // Every accepted call ends; the list (paged) has each exactly once.
    let (calls, listed) = loop {
        let calls = api.all_calls(&fn_id, "").await;
        let listed: HashMap<String, bool> =
            calls.iter().map(|c| (c["id"].as_str().unwrap_or("").to_string(), is_settled(c))).collect();
        // Accepted calls not listed or not settled, and any other listed call not settled.
        let pending = accepted.iter().filter(|id| !listed.contains_key(*id)).count()
            + listed.values().filter(|settled| !**settled).count();
        if pending == 0 {
            break (calls, listed);
        }
        assert!(
            Instant::now() < deadline,
            "{pending} calls not settled; runner B log: {}\nAPI log: {}",
            runner_b.log_tail(),
            api_node.log_tail()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(calls.len(), listed.len(), "no call is listed twice");
    // A call refused with 503 was not accepted: it has no record and never runs. A call whose submission
    // broke off (the runner died mid-request) may have been stored: it must run to its end like the others.
    let refused_ids = refused_ids.lock().unwrap().clone();
    let recorded_refused: Vec<&String> = refused_ids.iter().filter(|id| listed.contains_key(*id)).collect();
    assert!(recorded_refused.is_empty(), "calls refused with 503 have records: {recorded_refused:?}");
    let extra: Vec<&Value> =
        calls.iter().filter(|c| !accepted_set.contains(&c["id"].as_str().unwrap_or("").to_string())).collect();
    assert!(
        extra.len() <= unreachable.load(Ordering::SeqCst),
        "more calls recorded than accepted or possibly accepted (submission broke off): {extra:?}"
    );
    let unsettled: Vec<&&Value> = extra.iter().filter(|c| !is_settled(c)).collect();
    assert!(unsettled.is_empty(), "calls stored while their submission broke off must end too: {unsettled:?}");
    let not_success: Vec<&Value> = calls.iter().filter(|c| status(c) != "success").collect();
    assert!(not_success.is_empty(), "echo cannot fail, yet: {not_success:?}");
    let redelivered = calls
        .iter()
        .filter(|c| {
            c["attempts"].as_array().and_then(|a| a.last()).and_then(|a| a["attempt"].as_u64()).unwrap_or(0) > 1
        })
        .count();
    for c in &calls {
        let last = c["attempts"].as_array().and_then(|a| a.last()).cloned().unwrap_or_default();
        assert_eq!(status(&last), "success", "the final attempt is recorded: {c}");
    }
    eprintln!(
        "{TOTAL} calls: accepted in {submitted_in:?}, all final after {:?}; runner A killed at {killed_at}, API node \
         restarted at {restart_at} (down {downtime:?}); {} refused (503, {} with a call ID), {} submissions broke off \
         ({} of them stored and run); {redelivered} calls delivered more than once (lease expiry)",
        started.elapsed(),
        refused.load(Ordering::SeqCst),
        refused_ids.len(),
        unreachable.load(Ordering::SeqCst),
        extra.len(),
    );
}
