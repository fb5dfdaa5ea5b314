//! Fn's own Python FDK (`pip install fdk`, unchanged) speaks http-stream to the agent.
//!
//! The image is built without a registry by `tests/python_fdk/build.sh` (debootstrap + pip +
//! `docker import`, ~45 s with a warm apt mirror) only when `fn-test/python-fdk:latest` is
//! missing. Needs root, Docker, and network access to a Debian mirror and PyPI.
//!
//! ```text
//! cargo test -p runner-node --features testing --test python_fdk
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runner_node::http::gateway;
use runner_node::{Agent, AgentConfig, CallSpec, Format, NoopRecorder};

const IMAGE: &str = "fn-test/python-fdk:latest";

fn build_image() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python_fdk/build.sh");
    let status = std::process::Command::new("bash").arg(script).arg(IMAGE).status().expect("run build.sh");
    assert!(status.success(), "{script} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_fdk_answers_over_http_stream() {
    tokio::task::spawn_blocking(build_image).await.unwrap();
    let cfg = AgentConfig {
        container_label_tag: "fn-python-test".into(),
        instance_id: format!("py-{}", ulid::Ulid::new().to_string().to_lowercase()),
        iofs_path: std::env::temp_dir().join("fn-iofs-tests"),
        // Python starts slower than a static binary.
        hot_start_timeout: Duration::from_secs(30),
        ..AgentConfig::default()
    };
    let agent = Agent::new(cfg, Arc::new(NoopRecorder)).await.unwrap();
    for body in ["world", "again"] {
        let id = ulid::Ulid::new().to_string();
        let mut call = CallSpec::new(id.clone(), IMAGE);
        call.app_id = "app".into();
        call.app_name = "pyapp".into();
        call.fn_id = "pyfn".into();
        call.format = Format::HttpStream;
        call.body = Bytes::from(body);
        call.headers.insert("content-type", "text/plain".parse().unwrap());
        let started = std::time::Instant::now();
        let resp = agent.submit(call).await.unwrap_or_else(|e| panic!("python fdk call failed: {e}"));
        eprintln!("python fdk call took {:?}", started.elapsed());
        assert_eq!(resp.status, 200);
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).unwrap_or_else(|_| panic!("not JSON: {:?}", resp.body));
        assert_eq!(v["hello"], body);
        assert_eq!(v["call_id"], id.as_str(), "the FDK read Fn-Call-Id");
        assert_eq!(resp.headers["x-python-fdk"], "yes");
        assert!(resp.headers["fn-fdk-version"].to_str().unwrap().starts_with("fdk-python/"));
    }

    // The same function behind an HTTP trigger: Fn's gateway mapping both ways.
    let mut incoming = http::HeaderMap::new();
    incoming.insert("content-type", "text/plain".parse().unwrap());
    incoming.insert("x-anything", "1".parse().unwrap());
    let mut call = CallSpec::new(ulid::Ulid::new().to_string(), IMAGE);
    call.format = Format::HttpStream;
    call.body = Bytes::from("trigger");
    call.headers = gateway::request_headers(&incoming, "PUT", "http://node/t/pyapp/hello");
    let resp = agent.submit(call).await.unwrap();
    let (status, headers) = gateway::response(&resp);
    assert_eq!(status, 200);
    assert_eq!(headers["x-python-fdk"], "yes", "{headers:?}");
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["hello"], "trigger");
    agent.shutdown().await;
}
