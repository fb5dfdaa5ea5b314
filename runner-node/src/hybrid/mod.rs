//! Hybrid mode, runner side: [`DataAccess`] over the API node's hybrid API.
//!
//! A runner node holds no database. It looks apps, fns, routes and triggers up by ID (or name, path,
//! source) on the API node, queues and takes async calls through it, and reports calls to it. Two
//! transports carry the same Fn JSON: [`HttpClient`] (`http://`, the `/v2/runner/*` endpoints) and
//! [`GrpcClient`] (`grpc://`, or `grpcs://` over TLS, the `fnrs.hybrid.Hybrid` service). [`connect`]
//! picks one from the URL's scheme and stacks two layers on it:
//!
//! ```text
//! CachedDataAccess ──> BufferedReports ──> HttpClient | GrpcClient ──> API node
//!  lookups: TTL cache,   call_started/finished/complete:
//!  single-flight,        bounded in-order buffer, retried
//!  stale-if-error        until the API node answers
//! ```
//!
//! `enqueue`, `dequeue` and `heartbeat` pass straight through: an async call is accepted only once the API
//! node has stored it, so `enqueue` answers 503 while the API node is down; a heartbeat matters only now.
//!
//! For TLS use `grpcs://` (with `FN_RUNNER_API_CA`, and `FN_NODE_CERT`/`FN_NODE_CERT_KEY` when the API
//! node demands client certificates). `https://` is not built in: reqwest's rustls feature would cost
//! another TLS stack's build; the gRPC transport already has one.

mod buffer;
mod cache;
mod grpc;
mod http;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shared::config::{self, ConfigError, Source};
use shared::Error;

use crate::data_access::DataAccess;

pub use buffer::{BufferedReports, ReportFlusher, ReportSettings};
pub use cache::CachedDataAccess;
pub use grpc::{ClientTls, GrpcClient};
pub use http::HttpClient;

/// Environment variable naming the API node (`http://host:port[/prefix]`, `grpc://host:port` or
/// `grpcs://host:port`).
pub const API_URL_VAR: &str = "FN_RUNNER_API_URL";
/// Environment variable holding the shared secret runners present to the API node.
pub const TOKEN_VAR: &str = "FN_RUNNER_TOKEN";

/// How long one request to the API node may take (Fn's hybrid client: 60 s). A long-poll dequeue gets
/// its wait on top.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Tuning of the hybrid client stack, read from `FN_*` variables by [`HybridSettings::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridSettings {
    /// How long a looked-up app, fn, route or trigger (or a 404 for one) is served from memory
    /// (`FN_RUNNER_CACHE_TTL_MSECS`, 5000 like Fn's cache; 0 = ask the API node every time).
    pub cache_ttl: Duration,
    /// Call reports held while the API node is away before callers wait (`FN_RUNNER_REPORT_BUFFER`,
    /// 10000).
    pub report_buffer: usize,
    /// Bytes of call reports (logs and records) held while the API node is away before new calls are
    /// refused with 503 (`FN_RUNNER_REPORT_BUFFER_BYTES`, 256 MiB).
    pub report_buffer_bytes: usize,
    /// Longest request to the API node.
    pub request_timeout: Duration,
    /// First wait before redelivering a report; doubles per failure up to `report_retry_max`.
    pub report_retry_initial: Duration,
    /// Longest wait between report redeliveries.
    pub report_retry_max: Duration,
    /// PEM CA file the API node's certificate must chain to, for `grpcs://` (`FN_RUNNER_API_CA`).
    pub api_ca: Option<PathBuf>,
    /// PEM certificate and key files this runner presents to an API node that demands client
    /// certificates (`FN_NODE_CERT`, `FN_NODE_CERT_KEY`; both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Largest gRPC message sent or taken, derived from `FN_MAX_LOG_SIZE_BYTES` and
    /// `FN_MAX_REQUEST_SIZE` as the API node does ([`shared::config::hybrid_message_limit`]).
    pub max_message: usize,
}

impl Default for HybridSettings {
    fn default() -> Self {
        HybridSettings {
            cache_ttl: Duration::from_millis(5000),
            report_buffer: 10_000,
            report_buffer_bytes: 256 << 20,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            report_retry_initial: Duration::from_millis(100),
            report_retry_max: Duration::from_secs(5),
            api_ca: None,
            client_cert: None,
            max_message: config::default_hybrid_message_limit(),
        }
    }
}

