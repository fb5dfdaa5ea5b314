//! One bad input cannot wedge a node, end to end with real processes, Docker and databases:
//!
//! - `logs_that_are_not_text_*`: a function writing NUL bytes and bytes that are not UTF-8 to stderr has
//!   its log stored and served (PostgreSQL's `text` refused NUL), in full mode and through runners over
//!   HTTP and gRPC, including a log over 300 KB (the hybrid HTTP API cut bodies at 256 KiB).
//! - `full_report_buffer_refuses_new_calls_at_once`: while the API node is away, a runner whose report
//!   buffer is full answers new calls 503 with `Retry-After` at once, and delivers every report once the
//!   API node is back.
//! - `refused_report_is_dropped_and_later_ones_delivered`: a report the API node refuses (413, too large
//!   for it) is dropped with an error line naming the call; the runner's later reports still arrive.

use std::time::{Duration, Instant};

use api_node::testing::Backend;
use e2e::hybrid::{build_images, unique, ApiNode, Client, Runner, Transport, TOKEN};
use reqwest::Method;
use serde_json::json;

/// What `badlog` writes first, as the API serves it: each byte that is not UTF-8 replaced by U+FFFD.
const BAD_LOG: &str = "nul:\0 invalid:\u{FFFD}\u{FFFD} end\n";

