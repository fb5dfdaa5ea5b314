//! Secure by default, against the real server and the real `api-node` binary: slow clients are cut off
//! (HTTP head and body, gRPC), secrets never reach the output, the runner API is closed unless runners
//! can be authenticated, and logs to a file carry no colour codes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use api_node::direct::{AsyncPolicy, DirectDataAccess};
use api_node::http::Extensions;
use api_node::listeners::Listeners;
use api_node::queue::MemoryQueue;
use api_node::testing::{free_port, fresh_store, send_then_stall, Backend};
use runner_node::slow_clients::HttpTimeouts;
use runner_node::DataAccess;

/// How long a test waits for the server to cut a connection off before it calls the limit broken:
/// well above the limits under test (1 s, 300 ms; actix checks the head deadline against a clock it
/// refreshes every 500 ms), well below the defaults (5 s, 30 s).
const CUT_OFF_WITHIN: Duration = Duration::from_secs(3);

fn short() -> HttpTimeouts {
    HttpTimeouts {
        header: Some(Duration::from_millis(1000)),
        body_idle: Some(Duration::from_millis(300)),
        keep_alive: Some(Duration::from_millis(300)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cuts_off_half_a_head_and_a_stalled_body() {
    let n =
        common::node_with(Backend::Sqlite, |s| s.http_timeouts = short(), Listeners::default(), Extensions::default())
            .await;
    let addr = n.base.trim_start_matches("http://").to_string();

    let answer = send_then_stall(&addr, b"GET /v2/apps HTTP/1.1\r\nHost: x\r\n", CUT_OFF_WITHIN).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    let head =
        "POST /v2/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"app\":";
    let answer = send_then_stall(&addr, head.as_bytes(), CUT_OFF_WITHIN).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_eq!(n.get("/v2/apps").await.json()["items"], serde_json::json!([]), "nothing half-written");

    // An idle kept-alive connection is closed too.
    let answer = send_then_stall(&addr, b"GET /v2/apps HTTP/1.1\r\nHost: x\r\n\r\n", CUT_OFF_WITHIN).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    n.shutdown().await;

    // A body that arrives slowly but steadily is not cut off: the limit is between chunks.
    let n = common::node_with(
        Backend::Sqlite,
        |s| s.http_timeouts = HttpTimeouts { header: Some(Duration::from_secs(5)), ..short() },
        Listeners::default(),
        Extensions::default(),
    )
    .await;
    let a = n.base.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let body = br#"{"name":"slow-but-steady"}"#;
        let mut s = TcpStream::connect(&a).unwrap();
        let head = format!("POST /v2/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).unwrap();
        for chunk in body.chunks(4) {
            std::thread::sleep(Duration::from_millis(100));
            if let Err(e) = s.write_all(chunk) {
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                panic!("{e}: {answer}");
            }
        }
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_cuts_off_a_stalled_preface_and_still_serves() {
    let (store, _) = fresh_store(Backend::Sqlite).await;
    let data =
        Arc::new(DirectDataAccess::new(Arc::new(store), Arc::new(MemoryQueue::default()), AsyncPolicy::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = Some("grpc-token".into());
    tokio::spawn(async move {
        api_node::hybrid::grpc::serve_on_with(listener, data, token, None, &short(), 1 << 20, std::future::pending())
            .await
    });
    // Half of the HTTP/2 preface, then nothing.
    let answer = send_then_stall(&addr.to_string(), b"PRI * HTTP/2.0\r\n", CUT_OFF_WITHIN).await;
    assert!(!answer.contains("HTTP/1.1"), "{answer:?}");
    // A real client is served.
    let client = runner_node::hybrid::GrpcClient::new(
        &format!("grpc://{addr}"),
        Some("grpc-token".into()),
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    assert_eq!(client.app_by_name("nope").await.unwrap_err(), shared::Error::AppNotFound);
}

#[tokio::test]
async fn runner_clients_keep_their_token_out_of_debug() {
    let http = runner_node::hybrid::HttpClient::new(
        "http://127.0.0.1:1",
        Some("runner-token-sec".into()),
        Duration::from_secs(1),
    )
    .unwrap();
    let grpc = runner_node::hybrid::GrpcClient::new(
        "grpc://127.0.0.1:1",
        Some("runner-token-sec".into()),
        Duration::from_secs(1),
        None,
    )
    .unwrap();
    assert_no_secret(&format!("{http:?} {grpc:?}"));
}

// ---- the binary ------------------------------------------------------------------------------------

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_api-node"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FN_")) {
        c.env_remove(k);
    }
    c
}

const SECRETS: &[&str] = &["db-userinfo-pw", "db-query-pw", "mq-userinfo-pw", "mq-query-token", "runner-token-sec"];

fn assert_no_secret(output: &str) {
    for s in SECRETS {
        assert!(!output.contains(s), "secret {s} leaked:\n{output}");
    }
}

#[test]
fn an_unreachable_database_or_queue_is_reported_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = |name: &str| format!("sqlite3://{}/{name}", dir.path().display());
    // (FN_DB_URL, FN_MQ_URL, FN_RUNNER_TOKEN, how the unreachable URL must be shown); the first database
    // is retried once, so its retry lines are checked too.
    let cases = [
        (
            "postgres://fn:db-userinfo-pw@127.0.0.1:1/fn?sslmode=disable&password=db-query-pw".to_string(),
            "redis://:mq-userinfo-pw@127.0.0.1:1/0?token=mq-query-token",
            Some("runner-token-sec"),
            "postgres://fn:***@127.0.0.1:1/fn?sslmode=disable&password=***",
        ),
        (
            sqlite("fn.db"),
            "postgres://fn:mq-userinfo-pw@127.0.0.1:1/fn?password=mq-query-token",
            Some("runner-token-sec"),
            "postgres://fn:***@127.0.0.1:1/fn?password=***",
        ),
        (
            sqlite("fn2.db"),
            "redis://:mq-userinfo-pw@127.0.0.1:1/0?token=mq-query-token",
            None,
            "redis://:***@127.0.0.1:1/0?token=***",
        ),
    ];
    for (db, mq, token, shown) in cases {
        let mut cmd = binary();
        cmd.env("FN_DB_URL", &db)
            .env("FN_MQ_URL", mq)
            .env("FN_DS_DB_PING_MAX_RETRIES", if db.starts_with("postgres") { "1" } else { "0" })
            .env("FN_LOG_LEVEL", "trace")
            .env("FN_PORT", "0");
        if let Some(token) = token {
            cmd.env("FN_RUNNER_TOKEN", token);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{db} {mq}");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(shown), "{text}");
        assert_no_secret(&text);
    }
}

#[test]
fn an_api_node_without_runner_credentials_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .env("FN_NODE_TYPE", "api")
        .env("FN_DB_URL", format!("sqlite3://{}/fn.db", dir.path().display()))
        .env("FN_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FN_RUNNER_TOKEN") && err.contains("FN_RUNNER_API_INSECURE=true"), "{err}");
}

/// A node process logging to a file, stopped on drop.
struct Running {
    child: std::process::Child,
    log: std::path::PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(env: &[(&str, String)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        let port = free_port();
        let mut cmd = binary();
        cmd.env("FN_PORT", port.to_string())
            .env("FN_LISTEN_HOST", "127.0.0.1")
            .env("FN_DB_URL", format!("sqlite3://{}/fn.db", dir.path().display()))
            .env("FN_MQ_URL", format!("sqlite3://{}/fn.mq", dir.path().display()))
            .env("FN_INSTANCE_ID", format!("fn-sec-{}", shared::id::new_id()))
            .env("FN_IOFS_PATH", dir.path().join("io"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut node = Running { child, log, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        for _ in 0..300 {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("exited with {status}: {}", node.log());
            }
            if node.log().contains("fn is ready") {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("not ready: {}", node.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_logs_plainly_says_where_it_is_and_leaks_no_token() {
    let grpc = free_port();
    let node =
        Running::start(&[("FN_RUNNER_TOKEN", "runner-token-sec".into()), ("FN_GRPC_PORT", grpc.to_string())]).await;
    let http = reqwest::Client::new();
    let doc = http.get(format!("{}/v2/openapi.json", node.url)).send().await.unwrap().text().await.unwrap();
    assert!(doc.contains("/v2/runner"), "the document lists the runner API");
    assert_no_secret(&doc);
    // With a token, the runner API is served to runners that present it, and only to them.
    let r = http.get(format!("{}/v2/runner/apps/nope", node.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(format!("{}/v2/runner/apps/nope", node.url)).bearer_auth("runner-token-sec").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok(), "gRPC port open");

    let log = node.log();
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log file:\n{log}");
    let ready = log.lines().find(|l| l.contains("fn is ready")).unwrap();
    assert!(ready.contains(&node.url), "{ready}");
    assert!(ready.contains("data in sqlite3://") && ready.contains("queue in sqlite3://"), "{ready}");
    assert!(ready.contains("Docker engine found"), "{ready}");
    assert_no_secret(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_serves_no_runner_api_unless_asked() {
    let grpc = free_port();
    let node = Running::start(&[("FN_GRPC_PORT", grpc.to_string())]).await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/v2/runner/apps/nope", node.url)).send().await.unwrap();
    let body = r.text().await.unwrap();
    assert!(!body.contains("App not found"), "the runner API answered: {body}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err(), "gRPC port open");
    assert!(node.log().contains("runner API off"), "{}", node.log());
    drop(node);

    // The explicit opt-out serves it to anybody, with a warning.
    let node = Running::start(&[("FN_GRPC_PORT", grpc.to_string()), ("FN_RUNNER_API_INSECURE", "true".into())]).await;
    let r = http.get(format!("{}/v2/runner/apps/nope", node.url)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (404, r#"{"message":"App not found"}"#.to_string()));
    assert!(std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok(), "gRPC port closed");
    let log = node.log();
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains("FN_RUNNER_API_INSECURE")), "{log}");
}