impl HybridSettings {
    /// Settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&config::Env)
    }

    /// Settings from `src`; unset variables take their defaults, bad values fail naming the variable.
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let d = HybridSettings::default();
        let cache_ttl = config::msecs_or_never(src, "FN_RUNNER_CACHE_TTL_MSECS", d.cache_ttl.as_millis() as i64)?;
        let report_buffer: usize = config::parse_or(src, "FN_RUNNER_REPORT_BUFFER", d.report_buffer)?;
        if report_buffer == 0 {
            return Err(ConfigError::Invalid {
                name: "FN_RUNNER_REPORT_BUFFER".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let report_buffer_bytes: usize = config::parse_or(src, "FN_RUNNER_REPORT_BUFFER_BYTES", d.report_buffer_bytes)?;
        let path = |name: &str| src.get(name).filter(|v| !v.trim().is_empty()).map(|v| PathBuf::from(v.trim()));
        let client_cert = match (path("FN_NODE_CERT"), path("FN_NODE_CERT_KEY")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(ConfigError::Missing("FN_NODE_CERT and FN_NODE_CERT_KEY go together".into())),
        };
        Ok(HybridSettings {
            cache_ttl,
            report_buffer,
            report_buffer_bytes,
            api_ca: path("FN_RUNNER_API_CA"),
            client_cert,
            max_message: config::hybrid_message_limit_from(src)?,
            ..d
        })
    }

    /// Reads the TLS files named by the settings; `None` without a CA.
    fn client_tls(&self) -> Result<Option<ClientTls>, ConnectError> {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| ConnectError::Tls(format!("cannot read {}: {e}", p.display())));
        let Some(ca) = &self.api_ca else { return Ok(None) };
        let identity = match &self.client_cert {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        Ok(Some(ClientTls { ca_pem: read(ca)?, identity }))
    }

    fn report_settings(&self) -> ReportSettings {
        ReportSettings {
            capacity: self.report_buffer,
            max_bytes: self.report_buffer_bytes,
            retry_initial: self.report_retry_initial,
            retry_max: self.report_retry_max,
        }
    }
}

/// Why the hybrid client stack could not be built. Failures talking to the API node come later, as
/// [`shared::Error`]s from the calls themselves.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The API URL does not parse.
    #[error("invalid {API_URL_VAR} {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scheme other than `http`, `grpc` or `grpcs`.
    #[error("unsupported {API_URL_VAR} scheme {0:?}: use http://, grpc:// or grpcs://host:port")]
    UnsupportedScheme(String),
    /// TLS material missing or unreadable.
    #[error("hybrid TLS: {0}")]
    Tls(String),
    /// The token cannot travel in an HTTP header.
    #[error("{TOKEN_VAR} must be visible ASCII")]
    InvalidToken,
    /// A setting does not parse, or a required one is missing.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built.
    #[error("cannot build the hybrid HTTP client: {0}")]
    Client(String),
}

/// The client stack for the API node at `url`: HTTP for `http://`, gRPC for `grpc://` and `grpcs://`
/// (TLS per `settings`), behind the lookup cache and the report buffer. Must be called inside a Tokio
/// runtime (it spawns the buffer's delivery task). Nothing is dialled yet: an unreachable API node shows
/// up as 503s from the calls.
pub fn connect(
    url: &str,
    token: Option<String>,
    settings: &HybridSettings,
) -> Result<Arc<dyn DataAccess>, ConnectError> {
    connect_with_flusher(url, token, settings).map(|(data, _)| data)
}

/// [`connect`], plus a handle to wait for buffered reports to reach the API node on shutdown.
pub fn connect_with_flusher(
    url: &str,
    token: Option<String>,
    settings: &HybridSettings,
) -> Result<(Arc<dyn DataAccess>, ReportFlusher), ConnectError> {
    let token = token.filter(|t| !t.is_empty());
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    let client: Arc<dyn DataAccess> = match scheme.as_str() {
        "http" => Arc::new(HttpClient::new(url, token, settings.request_timeout)?),
        "grpc" | "grpcs" => Arc::new(
            GrpcClient::new(url, token, settings.request_timeout, settings.client_tls()?)?
                .with_max_message(settings.max_message),
        ),
        "" => return Err(ConnectError::InvalidUrl { url: url.into(), reason: "no scheme".into() }),
        other => return Err(ConnectError::UnsupportedScheme(other.into())),
    };
    let reports = BufferedReports::new(client, settings.report_settings());
    let flusher = reports.flusher();
    let data = Arc::new(CachedDataAccess::new(Arc::new(reports), settings.cache_ttl));
    Ok((data, flusher))
}

/// [`connect`] configured from the environment: `FN_RUNNER_API_URL` (required), `FN_RUNNER_TOKEN`
/// (optional) and the [`HybridSettings`] variables.
pub fn connect_from_env() -> Result<Arc<dyn DataAccess>, ConnectError> {
    let url = std::env::var(API_URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ConfigError::Missing("No FN_RUNNER_API_URL provided for an Fn Runner node.".into()))?;
    let token = std::env::var(TOKEN_VAR).ok();
    connect(url.trim(), token, &HybridSettings::from_env()?)
}

