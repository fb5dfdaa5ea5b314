//! The API node's settings, read from Fn's `FN_*` environment variables.
//!
//! Everything is read and checked once at start-up, so a bad value stops the process with a message
//! naming the variable instead of surfacing later as a confusing runtime failure.

use std::time::Duration;

use shared::config::{parse_or, string_or, ConfigError, Source};
use shared::secret::{Secret, SecretUrl};

use crate::datastore::sql::{DbUrl, DbUrlError};

/// One variable the node reads: its name, default and meaning, for `--help`.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// Environment variable name.
    pub name: &'static str,
    /// Default, as text (empty when unset means "none").
    pub default: &'static str,
    /// What it controls.
    pub help: &'static str,
}

/// Every variable [`Settings::from_source`] reads, in `--help` order.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "FN_NODE_TYPE",
        default: "full",
        help: "node type: full, api (the management API is served by both)",
    },
    Variable { name: "FN_PORT", default: "8080", help: "HTTP listen port (0 picks a free one)" },
    Variable {
        name: "FN_LISTEN_HOST",
        default: "0.0.0.0",
        help: "address the HTTP server binds (0.0.0.0: all IPv4 interfaces, :: all interfaces, 127.0.0.1 loopback only)",
    },
    Variable {
        name: "FN_GRPC_LISTEN_HOST",
        default: "<FN_LISTEN_HOST>",
        help: "address the hybrid gRPC API binds",
    },
    Variable {
        name: "FN_DB_URL",
        default: "sqlite3://./data/fn.db",
        help: "datastore: sqlite3://PATH, postgres://USER:PASS@HOST:PORT/DB or mysql://USER:PASS@HOST:PORT/DB",
    },
    Variable {
        name: "FN_DS_DB_PING_MAX_RETRIES",
        default: "10",
        help: "how many times to retry an unreachable database at start-up, 1 s apart",
    },
    Variable {
        name: "FN_LOG_LEVEL",
        default: "info",
        help: "log level (error, warn, info, debug, trace) or a tracing filter directive",
    },
    Variable { name: "FN_LOG_FORMAT", default: "text", help: "log format: text or json" },
    Variable {
        name: "FN_MAX_REQUEST_SIZE",
        default: "6291456",
        help: "largest accepted request body in bytes (invoke paths and API), 413 above it; 0: no limit but the API's own 16 MiB",
    },
    Variable {
        name: "FN_MAX_RESPONSE_SIZE",
        default: "6291456",
        help: "largest function response body in bytes (full mode), 502 above it; 0: no limit",
    },
    Variable {
        name: "FN_PUBLIC_LB_URL",
        default: "http://localhost:<FN_PORT>",
        help: "public base URL used in the invoke and trigger endpoint annotations",
    },
    Variable {
        name: "FN_MQ_URL",
        default: "sqlite3://./data/fn.mq",
        help: "async queue: sqlite3://PATH (embedded, durable; Fn's bolt://PATH too), postgres://..., redis://HOST:PORT",
    },
    Variable {
        name: "FN_GRPC_PORT",
        default: "9190",
        help: "port of the hybrid gRPC API for runner nodes (0: off); opened only while the runner API is served",
    },
    Variable {
        name: "FN_RUNNER_TOKEN",
        default: "",
        help: "token runner nodes must present (Authorization: Bearer) on the runner API, HTTP and gRPC; \
               without it or FN_NODE_CERT_AUTHORITY an api node refuses to start and a full node serves no runner API",
    },
    Variable {
        name: "FN_RUNNER_API_INSECURE",
        default: "false",
        help: "true: serve the runner API (HTTP /v2/runner and gRPC) to anybody, without runner credentials; trusted networks only",
    },
    Variable {
        name: "FN_NODE_CERT",
        default: "",
        help: "PEM certificate of the gRPC listener (with FN_NODE_CERT_KEY); enables TLS",
    },
    Variable { name: "FN_NODE_CERT_KEY", default: "", help: "PEM private key of FN_NODE_CERT" },
    Variable {
        name: "FN_NODE_CERT_AUTHORITY",
        default: "",
        help: "PEM CA that runner client certificates must chain to (mutual TLS on gRPC; needs FN_NODE_CERT)",
    },
    Variable {
        name: "FN_ASYNC_LEASE_MSECS",
        default: "10000",
        help: "how long a runner holds a queued call without a heartbeat before it is run elsewhere (at least 100; -1: never)",
    },
    Variable {
        name: "FN_ASYNC_MAX_ATTEMPTS",
        default: "3",
        help: "attempts (failed runs, or hand-outs to runners lost before completing) before an async call is dead-lettered",
    },
    Variable {
        name: "FN_LOST_CALL_AFTER_MSECS",
        default: "4200000",
        help: "a call still running this long after it started lost its node and is ended as error (negative: never)",
    },
    Variable {
        name: "FN_ASYNC_RETRY_BACKOFF_MSECS",
        default: "1000",
        help: "delay before the first retry of an async call; doubled for each further one (0 or more)",
    },
    Variable {
        name: "FN_MAX_LOG_SIZE_BYTES",
        default: "1048576",
        help: "largest call log kept; with FN_MAX_REQUEST_SIZE it sizes the hybrid API's largest message",
    },
    Variable {
        name: "FN_HTTP_HEADER_TIMEOUT_MSECS",
        default: "5000",
        help: "a client must send a request's whole head within this, or the connection is closed (0: no limit)",
    },
    Variable {
        name: "FN_HTTP_BODY_IDLE_TIMEOUT_MSECS",
        default: "30000",
        help: "a request body that stalls this long between two chunks is answered 408 and its connection closed (0: no limit)",
    },
    Variable {
        name: "FN_HTTP_KEEPALIVE_MSECS",
        default: "5000",
        help: "an idle kept-alive connection (HTTP, and the gRPC keepalive ping interval) is closed after this (0: no keep-alive)",
    },
];

