//! Slow clients against the real node processes: a full node and a runner node cut off a client that
//! sends half a request head, and answer 408 (closing the connection) to an invoke whose body stalls,
//! while a normal invoke still works. Real Docker, real processes.

use std::collections::HashMap;
use std::time::Duration;

use api_node::testing::Backend;
use e2e::hybrid::{build_images, containers_of, fresh_dir, unique, ApiNode, Client, MEMORY_CAP, TOKEN};
use e2e::{binary, Node};

/// Longer than the limits under test (1 s head, 500 ms body idle; actix checks the head deadline
/// against a clock refreshed every 500 ms), far shorter than the defaults (5 s, 30 s).
const CUT_OFF_WITHIN: Duration = Duration::from_secs(4);

const LIMITS: &[(&str, &str)] = &[("FN_HTTP_HEADER_TIMEOUT_MSECS", "1000"), ("FN_HTTP_BODY_IDLE_TIMEOUT_MSECS", "500")];

async fn stall(url: &str, bytes: Vec<u8>) -> String {
    api_node::testing::send_then_stall(url.trim_start_matches("http://"), &bytes, CUT_OFF_WITHIN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_and_runner_nodes_cut_off_slow_clients() {
    build_images(&["echo"]).await.unwrap();
    let api = ApiNode::start_with(Backend::Sqlite, true, Some(TOKEN), LIMITS).await.unwrap();
    let instance = unique("fn-e2e-slow");
    let dir = fresh_dir();
    let mut env: HashMap<String, String> = [
        ("FN_RUNNER_API_URL", format!("http://127.0.0.1:{}", api.node.port)),
        ("FN_RUNNER_TOKEN", TOKEN.to_string()),
        ("FN_RUNNER_ASYNC", "false".to_string()),
        ("FN_INSTANCE_ID", instance.clone()),
        ("FN_IOFS_PATH", dir.join("io").display().to_string()),
        ("FN_MAX_TOTAL_MEMORY_BYTES", MEMORY_CAP.to_string()),
        ("FN_LISTEN_HOST", "127.0.0.1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(LIMITS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let runner = Node::start(binary("runner-node"), env).await.unwrap();

    let c = Client::new();
    let app_id = c.create_app(api.url(), &unique("slow")).await.unwrap();
    let echo = c.create_fn(api.url(), &app_id, "echo", "fn-test/echo:latest", serde_json::json!({})).await.unwrap();

    for node in [api.url(), runner.url.as_str()] {
        let reply = c.invoke(node, &echo, "steady").await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "steady"), "{node}: {reply:?}");

        let answer = stall(node, b"POST /invoke/x HTTP/1.1\r\nHost: x\r\nContent-Le".to_vec()).await;
        assert!(!answer.contains(" 200 "), "{node}: {answer}");

        let head = format!("POST /invoke/{echo} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf a bo");
        let answer = stall(node, head.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{node}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{node}: {answer}");

        let reply = c.invoke(node, &echo, "still serving").await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "still serving"), "{node}: {reply:?}");
    }

    drop(runner);
    for instance in [&instance, &api.instance] {
        for id in containers_of(instance).await.unwrap() {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
