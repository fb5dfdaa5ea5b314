//! What a runner node adds to an invoke over full mode, cache warm: `POST /invoke/{fn_id}` of the echo
//! function, sequential, on a full node and on runner nodes (HTTP and gRPC transport) of an API node, in
//! the same run, interleaved call by call so machine noise hits all of them alike. Prints p50/p99 of each
//! and the runner's extra latency and ratio over full mode.
//!
//! Needs the release binaries and the test functions:
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p test-functions
//! cargo build --release -p api-node -p runner-node
//! cargo bench -p e2e --bench hybrid            # FN_BENCH_CALLS=500 by default
//! ```

use std::time::{Duration, Instant};

use api_node::testing::Backend;
use e2e::hybrid::{build_images, percentile, unique, ApiNode, Client, Runner, Transport, TOKEN};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::var("FN_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    build_images(&["echo"]).await?;

    let full = ApiNode::start(Backend::Sqlite, true, None).await?;
    let api = ApiNode::start(Backend::Sqlite, false, Some(TOKEN)).await?;
    // The default TTL (5 s) of a deployment: the cache stays warm except for a refresh every 5 s.
    let http_runner = Runner::start(&api, Transport::Http, Some(TOKEN), 5000).await?;
    let grpc_runner = Runner::start(&api, Transport::Grpc, Some(TOKEN), 5000).await?;
    let c = Client::new();

    let mut targets = Vec::new();
    for (label, api_url, invoke_url) in [
        ("full mode", full.url(), full.url()),
        ("runner (http)", api.url(), http_runner.url()),
        ("runner (grpc)", api.url(), grpc_runner.url()),
    ] {
        let app = c.create_app(api_url, &unique("bench")).await?;
        // One fn per target, so each target's hot container is its own.
        let fn_id = c.create_fn(api_url, &app, &unique("echo"), "fn-test/echo:latest", json!({})).await?;
        targets.push((label, invoke_url.to_string(), fn_id, Vec::with_capacity(calls)));
    }
    // Warm: container started, lookups cached, connections open.
    for (label, url, fn_id, _) in &targets {
        for _ in 0..20 {
            let r = c.invoke(url, fn_id, "warm").await?;
            anyhow::ensure!(r.status == 200, "{label}: {r:?}");
        }
    }
    let body = "x".repeat(64);
    for _ in 0..calls {
        for (label, url, fn_id, samples) in targets.iter_mut() {
            let started = Instant::now();
            let r = c.invoke(url, fn_id, &body).await?;
            let took = started.elapsed();
            anyhow::ensure!(r.status == 200 && r.body == body, "{label}: {r:?}");
            samples.push(took);
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("hybrid invoke latency, echo, {calls} sequential calls each, interleaved, cache warm");
    println!("{:<16} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "mean ms");
    let mut stats = Vec::new();
    for (label, _, _, samples) in targets.iter_mut() {
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
        println!("{label:<16} {:>9.3} {:>9.3} {:>9.3}", ms(p50), ms(p99), ms(mean));
        stats.push((*label, p50, p99));
    }
    let (_, full50, full99) = stats[0];
    for (label, p50, p99) in &stats[1..] {
        println!(
            "{label}: extra p50 {:+.3} ms (x{:.2}), extra p99 {:+.3} ms (x{:.2}) over full mode",
            ms(*p50) - ms(full50),
            ms(*p50) / ms(full50),
            ms(*p99) - ms(full99),
            ms(*p99) / ms(full99),
        );
    }
    drop((http_runner, grpc_runner));
    drop((api, full));
    Ok(())
}