/// Which role this process plays. The management API is served on `full` and `api` nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// API and agent in one process (Fn's default).
    Full,
    /// API only; runners connect to it.
    Api,
}

impl NodeType {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.trim() {
            "" | "full" => Ok(NodeType::Full),
            "api" => Ok(NodeType::Api),
            other => Err(ConfigError::Invalid {
                name: "FN_NODE_TYPE".into(),
                value: other.into(),
                reason: "the api-node binary serves the types full and api (runner nodes run runner-node)".into(),
            }),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A variable that does not parse.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An `FN_DB_URL` the datastore does not understand.
    #[error(transparent)]
    DbUrl(#[from] DbUrlError),
}

/// Reads the gRPC listener's TLS files, when `FN_NODE_CERT` names one.
fn grpc_tls(src: &dyn Source) -> Result<Option<crate::hybrid::grpc::GrpcTls>, ConfigError> {
    let read = |name: &str| -> Result<Option<Vec<u8>>, ConfigError> {
        match src.get(name).filter(|p| !p.is_empty()) {
            None => Ok(None),
            Some(path) => std::fs::read(&path).map(Some).map_err(|e| ConfigError::Invalid {
                name: name.into(),
                value: path,
                reason: format!("cannot read the file: {e}"),
            }),
        }
    };
    let client_ca = read("FN_NODE_CERT_AUTHORITY")?;
    let Some(cert) = read("FN_NODE_CERT")? else {
        return match client_ca {
            // A CA without a listener certificate would authenticate nobody while looking as if it did.
            Some(_) => Err(ConfigError::Missing(
                "FN_NODE_CERT_AUTHORITY is set but FN_NODE_CERT is not: mutual TLS needs the gRPC listener's certificate and key (FN_NODE_CERT, FN_NODE_CERT_KEY)".into(),
            )),
            None => Ok(None),
        };
    };
    let key = read("FN_NODE_CERT_KEY")?
        .ok_or_else(|| ConfigError::Missing("FN_NODE_CERT is set but FN_NODE_CERT_KEY is not".into()))?;
    Ok(Some(crate::hybrid::grpc::GrpcTls { cert, key: Secret::new(key), client_ca }))
}

/// The API node's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `FN_NODE_TYPE`.
    pub node_type: NodeType,
    /// `FN_PORT`; 0 binds a free port (tests).
    pub port: u16,
    /// `FN_LISTEN_HOST`: the address the HTTP server binds; all IPv4 interfaces by default.
    pub bind_host: String,
    /// `FN_GRPC_LISTEN_HOST`: the address the gRPC listener binds; `FN_LISTEN_HOST` by default.
    pub grpc_bind_host: String,
    /// `FN_DB_URL`, parsed.
    pub db_url: DbUrl,
    /// `FN_DS_DB_PING_MAX_RETRIES`.
    pub db_ping_retries: u32,
    /// `FN_LOG_LEVEL`.
    pub log_level: String,
    /// `FN_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `FN_MAX_REQUEST_SIZE` (6 MiB, the agent's default too); `None` is unlimited (Fn's 0).
    pub max_request_size: Option<u64>,
    /// `FN_PUBLIC_LB_URL` without a trailing slash, or `http://localhost:<port>`.
    pub public_url: String,
    /// HTTP worker threads; 0 is one per CPU core (actix's default).
    pub workers: usize,
    /// `FN_MQ_URL` (may carry a password).
    pub mq_url: SecretUrl,
    /// `FN_GRPC_PORT`; `None` turns the gRPC listener off.
    pub grpc_port: Option<u16>,
    /// `FN_RUNNER_TOKEN`.
    pub runner_token: Option<Secret>,
    /// `FN_RUNNER_API_INSECURE`: serve the runner API without runner credentials.
    pub runner_api_insecure: bool,
    /// TLS of the gRPC listener, from `FN_NODE_CERT`, `FN_NODE_CERT_KEY`, `FN_NODE_CERT_AUTHORITY`.
    pub grpc_tls: Option<crate::hybrid::grpc::GrpcTls>,
    /// `FN_ASYNC_*`: how queued calls are held and retried.
    pub async_policy: crate::direct::AsyncPolicy,
    /// `FN_LOST_CALL_AFTER_MSECS`: when a still-running call counts as lost; `None` never.
    pub lost_call_after: Option<Duration>,
    /// `FN_HTTP_*_MSECS`: how long slow or idle clients may hold a connection.
    pub http_timeouts: runner_node::slow_clients::HttpTimeouts,
    /// Largest hybrid API message (HTTP body, gRPC message), from `FN_MAX_LOG_SIZE_BYTES` and
    /// `FN_MAX_REQUEST_SIZE` ([`shared::config::hybrid_message_limit`]).
    pub hybrid_max_message: usize,
}

/// `FN_ASYNC_LEASE_MSECS`: at least 100 ms, or a queued call would be handed out again before its
/// runner's first heartbeat could reach the API node; `-1` holds a call until its runner completes it.
fn async_lease(src: &dyn Source) -> Result<Duration, ConfigError> {
    let lease = shared::config::msecs_or_never(src, "FN_ASYNC_LEASE_MSECS", 10_000)?;
    if lease < Duration::from_millis(100) {
        return Err(ConfigError::Invalid {
            name: "FN_ASYNC_LEASE_MSECS".into(),
            value: lease.as_millis().to_string(),
            reason: "must be at least 100 (or -1, never): runners heartbeat three times per lease".into(),
        });
    }
    Ok(lease)
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Self::from_source(&shared::config::Env)
    }

