//! The runner node (`FN_NODE_TYPE=runner`): stateless, serves the invoke paths and runs queued calls,
//! fetching everything it needs from the API node (`FN_RUNNER_API_URL`) through the hybrid API.
//!
//! Runner nodes own no database and no queue, so a runner started with `FN_DB_URL` or `FN_MQ_URL` refuses
//! to start: the operator has mistaken it for an API node. Management paths answer 400 with Fn's message.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;
use shared::config::{is_set, parse_or, string_or, ConfigError, Source};
use shared::secret::{Secret, SecretUrl};
use tokio::sync::watch;

use crate::http::error::respond;
use crate::http::{configure as invoke_routes, DataAccessRecorder, InvokeState, Shape};
use crate::hybrid::{self, HybridSettings};
use crate::slow_clients::HttpTimeouts;
use crate::{Agent, AgentConfig};

/// The runner node's own settings (the agent reads its `FN_*` settings itself).
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// `FN_PORT` (8080); 0 picks a free port.
    pub port: u16,
    /// `FN_LISTEN_HOST` (0.0.0.0): the address the invoke paths are served on.
    pub listen_host: String,
    /// `FN_RUNNER_API_URL`: `http://...` or `grpc://...` / `grpcs://...`.
    pub api_url: SecretUrl,
    /// `FN_RUNNER_TOKEN`.
    pub token: Option<Secret>,
    /// `FN_HTTP_*_MSECS`: slow-client limits of the HTTP server.
    pub http_timeouts: HttpTimeouts,
    /// Cache, buffer and TLS settings of the hybrid client.
    pub hybrid: HybridSettings,
    /// `FN_LOG_LEVEL`.
    pub log_level: String,
    /// Whether to run queued (async) calls (`FN_RUNNER_ASYNC`, default on).
    pub run_async: bool,
}

/// Why the runner cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A setting is wrong or missing.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hybrid client could not be built.
    #[error("FN_RUNNER_API_URL: {0}")]
    Client(String),
    /// The agent could not start.
    #[error("cannot start the agent: {0}")]
    Agent(String),
    /// The HTTP listener failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

impl RunnerSettings {
    /// Reads and checks the settings.
    pub fn from_source(src: &dyn Source) -> Result<RunnerSettings, RunnerError> {
        let node_type = string_or(src, "FN_NODE_TYPE", "runner");
        if node_type != "runner" {
            return Err(ConfigError::Invalid {
                name: "FN_NODE_TYPE".into(),
                value: node_type,
                reason: "the runner-node binary runs runner nodes; full and api nodes run api-node".into(),
            }
            .into());
        }
        if is_set(src, "FN_DB_URL") {
            return Err(ConfigError::Missing(
                "Runner nodes must not be configured with a datastore (FN_DB_URL).".into(),
            )
            .into());
        }
        if is_set(src, "FN_MQ_URL") {
            return Err(ConfigError::Missing(
                "Runner nodes must not be configured with a message queue (FN_MQ_URL).".into(),
            )
            .into());
        }
        let api_url = src
            .get("FN_RUNNER_API_URL")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ConfigError::Missing("No FN_RUNNER_API_URL provided for an Fn Runner node.".into()))?;
        let listen_host = string_or(src, "FN_LISTEN_HOST", "").trim().to_string();
        Ok(RunnerSettings {
            port: parse_or(src, "FN_PORT", 8080)?,
            listen_host: if listen_host.is_empty() { "0.0.0.0".into() } else { listen_host },
            api_url: SecretUrl::new(api_url),
            token: src.get("FN_RUNNER_TOKEN").filter(|t| !t.is_empty()).map(Secret::new),
            http_timeouts: HttpTimeouts::from_source(src)?,
            hybrid: HybridSettings::from_source(src).map_err(|e| RunnerError::Client(e.to_string()))?,
            log_level: string_or(src, "FN_LOG_LEVEL", "info"),
            run_async: parse_or(src, "FN_RUNNER_ASYNC", true)?,
        })
    }

    /// The `--help` text.
    pub fn help() -> String {
        [
            "runner-node: a stateless runner; runs function calls for an API node.\n",
            "Configuration is read from the environment:",
            "  FN_RUNNER_API_URL          (required) API node: http://HOST:PORT, grpc://HOST:PORT or grpcs://HOST:PORT",
            "  FN_RUNNER_TOKEN            default none   token the API node demands (FN_RUNNER_TOKEN there)",
            "  FN_PORT                    default 8080   HTTP port of the invoke paths",
            "  FN_LISTEN_HOST             default 0.0.0.0  address the invoke paths are served on (127.0.0.1: loopback only)",
            "  FN_HTTP_HEADER_TIMEOUT_MSECS     default 5000   a request's whole head must arrive within this (0: no limit)",
            "  FN_HTTP_BODY_IDLE_TIMEOUT_MSECS  default 30000  a body stalled this long between chunks is answered 408 (0: no limit)",
            "  FN_HTTP_KEEPALIVE_MSECS          default 5000   idle kept-alive connections are closed after this (0: no keep-alive)",
            "  FN_RUNNER_CACHE_TTL_MSECS  default 5000   how long fetched apps, fns, routes and triggers are reused (negative: for ever)",
            "  FN_RUNNER_REPORT_BUFFER    default 10000  call reports kept while the API node is unreachable",
            "  FN_RUNNER_REPORT_BUFFER_BYTES default 268435456  bytes of call reports kept so; past either bound, new calls get 503",
            "  FN_RUNNER_API_CA           default none   CA of the API node's gRPC certificate (grpcs://)",
            "  FN_NODE_CERT, FN_NODE_CERT_KEY            this runner's client certificate (mutual TLS)",
            "  FN_RUNNER_ASYNC            default true   run queued (async) calls",
            "  FN_LOG_LEVEL               default info",
            "  FN_MAX_REQUEST_SIZE        default 6291456  largest invoke request body in bytes, 413 above it (0: no limit)",
            "  FN_MAX_RESPONSE_SIZE       default 6291456  largest function response body in bytes, 502 above it (0: no limit)",
            "  plus the agent's FN_* settings (FN_MAX_TOTAL_MEMORY_BYTES, FN_FREEZE_IDLE_MSECS, ...)\n",
        ]
        .join("\n")
    }
}

