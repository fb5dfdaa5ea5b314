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
        let queue = crate::queue::open(&settings.mq_url, settings.db_ping_retries)
            .await
            .map_err(|e| StartError::Queue { url: redact(&settings.mq_url), cause: e.to_string() })?;
        let store = ListeningStore::wrap(store, listeners);
        let data: Arc<dyn DataAccess> = Arc::new(DirectDataAccess::new(store.clone(), queue, settings.async_policy));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();

        let token: Option<Arc<str>> = settings.runner_token.as_deref().map(Arc::from);
        let max_message = settings.hybrid_max_message;
        let state = hybrid::http::HybridState { data: data.clone(), token: token.clone(), max_body: max_message };
        ext.configure.push(Arc::new(move |cfg| hybrid::http::configure(cfg, state.clone())));

        let mut grpc_addr = None;
        if let Some(port) = settings.grpc_port {
            let addr = format!("{}:{port}", settings.bind_host);
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|cause| StartError::Bind { addr: addr.clone(), cause })?;
            grpc_addr = listener.local_addr().ok();
            let (data, tls, mut stopped) = (data.clone(), settings.grpc_tls.clone(), stopped.clone());
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tasks.push(tokio::spawn(async move {
                if let Err(e) = hybrid::grpc::serve_limited(listener, data, token, tls, max_message, shutdown).await {
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
            let a = Arc::new(
                Agent::new(config, Arc::new(DataAccessRecorder(data.clone())))
                    .await
                    .map_err(|e| StartError::Agent(e.to_string()))?,
            );
            let state = InvokeState::new(a.clone(), data.clone());
            ext.configure.push(Arc::new(move |cfg| invoke_routes(cfg, state.clone())));
            tasks.push(tokio::spawn(runner_node::async_loop::run(a.clone(), data.clone(), stopped.clone())));
            agent = Some(a);
        }

        let http = server::start(settings, store, Listeners::default(), ext).await?;
        if let Some(addr) = grpc_addr {
            tracing::info!(%addr, "hybrid gRPC API listening");
        }
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

/// A URL with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => {
                let user = rest[..at].split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***{}", &rest[at..])
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}
