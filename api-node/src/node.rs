//! The whole node: the management API server plus, by node type, everything around it.
//!
//! - every node: the datastore (with listeners), the async queue, [`DirectDataAccess`] over both, the
//!   hybrid API for runner nodes (HTTP under `/v2/runner`, gRPC on `FN_GRPC_PORT`);
//! - `full` nodes also run the agent: the invoke paths (`/r`, `/invoke`, `/t`) and the async loop that
//!   runs queued calls.
//!
//! Shutdown order (SIGTERM): stop taking requests and let in-flight ones finish, stop the async loop,
//! let the agent finish its calls and remove its containers, stop the gRPC listener.

use std::net::SocketAddr;
use std::sync::Arc;

use runner_node::http::{configure as invoke_routes, DataAccessRecorder, InvokeState};
use runner_node::{Agent, AgentConfig, DataAccess};
use tokio::sync::watch;

use crate::config::{NodeType, Settings};
use crate::datastore::Datastore;
use crate::direct::DirectDataAccess;
use crate::http::Extensions;
use crate::hybrid;
use crate::listeners::{Listeners, ListeningStore};
use crate::server::{self, RunningServer, StartError};

/// A running node.
pub struct Node {
    /// The HTTP server (management API, hybrid API, and in full mode the invoke paths).
    pub http: RunningServer,
    /// The bound gRPC address, when the hybrid gRPC API is on.
    pub grpc_addr: Option<SocketAddr>,
    agent: Option<Arc<Agent>>,
    data: Arc<dyn DataAccess>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Starts everything `settings` ask for over `store`.
    pub async fn start(
        settings: &Settings,
        store: Arc<dyn Datastore>,
        listeners: Listeners,
        mut ext: Extensions,
    ) -> Result<Node, StartError> {
        let queue = crate::queue::open(settings.mq_url.expose(), settings.db_ping_retries)
            .await
            .map_err(|e| StartError::Queue { url: settings.mq_url.redacted(), cause: e.to_string() })?;
        let store = ListeningStore::wrap(store, listeners);
        let data: Arc<dyn DataAccess> = Arc::new(DirectDataAccess::new(store.clone(), queue, settings.async_policy));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();

        let token = settings.runner_token.clone();
        if settings.serves_runner_api() && token.is_none() && settings.runner_api_insecure {
            tracing::warn!(
                "FN_RUNNER_API_INSECURE=true: the runner API (HTTP /v2/runner and gRPC) serves anybody who can reach it, \
                 without authentication; set FN_RUNNER_TOKEN for anything but a trusted network"
            );
        }
        let max_message = settings.hybrid_max_message;
        if settings.serves_runner_http() {
            let state = hybrid::http::HybridState { data: data.clone(), token: token.clone(), max_body: max_message };
            ext.configure.push(Arc::new(move |cfg| hybrid::http::configure(cfg, state.clone())));
        }

        let mut grpc_addr = None;
        if let Some(port) = settings.runner_grpc_port() {
            let host = settings.grpc_bind_host.as_str();
            let listener = tokio::net::TcpListener::bind((host, port)).await.map_err(|cause| StartError::Bind {
                addr: format!("{host}:{port} (FN_GRPC_LISTEN_HOST, FN_GRPC_PORT)"),
                cause,
            })?;
            grpc_addr = listener.local_addr().ok();
            let (data, tls, mut stopped) = (data.clone(), settings.grpc_tls.clone(), stopped.clone());
            let timeouts = settings.http_timeouts;
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tasks.push(tokio::spawn(async move {
                let served = hybrid::grpc::serve_on_with(listener, data, token, tls, &timeouts, max_message, shutdown);
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "hybrid gRPC API stopped");
                }
            }));
        }

        if let Some(after) = settings.lost_call_after {
            tasks.push(tokio::spawn(end_lost_calls(store.clone(), after, stopped.clone())));
        }

        let mut agent = None;
        if settings.node_type == NodeType::Full {
            let config = AgentConfig::from_env().map_err(|e| StartError::Agent(e.to_string()))?;
            let a = Arc::new(Agent::new(config, Arc::new(DataAccessRecorder(data.clone()))).await.map_err(|e| {
                StartError::Agent(format!(
                    "{e}; a full node runs functions in Docker: start the Docker engine (or point DOCKER_HOST at one) \
                     and check that `docker info` works for this user, or run FN_NODE_TYPE=api with runner nodes elsewhere"
                ))
            })?);
            let state = InvokeState::new(a.clone(), data.clone());
            ext.configure.push(Arc::new(move |cfg| invoke_routes(cfg, state.clone())));
            tasks.push(tokio::spawn(runner_node::async_loop::run(a.clone(), data.clone(), stopped.clone())));
            agent = Some(a);
        }

        let http = server::start(settings, store, Listeners::default(), ext).await?;
        if let Some(addr) = grpc_addr {
            tracing::info!(%addr, "hybrid gRPC API listening");
        }
        tracing::info!("{}", ready_line(settings, &http, agent.is_some(), grpc_addr));
        Ok(Node { http, grpc_addr, agent, data, stop, tasks })
    }

    /// The node's view of storage, as runners see it.
    pub fn data(&self) -> Arc<dyn DataAccess> {
        self.data.clone()
    }

    /// Waits until the HTTP server stops (SIGTERM/SIGINT), then shuts the rest down in order.
    pub async fn wait(self) -> Result<(), StartError> {
        let Node { http, agent, stop, tasks, .. } = self;
        let result = http.wait().await;
        Self::shutdown(agent, stop, tasks).await;
        result
    }

    /// Stops the node as SIGTERM would (tests).
    pub async fn stop(self) -> Result<(), StartError> {
        let Node { http, agent, stop, tasks, .. } = self;
        let result = http.stop(true).await;
        Self::shutdown(agent, stop, tasks).await;
        result
    }

    async fn shutdown(agent: Option<Arc<Agent>>, stop: watch::Sender<bool>, tasks: Vec<tokio::task::JoinHandle<()>>) {
        let _ = stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
        if let Some(agent) = agent {
            agent.shutdown().await;
        }
    }
}

