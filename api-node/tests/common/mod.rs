//! Shared by the HTTP test binaries: a real server on `127.0.0.1:0` over a fresh database, and a client.
#![allow(dead_code)]

use std::sync::Arc;

use api_node::datastore::sql::SqlStore;
use api_node::http::Extensions;
use api_node::listeners::Listeners;
use api_node::testing::{fresh_store, Backend};
use api_node::{RunningServer, Settings};
use serde_json::Value;

/// A running API node and what the tests need to poke at it.
pub struct Node {
    /// The server.
    pub server: Option<RunningServer>,
    /// The store under it (for seeding calls and for dumps).
    pub store: SqlStore,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub text: String,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// `{"error":{"message"}}` (v1) or `{"message"}` (v2), whichever is present.
    pub fn message(&self) -> String {
        let j = self.json();
        j["error"]["message"].as_str().or(j["message"].as_str()).unwrap_or_default().to_string()
    }
}

/// A node with default settings.
pub async fn node(backend: Backend) -> Node {
    node_with(backend, |_| {}, Listeners::default(), Extensions::default()).await
}

/// A node with adjusted settings, listeners and extensions.
pub async fn node_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
    listeners: Listeners,
    ext: Extensions,
) -> Node {
    let (store, url) = fresh_store(backend).await;
    let mut settings = Settings::for_tests(url);
    adjust(&mut settings);
    // Logs go through libtest's capture, so they show only for failing tests.
    let filter = std::env::var("FN_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    let server = api_node::start(&settings, Arc::new(store.clone()), listeners, ext).await.expect("start server");
    let base = server.url();
    Node { server: Some(server), store, base, http: reqwest::Client::new() }
}

impl Node {
    /// Sends `method path` with an optional raw body and headers.
    pub async fn raw(&self, method: &str, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self.http.request(method.parse().unwrap(), format!("{}{}", self.base, path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        Resp { status, headers, text }
    }

    /// Sends a JSON body (or none).
    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.raw(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()), &[]).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None).await
    }

    /// Stops the server and closes the pool.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.stop(true).await.unwrap();
        }
        self.store.close().await;
    }
}

/// Declares one `#[tokio::test]` per backend for each `async fn name(backend)` listed.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(api_node::testing::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(api_node::testing::Backend::Postgres).await } )* }
        mod mysql { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(api_node::testing::Backend::Mysql).await } )* }
    };
}
