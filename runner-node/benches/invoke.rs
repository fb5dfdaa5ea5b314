//! The invoke endpoint against the container it fronts, side by side in one run:
//!
//! (a) one echo request straight to a hot http-stream container's unix socket vs the same
//!     request through `POST /invoke/{fn_id}` over loopback HTTP (one client, keep-alive);
//! (b) throughput through `/invoke` with 8 concurrent keep-alive clients;
//! (c) a cold `default`-format call through the agent vs a raw create + start + wait (+ remove)
//!     of the same image through the Docker API.
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p test-functions
//! cargo bench -p runner-node --features testing --bench invoke
//! ```
//! `BENCH_CALLS` sets the number of timed calls per path (default 5000), `BENCH_COLD` the number
//! of cold runs (default 20). Prints figures; asserts only that answers are right.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use runner_node::http::{configure, DataAccessRecorder, InvokeState};
use runner_node::memory_data::MemoryDataAccess;
use runner_node::{Agent, AgentConfig, CallSpec, Format};
use serde_json::json;

const BODY: &[u8] = b"hello bench";

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn summary(name: &str, mut lat: Vec<Duration>, total: Duration) -> Stats {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name:<36} n={:<6} p50={:>9.1?} p99={:>9.1?} max={:>9.1?} {:>8.0} calls/s",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1],
        lat.len() as f64 / total.as_secs_f64()
    );
    Stats { p50: pct(0.5), p99: pct(0.99) }
}

/// One keep-alive HTTP/1.1 connection (hyper), over TCP or a unix socket.
async fn connect<T>(io: T) -> SendRequest<Full<Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one POST and returns the body; panics unless it is the echo.
async fn call(sender: &mut SendRequest<Full<Bytes>>, uri: &str, host: &str) {
    let req = http::Request::post(uri)
        .header("Host", host)
        .header("Fn-Call-Id", "01BENCH")
        .header("Fn-Deadline", "2030-01-01T00:00:00.000Z")
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap();
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], BODY);
}

async fn timed(sender: &mut SendRequest<Full<Bytes>>, uri: &str, host: &str, n: usize) -> (Vec<Duration>, Duration) {
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        call(sender, uri, host).await;
        lat.push(t.elapsed());
    }
    (lat, start.elapsed())
}

/// Raw Docker: create + start + wait (the function reads an empty stdin and exits), then remove.
/// Returns (create+start+wait, remove).
async fn raw_cold(docker: &bollard::Docker, image: &str) -> (Duration, Duration) {
    let t = Instant::now();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(vec!["FN_FORMAT=default".to_string()]),
        host_config: Some(HostConfig { memory: Some(128 << 20), ..Default::default() }),
        ..Default::default()
    };
    let id = docker.create_container(None::<CreateContainerOptions>, body).await.unwrap().id;
    docker.start_container(&id, None::<StartContainerOptions>).await.unwrap();
    let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
    while let Some(r) = wait.next().await {
        assert_eq!(r.unwrap().status_code, 0);
    }
    let ran = t.elapsed();
    let t = Instant::now();
    let rm = RemoveContainerOptions { force: true, ..Default::default() };
    docker.remove_container(&id, Some(rm)).await.unwrap();
    (ran, t.elapsed())
}

