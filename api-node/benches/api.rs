//! Loopback benchmark of the management API: requests/s and p50/p99 latency for app create and fn get,
//! at concurrency 1 and 32, against a real server over a fresh database (SQLite by default; set
//! `BENCH_DB=postgres` or `BENCH_DB=mysql` for the others).
//!
//! Run: `cargo bench -p api-node --bench api` (release build). Prints a table; it asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_node::http::Extensions;
use api_node::listeners::Listeners;
use api_node::testing::{fresh_store, Backend};
use api_node::Settings;
use serde_json::json;

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `total` requests made by `make(i)` over `concurrency` tasks and measures them.
async fn measure<F, Fut>(concurrency: usize, total: usize, make: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = t;
            while i < total {
                let s = Instant::now();
                make(i).await;
                lat.push(s.elapsed());
                i += concurrency;
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Figures { rps: all.len() as f64 / elapsed.as_secs_f64(), p50: pct(0.50), p99: pct(0.99) }
}

fn main() {
    let backend = match std::env::var("BENCH_DB").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("mysql") => Backend::Mysql,
        _ => Backend::Sqlite,
    };
    let total: usize = std::env::var("BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let (store, url) = fresh_store(backend).await;
        let mut settings = Settings::for_tests(url);
        settings.workers = 0; // actix default: one per core
        let server = api_node::start(&settings, Arc::new(store.clone()), Listeners::default(), Extensions::default())
            .await
            .expect("start server");
        let base = Arc::new(server.url());
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

        // A fn to read.
        let app: serde_json::Value = client
            .post(format!("{base}/v2/apps"))
            .json(&json!({"name": "bench"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let f: serde_json::Value = client
            .post(format!("{base}/v2/fns"))
            .json(&json!({"name": "f", "app_id": app["id"], "image": "fnproject/hello"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let fn_url = Arc::new(format!("{base}/v2/fns/{}", f["id"].as_str().unwrap()));

        println!("api-node loopback benchmark: backend {backend:?}, {total} requests per row, release build");
        println!("{:<12} {:>5} {:>10} {:>10} {:>10}", "operation", "conc", "req/s", "p50", "p99");
        for concurrency in [1usize, 32] {
            // warm-up
            let (c, u) = (client.clone(), fn_url.clone());
            measure(concurrency, 200, move |_| {
                let (c, u) = (c.clone(), u.clone());
                async move {
                    c.get(u.as_str()).send().await.unwrap().bytes().await.unwrap();
                }
            })
            .await;

            let (c, b) = (client.clone(), base.clone());
            let run = concurrency;
            let fig = measure(concurrency, total, move |i| {
                let (c, b) = (c.clone(), b.clone());
                async move {
                    let r = c
                        .post(format!("{b}/v2/apps"))
                        .json(&json!({ "name": format!("a{run}x{i}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                }
            })
            .await;
            report("app create", concurrency, &fig);

            let (c, u) = (client.clone(), fn_url.clone());
            let fig = measure(concurrency, total, move |_| {
                let (c, u) = (c.clone(), u.clone());
                async move {
                    let r = c.get(u.as_str()).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                }
            })
            .await;
            report("fn get", concurrency, &fig);
        }
        server.stop(true).await.unwrap();
        store.close().await;
    });
}

fn report(op: &str, concurrency: usize, f: &Figures) {
    println!(
        "{:<12} {:>5} {:>10.0} {:>8.3}ms {:>8.3}ms",
        op,
        concurrency,
        f.rps,
        f.p50.as_secs_f64() * 1000.0,
        f.p99.as_secs_f64() * 1000.0
    );
}