    /// Reads the settings from `src` (a map in tests).
    pub fn from_source(src: &dyn Source) -> Result<Settings, SettingsError> {
        let port: u16 = parse_or(src, "FN_PORT", 8080)?;
        let db_url: DbUrl = string_or(src, "FN_DB_URL", "sqlite3://./data/fn.db").parse()?;
        let log_format = match string_or(src, "FN_LOG_FORMAT", "text").trim() {
            "" | "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    name: "FN_LOG_FORMAT".into(),
                    value: other.into(),
                    reason: "expected text or json".into(),
                }
                .into())
            }
        };
        let max: u64 = parse_or(src, "FN_MAX_REQUEST_SIZE", shared::config::DEFAULT_MAX_BODY_SIZE)?;
        let public = string_or(src, "FN_PUBLIC_LB_URL", "");
        let public_url = if public.trim().is_empty() {
            format!("http://localhost:{port}")
        } else {
            let trimmed = public.trim().trim_end_matches('/').to_string();
            url::Url::parse(&trimmed).map_err(|e| ConfigError::Invalid {
                name: "FN_PUBLIC_LB_URL".into(),
                value: public.clone(),
                reason: format!("not an absolute URL: {e}"),
            })?;
            trimmed
        };
        let bind_host = string_or(src, "FN_LISTEN_HOST", "").trim().to_string();
        let bind_host = if bind_host.is_empty() { "0.0.0.0".to_string() } else { bind_host };
        let grpc_bind_host = string_or(src, "FN_GRPC_LISTEN_HOST", "").trim().to_string();
        let grpc_bind_host = if grpc_bind_host.is_empty() { bind_host.clone() } else { grpc_bind_host };
        let settings = Settings {
            node_type: NodeType::parse(&string_or(src, "FN_NODE_TYPE", "full"))?,
            port,
            bind_host,
            grpc_bind_host,
            db_url,
            db_ping_retries: parse_or(src, "FN_DS_DB_PING_MAX_RETRIES", 10)?,
            log_level: string_or(src, "FN_LOG_LEVEL", "info"),
            log_format,
            max_request_size: (max > 0).then_some(max),
            public_url,
            workers: 0,
            mq_url: SecretUrl::new(string_or(src, "FN_MQ_URL", "sqlite3://./data/fn.mq")),
            grpc_port: Some(parse_or(src, "FN_GRPC_PORT", 9190u16)?).filter(|p| *p != 0),
            runner_token: src.get("FN_RUNNER_TOKEN").filter(|t| !t.is_empty()).map(Secret::new),
            runner_api_insecure: parse_or(src, "FN_RUNNER_API_INSECURE", false)?,
            grpc_tls: grpc_tls(src)?,
            async_policy: crate::direct::AsyncPolicy {
                lease: async_lease(src)?,
                max_attempts: parse_or(src, "FN_ASYNC_MAX_ATTEMPTS", 3u32)?.max(1),
                backoff: shared::config::msecs_at_least_zero(src, "FN_ASYNC_RETRY_BACKOFF_MSECS", 1000)?,
            },
            // The longest call (an async route, 3600 s) plus ten minutes for pulls, starts and leases.
            lost_call_after: shared::config::msecs_or(src, "FN_LOST_CALL_AFTER_MSECS", 4_200_000)?,
            http_timeouts: runner_node::slow_clients::HttpTimeouts::from_source(src)?,
            hybrid_max_message: shared::config::hybrid_message_limit_from(src)?,
        };
        if settings.node_type == NodeType::Api && !settings.serves_runner_api() {
            return Err(ConfigError::Missing(
                "an api node (FN_NODE_TYPE=api) serves runner nodes, so it must be able to authenticate them: \
                 set FN_RUNNER_TOKEN (and the same on every runner), or FN_NODE_CERT, FN_NODE_CERT_KEY and \
                 FN_NODE_CERT_AUTHORITY for mutual TLS on gRPC; FN_RUNNER_API_INSECURE=true serves the runner \
                 API to anybody who can reach it (trusted networks only)"
                    .into(),
            )
            .into());
        }
        Ok(settings)
    }

    /// Whether runners can be authenticated by a client certificate (gRPC with mutual TLS).
    fn runner_certs(&self) -> bool {
        self.grpc_tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }

    /// Whether the runner API is served at all: only when runners can be authenticated (a token or
    /// client certificates) or the operator opted out with `FN_RUNNER_API_INSECURE=true`.
    pub fn serves_runner_api(&self) -> bool {
        self.runner_token.is_some() || self.runner_certs() || self.runner_api_insecure
    }

    /// Whether `/v2/runner` is mounted: it can authenticate only by token, so not with client
    /// certificates alone.
    pub fn serves_runner_http(&self) -> bool {
        self.runner_token.is_some() || self.runner_api_insecure
    }

    /// The gRPC port to open, when the runner API is served and `FN_GRPC_PORT` is not 0.
    pub fn runner_grpc_port(&self) -> Option<u16> {
        self.grpc_port.filter(|_| self.serves_runner_api())
    }

    /// Settings for tests and benchmarks: loopback, a free port, the given database.
    pub fn for_tests(db_url: DbUrl) -> Settings {
        Settings {
            node_type: NodeType::Full,
            port: 0,
            bind_host: "127.0.0.1".into(),
            grpc_bind_host: "127.0.0.1".into(),
            db_url,
            db_ping_retries: 0,
            log_level: "warn".into(),
            log_format: LogFormat::Text,
            max_request_size: None,
            public_url: "http://localhost:8080".into(),
            workers: 1,
            mq_url: SecretUrl::new("memory://"),
            grpc_port: None,
            runner_token: None,
            runner_api_insecure: false,
            grpc_tls: None,
            async_policy: crate::direct::AsyncPolicy::default(),
            lost_call_after: None,
            http_timeouts: runner_node::slow_clients::HttpTimeouts::default(),
            hybrid_max_message: shared::config::default_hybrid_message_limit(),
        }
    }

    /// The `--help` text: usage and every variable with its default.
    pub fn help() -> String {
        let mut out = String::from(
            "api-node: Fn's management API (v1 and v2) over a SQL datastore.\n\n\
             Usage: api-node [--help]\n\nConfiguration is read from the environment:\n",
        );
        for v in VARIABLES {
            out.push_str(&format!("  {:<28} default {:<28} {}\n", v.name, v.default, v.help));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_source(&env(&[])).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.node_type, NodeType::Full);
        assert_eq!(s.db_ping_retries, 10);
        let limit = runner_node::config::DEFAULT_MAX_BODY_SIZE;
        assert_eq!(s.max_request_size, Some(limit), "the agent's default: one limit in full mode");
        for name in ["FN_MAX_REQUEST_SIZE", "FN_MAX_RESPONSE_SIZE"] {
            let v = VARIABLES.iter().find(|v| v.name == name).unwrap();
            assert_eq!(v.default, limit.to_string(), "{name} in --help");
        }
        assert_eq!(s.public_url, "http://localhost:8080");
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn values_and_errors() {
        let s = Settings::from_source(&env(&[
            ("FN_PORT", "9000"),
            ("FN_PUBLIC_LB_URL", "https://fn.example.com/"),
            ("FN_MAX_REQUEST_SIZE", "1024"),
            ("FN_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!((s.port, s.public_url.as_str(), s.max_request_size), (9000, "https://fn.example.com", Some(1024)));
        let e = Settings::from_source(&env(&[("FN_DB_URL", "redis://x")])).unwrap_err().to_string();
        assert!(e.contains("redis") && e.contains("postgres://"), "{e}");
        let e = Settings::from_source(&env(&[("FN_PORT", "http")])).unwrap_err().to_string();
        assert!(e.contains("FN_PORT"), "{e}");
        let e = Settings::from_source(&env(&[("FN_NODE_TYPE", "runner")])).unwrap_err().to_string();
        assert!(e.contains("FN_NODE_TYPE"), "{e}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (cert, key, ca) = (write("c.pem", "CERT"), write("k.pem", "KEY-MATERIAL-xyz"), write("ca.pem", "CA"));
        let s = Settings::from_source(&env(&[
            ("FN_DB_URL", "postgres://fn:db-pass-1@db:5432/fn?sslmode=disable&password=db-pass-2"),
            ("FN_MQ_URL", "redis://:mq-pass-1@mq:6379/0?token=mq-pass-2"),
            ("FN_RUNNER_TOKEN", "runner-token-3"),
            ("FN_NODE_CERT", &cert),
            ("FN_NODE_CERT_KEY", &key),
            ("FN_NODE_CERT_AUTHORITY", &ca),
        ]))
        .unwrap();
        let debug = format!("{s:?}");
        for secret in ["db-pass-1", "db-pass-2", "mq-pass-1", "mq-pass-2", "runner-token-3", "KEY-MATERIAL"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("postgres://fn:***@db:5432/fn?sslmode=disable&password=***"), "{debug}");
        // The values themselves still reach the code that needs them.
        assert_eq!(s.runner_token.as_ref().map(|t| t.expose().as_str()), Some("runner-token-3"));
        assert!(s.mq_url.expose().contains("mq-pass-1"));
    }

    #[test]
    fn runner_api_is_closed_by_default() {
        let s = Settings::from_source(&env(&[])).unwrap();
        assert!(!s.serves_runner_api() && !s.serves_runner_http(), "a full node serves no runner API by default");
        assert_eq!(s.runner_grpc_port(), None, "nor opens the gRPC port");
        assert_eq!((s.bind_host.as_str(), s.grpc_bind_host.as_str()), ("0.0.0.0", "0.0.0.0"));

        let e = Settings::from_source(&env(&[("FN_NODE_TYPE", "api")])).unwrap_err().to_string();
        assert!(
            e.contains("FN_RUNNER_TOKEN")
                && e.contains("FN_NODE_CERT_AUTHORITY")
                && e.contains("FN_RUNNER_API_INSECURE=true"),
            "{e}"
        );

        for node_type in ["api", "full"] {
            let s = Settings::from_source(&env(&[("FN_NODE_TYPE", node_type), ("FN_RUNNER_TOKEN", "t")])).unwrap();
            assert!(s.serves_runner_http() && s.runner_grpc_port() == Some(9190), "{node_type} with a token");
            let s = Settings::from_source(&env(&[("FN_NODE_TYPE", node_type), ("FN_RUNNER_API_INSECURE", "true")]))
                .unwrap();
            assert!(s.serves_runner_http() && s.runner_grpc_port() == Some(9190), "{node_type} opted out");
        }
        let s = Settings::from_source(&env(&[("FN_RUNNER_TOKEN", "t"), ("FN_GRPC_PORT", "0")])).unwrap();
        assert_eq!(s.runner_grpc_port(), None);
        let e = Settings::from_source(&env(&[("FN_RUNNER_API_INSECURE", "yes")])).unwrap_err().to_string();
        assert!(e.contains("FN_RUNNER_API_INSECURE"), "{e}");
    }

    #[test]
    fn client_certificates_alone_serve_grpc_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "PEM").unwrap();
            p.display().to_string()
        };
        let (cert, key, ca) = (path("c.pem"), path("k.pem"), path("ca.pem"));
        let s = Settings::from_source(&env(&[
            ("FN_NODE_TYPE", "api"),
            ("FN_NODE_CERT", &cert),
            ("FN_NODE_CERT_KEY", &key),
            ("FN_NODE_CERT_AUTHORITY", &ca),
        ]))
        .unwrap();
        assert!(s.serves_runner_api() && !s.serves_runner_http(), "/v2/runner cannot check a client certificate");
        assert_eq!(s.runner_grpc_port(), Some(9190));
        let e = Settings::from_source(&env(&[("FN_NODE_CERT_AUTHORITY", &ca)])).unwrap_err().to_string();
        assert!(e.contains("FN_NODE_CERT_AUTHORITY") && e.contains("FN_NODE_CERT"), "{e}");
        let s = Settings::from_source(&env(&[("FN_NODE_CERT", &cert), ("FN_NODE_CERT_KEY", &key)])).unwrap();
        assert!(!s.serves_runner_api(), "TLS without a client CA authenticates nobody");
    }

    #[test]
    fn listen_hosts() {
        let s = Settings::from_source(&env(&[("FN_LISTEN_HOST", "127.0.0.1")])).unwrap();
        assert_eq!((s.bind_host.as_str(), s.grpc_bind_host.as_str()), ("127.0.0.1", "127.0.0.1"));
        let s = Settings::from_source(&env(&[("FN_LISTEN_HOST", "127.0.0.1"), ("FN_GRPC_LISTEN_HOST", "::")])).unwrap();
        assert_eq!((s.bind_host.as_str(), s.grpc_bind_host.as_str()), ("127.0.0.1", "::"));
    }

    #[test]
    fn async_lease_is_at_least_100_ms() {
        assert_eq!(Settings::from_source(&env(&[])).unwrap().async_policy.lease, Duration::from_secs(10));
        let s = Settings::from_source(&env(&[("FN_ASYNC_LEASE_MSECS", "100")])).unwrap();
        assert_eq!(s.async_policy.lease, Duration::from_millis(100));
        let e = Settings::from_source(&env(&[("FN_ASYNC_LEASE_MSECS", "0")])).unwrap_err().to_string();
        assert!(e.contains("FN_ASYNC_LEASE_MSECS") && e.contains("heartbeat"), "{e}");
    }

    #[test]
    fn help_lists_every_variable() {
        let h = Settings::help();
        for v in VARIABLES {
            assert!(h.contains(v.name) && h.contains(v.default), "{}", v.name);
        }
    }

    /// Every `*_MSECS` variable takes -1 (never, or a clear refusal where never makes no sense) and
    /// `i64::MAX` without a panic, and what it yields can be added to now.
    #[test]
    fn every_msecs_variable_takes_never_and_huge_values() {
        let names: Vec<&str> = VARIABLES.iter().map(|v| v.name).filter(|n| n.ends_with("_MSECS")).collect();
        assert!(names.len() >= 3, "{names:?}");
        for name in &names {
            for value in ["-1".to_string(), i64::MAX.to_string()] {
                match Settings::from_source(&env(&[(name, &value)])) {
                    Ok(s) => {
                        let p = s.async_policy;
                        for d in [p.lease, p.backoff].into_iter().chain(s.lost_call_after) {
                            assert!(d <= shared::config::NEVER, "{name}={value}: {d:?}");
                            let _ = std::time::Instant::now() + d + d;
                            let _ = chrono::Utc::now() - chrono::TimeDelta::from_std(d).unwrap();
                        }
                    }
                    Err(e) => {
                        assert_eq!(value, "-1", "{name}={value}: {e}");
                        assert!(e.to_string().contains(name), "{e}");
                    }
                }
            }
        }
        let never = env(&[("FN_ASYNC_LEASE_MSECS", "-1"), ("FN_LOST_CALL_AFTER_MSECS", "-1")]);
        let s = Settings::from_source(&never).unwrap();
        assert_eq!((s.async_policy.lease, s.lost_call_after), (shared::config::NEVER, None));
        assert!(Settings::from_source(&env(&[("FN_ASYNC_RETRY_BACKOFF_MSECS", "-1")])).is_err());
    }
}
