//! Hybrid mode end to end: an API node (`FN_NODE_TYPE=api`) and runner nodes (`runner-node`) as real
//! processes on loopback, real Docker, real databases.
//!
//! - `lifecycle_*`: create through the API node, invoke through a runner over HTTP and one over gRPC
//!   (`/invoke`, `/t`), read calls and logs back, see updates and deletes served within the cache TTL;
//!   on SQLite and PostgreSQL.
//! - `api_node_outage_*`: kill -9 and restart the API node under load; cached fns keep serving and every
//!   call is recorded exactly once.
//! - `runner_killed_mid_load`: the other runner keeps serving; the killed one's containers outlive it
//!   and are reaped when it comes back under the same `FN_INSTANCE_ID`.
//! - `runner_token_is_enforced`: a wrong or missing token gets 401, runs nothing, records nothing.
//! - `paths_not_served_by_node_type`: Fn's 400s for invoke paths on the API node and management paths
//!   on a runner.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_node::testing::Backend;
use e2e::hybrid::{build_images, containers_of, percentile, unique, ApiNode, Client, Reply, Runner, Transport, TOKEN};
use reqwest::Method;
use serde_json::json;

/// Cache TTL of the runners under test.
const TTL: Duration = Duration::from_millis(1000);
/// How much later than one TTL after a change an old answer may still be served: the change may land
/// while a lookup that read the old value is in flight.
const MARGIN: Duration = Duration::from_millis(500);

async fn runners(api: &ApiNode, token: Option<&str>) -> (Runner, Runner) {
    let ttl = TTL.as_millis() as u64;
    let http = Runner::start(api, Transport::Http, token, ttl).await.expect("HTTP runner");
    let grpc = Runner::start(api, Transport::Grpc, token, ttl).await.expect("gRPC runner");
    (http, grpc)
}

fn config_value(reply: &Reply, key: &str) -> Option<String> {
    reply.json()["env"][key].as_str().map(str::to_string)
}

