//! Wiring: settings → logging → datastore (with listeners) → actix HTTP server.
//!
//! [`run`] is the binary's whole life: connect (retrying an unreachable database), serve until SIGTERM or
//! SIGINT, drain in-flight requests, exit. [`start`] is the same server over a store the caller opened,
//! returned running so tests and benchmarks can bind `127.0.0.1:0` and talk to it.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::HttpServer;

use crate::config::{LogFormat, Settings};
use crate::datastore::sql::SqlStore;
use crate::datastore::Datastore;
use crate::http::{self, AppState, Extensions};
use crate::listeners::{Listeners, ListeningStore};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database did not answer (after the configured retries) or its schema could not be set up.
    #[error("cannot use database {url} (FN_DB_URL) after {retries} retries (FN_DS_DB_PING_MAX_RETRIES): {cause}; check that the database is running and reachable")]
    Database {
        /// `FN_DB_URL` without its password.
        url: String,
        /// Retries made.
        retries: u32,
        /// What the driver said.
        cause: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// Address tried.
        addr: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The queue (`FN_MQ_URL`) cannot be used.
    #[error("cannot use queue {url} (FN_MQ_URL): {cause}")]
    Queue {
        /// `FN_MQ_URL` without its password.
        url: String,
        /// Why.
        cause: String,
    },
    /// The agent could not start (Docker unreachable, bad agent settings).
    #[error("cannot start the agent: {0}")]
    Agent(String),
    /// The server stopped with an I/O error.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// A server running in the background.
pub struct RunningServer {
    /// The bound address (with the real port when 0 was asked for).
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://<addr>`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (when `graceful`), and waits for the server.
    pub async fn stop(self, graceful: bool) -> Result<(), StartError> {
        self.handle.stop(graceful).await;
        self.wait().await
    }

    /// Waits until the server stops (on SIGTERM/SIGINT, or [`RunningServer::stop`]).
    pub async fn wait(self) -> Result<(), StartError> {
        match self.task.await {
            Ok(r) => Ok(r?),
            Err(e) => Err(StartError::Io(std::io::Error::other(e))),
        }
    }
}

/// Installs the global `tracing` subscriber: `FN_LOG_LEVEL` (a level or a filter directive), text or
/// JSON lines on stderr, coloured only when stderr is a terminal. A second call (tests) is a no-op.
pub fn init_tracing(settings: &Settings) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: in a file or a log collector they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Opens the SQL store named by `FN_DB_URL`, retrying while it does not answer.
pub async fn connect_store(settings: &Settings) -> Result<SqlStore, StartError> {
    SqlStore::connect(&settings.db_url, settings.db_ping_retries).await.map_err(|e| StartError::Database {
        url: settings.db_url.redacted(),
        retries: settings.db_ping_retries,
        cause: e.to_string(),
    })
}

/// Starts the HTTP server over `store` (wrapped with `listeners`), bound as `settings` say.
pub async fn start(
    settings: &Settings,
    store: Arc<dyn Datastore>,
    listeners: Listeners,
    ext: Extensions,
) -> Result<RunningServer, StartError> {
    let mut state =
        AppState::new(ListeningStore::wrap(store, listeners), &settings.public_url, settings.max_request_size);
    state.ext = ext;
    state.node_type = settings.node_type;
    let addr = format!("{}:{} (FN_LISTEN_HOST, FN_PORT)", settings.bind_host, settings.port);
    let timeouts = settings.http_timeouts;
    let mut server = HttpServer::new(move || http::build(state.clone()).wrap(timeouts.body_idle_timeout()))
        .client_request_timeout(timeouts.client_request_timeout())
        .keep_alive(timeouts.keep_alive());
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let server = server
        .bind((settings.bind_host.as_str(), settings.port))
        .map_err(|cause| StartError::Bind { addr: addr.clone(), cause })?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| StartError::Bind { addr: addr.clone(), cause: std::io::Error::other("no address bound") })?;
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(addr = %bound, version = http::VERSION, "api-node listening");
    Ok(RunningServer { addr: bound, handle, task })
}

/// The node's life: log, connect, serve until a signal, shut down gracefully.
pub async fn run(settings: Settings) -> Result<(), StartError> {
    init_tracing(&settings);
    tracing::info!(db = %settings.db_url.redacted(), mq = %settings.mq_url, port = settings.port, "starting api-node");
    let store = connect_store(&settings).await?;
    let node =
        crate::node::Node::start(&settings, Arc::new(store.clone()), Listeners::default(), Extensions::default())
            .await?;
    let result = node.wait().await;
    store.close().await;
    tracing::info!("api-node stopped");
    result
}