#[tokio::main]
async fn main() {
    let env_n = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env_n("BENCH_CALLS", 5000);
    let cold_n = env_n("BENCH_COLD", 20);
    let docker = bollard::Docker::connect_with_local_defaults().unwrap().negotiate_version().await.unwrap();
    let image = runner_node::testing::function_image(&docker, "echo").await.expect("echo image");

    let cfg = AgentConfig {
        container_label_tag: "fn-invoke-bench".into(),
        instance_id: ulid::Ulid::new().to_string().to_lowercase(),
        iofs_path: std::env::temp_dir().join("fn-iofs-bench"),
        // The direct loop uses a container behind the agent's back: it must not be frozen.
        freeze_idle: None,
        ..AgentConfig::default()
    };
    let data = Arc::new(MemoryDataAccess::default());
    let agent = Arc::new(Agent::new(cfg.clone(), Arc::new(DataAccessRecorder(data.clone()))).await.unwrap());
    let app = shared::App::new(serde_json::from_value(json!({"name": "bench"})).unwrap()).unwrap();
    let func = shared::Func::new(
        serde_json::from_value(json!({
            "name": "echo", "app_id": app.id, "image": image,
            "format": "http-stream", "idle_timeout": 600,
        }))
        .unwrap(),
    )
    .unwrap();
    data.apps.lock().unwrap().push(app.clone());
    data.fns.lock().unwrap().push(func.clone());

    let state = InvokeState::new(agent.clone(), data.clone());
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().configure(move |cfg| configure(cfg, state))
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let uri = format!("/invoke/{}", func.id);
    let host = addr.to_string();

    // Warm up: one container, started through the endpoint.
    let mut http = connect(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    let t = Instant::now();
    call(&mut http, &uri, &host).await;
    println!("{:<36} {:?}", "first call (container start)", t.elapsed());
    timed(&mut http, &uri, &host, 200).await;

    // (a) direct socket vs /invoke, interleaved in rounds so both see the same machine state.
    let root = cfg.iofs_path.join(&cfg.instance_id);
    let dir = std::fs::read_dir(&root).unwrap().next().unwrap().unwrap().path();
    let mut direct = connect(tokio::net::UnixStream::connect(dir.join("lsnr.sock")).await.unwrap()).await;
    timed(&mut direct, "/call", "localhost", 200).await;
    let (mut lat_d, mut lat_i) = (Vec::new(), Vec::new());
    let (mut tot_d, mut tot_i) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..10 {
        let (l, t) = timed(&mut direct, "/call", "localhost", n / 10).await;
        lat_d.extend(l);
        tot_d += t;
        let (l, t) = timed(&mut http, &uri, &host, n / 10).await;
        lat_i.extend(l);
        tot_i += t;
    }
    println!("(a) one client, sequential");
    let d = summary("  direct unix socket", lat_d, tot_d);
    let i = summary("  POST /invoke over loopback", lat_i, tot_i);
    println!("  invoke overhead: p50 {:?}, p99 {:?}", i.p50.saturating_sub(d.p50), i.p99.saturating_sub(d.p99));

    // (b) 8 concurrent clients, each on its own keep-alive connection.
    let clients = 8;
    let per = (n / clients).max(1);
    let mut conns = Vec::new();
    for _ in 0..clients {
        let mut c = connect(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        call(&mut c, &uri, &host).await; // lets the agent scale out before timing
        conns.push(c);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in conns {
        let (uri, host) = (uri.clone(), host.clone());
        tasks.push(tokio::spawn(async move { timed(&mut c, &uri, &host, per).await.0 }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    println!("(b) {clients} concurrent clients");
    summary("  POST /invoke x8", lat, start.elapsed());

    // (c) cold: default format through the agent vs raw Docker, alternating.
    let mut cold = CallSpec::new("", image.as_str());
    cold.format = Format::Default;
    cold.app_id = app.id.clone();
    cold.body = Bytes::from_static(BODY);
    let (mut agent_lat, mut raw_lat, mut raw_rm) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    for i in 0..cold_n + 2 {
        let mut c = cold.clone();
        c.id = ulid::Ulid::new().to_string();
        let t = Instant::now();
        let r = agent.submit(c).await.unwrap();
        let took = t.elapsed();
        assert_eq!(&r.body[..], BODY);
        let (ran, rm) = raw_cold(&docker, &image).await;
        if i >= 2 {
            agent_lat.push(took);
            raw_lat.push(ran);
            raw_rm.push(ran + rm);
        }
        // Let the agent's background removal finish so it does not weigh on the next run.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("(c) cold default-format calls, sequential ({:?} in all)", start.elapsed());
    let sum = |l: &Vec<Duration>| l.iter().sum::<Duration>();
    let (ta, tr, trr) = (sum(&agent_lat), sum(&raw_lat), sum(&raw_rm));
    let a = summary("  agent (create..wait; rm async)", agent_lat, ta);
    let r = summary("  raw create+start+wait", raw_lat, tr);
    let rr = summary("  raw create+start+wait+remove", raw_rm, trr);
    println!(
        "  ratio agent/raw p50: {:.2}x (vs raw incl. remove: {:.2}x)",
        a.p50.as_secs_f64() / r.p50.as_secs_f64(),
        a.p50.as_secs_f64() / rr.p50.as_secs_f64()
    );

    handle.stop(true).await;
    agent.shutdown().await;
}
