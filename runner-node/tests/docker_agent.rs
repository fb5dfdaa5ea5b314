//! The agent against the real Docker engine.
//!
//! Needs dockerd and the static test functions:
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p test-functions
//! cargo test -p runner-node --features testing --test docker_agent
//! ```
//! Every test uses its own label tag and instance id, so tests run in parallel and only ever
//! see (and clean up) their own containers.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use bollard::Docker;
use bytes::Bytes;
use runner_node::{Agent, AgentConfig, AgentError, CallRecorder, CallSpec, Format, RecordError};
use shared::{Call, CallStatus};
use tokio::sync::OnceCell;

const ALL_FORMATS: [Format; 4] = [Format::HttpStream, Format::Http, Format::Json, Format::Default];

async fn docker() -> Docker {
    Docker::connect_with_local_defaults().unwrap().negotiate_version().await.unwrap()
}

/// Label key on every container of this suite; each test has its own instance id (value).
const LABEL: &str = "fn-agent-test";

/// Builds every test-function image once per test binary, and removes containers that
/// earlier runs of this suite left behind (a failed test does not clean up).
async fn images() {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
            let d = docker().await;
            let filters = std::collections::HashMap::from([("label".to_string(), vec![LABEL.to_string()])]);
            let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
            for c in d.list_containers(Some(opts)).await.unwrap() {
                let created = c.created.unwrap_or(0);
                // Only containers older than this run.
                if created < chrono_now() - 120 {
                    let rm = bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() };
                    let _ = d.remove_container(c.id.as_deref().unwrap_or(""), Some(rm)).await;
                }
            }
            for name in ["echo", "envdump", "sleep", "crash", "oom", "huge", "forkbomb", "failn", "netprobe", "logtag"]
            {
                runner_node::testing::function_image(&d, name).await.unwrap();
            }
        })
        .await;
}

/// Keeps every record and log the agent reports.
#[derive(Default)]
struct MemRecorder {
    events: Mutex<Vec<(String, Call, Bytes)>>,
}

#[async_trait]
impl CallRecorder for MemRecorder {
    async fn call_started(&self, c: &Call) -> Result<(), RecordError> {
        self.events.lock().unwrap().push(("started".into(), c.clone(), Bytes::new()));
        Ok(())
    }
    async fn call_finished(&self, c: &Call, log: Bytes) -> Result<(), RecordError> {
        self.events.lock().unwrap().push(("finished".into(), c.clone(), log));
        Ok(())
    }
}