/// Every minute (or `after / 10`, when shorter), ends as `error` the calls whose node stopped mid-call:
/// still `running` longer after they started than any call may run. Queued calls come back by
/// themselves (their lease runs out); a sync call has no one else to end its record.
async fn end_lost_calls(store: Arc<dyn Datastore>, after: std::time::Duration, mut stop: watch::Receiver<bool>) {
    let period = (after / 10).clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok(after) = chrono::TimeDelta::from_std(after) else { return };
        let cutoff = shared::time::DateTime::from_chrono(chrono::Utc::now() - after);
        match store.fail_lost_calls(cutoff, "lost: the node running the call stopped before it ended").await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(calls = n, "ended calls whose node stopped mid-call"),
            Err(e) => tracing::warn!(error = %e, "cannot end lost calls"),
        }
    }
}

/// The one line a newcomer needs at start: the URL to call, where the data lives, whether functions can
/// run (Docker) and whether runners can connect.
fn ready_line(settings: &Settings, http: &RunningServer, docker: bool, grpc: Option<SocketAddr>) -> String {
    let url =
        if http.addr.ip().is_unspecified() { format!("http://localhost:{}", http.addr.port()) } else { http.url() };
    let functions = if docker {
        "Docker engine found, functions run there".to_string()
    } else {
        "runs no functions itself (FN_NODE_TYPE=api): start runner nodes with FN_RUNNER_API_URL pointing here"
            .to_string()
    };
    let runners = if settings.serves_runner_api() {
        let mut on = Vec::new();
        if settings.serves_runner_http() {
            on.push(format!("{url}/v2/runner"));
        }
        if let Some(addr) = grpc {
            on.push(format!("gRPC {addr}"));
        }
        format!("runner API on {}", on.join(" and "))
    } else {
        "runner API off (FN_RUNNER_TOKEN turns it on)".to_string()
    };
    format!(
        "fn is ready at {url}: data in {}, queue in {}; {functions}; {runners}",
        settings.db_url.redacted(),
        settings.mq_url.redacted()
    )
}
