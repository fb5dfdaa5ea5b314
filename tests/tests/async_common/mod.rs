//! Helpers shared by the async-call tests (`tests/async_calls.rs`) and benchmark (`benches/async_calls.rs`):
//! nodes with their own data directory, instance ID and containers, a small client of the management API,
//! and polling of call records with deadlines.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{binary, free_port, Node};
use serde_json::{json, Value};

/// Memory the agent of a test node may use: enough for a few 128 MiB containers, modest for a shared box.
pub const NODE_MEMORY: &str = "1073741824";

/// Removes the containers labelled with one node's instance ID when dropped, including those of a node
/// that was killed with `kill -9` (a graceful stop removes its own).
pub struct Reaper(pub String);

impl Drop for Reaper {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=fnproject.runner={}", self.0)])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> =
                String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
            }
        }
    }
}

/// A unique instance ID (container label value) for one node of one test.
/// Short: the agent puts containers' unix sockets under `<FN_IOFS_PATH>/<instance ID>/`, and a socket
/// path must stay under 108 bytes.
pub fn instance_id(what: &str) -> String {
    let id = shared::id::new_id().to_lowercase();
    format!("e2ea-{what}-{}", &id[id.len() - 10..])
}

/// A node, its data directory and its container reaper. Fields drop in order: the node stops first
/// (gracefully), then leftover containers are removed, then the directory.
pub struct TestNode {
    pub node: Node,
    pub reaper: Reaper,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl std::ops::DerefMut for TestNode {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// Starts a full node (API + agent) with its own SQLite datastore, the given queue (`None`: the embedded
/// queue in its data directory) and `extra` settings.
pub async fn full_node(program: &str, mq_url: Option<String>, extra: &[(&str, &str)]) -> TestNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let instance = instance_id("full");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("FN_NODE_TYPE".into(), "full".into());
    env.insert("FN_GRPC_PORT".into(), free_port().to_string());
    env.insert("FN_DB_URL".into(), format!("sqlite3://{}/fn.db", dir.path().display()));
    env.insert("FN_MQ_URL".into(), mq_url.unwrap_or_else(|| format!("sqlite3://{}/fn.mq", dir.path().display())));
    env.insert("FN_INSTANCE_ID".into(), instance.clone());
    env.insert("FN_IOFS_PATH".into(), dir.path().join("io").display().to_string());
    env.insert("FN_MAX_TOTAL_MEMORY_BYTES".into(), NODE_MEMORY.into());
    env.insert("FN_LOG_LEVEL".into(), "info".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let reaper = Reaper(instance);
    let node = Node::start(binary(program), env).await.expect("full node starts");
    TestNode { node, reaper, dir }
}

/// Starts a runner node talking to the API node at `api_url`, its files under `dir`.
pub async fn runner(api_url: String, dir: &std::path::Path, instance: &str) -> Node {
    let env: HashMap<String, String> = [
        ("FN_RUNNER_API_URL", api_url),
        ("FN_RUNNER_TOKEN", e2e::hybrid::TOKEN.to_string()),
        ("FN_INSTANCE_ID", instance.to_string()),
        ("FN_IOFS_PATH", dir.join("io").display().to_string()),
        ("FN_MAX_TOTAL_MEMORY_BYTES", NODE_MEMORY.to_string()),
        ("FN_LOG_LEVEL", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Node::start(binary("runner-node"), env).await.expect("runner node starts")
}

/// Builds (if needed) the image of test function `name` (`fn-test/<name>:latest`).
pub async fn image(name: &str) -> String {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker client");
    runner_node::testing::function_image(&docker, name).await.expect("test function image")
}

/// A client of one node's HTTP API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
        Api { base: base.trim_end_matches('/').to_string(), http }
    }

    async fn post_json(&self, path: &str, body: Value) -> Value {
        let resp = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.expect("POST");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).expect("JSON body")
    }

    /// Creates an app, returns its ID.
    pub async fn app(&self, name: &str) -> String {
        let v = self.post_json("/v2/apps", json!({ "name": name })).await;
        v["id"].as_str().expect("app id").to_string()
    }

    /// Creates a fn from `fields` (name, image, config, timeout...), returns its ID.
    pub async fn func(&self, app_id: &str, mut fields: Value) -> String {
        fields["app_id"] = app_id.into();
        let v = self.post_json("/v2/fns", fields).await;
        v["id"].as_str().expect("fn id").to_string()
    }

    /// Creates a v1 route in app `app_name`.
    pub async fn route(&self, app_name: &str, route: Value) {
        self.post_json(&format!("/v1/apps/{app_name}/routes"), json!({ "route": route })).await;
    }

    /// `POST /invoke/{fn_id}` with `Fn-Invoke-Type: detached`.
    pub async fn detached(&self, fn_id: &str, body: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}/invoke/{fn_id}", self.base))
            .header("Fn-Invoke-Type", "detached")
            .body(body.to_string())
            .send()
            .await
    }