struct Harness {
    agent: Agent,
    recorder: Arc<MemRecorder>,
    docker: Docker,
    cfg: AgentConfig,
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn test_config(test: &str) -> AgentConfig {
    AgentConfig {
        container_label_tag: LABEL.to_string(),
        instance_id: format!("{test}-{}", ulid::Ulid::new().to_string().to_lowercase()),
        iofs_path: std::env::temp_dir().join("fn-iofs-tests"),
        ..AgentConfig::default()
    }
}

async fn harness_with(cfg: AgentConfig) -> Harness {
    images().await;
    let recorder = Arc::new(MemRecorder::default());
    let agent = Agent::new(cfg.clone(), recorder.clone()).await.unwrap();
    Harness { agent, recorder, docker: docker().await, cfg }
}

async fn harness(test: &str) -> Harness {
    harness_with(test_config(test)).await
}

impl Harness {
    /// This test's containers (running or not).
    async fn containers(&self) -> Vec<String> {
        let label = format!("{}={}", self.cfg.container_label_tag, self.cfg.instance_id);
        let filters = std::collections::HashMap::from([("label".to_string(), vec![label])]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        self.docker.list_containers(Some(opts)).await.unwrap().into_iter().filter_map(|c| c.id).collect()
    }

    /// Waits until this test has `n` containers, failing after `within`.
    async fn expect_containers(&self, n: usize, within: Duration) {
        let start = Instant::now();
        loop {
            let have = self.containers().await.len();
            if have == n {
                return;
            }
            assert!(start.elapsed() < within, "expected {n} containers, still have {have}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn paused(&self, id: &str) -> bool {
        let info = self.docker.inspect_container(id, None::<InspectContainerOptions>).await.unwrap();
        info.state.and_then(|s| s.paused).unwrap_or(false)
    }

    async fn finish(self) {
        self.agent.shutdown().await;
        assert!(self.containers().await.is_empty(), "shutdown removes every container");
    }
}

fn call(func: &str, format: Format, body: &str) -> CallSpec {
    let mut c = CallSpec::new(ulid::Ulid::new().to_string(), format!("fn-test/{func}:latest"));
    c.app_id = "app1".into();
    c.app_name = "myapp".into();
    c.fn_id = format!("fn-{func}");
    c.format = format;
    c.body = Bytes::from(body.to_string());
    c.url = "http://localhost:8080/invoke/fn1".into();
    c
}

fn header<'a>(r: &'a runner_node::CallResponse, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_status_and_headers_pass_through_in_every_format() {
    let h = harness("echo").await;
    for format in ALL_FORMATS {
        let mut c = call("echo", format, "hello");
        c.method = "PUT".into();
        c.headers.insert("x-status", "201".parse().unwrap());
        c.headers.insert("x-header-x-custom", "yes".parse().unwrap());
        let r = h.agent.submit(c.clone()).await.unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(&r.body[..], b"hello", "{format:?}");
        match format {
            // Cold functions cannot set status or headers.
            Format::Default => assert_eq!(r.status, 200),
            // http-stream answers 200; the function's status travels in Fn-Http-Status.
            Format::HttpStream => {
                assert_eq!(r.status, 200);
                assert_eq!(header(&r, "fn-http-status"), "201");
            }
            _ => assert_eq!(r.status, 201, "{format:?}"),
        }
        if format != Format::Default {
            assert_eq!(header(&r, "x-custom"), "yes", "{format:?}");
            assert_eq!(header(&r, "x-method"), if format == Format::HttpStream { "POST" } else { "PUT" });
            assert_eq!(header(&r, "x-call-id"), c.id, "{format:?}");
        }
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_env_and_hardening_reach_the_function() {
    let h = harness("env").await;
    for format in ALL_FORMATS {
        let mut c = call("envdump", format, "");
        c.config = BTreeMap::from([("MY_KEY".to_string(), "my value".to_string())]);
        c.headers.insert("x-request-thing", "abc".parse().unwrap());
        let r = h.agent.submit(c.clone()).await.unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let env = &v["env"];
        assert_eq!(env["MY_KEY"], "my value", "{format:?}");
        assert_eq!(env["FN_FORMAT"], format.as_str());
        assert_eq!(env["FN_APP_NAME"], "myapp");
        assert_eq!(env["FN_FN_ID"], "fn-envdump");
        assert_eq!(env["FN_MEMORY"], "128");
        assert_eq!(v["call_id"], c.id.as_str(), "{format:?}");
        match format {
            Format::HttpStream => assert_eq!(env["FN_LISTENER"], "unix:/tmp/iofs/lsnr.sock"),
            Format::Default => {
                assert_eq!(env["FN_CALL_ID"], c.id.as_str());
                assert_eq!(env["FN_HEADER_X-Request-Thing"], "abc");
                assert!(env["FN_DEADLINE"].as_str().unwrap().ends_with('Z'));
            }
            _ => {}
        }
        // Hardened by default.
        assert_eq!(v["uid"], "1000", "{format:?}");
        assert_eq!(v["gid"], "1000");
        assert_eq!(v["root_writable"], false);
        assert_eq!(v["tmp_writable"], true);
        assert_eq!(v["no_new_privs"], "1");
        assert_eq!(v["cap_eff"], "0000000000000000");
    }
    h.finish().await;

    // Each protection can be switched off.
    let mut cfg = test_config("env-soft");
    cfg.disable_readonly_rootfs = true;
    cfg.disable_unprivileged = true;
    let h = harness_with(cfg).await;
    let r = h.agent.submit(call("envdump", Format::HttpStream, "")).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["uid"], "0");
    assert_eq!(v["root_writable"], true);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sequential_calls_share_one_hot_container() {
    let h = harness("hot50").await;
    for format in [Format::HttpStream, Format::Http, Format::Json] {
        let mut hosts = HashSet::new();
        let mut last = 0;
        let start = Instant::now();
        for i in 0..50 {
            let r = h.agent.submit(call("echo", format, &format!("call {i}"))).await.unwrap();
            assert_eq!(r.body, format!("call {i}"));
            hosts.insert(header(&r, "x-hostname").to_string());
            last = header(&r, "x-count").parse().unwrap();
        }
        eprintln!("{format:?}: 50 sequential calls in {:?}", start.elapsed());
        assert_eq!(hosts.len(), 1, "{format:?}: one container served every call");
        assert_eq!(last, 50, "{format:?}");
    }
    assert_eq!(h.containers().await.len(), 3, "one container per format");
    h.finish().await;
}

fn sleep_call() -> CallSpec {
    let mut c = call("sleep", Format::HttpStream, "1500");
    c.timeout = Duration::from_secs(20);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_calls_scale_out_and_the_ninth_waits_for_a_free_container() {
    let mut cfg = test_config("scale");
    cfg.max_total_memory = 8 * (128 << 20); // room for exactly eight containers
    cfg.freeze_idle = None;
    let h = harness_with(cfg).await;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..9 {
        let agent = h.agent.clone();
        let mut c = sleep_call();
        c.body = "6000".into();
        tasks.push(tokio::spawn(async move {
            let r = agent.submit(c).await;
            (r, start.elapsed())
        }));
    }
    // While eight run, the ninth waits for capacity. The calls sleep long enough (6 s) that all eight
    // run at once even when a loaded machine starts containers slowly.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut key_call = sleep_call();
    key_call.body = "6000".into();
    let key = key_call.slot_key();
    let mut stats = h.agent.slot_stats(&key).unwrap();
    for _ in 0..40 {
        if stats.busy == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = h.agent.slot_stats(&key).unwrap();
    }
    assert_eq!(stats.busy, 8, "{stats:?}");
    assert_eq!(stats.waiting, 1, "{stats:?}");
    let mut times = Vec::new();
    for t in tasks {
        let (r, took) = t.await.unwrap();
        r.unwrap();
        times.push(took);
    }
    times.sort();
    assert_eq!(h.containers().await.len(), 8, "never more than capacity allows");
    assert!(times[8] >= times[0] + Duration::from_millis(5900), "the ninth ran after another: {times:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_answer_504_and_kill_the_container() {
    let h = harness("timeout").await;
    for format in [Format::HttpStream, Format::Default] {
        let mut c = call("sleep", format, "10000");
        c.timeout = Duration::from_secs(1);
        let start = Instant::now();
        let err = h.agent.submit(c).await.unwrap_err();
        assert!(matches!(err, AgentError::Timeout), "{format:?}: {err}");
        assert_eq!((err.status(), err.message().as_str()), (504, "Timed out"));
        assert!(start.elapsed() < Duration::from_secs(4), "the timeout does not wait for the function");
        h.expect_containers(0, Duration::from_secs(10)).await;
    }
    let events = h.recorder.events.lock().unwrap().clone();
    assert!(events.iter().any(|(e, c, _)| e == "finished" && c.status == CallStatus::Timeout));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_answer_502_with_the_exit_code_and_are_logged() {
    let h = harness("crash").await;
    for format in [Format::HttpStream, Format::Default, Format::Json] {
        let err = h.agent.submit(call("crash", format, "3")).await.unwrap_err();
        assert_eq!((err.status(), err.to_string()), (502, "container exit code 3".to_string()), "{format:?}");
    }
    h.expect_containers(0, Duration::from_secs(10)).await;
    h.agent.shutdown().await;
    let events = h.recorder.events.lock().unwrap().clone();
    let cold = events
        .iter()
        .find(|(e, c, _)| e == "finished" && c.fn_id == "fn-crash" && c.error == "container exit code 3")
        .expect("a finished record");
    assert_eq!(cold.1.status, CallStatus::Error);
    assert!(
        events.iter().any(|(_, _, log)| String::from_utf8_lossy(log).contains("crash: exiting with 3")),
        "stderr is the call log"
    );
    assert!(h.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_answers_502_with_the_memory_hint() {
    let h = harness("oom").await;
    for format in [Format::HttpStream, Format::Default] {
        let mut c = call("oom", format, "");
        c.memory_mb = 32;
        let err = h.agent.submit(c).await.unwrap_err();
        assert!(matches!(err, AgentError::OutOfMemory), "{format:?}: {err}");
        assert_eq!(
            err.to_string(),
            "container out of memory, you may want to raise route.memory for this route (default: 128MB)"
        );
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_answer_502() {
    let mut cfg = test_config("huge");
    cfg.max_response_size = 1 << 20;
    let h = harness_with(cfg).await;
    for format in [Format::HttpStream, Format::Default, Format::Json, Format::Http] {
        let err = h.agent.submit(call("huge", format, &(2 << 20).to_string())).await.unwrap_err();
        assert_eq!((err.status(), err.to_string()), (502, "function response too large".to_string()), "{format:?}");
        let ok = h.agent.submit(call("huge", format, "1000")).await.unwrap();
        assert_eq!(ok.body.len(), 1000);
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_containers_expire_and_frozen_ones_thaw_on_use() {
    let mut cfg = test_config("idle");
    cfg.freeze_idle = Some(Duration::from_millis(100));
    let h = harness_with(cfg).await;
    let mut c = call("echo", Format::HttpStream, "one");
    c.idle_timeout = Duration::from_secs(3);
    let first = h.agent.submit(c.clone()).await.unwrap();
    let ids = h.containers().await;
    assert_eq!(ids.len(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(h.paused(&ids[0]).await, "idle container is frozen");
    let second = h.agent.submit(c.clone()).await.unwrap();
    assert_eq!(header(&first, "x-hostname"), header(&second, "x-hostname"), "the frozen container served the call");
    assert_eq!(second.body, "one");
    h.expect_containers(0, Duration::from_secs(8)).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_containers_of_other_functions_are_evicted_for_a_waiting_call() {
    let mut cfg = test_config("evict");
    cfg.max_total_memory = 256 << 20;
    let h = harness_with(cfg).await;
    let mut a = call("echo", Format::HttpStream, "a");
    a.idle_timeout = Duration::from_secs(120);
    h.agent.submit(a).await.unwrap();
    let before = h.containers().await;
    assert_eq!(before.len(), 1);
    let mut b = call("envdump", Format::HttpStream, "");
    b.memory_mb = 256;
    b.timeout = Duration::from_secs(10);
    let start = Instant::now();
    h.agent.submit(b).await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(8));
    let after = h.containers().await;
    assert!(!after.contains(&before[0]), "the idle container was evicted");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_errors_are_400_at_once_and_503_after_waiting() {
    let mut cfg = test_config("capacity");
    cfg.max_total_memory = 128 << 20;
    cfg.max_request_size = 1000;
    let h = harness_with(cfg).await;
    let err = h.agent.submit(call("echo", Format::HttpStream, &"x".repeat(1001))).await.unwrap_err();
    assert_eq!((err.status(), err.to_string()), (413, "Request content too large".to_string()));

    let err = h.agent.submit(call("echo", Format::CloudEvent, "")).await.unwrap_err();
    assert_eq!((err.status(), err.to_string()), (400, "Format cloudevent is not supported by this runner".to_string()));

    let mut huge = call("echo", Format::HttpStream, "");
    huge.memory_mb = 512;
    let err = h.agent.submit(huge).await.unwrap_err();
    assert_eq!((err.status(), err.to_string()), (400, "Requested CPU/Memory cannot be allocated".to_string()));

    let mut long = call("sleep", Format::HttpStream, "3000");
    long.timeout = Duration::from_secs(10);
    let agent = h.agent.clone();
    let running = tokio::spawn(async move { agent.submit(long).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut other = call("echo", Format::Default, "");
    other.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let err = h.agent.submit(other).await.unwrap_err();
    assert!(matches!(err, AgentError::TooBusy), "{err}");
    assert_eq!(err.to_string(), "Timed out - server too busy");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(15)));
    assert!(start.elapsed() < Duration::from_secs(2));
    running.await.unwrap().unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_node_are_reaped_at_restart() {
    let cfg = test_config("reap");
    let h = harness_with(cfg.clone()).await;
    let mut c = call("echo", Format::HttpStream, "x");
    c.idle_timeout = Duration::from_secs(300);
    h.agent.submit(c).await.unwrap();
    assert_eq!(h.containers().await.len(), 1);
    // A killed node leaves its containers behind: no shutdown, nothing dropped.
    std::mem::forget(h.agent.clone());
    let restarted = Agent::new(cfg, Arc::new(MemRecorder::default())).await.unwrap();
    assert!(h.containers().await.is_empty(), "the restarted node removed the leftovers");
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_contained_by_the_pids_limit() {
    let h = harness("forkbomb").await;
    let r = h.agent.submit(call("forkbomb", Format::HttpStream, "")).await.unwrap();
    let spawned: u32 = String::from_utf8_lossy(&r.body).parse().unwrap();
    assert!(spawned < 50, "threads are capped by FN_MAX_PIDS=50, got {spawned}");
    let ok = h.agent.submit(call("echo", Format::HttpStream, "still fine")).await.unwrap();
    assert_eq!(ok.body, "still fine");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_keep_the_container_and_bad_containers_are_reported() {
    let mut cfg = test_config("failn");
    cfg.hot_start_timeout = Duration::from_millis(1000);
    let h = harness_with(cfg).await;
    let mut c = call("failn", Format::HttpStream, "ok");
    c.config.insert("FAIL_TIMES".into(), "2".into());
    for _ in 0..2 {
        let err = h.agent.submit(c.clone()).await.unwrap_err();
        assert!(matches!(err, AgentError::FunctionFailed), "{err}");
        assert_eq!(err.status(), 502);
    }
    let r = h.agent.submit(c.clone()).await.unwrap();
    assert_eq!(r.body, "ok", "the third call succeeds in the same container");
    assert_eq!(h.containers().await.len(), 1);
    // Each failure's stderr (the panic message) is in that call's own log, though it reaches us apart
    // from the response.
    h.agent.flush_records().await;
    let logs: Vec<String> = h
        .recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, c, _)| kind == "finished" && c.status == shared::CallStatus::Error)
        .map(|(_, _, log)| String::from_utf8_lossy(log).into_owned())
        .collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains(&format!("failing call {} of 2", i + 1)), "call {}: {log:?}", i + 1);
    }

    // An absolute symlink to the socket is refused.
    let mut bad = call("echo", Format::HttpStream, "");
    bad.config.insert("FDK_ABSOLUTE_SYMLINK".into(), "1".into());
    let err = h.agent.submit(bad).await.unwrap_err();
    assert!(matches!(err, AgentError::ContainerInitFailed), "{err}");

    // A function that does not open its socket in time.
    let mut slow = call("echo", Format::HttpStream, "");
    slow.config.insert("FDK_START_DELAY_MS".into(), "3000".into());
    let err = h.agent.submit(slow).await.unwrap_err();
    assert!(matches!(err, AgentError::ContainerInitTimeout), "{err}");
    assert_eq!(err.status(), 504);

    let mut missing = call("echo", Format::HttpStream, "");
    missing.image = "fn-test/does-not-exist:v1".into();
    let err = h.agent.submit(missing).await.unwrap_err();
    assert!(err.to_string().starts_with("Failed to pull image 'fn-test/does-not-exist:v1'"), "{err}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_calls_and_refuses_new_ones() {
    let h = harness("shutdown").await;
    let mut c = call("sleep", Format::HttpStream, "1500");
    c.timeout = Duration::from_secs(10);
    let agent = h.agent.clone();
    let in_flight = tokio::spawn(async move { agent.submit(c).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let agent = h.agent.clone();
    let stopping = tokio::spawn(async move { agent.shutdown().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = h.agent.submit(call("echo", Format::HttpStream, "")).await.unwrap_err();
    assert_eq!(err.status(), 503);
    assert_eq!(in_flight.await.unwrap().unwrap().body, "slept");
    stopping.await.unwrap();
    assert!(h.containers().await.is_empty());
    let events = h.recorder.events.lock().unwrap().clone();
    assert!(events.iter().any(|(e, c, _)| e == "finished" && c.status == CallStatus::Success));
}

/// Runs the docker CLI, failing the test on error.
fn docker_cli(args: &[&str]) {
    let out = std::process::Command::new("docker").args(args).output().expect("docker CLI");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An image only in the registry (the test command runs one on 127.0.0.1:5000) is pulled before the
/// call runs, and the call succeeds; an image that exists nowhere fails with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_missing_images_from_a_registry() {
    let h = harness("pull").await;
    let tag = ulid::Ulid::new().to_string().to_lowercase();
    let remote = format!("127.0.0.1:5000/fn-pull-test/echo:{tag}");
    docker_cli(&["tag", "fn-test/echo:latest", &remote]);
    docker_cli(&["push", "-q", &remote]);
    docker_cli(&["rmi", &remote]);
    assert!(h.docker.inspect_image(&remote).await.is_err(), "the image is only in the registry now");

    let mut c = call("echo", Format::HttpStream, "pulled");
    c.image = remote.clone();
    c.timeout = Duration::from_secs(2);
    let resp = h.agent.submit(c).await.expect("the image is pulled, then the call runs");
    assert_eq!(&resp.body[..], b"pulled");
    assert!(h.docker.inspect_image(&remote).await.is_ok(), "the pulled image is kept for the next call");

    let mut c = call("echo", Format::HttpStream, "x");
    let missing = format!("127.0.0.1:5000/fn-pull-test/missing:{tag}");
    c.image = missing.clone();
    let err = h.agent.submit(c).await.unwrap_err();
    // The caller learns the pull failed, not what the registry said (that is in the node's log).
    assert_eq!(err.message(), format!("Failed to pull image '{missing}': image not found or not accessible"));
    assert_eq!(err.status(), 404, "a missing image is Docker's 404");
    h.agent.flush_records().await;
    let recorded = h
        .recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|(kind, c, _)| kind == "finished" && c.error == err.message() && !c.error.contains("manifest"));
    assert!(recorded, "the call's record has the same message, without Docker's detail");

    // A reference that is not Docker's grammar is refused before any pull.
    for bad in ["127.0.0.1:5000/Upper/case", "fn-test/echo:latest --help", "a//b"] {
        let mut c = call("echo", Format::HttpStream, "x");
        c.image = bad.to_string();
        let err = h.agent.submit(c).await.unwrap_err();
        assert!(matches!(err, AgentError::InvalidImage(_)), "{bad}: {err}");
        assert_eq!(err.status(), 400);
    }
    let _ = std::process::Command::new("docker").args(["rmi", &remote]).output();
    h.finish().await;
}

#[tokio::test]
async fn a_socket_directory_too_deep_is_refused_at_start() {
    let mut cfg = test_config("deep");
    cfg.iofs_path = std::env::temp_dir().join("a".repeat(80));
    let err = Agent::new(cfg, Arc::new(MemRecorder::default())).await.err().expect("refused");
    assert!(err.to_string().contains("FN_IOFS_PATH"), "{err}");
}

/// The network and IP address of this test's container running fn `fn_id`.
async fn container_network(h: &Harness, fn_id: &str) -> (String, String) {
    for id in h.containers().await {
        let info = h.docker.inspect_container(&id, None::<InspectContainerOptions>).await.unwrap();
        let labels = info.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        if labels.get("fn.fn_id").map(String::as_str) != Some(fn_id) {
            continue;
        }
        let mode = info.host_config.and_then(|c| c.network_mode).unwrap_or_default();
        let networks = info.network_settings.and_then(|n| n.networks).unwrap_or_default();
        let ip = networks.values().find_map(|n| n.ip_address.clone().filter(|ip| !ip.is_empty())).unwrap_or_default();
        return (mode, ip);
    }
    panic!("no container runs {fn_id}");
}

/// Starts a hot netprobe container for fn `fn_id` and has another function's container try to
/// reach it; returns the first container's network and the second one's verdict.
async fn probe_between_functions(h: &Harness) -> (String, String) {
    let mut target = call("netprobe", Format::HttpStream, "");
    target.fn_id = "fn-target".into();
    let r = h.agent.submit(target).await.unwrap();
    assert_eq!(r.body, "listening");
    let (network, ip) = container_network(h, "fn-target").await;
    assert!(!ip.is_empty(), "the target container has an address on {network}");
    let mut prober = call("netprobe", Format::HttpStream, &format!("{ip}:7000"));
    prober.fn_id = "fn-prober".into();
    let r = h.agent.submit(prober).await.unwrap();
    (network, String::from_utf8_lossy(&r.body).into_owned())
}

/// By default function containers run on the agent's own bridge, where one function cannot open a
/// connection to another; `FN_DOCKER_NETWORKS` overrides it (on Docker's default bridge they can,
/// which also shows the probe itself works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_containers_are_isolated_from_each_other_on_the_agents_network() {
    let h = harness("isolated").await;
    assert_eq!(h.agent.config().docker_networks, vec![runner_node::agent::FUNCTIONS_NETWORK]);
    let net = h
        .docker
        .inspect_network(
            runner_node::agent::FUNCTIONS_NETWORK,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("the agent created its network");
    let options = net.options.unwrap_or_default();
    assert_eq!(options.get("com.docker.network.bridge.enable_icc").map(String::as_str), Some("false"));
    let (network, verdict) = probe_between_functions(&h).await;
    assert_eq!(network, runner_node::agent::FUNCTIONS_NETWORK);
    assert!(verdict.starts_with("blocked"), "one function reached another: {verdict}");
    h.finish().await;

    let mut cfg = test_config("bridged");
    cfg.docker_networks = vec!["bridge".into()];
    let h = harness_with(cfg).await;
    let (network, verdict) = probe_between_functions(&h).await;
    assert_eq!(network, "bridge", "FN_DOCKER_NETWORKS is honoured");
    assert_eq!(verdict, "connected", "the probe reaches a neighbour where nothing isolates it");
    h.finish().await;

    let mut cfg = test_config("nonet");
    cfg.docker_networks = vec!["none".into()];
    let h = harness_with(cfg).await;
    let mut c = call("netprobe", Format::HttpStream, "");
    c.fn_id = "fn-none".into();
    h.agent.submit(c).await.unwrap();
    let (network, ip) = container_network(&h, "fn-none").await;
    assert_eq!((network.as_str(), ip.as_str()), ("none", ""), "\"none\" disables networking");
    h.finish().await;
}

/// An existing network of the agent's name that lets containers talk is refused, not used.
#[tokio::test]
async fn a_network_that_does_not_isolate_is_refused() {
    let d = docker().await;
    let driver = runner_node::driver::docker::DockerDriver::connect(None).await.unwrap();
    let name = format!("fn-leaky-{}", &ulid::Ulid::new().to_string().to_lowercase()[20..]);
    docker_cli(&["network", "create", &name]);
    use runner_node::driver::Driver;
    let err = driver
        .ensure_isolated_network(&name, &Default::default())
        .await
        .expect_err("a bridge with inter-container traffic on is not used");
    assert!(err.to_string().contains("FN_DOCKER_NETWORKS"), "{err}");
    let _ = d.remove_network(&name).await;
}

/// The socket root is the agent's alone (root-owned, 0711: containers' users may pass through, not
/// list or plant anything); each container's directory is its user's (1000:1000) with mode 0700.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_directories_belong_to_their_container_and_nobody_else() {
    use std::os::unix::fs::MetadataExt;
    let h = harness("iofsmodes").await;
    let r = h.agent.submit(call("echo", Format::HttpStream, "hi")).await.unwrap();
    assert_eq!(r.body, "hi");
    let root = h.cfg.iofs_path.join(&h.cfg.instance_id);
    let meta = std::fs::symlink_metadata(&root).unwrap();
    assert!(meta.is_dir());
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o711), "socket root {}", root.display());
    let dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "one hot container, one directory: {dirs:?}");
    let meta = std::fs::symlink_metadata(&dirs[0]).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1000, 1000, 0o700),
        "container directory {}",
        dirs[0].display()
    );
    h.finish().await;
}

/// A socket path others may write to is refused at start: they could swap a node's directories.
#[tokio::test]
async fn a_socket_path_others_may_write_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cfg = test_config("openiofs");
    cfg.iofs_path = dir.path().to_path_buf();
    cfg.docker_networks = vec!["none".into()];
    let err = Agent::new(cfg, Arc::new(MemRecorder::default())).await.err().expect("refused");
    assert!(err.to_string().contains("FN_IOFS_PATH"), "{err}");
}

/// Timeouts and settings at "never" or beyond any date (`Duration::MAX`, `-1`, `i64::MAX` ms) run calls
/// in every format instead of panicking on a deadline that overflows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_and_huge_durations_do_not_overflow_deadlines() {
    let huge = i64::MAX.to_string();
    let vars = [
        ("FN_FREEZE_IDLE_MSECS", huge.as_str()),
        ("FN_HOT_POLL_MSECS", "-1"),
        ("FN_HOT_START_TIMEOUT_MSECS", "-1"),
        ("FN_HOT_PULL_TIMEOUT_MSECS", huge.as_str()),
    ];
    let from_env =
        AgentConfig::from_lookup(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())).unwrap();
    let cfg = AgentConfig {
        freeze_idle: from_env.freeze_idle,
        hot_poll: from_env.hot_poll,
        hot_start_timeout: from_env.hot_start_timeout,
        pull_timeout: from_env.pull_timeout,
        ..test_config("never")
    };
    let h = harness_with(cfg).await;
    for format in [Format::HttpStream, Format::Http, Format::Json, Format::Default] {
        let mut c = call("echo", format, "forever");
        c.timeout = Duration::MAX;
        c.idle_timeout = Duration::MAX;
        let r = h.agent.submit(c).await.unwrap();
        assert_eq!(&r.body[..], b"forever", "{format:?}");
    }
    h.finish().await;
}

/// The finished log of each call, by call id.
fn logs_by_call(h: &Harness) -> std::collections::HashMap<String, String> {
    h.recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, _, _)| kind == "finished")
        .map(|(_, c, log)| (c.id.clone(), String::from_utf8_lossy(log).into_owned()))
        .collect()
}

/// Every call's log holds the six lines its call wrote, with its own tag, and nothing else;
/// returns what is wrong.
fn check_own_logs(h: &Harness, calls: &[(String, String)], what: &str) -> Option<String> {
    let logs = logs_by_call(h);
    let mut bad = Vec::new();
    for (id, tag) in calls {
        let log = logs.get(id).map(String::as_str).unwrap_or("<no record>");
        let lines: Vec<&str> = log.lines().collect();
        let own = lines.len() == 6 && lines.iter().all(|l| l.starts_with(&format!("{tag} ")));
        if !own {
            bad.push(format!("{tag}: {log:?}"));
        }
    }
    (!bad.is_empty())
        .then(|| format!("{what}: {} of {} logs wrong, e.g. {:?}", bad.len(), calls.len(), &bad[..bad.len().min(3)]))
}

/// Extra fn config of a test case.
type Config = &'static [(&'static str, &'static str)];

/// Runs `n` back-to-back calls of `logtag` (each body its own tag) and returns (call id, tag) pairs.
async fn tagged_calls(
    h: &Harness,
    format: Format,
    config: &[(&str, &str)],
    prefix: &str,
    n: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let tag = format!("{prefix}-{i:03}");
        let mut c = call("logtag", format, &tag);
        for (k, v) in config {
            c.config.insert(k.to_string(), v.to_string());
        }
        let r = h.agent.submit(c.clone()).await.unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(r.body, tag);
        out.push((c.id, tag));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_calls_each_get_their_own_stderr_in_every_format() {
    let h = harness("logtag").await;
    // Each hot format with an FDK that frames its output (the agent asks it to) and with one that
    // does not; cold containers.
    let unframed: Config = &[("FDK_NO_LOGFRAME", "1")];
    let cases: [(Format, Config, &str, usize); 7] = [
        (Format::HttpStream, &[], "framed", 100),
        (Format::HttpStream, unframed, "unframed", 100),
        (Format::Http, &[], "http", 100),
        (Format::Http, unframed, "uhttp", 100),
        (Format::Json, &[], "json", 100),
        (Format::Json, unframed, "ujson", 100),
        (Format::Default, &[], "cold", 10),
    ];
    let mut wrong = Vec::new();
    for (format, config, prefix, n) in cases {
        let calls = tagged_calls(&h, format, config, prefix, n).await;
        h.agent.flush_records().await;
        wrong.extend(check_own_logs(&h, &calls, prefix));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_several_containers_each_get_their_own_stderr() {
    let h = harness("logtagpar").await;
    let mut wrong = Vec::new();
    for (format, config, prefix) in [
        (Format::HttpStream, &[][..], "pframed"),
        (Format::HttpStream, &[("FDK_NO_LOGFRAME", "1")][..], "punframed"),
        (Format::Json, &[][..], "pjson"),
        (Format::Json, &[("FDK_NO_LOGFRAME", "1")][..], "pujson"),
        (Format::Http, &[][..], "phttp"),
    ] {
        let tasks: Vec<_> = (0..4)
            .map(|w| {
                let agent = h.agent.clone();
                let config: Vec<(String, String)> =
                    config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..25 {
                        let tag = format!("{prefix}{w}-{i:03}");
                        let mut c = call("logtag", format, &tag);
                        c.config.extend(config.iter().cloned());
                        let r = agent.submit(c.clone()).await.unwrap_or_else(|e| panic!("{tag}: {e}"));
                        assert_eq!(r.body, tag);
                        out.push((c.id, tag));
                    }
                    out
                })
            })
            .collect();
        let mut calls = Vec::new();
        for t in tasks {
            calls.extend(t.await.unwrap());
        }
        h.agent.flush_records().await;
        wrong.extend(check_own_logs(&h, &calls, prefix));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    h.finish().await;
}
