//! The API node's settings, read from Fn's `FN_*` environment variables.
//!
//! Everything is read and checked once at start-up, so a bad value stops the process with a message
//! naming the variable instead of surfacing later as a confusing runtime failure.

use std::time::Duration;

use shared::config::{parse_or, string_or, ConfigError, Source};

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
    Variable { name: "FN_GRPC_PORT", default: "9190", help: "port of the hybrid gRPC API for runner nodes (0: off)" },
    Variable {
        name: "FN_RUNNER_TOKEN",
        default: "",
        help: "when set, runner nodes must present it (Authorization: Bearer) on the hybrid API",
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
        help: "PEM CA that runner client certificates must chain to (mutual TLS)",
    },
    Variable {
        name: "FN_ASYNC_LEASE_MSECS",
        default: "30000",
        help: "how long past its timeout a runner holds a queued call before it is run elsewhere",
    },
    Variable {
        name: "FN_ASYNC_MAX_ATTEMPTS",
        default: "3",
        help: "attempts of a failing async call before it is dead-lettered",
    },
    Variable {
        name: "FN_LOST_CALL_AFTER_MSECS",
        default: "4200000",
        help: "a call still running this long after it started lost its node and is ended as error (negative: never)",
    },
    Variable {
        name: "FN_ASYNC_RETRY_BACKOFF_MSECS",
        default: "1000",
        help: "delay before the first retry of an async call; doubled for each further one",
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
    let Some(cert) = read("FN_NODE_CERT")? else { return Ok(None) };
    let key = read("FN_NODE_CERT_KEY")?
        .ok_or_else(|| ConfigError::Missing("FN_NODE_CERT is set but FN_NODE_CERT_KEY is not".into()))?;
    Ok(Some(crate::hybrid::grpc::GrpcTls { cert, key, client_ca: read("FN_NODE_CERT_AUTHORITY")? }))
}

/// The API node's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `FN_NODE_TYPE`.
    pub node_type: NodeType,
    /// `FN_PORT`; 0 binds a free port (tests).
    pub port: u16,
    /// Address to bind; all interfaces by default.
    pub bind_host: String,
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
    /// `FN_MQ_URL`.
    pub mq_url: String,
    /// `FN_GRPC_PORT`; `None` turns the gRPC listener off.
    pub grpc_port: Option<u16>,
    /// `FN_RUNNER_TOKEN`.
    pub runner_token: Option<String>,
    /// TLS of the gRPC listener, from `FN_NODE_CERT`, `FN_NODE_CERT_KEY`, `FN_NODE_CERT_AUTHORITY`.
    pub grpc_tls: Option<crate::hybrid::grpc::GrpcTls>,
    /// `FN_ASYNC_*`: how queued calls are held and retried.
    pub async_policy: crate::direct::AsyncPolicy,
    /// `FN_LOST_CALL_AFTER_MSECS`: when a still-running call counts as lost; `None` never.
    pub lost_call_after: Option<Duration>,
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
        let max: u64 = parse_or(src, "FN_MAX_REQUEST_SIZE", runner_node::config::DEFAULT_MAX_BODY_SIZE)?;
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
        Ok(Settings {
            node_type: NodeType::parse(&string_or(src, "FN_NODE_TYPE", "full"))?,
            port,
            bind_host: "0.0.0.0".into(),
            db_url,
            db_ping_retries: parse_or(src, "FN_DS_DB_PING_MAX_RETRIES", 10)?,
            log_level: string_or(src, "FN_LOG_LEVEL", "info"),
            log_format,
            max_request_size: (max > 0).then_some(max),
            public_url,
            workers: 0,
            mq_url: string_or(src, "FN_MQ_URL", "sqlite3://./data/fn.mq"),
            grpc_port: Some(parse_or(src, "FN_GRPC_PORT", 9190u16)?).filter(|p| *p != 0),
            runner_token: src.get("FN_RUNNER_TOKEN").filter(|t| !t.is_empty()),
            grpc_tls: grpc_tls(src)?,
            async_policy: crate::direct::AsyncPolicy {
                lease: Duration::from_millis(parse_or(src, "FN_ASYNC_LEASE_MSECS", 30_000u64)?),
                max_attempts: parse_or(src, "FN_ASYNC_MAX_ATTEMPTS", 3u32)?.max(1),
                backoff: Duration::from_millis(parse_or(src, "FN_ASYNC_RETRY_BACKOFF_MSECS", 1000u64)?),
            },
            // The longest call (an async route, 3600 s) plus ten minutes for pulls, starts and leases.
            lost_call_after: shared::config::msecs_or(src, "FN_LOST_CALL_AFTER_MSECS", 4_200_000)?,
        })
    }

    /// Settings for tests and benchmarks: loopback, a free port, the given database.
    pub fn for_tests(db_url: DbUrl) -> Settings {
        Settings {
            node_type: NodeType::Full,
            port: 0,
            bind_host: "127.0.0.1".into(),
            db_url,
            db_ping_retries: 0,
            log_level: "warn".into(),
            log_format: LogFormat::Text,
            max_request_size: None,
            public_url: "http://localhost:8080".into(),
            workers: 1,
            mq_url: "memory://".into(),
            grpc_port: None,
            runner_token: None,
            grpc_tls: None,
            async_policy: crate::direct::AsyncPolicy::default(),
            lost_call_after: None,
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
    fn help_lists_every_variable() {
        let h = Settings::help();
        for v in VARIABLES {
            assert!(h.contains(v.name) && h.contains(v.default), "{}", v.name);
        }
    }
}