/// Runs the runner node until SIGTERM/SIGINT; then stops taking calls, finishes those in flight, removes
/// its containers and delivers the call reports it still holds.
pub async fn run(settings: RunnerSettings) -> Result<(), RunnerError> {
    let token = settings.token.as_ref().map(|t| t.expose().clone());
    // The client's errors may quote the URL as given: show it redacted.
    let (data, flusher) =
        hybrid::connect_with_flusher(settings.api_url.expose(), token, &settings.hybrid).map_err(|e| {
            RunnerError::Client(e.to_string().replace(settings.api_url.expose(), &settings.api_url.redacted()))
        })?;
    let config = AgentConfig::from_env().map_err(RunnerError::Agent)?;
    let agent = Arc::new(
        Agent::new(config, Arc::new(DataAccessRecorder(data.clone())))
            .await
            .map_err(|e| RunnerError::Agent(e.to_string()))?,
    );
    let (stop, stopped) = watch::channel(false);
    let async_loop =
        settings.run_async.then(|| tokio::spawn(crate::async_loop::run(agent.clone(), data.clone(), stopped.clone())));

    let state = InvokeState::new(agent.clone(), data.clone());
    let timeouts = settings.http_timeouts;
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new()
            .configure(move |cfg| invoke_routes(cfg, state))
            .route("/", web::get().to(hello))
            .route("/version", web::get().to(version))
            .default_service(web::to(not_served))
            .wrap(timeouts.body_idle_timeout())
    })
    .client_request_timeout(timeouts.client_request_timeout())
    .keep_alive(timeouts.keep_alive())
    .bind((settings.listen_host.as_str(), settings.port))
    .map_err(|cause| {
        RunnerError::Io(std::io::Error::new(
            cause.kind(),
            format!("cannot listen on {}:{}: {cause}", settings.listen_host, settings.port),
        ))
    })?;
    let addr = server.addrs().first().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%addr, api = %settings.api_url, "runner-node listening");
    let result = server.run().await;

    let _ = stop.send(true);
    if let Some(task) = async_loop {
        let _ = task.await;
    }
    agent.shutdown().await;
    if !flusher.flush(Duration::from_secs(30)).await {
        tracing::warn!(pending = flusher.pending(), "call reports not delivered before exit");
    }
    tracing::info!("runner-node stopped");
    Ok(result?)
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(json!({"hello": "world!", "goto": "https://github.com/fnproject/fn"}))
}

async fn version() -> HttpResponse {
    HttpResponse::Ok().json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// Management paths are the API node's: Fn's 400; anything else is an unknown path.
async fn not_served(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    for api in ["/v1", "/v2"] {
        if path == api || path.starts_with(&format!("{api}/")) {
            let message = format!("Invoking api {api}/ requests is not supported on nodes configured as type Runner");
            let shape = if api == "/v2" { Shape::V2 } else { Shape::V1 };
            return respond(&shared::Error::BadRequest(message.into()), shape);
        }
    }
    respond(&shared::Error::PathNotFound(path.to_string()), Shape::V1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn refuses_storage_and_requires_the_api_url() {
        let e = RunnerSettings::from_source(&env(&[])).unwrap_err().to_string();
        assert_eq!(e, "No FN_RUNNER_API_URL provided for an Fn Runner node.");
        let e = RunnerSettings::from_source(&env(&[("FN_RUNNER_API_URL", "http://a:1"), ("FN_DB_URL", "sqlite3://x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FN_DB_URL"), "{e}");
        let e = RunnerSettings::from_source(&env(&[("FN_RUNNER_API_URL", "http://a:1"), ("FN_MQ_URL", "redis://x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FN_MQ_URL"), "{e}");
        let e = RunnerSettings::from_source(&env(&[("FN_RUNNER_API_URL", "http://a:1"), ("FN_NODE_TYPE", "api")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FN_NODE_TYPE"), "{e}");
        let s = RunnerSettings::from_source(&env(&[("FN_RUNNER_API_URL", "grpc://a:1"), ("FN_RUNNER_TOKEN", "t")]))
            .unwrap();
        assert_eq!((s.port, s.token.as_ref().map(|t| t.expose().as_str()), s.run_async), (8080, Some("t"), true));
        assert_eq!(s.listen_host, "0.0.0.0");
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = RunnerSettings::from_source(&env(&[
            ("FN_RUNNER_API_URL", "http://runner:pw-in-url@api:1/?token=tok-in-query"),
            ("FN_RUNNER_TOKEN", "the-runner-token"),
            ("FN_LISTEN_HOST", "127.0.0.1"),
        ]))
        .unwrap();
        let debug = format!("{s:?}");
        for secret in ["pw-in-url", "tok-in-query", "the-runner-token"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("127.0.0.1"), "{debug}");
    }
}