    /// `GET` a JSON document; `None` for 404. A transport error is retried twice (a pooled connection
    /// to a node that restarted fails on first use).
    pub async fn get(&self, path: &str) -> Option<Value> {
        let mut tries = 0;
        let resp = loop {
            match self.http.get(format!("{}{path}", self.base)).send().await {
                Ok(resp) => break resp,
                Err(e) if tries < 2 => {
                    tries += 1;
                    eprintln!("GET {path}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("GET {path}: {e}"),
            }
        };
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(status.is_success(), "GET {path}: {status} {text}");
        Some(serde_json::from_str(&text).expect("JSON body"))
    }

    /// A log as plain text.
    pub async fn log_text(&self, path: &str) -> String {
        let resp =
            self.http.get(format!("{}{path}", self.base)).header("Accept", "text/plain").send().await.expect("GET log");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        text
    }

    /// Every call of a fn, all pages (`per_page` 100), newest first; `query` is added to each request.
    pub async fn all_calls(&self, fn_id: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v2/fns/{fn_id}/calls?per_page=100{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&path).await.expect("calls list");
            out.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return out,
            }
        }
    }
}

/// A call record's status.
pub fn status(call: &Value) -> &str {
    call["status"].as_str().unwrap_or("")
}

/// Whether an async call's record is settled: a final status that its last recorded attempt agrees with,
/// and, for a failure, the dead-letter flag (no retry follows).
///
/// The status alone is not enough: the runner's report of a run lands before the queue side records
/// the attempt, so for a moment a successful call reads `success` without its attempt, and a failed run
/// that will be retried reads `error` (final) before it goes back to `queued`.
pub fn is_settled(call: &Value) -> bool {
    let s = status(call);
    let last_agrees = call["attempts"].as_array().and_then(|a| a.last()).is_some_and(|a| status(a) == s);
    match s {
        "success" => last_agrees,
        "error" | "timeout" => last_agrees && call["dead_letter"] == Value::Bool(true),
        "cancelled" => true,
        _ => false,
    }
}

/// Milliseconds since the epoch of an RFC3339 field of a record.
pub fn millis(v: &Value, field: &str) -> Option<i64> {
    v[field].as_str().and_then(shared::time::DateTime::parse).map(|t| t.unix_millis())
}

/// Polls the async call record at `path` (its JSON at `pick`) every 20 ms until it is settled
/// ([`is_settled`]); returns the statuses seen, in order and without repeats, and the settled record.
/// Panics after `within`.
pub async fn poll_until_settled(
    api: &Api,
    path: &str,
    pick: fn(Value) -> Value,
    within: Duration,
) -> (Vec<String>, Value) {
    let deadline = Instant::now() + within;
    let mut seen: Vec<String> = Vec::new();
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(v) = api.get(path).await {
            let call = pick(v);
            let s = status(&call).to_string();
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            if is_settled(&call) {
                return (seen, call);
            }
            last = call;
        } else if seen.last().map(String::as_str) != Some("<404>") {
            seen.push("<404>".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("call at {path} not settled within {within:?}; statuses seen {seen:?}; last record {last}")
}
