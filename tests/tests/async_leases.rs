//! Leases of queued calls end to end: real node processes, real Docker.
//!
//! - a call that waits for room longer than its lease (plus its timeout) is held by its runner's
//!   heartbeats and runs exactly once;
//! - a runner killed with `kill -9` mid-call stops beating, and its call runs on another runner one lease
//!   later, not after the call's whole timeout.

mod async_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_common::*;
use e2e::{binary, free_port, Node};
use serde_json::{json, Value};

/// Longest wait for a call to end.
const FINAL_WAIT: Duration = Duration::from_secs(90);

async fn accepted(resp: reqwest::Result<reqwest::Response>) -> String {
    let resp = resp.expect("invoke");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{text}");
    serde_json::from_str::<Value>(&text).expect("JSON")["call_id"].as_str().expect("call_id").to_string()
}

/// The attempts recorded for a call, as (attempt, status).
fn attempts(call: &Value) -> Vec<(u64, String)> {
    call["attempts"]
        .as_array()
        .map(|a| a.iter().map(|a| (a["attempt"].as_u64().unwrap_or(0), status(a).to_string())).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_room_past_its_lease_runs_once() {
    let sleep = image("sleep").await;
    // A 1 s lease on a node with room for one 600 MB call: the second call waits for the first (5 s
    // plus a start) before it runs for 5 s itself. That is longer than its lease and timeout together
    // (1 s + 8 s), the most a runner could hold a call without heartbeats.
    let node = full_node("api-node", None, &[("FN_ASYNC_LEASE_MSECS", "1000")]).await;
    let api = Api::new(&node.url);
    let app_id = api.app("leases").await;
    let fn_id = api.func(&app_id, json!({ "name": "big", "image": sleep, "timeout": 8, "memory": 600 })).await;
    let first = accepted(api.detached(&fn_id, "5000").await).await;
    let second = accepted(api.detached(&fn_id, "5000").await).await;
    let mut longest = 0;
    for id in [&first, &second] {
        let path = format!("/v2/fns/{fn_id}/calls/{id}");
        let (_, done) = poll_until_settled(&api, &path, |v| v, FINAL_WAIT).await;
        assert_eq!(status(&done), "success", "{done}");
        assert_eq!(attempts(&done), vec![(1, "success".to_string())], "handed out once, run once: {done}");
        longest = longest.max(millis(&done, "completed_at").unwrap() - millis(&done, "created_at").unwrap());
    }
    assert!(longest > 9_000, "a call outlived its lease and timeout together ({longest} ms), as this test needs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runners_call_runs_elsewhere_one_lease_later() {
    let sleep = image("sleep").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let api_env: HashMap<String, String> = [
        ("FN_NODE_TYPE", "api".to_string()),
        ("FN_GRPC_PORT", free_port().to_string()),
        ("FN_RUNNER_TOKEN", e2e::hybrid::TOKEN.to_string()),
        ("FN_DB_URL", format!("sqlite3://{}/fn.db", dir.path().display())),
        ("FN_MQ_URL", format!("sqlite3://{}/fn.mq", dir.path().display())),
        ("FN_ASYNC_LEASE_MSECS", "1000".to_string()),
        ("FN_LOG_LEVEL", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let api_node = Node::start(binary("api-node"), api_env).await.expect("api node starts");
    let api_url = format!("http://127.0.0.1:{}", api_node.port);
    let (id_a, id_b) = (instance_id("lease-a"), instance_id("lease-b"));
    let (_reap_a, _reap_b) = (Reaper(id_a.clone()), Reaper(id_b.clone()));
    let mut runner_a = runner(api_url.clone(), dir.path(), &id_a).await;

    let api = Api::new(&api_node.url);
    let app_id = api.app("lost").await;
    // A long timeout: without heartbeats the lease had to cover it, and the call waited that long.
    let fn_id = api.func(&app_id, json!({ "name": "slow", "image": sleep, "timeout": 60 })).await;
    let id = accepted(Api::new(&runner_a.url).detached(&fn_id, "3000").await).await;
    let path = format!("/v2/fns/{fn_id}/calls/{id}");
    let deadline = Instant::now() + FINAL_WAIT;
    while api.get(&path).await.map(|c| status(&c).to_string()).as_deref() != Some("running") {
        assert!(Instant::now() < deadline, "the call never started on runner A: {}", runner_a.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runner_a.kill9();
    let killed = Instant::now();
    let runner_b = runner(api_url, dir.path(), &id_b).await;
    let (_, done) = poll_until_settled(&api, &path, |v| v, FINAL_WAIT).await;
    let took = killed.elapsed();
    assert_eq!(status(&done), "success", "{done}\nrunner B: {}", runner_b.log_tail());
    // Attempt 2 or later: the long-poll runner A had open when it died may have taken the call once more
    // (a hand-out nobody receives is lost like a runner, and expires the same way).
    let last = attempts(&done).last().cloned().expect("an attempt");
    assert!(last.0 >= 2 && last.1 == "success", "run again, elsewhere: {done}");
    // One lease (1 s), runner B's start, a container start and the 3 s run: far below the 60 s timeout.
    assert!(took < Duration::from_secs(30), "the call ran elsewhere {took:?} after its runner died");
}
