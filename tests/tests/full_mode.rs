//! Full mode end to end: one `api-node` process (management API + agent) on SQLite and on PostgreSQL,
//! the real Docker engine, Fn's three invoke paths, and the call records and logs read back through the
//! API. Also what an operator sees at the process level: SIGTERM leaves no container behind, and the
//! containers of a node killed with `kill -9` are removed when it starts again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use api_node::testing::{fresh_db_url, Backend};
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use e2e::{binary, free_port, Node};
use serde_json::{json, Value};

/// Environment of a full node of its own: fresh database and queue, own container label, modest caps.
async fn full_node_env(backend: Backend, instance: &str) -> HashMap<String, String> {
    let dir = std::env::temp_dir().join("fn-e2e").join(instance);
    std::fs::create_dir_all(&dir).unwrap();
    HashMap::from([
        ("FN_DB_URL".to_string(), fresh_db_url(backend).await),
        ("FN_MQ_URL".to_string(), format!("sqlite3://{}/fn.mq", dir.display())),
        ("FN_GRPC_PORT".to_string(), free_port().to_string()),
        ("FN_INSTANCE_ID".to_string(), instance.to_string()),
        ("FN_MAX_TOTAL_MEMORY_BYTES".to_string(), (1u64 << 30).to_string()),
        ("FN_LOG_LEVEL".to_string(), "info".to_string()),
    ])
}

async fn image(name: &str) -> String {
    let docker = Docker::connect_with_local_defaults().unwrap();
    runner_node::testing::function_image(&docker, name).await.unwrap()
}