/// Attempts for a lookup (Fn's hybrid client makes up to 5).
const LOOKUP_ATTEMPTS: u32 = 5;
/// Wait before the second attempt; doubles after each failure.
const LOOKUP_FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Runs an idempotent lookup, retrying on failures of the API node or the way to it (5xx, transport):
/// those may pass. A 4xx is the API node's answer and returns at once.
async fn retry_lookup<T, F, Fut>(mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut backoff = LOOKUP_FIRST_BACKOFF;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.status() >= 500 && tries < LOOKUP_ATTEMPTS => {
                tracing::debug!(error = ?e, tries, "hybrid lookup failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// The error callers see when the API node cannot be reached; the cause goes to the log only, so no
/// internal address leaks into an invoke response.
fn unreachable(cause: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %cause, "API node unreachable");
    Error::Unavailable("API node unavailable".into())
}

/// Fn JSON from the API node that does not parse: a version mismatch between nodes, not the caller's
/// fault.
fn bad_reply(what: &str, cause: impl std::fmt::Display) -> Error {
    Error::internal(format!("API node sent a malformed {what}: {cause}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn settings_defaults_and_overrides() {
        let d = HybridSettings::from_source(&vars(&[])).unwrap();
        assert_eq!(d.cache_ttl, Duration::from_millis(5000));
        assert_eq!(d.report_buffer, 10_000);
        let s = HybridSettings::from_source(&vars(&[
            ("FN_RUNNER_CACHE_TTL_MSECS", "250"),
            ("FN_RUNNER_REPORT_BUFFER", "7"),
        ]))
        .unwrap();
        assert_eq!(s.cache_ttl, Duration::from_millis(250));
        assert_eq!(s.report_buffer, 7);
        let never = HybridSettings::from_source(&vars(&[("FN_RUNNER_CACHE_TTL_MSECS", "-1")])).unwrap();
        assert_eq!(never.cache_ttl, config::NEVER, "-1: lookups never expire");
        let huge = HybridSettings::from_source(&vars(&[("FN_RUNNER_CACHE_TTL_MSECS", &i64::MAX.to_string())])).unwrap();
        assert_eq!(huge.cache_ttl, config::NEVER);
        let _ = std::time::Instant::now() + huge.cache_ttl;
        assert!(HybridSettings::from_source(&vars(&[("FN_RUNNER_CACHE_TTL_MSECS", "soon")])).is_err());
        assert!(HybridSettings::from_source(&vars(&[("FN_RUNNER_REPORT_BUFFER", "0")])).is_err());
    }

    #[tokio::test]
    async fn connect_picks_transport_by_scheme() {
        let s = HybridSettings::default();
        assert!(connect("http://127.0.0.1:1", None, &s).is_ok());
        assert!(connect("http://127.0.0.1:1/prefix/", Some("t".into()), &s).is_ok());
        assert!(connect("grpc://127.0.0.1:1", Some("t".into()), &s).is_ok());
        assert!(matches!(connect("https://x:1", None, &s), Err(ConnectError::UnsupportedScheme(_))));
        assert!(matches!(connect("grpcs://x:1", None, &s), Err(ConnectError::Tls(_))));
        let missing_ca = HybridSettings { api_ca: Some("/nonexistent/ca.pem".into()), ..s.clone() };
        assert!(matches!(connect("grpcs://x:1", None, &missing_ca), Err(ConnectError::Tls(_))));
        assert!(matches!(connect("x:1", None, &s), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(connect("http://", None, &s), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(connect("http://x:1", Some("a\nb".into()), &s), Err(ConnectError::InvalidToken)));
    }

    #[tokio::test]
    async fn unreachable_api_node_is_503() {
        // Nothing listens on port 1; lookups retry, then answer 503, on both transports.
        let s = HybridSettings { cache_ttl: Duration::ZERO, ..HybridSettings::default() };
        for url in ["http://127.0.0.1:1", "grpc://127.0.0.1:1"] {
            let data = connect(url, None, &s).unwrap();
            let err = data.app_by_id("a").await.unwrap_err();
            assert!(matches!(err, Error::Unavailable(_)), "{url}: {err:?}");
            let call: shared::QueuedCall = serde_json::from_value(serde_json::json!({
                "call": {"id": "c", "status": "queued", "app_id": "a", "created_at": "2026-01-01T00:00:00.000Z"},
                "method": "POST", "url": "http://x/r/a/p"
            }))
            .unwrap();
            let err = data.enqueue(&call).await.unwrap_err();
            assert_eq!(err.status(), 503, "{url}: {err:?}");
        }
    }

    #[tokio::test]
    async fn lookups_retry_5xx_but_not_4xx() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = AtomicU32::new(0);
        let r: Result<(), Error> = retry_lookup(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::AppNotFound)
        })
        .await;
        assert_eq!(r, Err(Error::AppNotFound));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let r = retry_lookup(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(Error::Unavailable("down".into())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), Error> = retry_lookup(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::internal("boom"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), LOOKUP_ATTEMPTS);
    }
}