/// Invokes `fn_id` on `runner` until `is_new` says the change made at `changed` is served. A request
/// sent more than one TTL (plus a fetch in flight) after the change must not get the old answer.
/// Returns how long after the change the first new answer's request was sent.
async fn expect_change_within_ttl(
    c: &Client,
    runner: &Runner,
    fn_id: &str,
    changed: Instant,
    what: &str,
    is_new: impl Fn(&Reply) -> Result<bool, String>,
) -> Duration {
    let deadline = changed + Duration::from_secs(30);
    loop {
        let sent = Instant::now();
        let reply = c.invoke(runner.url(), fn_id, "").await.unwrap();
        let after = sent.duration_since(changed);
        match is_new(&reply) {
            Ok(true) => return after,
            Ok(false) => assert!(
                after <= TTL + MARGIN,
                "{:?} runner, {what}: a request sent {after:?} after the change got the old answer (TTL {TTL:?})",
                runner.transport
            ),
            Err(e) => panic!("{:?} runner, {what}: unexpected reply {e}", runner.transport),
        }
        assert!(Instant::now() < deadline, "{:?} runner, {what}: still old after 30 s", runner.transport);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lifecycle(backend: Backend) {
    build_images(&["echo", "envdump", "crash"]).await.unwrap();
    let api = ApiNode::start(backend, false, Some(TOKEN)).await.unwrap();
    let (http_runner, grpc_runner) = runners(&api, Some(TOKEN)).await;
    let c = Client::new();
    let a = api.url();

    let app_name = unique("hyb");
    let app_id = c.create_app(a, &app_name).await.unwrap();
    let echo = c.create_fn(a, &app_id, "echo", "fn-test/echo:latest", json!({})).await.unwrap();
    c.create_trigger(a, &app_id, &echo, "echo-t", "/echo").await.unwrap();

    // Invoke through each runner, by fn id and by trigger.
    let mut ids = Vec::new();
    for r in [&http_runner, &grpc_runner] {
        let body = format!("via {:?} invoke", r.transport);
        let reply = c.invoke(r.url(), &echo, &body).await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, body.as_str()), "{:?}: {reply:?}", r.transport);
        ids.push(reply.call_id.clone().expect("Fn-Call-Id"));

        let body = format!("via {:?} trigger", r.transport);
        let reply = c.trigger(r.url(), &app_name, "/echo", &body).await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, body.as_str()), "{:?}: {reply:?}", r.transport);
        ids.push(reply.call_id.clone().expect("Fn-Call-Id"));
    }

    // The API node lists each call once, successful, with its fn and app.
    let calls = c.wait_for_calls(a, &echo, &ids, Duration::from_secs(30)).await.unwrap();
    assert_eq!(calls.len(), ids.len(), "exactly our calls: {calls:#?}");
    for call in &calls {
        assert_eq!(call["status"], "success", "{call}");
        assert_eq!((call["fn_id"].as_str(), call["app_id"].as_str()), (Some(echo.as_str()), Some(app_id.as_str())));
        let id = call["id"].as_str().unwrap();
        let one = c.ok(Method::GET, &format!("{a}/v2/fns/{echo}/calls/{id}"), None).await.unwrap();
        assert_eq!(one["id"], id);
    }

    // A failing call's log (the function's stderr) reaches the API node through each transport.
    let crash = c.create_fn(a, &app_id, "crash", "fn-test/crash:latest", json!({})).await.unwrap();
    for r in [&http_runner, &grpc_runner] {
        let reply = c.invoke(r.url(), &crash, "3").await.unwrap();
        assert_eq!(reply.status, 502, "{:?}: {reply:?}", r.transport);
        let id = reply.call_id.clone().expect("Fn-Call-Id");
        c.wait_for_calls(a, &crash, std::slice::from_ref(&id), Duration::from_secs(30)).await.unwrap();
        let call = c.ok(Method::GET, &format!("{a}/v2/fns/{crash}/calls/{id}"), None).await.unwrap();
        assert_eq!(
            (call["status"].as_str(), call["error"].as_str()),
            (Some("error"), Some("container exit code 3")),
            "{call}"
        );
        let url = format!("{a}/v2/fns/{crash}/calls/{id}/log");
        let log = c.ok(Method::GET, &url, None).await.unwrap();
        assert_eq!(log["call_id"], id.as_str());
        assert!(log["log"].as_str().unwrap_or_default().contains("crash: exiting with 3"), "{:?}: {log}", r.transport);
        let text = c.http.get(&url).header("Accept", "text/plain").send().await.unwrap().text().await.unwrap();
        assert!(text.contains("crash: exiting with 3"), "{:?}: {text}", r.transport);
    }

    // An update shows within the TTL on both runners.
    let env = c.create_fn(a, &app_id, "envdump", "fn-test/envdump:latest", json!({"GREETING": "v1"})).await.unwrap();
    for r in [&http_runner, &grpc_runner] {
        let reply = c.invoke(r.url(), &env, "").await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(config_value(&reply, "GREETING").as_deref(), Some("v1"));
    }
    c.ok(Method::PUT, &format!("{a}/v2/fns/{env}"), Some(json!({"config": {"GREETING": "v2"}}))).await.unwrap();
    let updated = Instant::now();
    for r in [&http_runner, &grpc_runner] {
        let took = expect_change_within_ttl(&c, r, &env, updated, "config update", |reply| {
            if reply.status != 200 {
                return Err(format!("{reply:?}"));
            }
            match config_value(reply, "GREETING").as_deref() {
                Some("v2") => Ok(true),
                Some("v1") => Ok(false),
                other => Err(format!("GREETING {other:?}")),
            }
        })
        .await;
        eprintln!("{:?} runner served the update {took:?} after it was made", r.transport);
    }

    // A delete shows as 404 within the TTL on both runners.
    let r = c.send(Method::DELETE, &format!("{a}/v2/fns/{env}"), None).await.unwrap();
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    let deleted = Instant::now();
    for r in [&http_runner, &grpc_runner] {
        let took = expect_change_within_ttl(&c, r, &env, deleted, "delete", |reply| match reply.status {
            200 => Ok(false),
            404 if reply.json() == json!({"message": "Fn not found"}) => Ok(true),
            _ => Err(format!("{reply:?}")),
        })
        .await;
        eprintln!("{:?} runner answered 404 {took:?} after the delete", r.transport);
    }
    // The other fn is untouched.
    assert_eq!(c.invoke(http_runner.url(), &echo, "still").await.unwrap().body, "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_sqlite() {
    lifecycle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_postgres() {
    lifecycle(Backend::Postgres).await;
}

/// One call made by the load generator.
#[derive(Debug, Clone)]
struct Shot {
    runner: usize,
    at: Instant,
    took: Duration,
    result: Result<(u16, Option<String>, bool), String>,
}

/// Sequential invokes of `fn_id` on `url` by `workers` tasks until `stop`.
fn load(
    c: &Client,
    runner: usize,
    url: &str,
    fn_id: &str,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Shot>>> {
    (0..workers)
        .map(|w| {
            let (c, url, fn_id, stop) = (c.clone(), url.to_string(), fn_id.to_string(), stop.clone());
            tokio::spawn(async move {
                let mut shots = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let body = format!("r{runner}-w{w}-{n}");
                    let sent = Instant::now();
                    let result = match c.invoke(&url, &fn_id, &body).await {
                        Ok(r) => Ok((r.status, r.call_id.clone(), r.body == body)),
                        Err(e) => {
                            // A dead runner refuses at once; don't spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Err(format!("{e:#}"))
                        }
                    };
                    shots.push(Shot { runner, at: Instant::now(), took: sent.elapsed(), result });
                }
                shots
            })
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Shot>>>) -> Vec<Shot> {
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.expect("load task"));
    }
    out
}

async fn api_node_outage(backend: Backend) {
    build_images(&["echo"]).await.unwrap();
    let mut api = ApiNode::start(backend, false, Some(TOKEN)).await.unwrap();
    let (http_runner, grpc_runner) = runners(&api, Some(TOKEN)).await;
    let c = Client::new();
    let a = api.url().to_string();
    let app_id = c.create_app(&a, &unique("outage")).await.unwrap();
    let echo = c.create_fn(&a, &app_id, "echo", "fn-test/echo:latest", json!({})).await.unwrap();

    let mut ids = Vec::new();
    for r in [&http_runner, &grpc_runner] {
        let reply = c.invoke(r.url(), &echo, "warm").await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        ids.push(reply.call_id.unwrap());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let mut tasks = load(&c, 0, http_runner.url(), &echo, 2, &stop);
    tasks.extend(load(&c, 1, grpc_runner.url(), &echo, 2, &stop));
    tokio::time::sleep(Duration::from_millis(800)).await;

    api.node.kill9();
    let killed = Instant::now();
    assert!(c.send(Method::GET, &format!("{a}/"), None).await.is_err(), "the API node is down");
    // A fn no runner has looked up cannot be served while the API node is away.
    for r in [&http_runner, &grpc_runner] {
        let reply = c.invoke(r.url(), "01ARZ3NDEKTSV4RRFFQ69G5FAV", "x").await.unwrap();
        assert_eq!(reply.status, 503, "{:?} runner, uncached fn while the API node is down: {reply:?}", r.transport);
    }
    // Longer than the TTL, so lookups expire and are served stale while the API node is away.
    tokio::time::sleep((killed + TTL * 3).saturating_duration_since(Instant::now())).await;
    let restarting = Instant::now();
    api.node.restart().await.unwrap();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::SeqCst);
    let shots = collect(tasks).await;

    let failures: Vec<&Shot> = shots.iter().filter(|s| !matches!(s.result, Ok((200, Some(_), true)))).collect();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed, e.g. {:?}",
        failures.len(),
        shots.len(),
        &failures[..failures.len().min(5)]
    );
    for runner in [0, 1] {
        let during = shots.iter().filter(|s| s.runner == runner && s.at > killed && s.at < restarting).count();
        assert!(during >= 2, "runner {runner} served {during} calls while the API node was down");
        let after = shots.iter().filter(|s| s.runner == runner && s.at > back).count();
        assert!(after >= 1, "runner {runner} served {after} calls after the API node came back");
    }

    ids.extend(shots.iter().map(|s| s.result.as_ref().unwrap().1.clone().unwrap()));
    let unique_ids: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique_ids.len(), ids.len(), "call ids are unique");
    let calls = c.wait_for_calls(&a, &echo, &ids, Duration::from_secs(60)).await.unwrap();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for call in &calls {
        *seen.entry(call["id"].as_str().expect("call id")).or_default() += 1;
        assert_eq!(call["status"], "success", "{call}");
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "calls listed more than once: {dups:?}");
    assert_eq!(calls.len(), ids.len(), "exactly the calls made are recorded");
    for (runner, name) in [(0, "http"), (1, "grpc")] {
        let lat = |from: Instant, to: Instant| {
            let mut v: Vec<Duration> =
                shots.iter().filter(|s| s.runner == runner && s.at > from && s.at < to).map(|s| s.took).collect();
            v.sort();
            (v.len(), percentile(&v, 50.0), v.last().copied().unwrap_or_default())
        };
        eprintln!(
            "api_node_outage({backend:?}) {name} runner: calls/p50/max before {:?}, while down ({:?}) {:?}, \
             while restarting ({:?}) {:?}, after {:?}",
            lat(load_started, killed),
            restarting - killed,
            lat(killed, restarting),
            back - restarting,
            lat(restarting, back),
            lat(back, Instant::now()),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_node_outage_sqlite() {
    api_node_outage(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_node_outage_postgres() {
    api_node_outage(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runner_killed_mid_load() {
    build_images(&["echo"]).await.unwrap();
    let api = ApiNode::start(Backend::Sqlite, false, Some(TOKEN)).await.unwrap();
    let (mut victim, survivor) = runners(&api, Some(TOKEN)).await;
    let c = Client::new();
    let a = api.url().to_string();
    let app_id = c.create_app(&a, &unique("kill")).await.unwrap();
    let echo = c.create_fn(&a, &app_id, "echo", "fn-test/echo:latest", json!({})).await.unwrap();
    for r in [&victim, &survivor] {
        assert_eq!(c.invoke(r.url(), &echo, "warm").await.unwrap().status, 200);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = load(&c, 0, victim.url(), &echo, 2, &stop);
    tasks.extend(load(&c, 1, survivor.url(), &echo, 2, &stop));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = containers_of(&victim.instance).await.unwrap();
    assert!(!before.is_empty(), "the victim runs containers");
    victim.node.kill9();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let shots = collect(tasks).await;

    // The survivor served every call, before and after the kill.
    let survivor_shots: Vec<&Shot> = shots.iter().filter(|s| s.runner == 1).collect();
    let bad: Vec<_> = survivor_shots.iter().filter(|s| !matches!(s.result, Ok((200, Some(_), true)))).collect();
    assert!(bad.is_empty(), "survivor failures: {bad:?}");
    assert!(survivor_shots.iter().filter(|s| s.at > killed).count() >= 5, "survivor kept serving after the kill");
    // The victim is really gone: calls to it fail at the transport after the kill.
    let after: Vec<&Shot> =
        shots.iter().filter(|s| s.runner == 0 && s.at > killed + Duration::from_millis(200)).collect();
    assert!(!after.is_empty() && after.iter().all(|s| s.result.is_err()), "victim after the kill: {after:?}");

    // Its containers outlive it ...
    let orphans = containers_of(&victim.instance).await.unwrap();
    assert!(!orphans.is_empty(), "the killed runner's containers are still there");
    let survivor_containers = containers_of(&survivor.instance).await.unwrap();
    assert!(!survivor_containers.is_empty());

    // ... until it comes back under the same FN_INSTANCE_ID: reaped before it serves.
    victim.node.restart().await.unwrap();
    let left = containers_of(&victim.instance).await.unwrap();
    let still: Vec<_> = orphans.iter().filter(|id| left.contains(id)).collect();
    assert!(still.is_empty(), "orphans not reaped: {still:?} (log: {})", victim.node.log_tail());
    // Another instance's containers are not its to reap.
    let survivor_now = containers_of(&survivor.instance).await.unwrap();
    assert!(survivor_containers.iter().all(|id| survivor_now.contains(id)), "survivor's containers untouched");
    // And it serves again.
    let reply = c.invoke(victim.url(), &echo, "back").await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "back"), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runner_token_is_enforced() {
    build_images(&["echo"]).await.unwrap();
    let api = ApiNode::start(Backend::Sqlite, false, Some("s3cret-token")).await.unwrap();
    let ttl = TTL.as_millis() as u64;
    let good = Runner::start(&api, Transport::Grpc, Some("s3cret-token"), ttl).await.unwrap();
    let wrong_http = Runner::start(&api, Transport::Http, Some("not-the-token"), ttl).await.unwrap();
    let missing_http = Runner::start(&api, Transport::Http, None, ttl).await.unwrap();
    let wrong_grpc = Runner::start(&api, Transport::Grpc, Some("not-the-token"), ttl).await.unwrap();
    let missing_grpc = Runner::start(&api, Transport::Grpc, None, ttl).await.unwrap();
    let c = Client::new();
    let a = api.url().to_string();
    let app_name = unique("token");
    let app_id = c.create_app(&a, &app_name).await.unwrap();
    let echo = c.create_fn(&a, &app_id, "echo", "fn-test/echo:latest", json!({})).await.unwrap();
    c.create_trigger(&a, &app_id, &echo, "t", "/t").await.unwrap();

    // The hybrid API itself refuses a wrong token.
    let r = c
        .http
        .get(format!("{a}/v2/runner/apps/{app_id}"))
        .header("Authorization", "Bearer not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let mut refused = Vec::new();
    for r in [&wrong_http, &missing_http, &wrong_grpc, &missing_grpc] {
        let reply = c.invoke(r.url(), &echo, "x").await.unwrap();
        assert_eq!(reply.status, 401, "{:?}: {reply:?}", r.transport);
        assert_eq!(reply.json(), json!({"message": "Invalid runner token"}));
        if let Some(id) = reply.call_id.clone() {
            refused.push(id);
        }
        let reply = c.trigger(r.url(), &app_name, "/t", "x").await.unwrap();
        assert_eq!(reply.status, 401, "{:?}: {reply:?}", r.transport);
        if let Some(id) = reply.call_id.clone() {
            refused.push(id);
        }
    }
    // The right token is served (and recorded).
    let reply = c.invoke(good.url(), &echo, "ok").await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"), "{reply:?}");
    let good_id = reply.call_id.unwrap();
    let calls = c.wait_for_calls(&a, &echo, std::slice::from_ref(&good_id), Duration::from_secs(30)).await.unwrap();
    let listed: Vec<&str> = calls.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(listed, vec![good_id.as_str()], "only the authorised call is recorded (refused: {refused:?})");
    // Nothing ran for the refused runners.
    for r in [&wrong_http, &missing_http, &wrong_grpc, &missing_grpc] {
        assert_eq!(containers_of(&r.instance).await.unwrap(), Vec::<String>::new(), "{:?}", r.transport);
    }
    assert!(!containers_of(&good.instance).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paths_not_served_by_node_type() {
    let api = ApiNode::start(Backend::Sqlite, false, Some(TOKEN)).await.unwrap();
    let runner = Runner::start(&api, Transport::Http, Some(TOKEN), TTL.as_millis() as u64).await.unwrap();
    let c = Client::new();
    let a = api.url();

    let api_msg = |kind: &str| format!("Invoking routes {kind}/ is not supported on nodes configured as type API");
    for (method, path, body) in [
        (Method::POST, "/r/app/route", json!({"error": {"message": api_msg("/r")}})),
        (Method::GET, "/r/app", json!({"error": {"message": api_msg("/r")}})),
        (Method::POST, "/invoke/01ARZ3NDEKTSV4RRFFQ69G5FAV", json!({"message": api_msg("/invoke")})),
        (Method::POST, "/t/app/some/source", json!({"error": {"message": api_msg("/t")}})),
        (Method::GET, "/t/app", json!({"error": {"message": api_msg("/t")}})),
    ] {
        let r = c.send(method.clone(), &format!("{a}{path}"), None).await.unwrap();
        assert_eq!((r.status, r.json()), (400, body), "{method} {path} on the API node");
    }
    // The API node still serves its API.
    c.ok(Method::GET, &format!("{a}/v2/apps"), None).await.unwrap();

    let runner_msg =
        |api: &str| format!("Invoking api {api}/ requests is not supported on nodes configured as type Runner");
    for (method, path, body) in [
        (Method::GET, "/v1/apps", json!({"error": {"message": runner_msg("/v1")}})),
        (Method::POST, "/v1/apps/x/routes", json!({"error": {"message": runner_msg("/v1")}})),
        (Method::GET, "/v2/apps", json!({"message": runner_msg("/v2")})),
        (Method::POST, "/v2/fns", json!({"message": runner_msg("/v2")})),
        (Method::GET, "/v2/runner/apps/x", json!({"message": runner_msg("/v2")})),
    ] {
        let r = c.send(method.clone(), &format!("{}{path}", runner.url()), Some(json!({}))).await.unwrap();
        assert_eq!((r.status, r.json()), (400, body), "{method} {path} on the runner");
    }
    // The runner still serves its invoke paths (an unknown fn is the API node's 404).
    let r = c.invoke(runner.url(), "01ARZ3NDEKTSV4RRFFQ69G5FAV", "x").await.unwrap();
    assert_eq!((r.status, r.json()), (404, json!({"message": "Fn not found"})));
}

/// A sync call on a runner killed with `kill -9` can never report its end; the API node ends its record
/// as lost once it has run longer than any call may (`FN_LOST_CALL_AFTER_MSECS`, short here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_a_killed_runner_are_ended_as_lost() {
    build_images(&["sleep"]).await.unwrap();
    let api = ApiNode::start_with(Backend::Sqlite, false, Some(TOKEN), &[("FN_LOST_CALL_AFTER_MSECS", "3000")])
        .await
        .unwrap();
    let mut runner = Runner::start(&api, Transport::Http, Some(TOKEN), 1000).await.unwrap();
    let c = Client::new();
    let a = api.url().to_string();
    let app_id = c.create_app(&a, &unique("lost")).await.unwrap();
    let f = c.create_fn(&a, &app_id, "sleep", "fn-test/sleep:latest", json!({})).await.unwrap();
    let url = format!("{}/invoke/{f}", runner.url());
    let call = tokio::spawn(async move { reqwest::Client::new().post(url).body("20000").send().await });

    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let running = c.list_calls(&a, &f).await.unwrap().into_iter().find(|v| v["status"] == "running");
        if let Some(v) = running {
            break v["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the call never showed as running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    runner.node.kill9();
    let _ = call.await;

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.ok(reqwest::Method::GET, &format!("{a}/v2/fns/{f}/calls/{id}"), None).await.unwrap();
        if v["status"] == "error" {
            assert!(v["error"].as_str().unwrap().starts_with("lost"), "{v}");
            assert!(v["completed_at"].is_string(), "{v}");
            break;
        }
        assert_eq!(v["status"], "running", "{v}");
        assert!(Instant::now() < deadline, "the lost call was never ended: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in containers_of(&runner.instance).await.unwrap() {
        let _ = std::process::Command::new("docker").args(["rm", "-f", &id]).output();
    }
}
