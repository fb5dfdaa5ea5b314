//! Hybrid-mode helpers shared by `tests/hybrid.rs` and `benches/hybrid.rs`: an API node
//! (`FN_NODE_TYPE=api`) or a full node on a fresh database, runner nodes talking to it over HTTP or gRPC,
//! and thin clients for the management API, the invoke paths and Docker.
//!
//! Every node gets its own data directory (under the system temp directory) and its own `FN_INSTANCE_ID`,
//! so its containers carry its own label (and its http-stream sockets live under the default
//! `FN_IOFS_PATH`, in a directory named after the instance: a deeper path would overflow the 108-byte
//! limit of a unix socket path), and test binaries can run in parallel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use api_node::testing::{fresh_db_url, Backend};
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use serde_json::{json, Value};

use crate::{binary, free_port, Node};

/// Memory cap of every node's agent: small enough for a shared machine.
pub const MEMORY_CAP: u64 = 1 << 30;

/// A name nobody else uses: `prefix` and 12 random characters (short enough for an app name).
pub fn unique(prefix: &str) -> String {
    let id = shared::id::new_id().to_lowercase();
    format!("{prefix}-{}", &id[id.len() - 12..])
}

/// The runner token the e2e tests give API nodes and their runners (an api node refuses to start
/// without a way to authenticate runners).
pub const TOKEN: &str = "e2e-runner-token";

/// A fresh directory under the system temp directory.
pub fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("fn-e2e-hybrid").join(unique("node"));
    std::fs::create_dir_all(&dir).expect("create node directory");
    dir
}

/// The node serving the management API (and, for a full node, invokes too).
pub struct ApiNode {
    /// The process.
    pub node: Node,
    /// Port of its hybrid gRPC API.
    pub grpc_port: u16,
    /// Its data directory (SQLite database and queue).
    pub dir: PathBuf,
    /// Its `FN_DB_URL`.
    pub db_url: String,
    /// Its `FN_INSTANCE_ID` (a full node runs containers).
    pub instance: String,
}

impl ApiNode {
    /// Starts an api node (`full == false`) or a full node on a fresh `backend` database.
    /// `token` sets `FN_RUNNER_TOKEN`.
    pub async fn start(backend: Backend, full: bool, token: Option<&str>) -> anyhow::Result<ApiNode> {
        Self::start_with(backend, full, token, &[]).await
    }