/// The log of `call_id` through `GET /v2/fns/{fn_id}/calls/{call_id}/log`, waiting for it to be stored.
async fn log_of(c: &Client, api: &str, fn_id: &str, call_id: &str) -> String {
    c.wait_for_calls(api, fn_id, &[call_id.to_string()], Duration::from_secs(60)).await.unwrap();
    let url = format!("{api}/v2/fns/{fn_id}/calls/{call_id}/log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.send(Method::GET, &url, None).await.unwrap();
        if r.status == 200 {
            return r.json()["log"].as_str().expect("log text").to_string();
        }
        assert!(r.status == 404 && Instant::now() < deadline, "log of {call_id}: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Invokes `badlog` on `node` with `extra` more bad bytes and checks the log the API node serves.
async fn check_bad_log(c: &Client, api: &str, node: &str, fn_id: &str, extra: usize, what: &str) {
    let reply = c.invoke(node, fn_id, &extra.to_string()).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"), "{what}: {reply:?}");
    let log = log_of(c, api, fn_id, reply.call_id.as_deref().unwrap()).await;
    let more: String = ["\0", "\u{FFFD}", "a", "\n"].iter().cycle().take(extra).copied().collect();
    assert!(log.len() > extra, "{what}: log of {} bytes", log.len());
    assert!(log == format!("{BAD_LOG}{more}"), "{what}: log starts {:?}", &log[..log.len().min(80)]);
}

async fn logs_that_are_not_text(backend: Backend) {
    build_images(&["badlog"]).await.unwrap();
    let c = Client::new();

    // Full mode: the node's own agent and datastore.
    let full = ApiNode::start(backend, true, None).await.unwrap();
    let a = full.url().to_string();
    let app_id = c.create_app(&a, &unique("badlog")).await.unwrap();
    let f = c.create_fn(&a, &app_id, "badlog", "fn-test/badlog:latest", json!({})).await.unwrap();
    check_bad_log(&c, &a, &a, &f, 0, "full mode").await;
    check_bad_log(&c, &a, &a, &f, 300_000, "full mode, 300 KB").await;
    drop(full);

    // Hybrid: the log travels from a runner to the API node over HTTP and over gRPC.
    let api = ApiNode::start(backend, false, Some(TOKEN)).await.unwrap();
    let a = api.url().to_string();
    let app_id = c.create_app(&a, &unique("badlog")).await.unwrap();
    let f = c.create_fn(&a, &app_id, "badlog", "fn-test/badlog:latest", json!({})).await.unwrap();
    for transport in [Transport::Http, Transport::Grpc] {
        let runner = Runner::start(&api, transport, Some(TOKEN), 1000).await.unwrap();
        for extra in [0, 300_000] {
            check_bad_log(&c, &a, runner.url(), &f, extra, &format!("{transport:?} runner, {extra} more bytes")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_that_are_not_text_postgres() {
    logs_that_are_not_text(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_that_are_not_text_mysql() {
    logs_that_are_not_text(Backend::Mysql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_report_buffer_refuses_new_calls_at_once() {
    build_images(&["badlog"]).await.unwrap();
    let c = Client::new();
    let mut api = ApiNode::start(Backend::Sqlite, false, Some(TOKEN)).await.unwrap();
    let a = api.url().to_string();
    let app_id = c.create_app(&a, &unique("full")).await.unwrap();
    let f = c.create_fn(&a, &app_id, "badlog", "fn-test/badlog:latest", json!({})).await.unwrap();
    // Room for the reports of one call (start and finish), lookups cached for the whole test.
    let runner = Runner::start_with(&api, Transport::Http, Some(TOKEN), 600_000, &[("FN_RUNNER_REPORT_BUFFER", "2")])
        .await
        .unwrap();
    let warm = c.invoke(runner.url(), &f, "0").await.unwrap();
    assert_eq!(warm.status, 200, "{warm:?}");
    let mut ids = vec![warm.call_id.unwrap()];
    c.wait_for_calls(&a, &f, &ids, Duration::from_secs(30)).await.unwrap();

    api.node.kill9();
    // Calls run while their reports fit; once they fill the buffer new calls are refused.
    let refused = loop {
        let sent = Instant::now();
        let r = c.invoke(runner.url(), &f, "0").await.unwrap();
        if r.status == 503 {
            break (r, sent.elapsed());
        }
        assert_eq!(r.status, 200, "{r:?}");
        ids.push(r.call_id.unwrap());
        assert!(ids.len() <= 4, "the runner took {} calls with a buffer of two reports", ids.len());
    };
    let (reply, took) = refused;
    assert_eq!(reply.headers.get("retry-after").map(String::as_str), Some("15"), "{reply:?}");
    assert_eq!(reply.json()["message"], "Timed out - server too busy");
    assert!(took < Duration::from_secs(5), "refused at once, not after waiting: {took:?}");

    api.node.restart().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.invoke(runner.url(), &f, "0").await.unwrap();
        if r.status == 200 {
            ids.push(r.call_id.unwrap());
            break;
        }
        assert!(r.status == 503 && Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = c.wait_for_calls(&a, &f, &ids, Duration::from_secs(60)).await.unwrap();
    assert_eq!(calls.len(), ids.len(), "every call that ran is recorded once, none that was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_report_is_dropped_and_later_ones_delivered() {
    build_images(&["badlog"]).await.unwrap();
    let c = Client::new();
    // The API node takes hybrid messages sized for 1000-byte logs and bodies (plus its envelope,
    // 1 MiB); the runner keeps logs of up to 8 MiB.
    let api = ApiNode::start_with(
        Backend::Sqlite,
        false,
        Some(TOKEN),
        &[("FN_MAX_LOG_SIZE_BYTES", "1000"), ("FN_MAX_REQUEST_SIZE", "1000")],
    )
    .await
    .unwrap();
    let a = api.url().to_string();
    let app_id = c.create_app(&a, &unique("refused")).await.unwrap();
    let f = c.create_fn(&a, &app_id, "badlog", "fn-test/badlog:latest", json!({})).await.unwrap();
    let runner = Runner::start_with(&api, Transport::Http, Some(TOKEN), 1000, &[("FN_MAX_LOG_SIZE_BYTES", "8388608")])
        .await
        .unwrap();
    let big = c.invoke(runner.url(), &f, "3000000").await.unwrap();
    assert_eq!(big.status, 200, "{big:?}");
    let big_id = big.call_id.unwrap();
    let small = c.invoke(runner.url(), &f, "0").await.unwrap();
    assert_eq!(small.status, 200, "{small:?}");
    let small_id = small.call_id.unwrap();
    assert_eq!(log_of(&c, &a, &f, &small_id).await, BAD_LOG, "the report after the refused one arrived");
    let refused = std::fs::read_to_string(&runner.node.log).unwrap();
    assert!(
        refused.lines().any(|l| l.contains("refused a call report") && l.contains(&big_id)),
        "an error line names the refused call: {}",
        runner.node.log_tail()
    );
    let r = c.send(Method::GET, &format!("{a}/v2/fns/{f}/calls/{big_id}/log"), None).await.unwrap();
    assert_eq!(r.status, 404, "the refused log is not stored: {r:?}");
}
