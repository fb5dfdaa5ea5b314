//! Async calls on a full node with the embedded queue: how fast detached calls are accepted, and how long a
//! queued call waits for a container (`started_at - created_at` of its record).
//!
//! ```text
//! cargo build --release -p api-node && cargo bench -p e2e --bench async_calls
//! ```
//! (plus the static test functions, see `runner_node::testing`). `BENCH_ASYNC_CALLS` sets the burst size
//! (default 2000). Prints figures; it is not a timed test.

#[path = "../tests/async_common/mod.rs"]
mod async_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_common::*;
use serde_json::{json, Value};

const CLIENTS: usize = 8;
/// Calls run one at a time for the unloaded latency.
const SERIAL: usize = 50;

fn main() {
    let exe = std::env::current_exe().expect("bench executable");
    let node_binary = exe.parent().and_then(|d| d.parent()).expect("target dir").join("api-node");
    if !node_binary.exists() {
        eprintln!("{} is missing: run `cargo build --release -p api-node` first", node_binary.display());
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    runtime.block_on(run());
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Queue-to-start latencies (ms) of `ids`, waiting until every one is settled.
async fn latencies(api: &Api, fn_id: &str, ids: &[String], within: Duration) -> (Vec<i64>, usize) {
    let deadline = Instant::now() + within;
    loop {
        let calls = api.all_calls(fn_id, "").await;
        let by_id: std::collections::HashMap<&str, &Value> =
            calls.iter().map(|c| (c["id"].as_str().unwrap_or(""), c)).collect();
        let settled = ids.iter().filter(|id| by_id.get(id.as_str()).is_some_and(|c| is_settled(c))).count();
        if settled == ids.len() {
            let mut lat: Vec<i64> = ids
                .iter()
                .filter_map(|id| {
                    let c = by_id[id.as_str()];
                    Some(millis(c, "started_at")? - millis(c, "created_at")?)
                })
                .collect();
            lat.sort_unstable();
            let failed = ids.iter().filter(|id| status(by_id[id.as_str()]) != "success").count();
            return (lat, failed);
        }
        assert!(Instant::now() < deadline, "{settled} of {} calls settled within {within:?}", ids.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run() {
    let total: usize = std::env::var("BENCH_ASYNC_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let echo = image("echo").await;
    let node = full_node("api-node", None, &[("FN_LOG_LEVEL", "warn")]).await;
    let api = Api::new(&node.url);
    let app_id = api.app("bench").await;
    let fn_id = api.func(&app_id, json!({ "name": "echo", "image": echo, "timeout": 30 })).await;

    // Warm-up: containers started, everything on the path touched once.
    let mut warm = Vec::new();
    for i in 0..16 {
        let resp = api.detached(&fn_id, &format!("warm {i}")).await.expect("invoke");
        let v: Value = resp.json().await.expect("202 body");
        warm.push(v["call_id"].as_str().expect("call_id").to_string());
    }
    latencies(&api, &fn_id, &warm, Duration::from_secs(120)).await;

    // Unloaded: one call at a time, each waited for.
    let mut serial = Vec::new();
    for i in 0..SERIAL {
        let resp = api.detached(&fn_id, &format!("serial {i}")).await.expect("invoke");
        let v: Value = resp.json().await.expect("202 body");
        let id = v["call_id"].as_str().expect("call_id").to_string();
        poll_until_settled(&api, &format!("/v2/fns/{fn_id}/calls/{id}"), |v| v, Duration::from_secs(60)).await;
        serial.push(id);
    }
    let (serial_lat, serial_failed) = latencies(&api, &fn_id, &serial, Duration::from_secs(60)).await;

    // Burst: `total` detached calls from CLIENTS concurrent clients.
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (api, fn_id, ids, next) = (api.clone(), fn_id.clone(), ids.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < total {
                let resp = api.detached(&fn_id, "burst").await.expect("invoke");
                assert_eq!(resp.status().as_u16(), 202);
                let v: Value = resp.json().await.expect("202 body");
                ids.lock().unwrap().push(v["call_id"].as_str().expect("call_id").to_string());
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let accept_time = started.elapsed();
    let ids = ids.lock().unwrap().clone();
    let (burst_lat, burst_failed) = latencies(&api, &fn_id, &ids, Duration::from_secs(900)).await;
    let drain_time = started.elapsed();

    println!("async calls, full node, embedded queue (SQLite), echo fn, {CLIENTS} clients:");
    println!(
        "  accepted: {total} detached calls in {:.2} s = {:.0} calls/s",
        accept_time.as_secs_f64(),
        total as f64 / accept_time.as_secs_f64()
    );
    println!(
        "  burst ran to its end in {:.2} s = {:.0} calls/s completed ({burst_failed} not successful)",
        drain_time.as_secs_f64(),
        total as f64 / drain_time.as_secs_f64()
    );
    println!(
        "  queue-to-start latency, burst of {total}: p50 {} ms, p99 {} ms, max {} ms",
        percentile(&burst_lat, 50.0),
        percentile(&burst_lat, 99.0),
        burst_lat.last().copied().unwrap_or(0)
    );
    println!(
        "  queue-to-start latency, unloaded ({SERIAL} calls one at a time): p50 {} ms, p99 {} ms ({serial_failed} not successful)",
        percentile(&serial_lat, 50.0),
        percentile(&serial_lat, 99.0)
    );
}