    /// As [`ApiNode::start`], with `extra` environment variables.
    pub async fn start_with(
        backend: Backend,
        full: bool,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<ApiNode> {
        let dir = fresh_dir();
        let db_url = match backend {
            Backend::Sqlite => format!("sqlite3://{}/fn.db", dir.display()),
            other => fresh_db_url(other).await,
        };
        let grpc_port = free_port();
        let instance = unique("fn-e2e-full");
        let mut env: HashMap<String, String> = [
            ("FN_NODE_TYPE", if full { "full" } else { "api" }.to_string()),
            ("FN_GRPC_PORT", grpc_port.to_string()),
            ("FN_DB_URL", db_url.clone()),
            ("FN_MQ_URL", format!("sqlite3://{}/fn.mq", dir.display())),
            ("FN_LOG_LEVEL", "info".to_string()),
            ("FN_INSTANCE_ID", instance.clone()),
            ("FN_MAX_TOTAL_MEMORY_BYTES", MEMORY_CAP.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(t) = token {
            env.insert("FN_RUNNER_TOKEN".into(), t.into());
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let node = Node::start(binary("api-node"), env).await?;
        Ok(ApiNode { node, grpc_port, dir, db_url, instance })
    }

    /// Its HTTP base URL.
    pub fn url(&self) -> &str {
        &self.node.url
    }
}

/// Stops the node, then removes its data directory.
impl Drop for ApiNode {
    fn drop(&mut self) {
        self.node.terminate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a runner reaches the API node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `FN_RUNNER_API_URL=http://...` (`/v2/runner/*`).
    Http,
    /// `FN_RUNNER_API_URL=grpc://...`.
    Grpc,
}

/// A runner node.
pub struct Runner {
    /// The process.
    pub node: Node,
    /// Its `FN_INSTANCE_ID`: the value of its containers' owner label.
    pub instance: String,
    /// How it reaches the API node.
    pub transport: Transport,
}

impl Runner {
    /// Starts a runner for `api` over `transport`, presenting `token` when given, caching lookups for
    /// `cache_ttl_ms`.
    pub async fn start(
        api: &ApiNode,
        transport: Transport,
        token: Option<&str>,
        cache_ttl_ms: u64,
    ) -> anyhow::Result<Runner> {
        Self::start_with(api, transport, token, cache_ttl_ms, &[]).await
    }

    /// As [`Runner::start`], with `extra` environment variables.
    pub async fn start_with(
        api: &ApiNode,
        transport: Transport,
        token: Option<&str>,
        cache_ttl_ms: u64,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Runner> {
        let instance = unique("fn-e2e-runner");
        let api_url = match transport {
            Transport::Http => format!("http://127.0.0.1:{}", api.node.port),
            Transport::Grpc => format!("grpc://127.0.0.1:{}", api.grpc_port),
        };
        let mut env: HashMap<String, String> = [
            ("FN_RUNNER_API_URL", api_url),
            ("FN_RUNNER_CACHE_TTL_MSECS", cache_ttl_ms.to_string()),
            ("FN_RUNNER_ASYNC", "false".to_string()),
            ("FN_LOG_LEVEL", "info".to_string()),
            ("FN_INSTANCE_ID", instance.clone()),
            ("FN_MAX_TOTAL_MEMORY_BYTES", MEMORY_CAP.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(t) = token {
            env.insert("FN_RUNNER_TOKEN".into(), t.into());
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let node = Node::start(binary("runner-node"), env).await?;
        Ok(Runner { node, instance, transport })
    }

    /// Its HTTP base URL.
    pub fn url(&self) -> &str {
        &self.node.url
    }
}

/// One answer of an invoke path.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `Fn-Call-Id` header, if any.
    pub call_id: Option<String>,
    /// Response headers (lower-case names).
    pub headers: HashMap<String, String>,
    /// Response body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A client for the management API and the invoke paths.
#[derive(Clone)]
pub struct Client {
    /// The underlying HTTP client.
    pub http: reqwest::Client,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client with a 60 s request timeout.
    pub fn new() -> Client {
        Client { http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client") }
    }

    async fn reply(resp: reqwest::Response) -> anyhow::Result<Reply> {
        let status = resp.status().as_u16();
        let headers: HashMap<String, String> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let call_id = headers.get("fn-call-id").cloned();
        let body = resp.text().await?;
        Ok(Reply { status, call_id, headers, body })
    }

    /// Any request; the reply whatever its status.
    pub async fn send(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> anyhow::Result<Reply> {
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::reply(req.send().await.with_context(|| url.to_string())?).await
    }

    /// A management request that must answer 200; its JSON body.
    pub async fn ok(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let r = self.send(method.clone(), url, body).await?;
        ensure!(r.status == 200, "{method} {url}: {} {}", r.status, r.body);
        Ok(serde_json::from_str(&r.body).unwrap_or(Value::Null))
    }

    /// `POST /v2/apps`; the app's id.
    pub async fn create_app(&self, api: &str, name: &str) -> anyhow::Result<String> {
        let app = self.ok(reqwest::Method::POST, &format!("{api}/v2/apps"), Some(json!({"name": name}))).await?;
        Ok(app["id"].as_str().context("app id")?.to_string())
    }

    /// `POST /v2/fns`; the fn's id.
    pub async fn create_fn(
        &self,
        api: &str,
        app_id: &str,
        name: &str,
        image: &str,
        config: Value,
    ) -> anyhow::Result<String> {
        let body = json!({"name": name, "app_id": app_id, "image": image, "memory": 64, "config": config});
        let f = self.ok(reqwest::Method::POST, &format!("{api}/v2/fns"), Some(body)).await?;
        Ok(f["id"].as_str().context("fn id")?.to_string())
    }

    /// `POST /v2/triggers` (type http); the trigger's id.
    pub async fn create_trigger(
        &self,
        api: &str,
        app_id: &str,
        fn_id: &str,
        name: &str,
        source: &str,
    ) -> anyhow::Result<String> {
        let body = json!({"name": name, "app_id": app_id, "fn_id": fn_id, "type": "http", "source": source});
        let t = self.ok(reqwest::Method::POST, &format!("{api}/v2/triggers"), Some(body)).await?;
        Ok(t["id"].as_str().context("trigger id")?.to_string())
    }

    /// `POST {node}/invoke/{fn_id}` with a text body.
    pub async fn invoke(&self, node: &str, fn_id: &str, body: &str) -> anyhow::Result<Reply> {
        let resp = self.http.post(format!("{node}/invoke/{fn_id}")).body(body.to_string()).send().await?;
        Self::reply(resp).await
    }

    /// `POST {node}/t/{app}{source}` with a text body.
    pub async fn trigger(&self, node: &str, app: &str, source: &str, body: &str) -> anyhow::Result<Reply> {
        let resp = self.http.post(format!("{node}/t/{app}{source}")).body(body.to_string()).send().await?;
        Self::reply(resp).await
    }

    /// Every call of a fn, walking all pages of `GET /v2/fns/{fn_id}/calls`, newest first.
    pub async fn list_calls(&self, api: &str, fn_id: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{api}/v2/fns/{fn_id}/calls?per_page=100");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = self.ok(reqwest::Method::GET, &url, None).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let empty = items.is_empty();
            out.extend(items);
            match page["next_cursor"].as_str().filter(|c| !c.is_empty()) {
                Some(c) if !empty => cursor = Some(c.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Polls the calls of a fn until every id in `ids` is listed with a final status (not `queued` or
    /// `running`), or fails after `within`; the full list.
    pub async fn wait_for_calls(
        &self,
        api: &str,
        fn_id: &str,
        ids: &[String],
        within: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + within;
        loop {
            let calls = self.list_calls(api, fn_id).await?;
            let listed: std::collections::HashSet<&str> = calls
                .iter()
                .filter(|c| !matches!(c["status"].as_str(), Some("queued" | "running")))
                .filter_map(|c| c["id"].as_str())
                .collect();
            let missing: Vec<&String> = ids.iter().filter(|id| !listed.contains(id.as_str())).collect();
            if missing.is_empty() {
                return Ok(calls);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} calls not recorded as finished within {within:?}, e.g. {:?}",
                    missing.len(),
                    ids.len(),
                    &missing[..missing.len().min(5)]
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The local Docker engine.
pub fn docker() -> Docker {
    Docker::connect_with_local_defaults().expect("Docker engine")
}

/// Builds the test functions' images (`fn-test/<name>:latest`).
pub async fn build_images(names: &[&str]) -> anyhow::Result<()> {
    let docker = docker();
    for name in names {
        runner_node::testing::function_image(&docker, name).await.map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Ids of the containers (any state) labelled as belonging to `instance`.
pub async fn containers_of(instance: &str) -> anyhow::Result<Vec<String>> {
    let key = runner_node::AgentConfig::default().container_label_tag;
    let filters = HashMap::from([("label".to_string(), vec![format!("{key}={instance}")])]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = docker().list_containers(Some(opts)).await?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Percentile `p` (0..=100) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
