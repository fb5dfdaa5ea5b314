//! Hot-path overhead: the same echo call sent straight to a hot http-stream container's unix
//! socket, and through the agent (slot lookup, container hand-off, recording). Also times an FDK
//! that does not frame its output (back-to-back calls wait for the output to settle), cold
//! `default` calls and the first call of a new function (container start).
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p test-functions
//! cargo bench -p runner-node --features testing --bench hot_path
//! ```
//! `BENCH_CALLS` sets the number of timed calls per path (default 2000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use runner_node::{Agent, AgentConfig, CallSpec, Format, NoopRecorder};

fn summary(name: &str, mut lat: Vec<Duration>, total: Duration) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    let mean = total / lat.len() as u32;
    println!(
        "{name:<28} n={:<5} wall/call={:>8.1?} p50={:>8.1?} p99={:>8.1?} max={:>8.1?} ({:.0} calls/s)",
        lat.len(),
        mean,
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
        lat.len() as f64 / total.as_secs_f64()
    );
}

fn echo_call(format: Format) -> CallSpec {
    let mut c = CallSpec::new(ulid::Ulid::new().to_string(), "fn-test/echo:latest");
    c.app_id = "bench".into();
    c.fn_id = "bench-echo".into();
    c.format = format;
    c.body = Bytes::from_static(b"hello bench");
    c.idle_timeout = Duration::from_secs(120);
    c
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let docker = bollard::Docker::connect_with_local_defaults().unwrap().negotiate_version().await.unwrap();
    runner_node::testing::function_image(&docker, "echo").await.expect("echo image");
    let cfg = AgentConfig {
        container_label_tag: "fn-agent-bench".into(),
        instance_id: ulid::Ulid::new().to_string().to_lowercase(),
        iofs_path: std::env::temp_dir().join("fn-iofs-bench"),
        // The direct loop uses the container behind the agent's back; it must not be frozen
        // as "idle" meanwhile.
        freeze_idle: None,
        ..AgentConfig::default()
    };
    let agent = Agent::new(cfg.clone(), Arc::new(NoopRecorder)).await.unwrap();

    // First call of a new function: pull check, create, start, socket wait.
    let t = Instant::now();
    agent.submit(echo_call(Format::HttpStream)).await.unwrap();
    println!("{:<28} {:?}", "http-stream first call", t.elapsed());
    for _ in 0..50 {
        agent.submit(echo_call(Format::HttpStream)).await.unwrap();
    }

    // Through the agent.
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let r = agent.submit(echo_call(Format::HttpStream)).await.unwrap();
        assert_eq!(&r.body[..], b"hello bench");
        lat.push(t.elapsed());
    }
    summary("http-stream via agent", lat, start.elapsed());

    // Straight to the same container's socket, over a second connection.
    let root = cfg.iofs_path.join(&cfg.instance_id);
    let dir = std::fs::read_dir(&root).unwrap().next().unwrap().unwrap().path();
    let stream = tokio::net::UnixStream::connect(dir.join("lsnr.sock")).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let req = http::Request::post("/call")
            .header("Host", "localhost")
            .header("Fn-Call-Id", i.to_string())
            .header("Fn-Deadline", "2030-01-01T00:00:00.000Z")
            .body(Full::new(Bytes::from_static(b"hello bench")))
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello bench");
        lat.push(t.elapsed());
    }
    summary("http-stream direct socket", lat, start.elapsed());

    // Concurrency through the agent: 8 callers on one function.
    let per = (n / 8).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                agent.submit(echo_call(Format::HttpStream)).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    summary("http-stream via agent x8", lat, start.elapsed());

    // An FDK that does not frame its output: each call's container waits for its output to settle
    // before the next call (the cost of keeping logs apart without frames).
    let unframed = || {
        let mut c = echo_call(Format::HttpStream);
        c.config.insert("FDK_NO_LOGFRAME".into(), "1".into());
        c
    };
    for _ in 0..5 {
        agent.submit(unframed()).await.unwrap();
    }
    let m = (n / 10).max(20);
    let mut lat = Vec::with_capacity(m);
    let start = Instant::now();
    for _ in 0..m {
        let t = Instant::now();
        agent.submit(unframed()).await.unwrap();
        lat.push(t.elapsed());
    }
    summary("http-stream unframed", lat, start.elapsed());

    // Other hot formats and cold calls.
    for format in [Format::Http, Format::Json] {
        for _ in 0..20 {
            agent.submit(echo_call(format)).await.unwrap();
        }
        let mut lat = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            agent.submit(echo_call(format)).await.unwrap();
            lat.push(t.elapsed());
        }
        summary(&format!("{} via agent", format.as_str()), lat, start.elapsed());
    }
    let cold = 20;
    let mut lat = Vec::with_capacity(cold);
    let start = Instant::now();
    for _ in 0..cold {
        let t = Instant::now();
        agent.submit(echo_call(Format::Default)).await.unwrap();
        lat.push(t.elapsed());
    }
    summary("default (cold) via agent", lat, start.elapsed());

    agent.shutdown().await;
}