/// Containers Docker runs for node `instance`.
async fn containers_of(instance: &str) -> usize {
    let docker = Docker::connect_with_local_defaults().unwrap();
    let filters = HashMap::from([("label".to_string(), vec![format!("fnproject.runner={instance}")])]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    docker.list_containers(Some(opts)).await.unwrap().len()
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(node: &Node) -> Api {
        Api { http: reqwest::Client::new(), base: node.url.clone() }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `GET path` answers 200 and `done` holds for the body.
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, v) = self.get(path).await;
            if status == 200 && done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "GET {path} never satisfied the condition: {status} {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn serves_every_invoke_path(backend: Backend) {
    let instance = format!("e2e-full-{}", shared::id::new_id().to_lowercase());
    let node = Node::start(binary("api-node"), full_node_env(backend, &instance).await).await.unwrap();
    let api = Api::new(&node);
    let echo = image("echo").await;
    let envdump = image("envdump").await;

    let app = api.post("/v2/apps", json!({"name": "quick", "config": {"APP_LEVEL": "a"}})).await;
    let app_id = app["id"].as_str().unwrap();
    let f = api.post("/v2/fns", json!({"name": "echo", "app_id": app_id, "image": echo})).await;
    let fn_id = f["id"].as_str().unwrap().to_string();
    assert_eq!(
        f["annotations"]["fnproject.io/fn/invokeEndpoint"],
        format!("http://localhost:{}/invoke/{fn_id}", node.port)
    );
    let env_fn = api
        .post("/v2/fns", json!({"name": "env", "app_id": app_id, "image": envdump, "config": {"FN_LEVEL": "f"}}))
        .await;
    api.post(
        "/v2/triggers",
        json!({"name": "hook", "app_id": app_id, "fn_id": env_fn["id"], "type": "http", "source": "/hook"}),
    )
    .await;
    api.post("/v1/apps/quick/routes", json!({"route": {"path": "/echo/deep", "image": echo, "format": "http-stream"}}))
        .await;

    // POST /invoke/{fn_id}: body and headers through, Fn-Call-Id back, the call recorded with its log.
    let resp = api
        .http
        .post(format!("{}/invoke/{fn_id}", node.url))
        .header("X-Header-Foo", "bar")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let call_id = resp.headers()["fn-call-id"].to_str().unwrap().to_string();
    assert_eq!(resp.headers()["foo"], "bar");
    assert_eq!(resp.text().await.unwrap(), "hello");
    let call = api.wait_for(&format!("/v2/fns/{fn_id}/calls/{call_id}"), |c| c["status"] == "success").await;
    assert_eq!(call["app_id"], app_id);
    let (status, _) = api.get(&format!("/v2/fns/{fn_id}/calls/{call_id}/log")).await;
    assert_eq!(status, 200);
    let (_, list) = api.get(&format!("/v2/fns/{fn_id}/calls")).await;
    assert!(list["items"].as_array().unwrap().iter().any(|c| c["id"] == call_id.as_str()));

    // Config reaches the function: app config under the fn's.
    let resp = api.http.post(format!("{}/invoke/{}", node.url, env_fn["id"].as_str().unwrap())).send().await.unwrap();
    let dump: Value = resp.json().await.unwrap();
    assert_eq!((&dump["env"]["APP_LEVEL"], &dump["env"]["FN_LEVEL"]), (&json!("a"), &json!("f")), "{dump}");
    assert_eq!((&dump["uid"], &dump["root_writable"]), (&json!("1000"), &json!(false)), "hardened by default");

    // /t/{app}/{source}: Fn's gateway mapping. The container gets `POST /call` with Fn-Http-Method,
    // Fn-Http-Request-Url and Fn-Http-H-* headers, from which the FDK rebuilds the original request.
    let resp = api
        .http
        .put(format!("{}/t/quick/hook?q=1", node.url))
        .header("X-Foo", "bar")
        .body("via trigger")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("fn-call-id"));
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["method"], "PUT", "{seen}");
    assert_eq!(seen["headers"]["x-foo"], "bar", "{seen}");
    assert!(seen["url"].as_str().unwrap().ends_with("/t/quick/hook?q=1"), "{seen}");

    // An async trigger queues its calls: 202 at once, the function's output in the call's log later.
    let t = json!({"name": "later", "app_id": app_id, "fn_id": fn_id, "type": "http", "source": "/later",
                   "annotations": {runner_node::http::ASYNC_ANNOTATION: "detached"}});
    api.post("/v2/triggers", t).await;
    let resp = api.http.post(format!("{}/t/quick/later", node.url)).body("queued body").send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let queued: Value = resp.json().await.unwrap();
    let async_id = queued["call_id"].as_str().unwrap().to_string();
    api.wait_for(&format!("/v2/fns/{fn_id}/calls/{async_id}"), |c| c["status"] == "success").await;
    let (_, log) = api.get(&format!("/v2/fns/{fn_id}/calls/{async_id}/log")).await;
    assert!(log["log"].as_str().unwrap().contains("queued body"), "{log}");

    // /r/{app}/{route...}: a nested v1 route, any method; its calls listed through v1.
    let resp = api.http.patch(format!("{}/r/quick/echo/deep", node.url)).body("via route").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let route_call = resp.headers()["fn-call-id"].to_str().unwrap().to_string();
    assert_eq!(resp.text().await.unwrap(), "via route");
    let listed = api
        .wait_for("/v1/apps/quick/calls?path=/echo/deep", |v| {
            v["calls"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["id"] == route_call.as_str() && c["status"] == "success"))
        })
        .await;
    assert_eq!(listed["message"], "Successfully listed calls");

    // Unknown things are Fn's 404s, per path shape.
    let resp = api.http.post(format!("{}/invoke/{}", node.url, shared::id::new_id())).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap()),
        (404, json!({"message": "Fn not found"}))
    );
    let resp = api.http.get(format!("{}/r/quick/nope", node.url)).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap()),
        (404, json!({"error": {"message": "Route not found"}}))
    );

    // SIGTERM: finishes, removes its containers, exits 0.
    assert!(containers_of(&instance).await > 0, "hot containers run while the node is up");
    let mut node = node;
    assert!(node.terminate(), "SIGTERM exits 0; log: {}", node.log_tail());
    assert_eq!(containers_of(&instance).await, 0, "no container left after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_every_invoke_path_on_sqlite() {
    serves_every_invoke_path(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_every_invoke_path_on_postgres() {
    serves_every_invoke_path(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_reaps_its_containers_when_it_comes_back() {
    let instance = format!("e2e-reap-{}", shared::id::new_id().to_lowercase());
    let mut node = Node::start(binary("api-node"), full_node_env(Backend::Sqlite, &instance).await).await.unwrap();
    let api = Api::new(&node);
    let app = api.post("/v2/apps", json!({"name": "reap"})).await;
    let f = api.post("/v2/fns", json!({"name": "echo", "app_id": app["id"], "image": image("echo").await})).await;
    let resp =
        api.http.post(format!("{}/invoke/{}", node.url, f["id"].as_str().unwrap())).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    node.kill9();
    assert!(containers_of(&instance).await > 0, "kill -9 leaves the hot container behind");
    node.restart().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while containers_of(&instance).await > 0 {
        assert!(Instant::now() < deadline, "leftover containers were not reaped at start-up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the restarted node serves again, from the same database.
    let resp =
        api.http.post(format!("{}/invoke/{}", node.url, f["id"].as_str().unwrap())).body("again").send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "again");
}
