//! Agent configuration read from `FN_*` environment variables, with Fn's defaults
//! (docs/fn-compatibility.md, "Configuration").

use std::path::PathBuf;
use std::time::Duration;

pub use shared::config::DEFAULT_MAX_BODY_SIZE;

/// How the agent runs containers. Build it with [`AgentConfig::from_env`] or start from
/// [`AgentConfig::default`] (Fn's defaults) and override fields.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Pause a hot container after this long idle (`FN_FREEZE_IDLE_MSECS`, 50 ms; negative = never).
    pub freeze_idle: Option<Duration>,
    /// How often waiters re-check their slot queue (`FN_HOT_POLL_MSECS`, 200 ms).
    pub hot_poll: Duration,
    /// How long an http-stream container may take to open its socket (`FN_HOT_START_TIMEOUT_MSECS`, 5 s).
    pub hot_start_timeout: Duration,
    /// Longest image pull (`FN_HOT_PULL_TIMEOUT_MSECS`, 10 min).
    pub pull_timeout: Duration,
    /// Largest response body in bytes, 0 = unlimited (`FN_MAX_RESPONSE_SIZE`, 6 MiB): 502 beyond.
    pub max_response_size: u64,
    /// Largest response header block in bytes, 0 = unlimited (`FN_MAX_HDR_RESPONSE_SIZE`).
    pub max_response_header_size: u64,
    /// Largest request body in bytes, 0 = unlimited (`FN_MAX_REQUEST_SIZE`, 6 MiB): 413 beyond.
    pub max_request_size: u64,
    /// Per-call log cap (`FN_MAX_LOG_SIZE_BYTES`, 1 MiB).
    pub max_log_size: usize,
    /// Memory capacity cap in bytes, 0 = detect (`FN_MAX_TOTAL_MEMORY_BYTES`).
    pub max_total_memory: u64,
    /// CPU capacity cap in mCPU, 0 = detect (`FN_MAX_TOTAL_CPU_MCPUS`).
    pub max_total_cpu_mcpus: u64,
    /// Fail at once with 503 instead of waiting for capacity (`FN_ENABLE_NB_RESOURCE_TRACKER`).
    pub non_blocking_resources: bool,
    /// Docker storage quota per container in MB, 0 = none (`FN_MAX_FS_SIZE_MB`).
    pub max_fs_size_mb: u64,
    /// `nr_inodes` for the /tmp tmpfs, 0 = default (`FN_MAX_TMPFS_INODES`).
    pub max_tmpfs_inodes: u64,
    /// Networks to spread containers over; `["none"]` disables networking (`FN_DOCKER_NETWORKS`).
    /// Empty (the default): the agent's own isolated bridge, [`crate::agent::FUNCTIONS_NETWORK`].
    pub docker_networks: Vec<String>,
    /// Keep the root fs writable (`FN_DISABLE_READONLY_ROOTFS`).
    pub disable_readonly_rootfs: bool,
    /// Run as the image's user with default capabilities (`FN_DISABLE_UNPRIVILEGED_CONTAINERS`).
    pub disable_unprivileged: bool,
    /// pids cgroup limit, 0 = none (`FN_MAX_PIDS`, 50).
    pub max_pids: i64,
    /// `nofile` ulimit (`FN_MAX_OPEN_FILES`, 350).
    pub max_open_files: i64,
    /// `memlock` ulimit (`FN_MAX_LOCKED_MEMORY`, 65536).
    pub max_locked_memory: i64,
    /// `sigpending` ulimit (`FN_MAX_PENDING_SIGNALS`, 5000).
    pub max_pending_signals: i64,
    /// `msgqueue` ulimit (`FN_MAX_MESSAGE_QUEUE`, 819200).
    pub max_message_queue: i64,
    /// Label key put on every container (`FN_CONTAINER_LABEL_TAG`).
    pub container_label_tag: String,
    /// Label value: this node's identity, stable across restarts so leftovers can be reaped
    /// (`FN_INSTANCE_ID`, default the host name).
    pub instance_id: String,
    /// Host directory under which per-container http-stream socket directories are made (`FN_IOFS_PATH`).
    pub iofs_path: PathBuf,
    /// Registry credentials JSON (`FN_DOCKER_AUTH` or `DOCKER_AUTH`), else `~/.docker/config.json`.
    /// A secret: its `Debug` form is redacted.
    pub docker_auth: Option<RegistryAuth>,
    /// Capacity of the background call-record queue; a full queue applies backpressure
    /// (`FN_CALL_RECORD_QUEUE`, 1024).
    pub record_queue: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            freeze_idle: Some(Duration::from_millis(50)),
            hot_poll: Duration::from_millis(200),
            hot_start_timeout: Duration::from_secs(5),
            pull_timeout: Duration::from_secs(600),
            max_response_size: DEFAULT_MAX_BODY_SIZE,
            max_response_header_size: 0,
            max_request_size: DEFAULT_MAX_BODY_SIZE,
            max_log_size: 1 << 20,
            max_total_memory: 0,
            max_total_cpu_mcpus: 0,
            non_blocking_resources: false,
            max_fs_size_mb: 0,
            max_tmpfs_inodes: 0,
            docker_networks: Vec::new(),
            disable_readonly_rootfs: false,
            disable_unprivileged: false,
            max_pids: 50,
            max_open_files: 350,
            max_locked_memory: 65536,
            max_pending_signals: 5000,
            max_message_queue: 819200,
            container_label_tag: "fnproject.runner".to_string(),
            instance_id: default_instance_id(),
            iofs_path: std::env::temp_dir().join("fn-iofs"),
            docker_auth: None,
            record_queue: 1024,
        }
    }
}

impl AgentConfig {
    /// Reads the configuration from the process environment. A malformed number is an error,
    /// as in Fn (fatal at startup).
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut c = AgentConfig::default();
        let num = |k: &str| -> Result<Option<i64>, String> {
            match get(k).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v.trim().parse::<i64>().map(Some).map_err(|e| format!("{k}={v}: {e}")),
            }
        };
        // Negative is "never"; every value is capped at `NEVER`, so deadlines made from it cannot
        // overflow.
        let msecs = |k: &str, d: &mut Duration| -> Result<(), String> {
            if let Some(n) = num(k)? {
                *d = if n < 0 {
                    shared::config::NEVER
                } else {
                    shared::config::bounded(Duration::from_millis(n as u64))
                };
            }
            Ok(())
        };
        if let Some(n) = num("FN_FREEZE_IDLE_MSECS")? {
            c.freeze_idle = (n >= 0).then(|| shared::config::bounded(Duration::from_millis(n as u64)));
        }
        msecs("FN_HOT_POLL_MSECS", &mut c.hot_poll)?;
        msecs("FN_HOT_START_TIMEOUT_MSECS", &mut c.hot_start_timeout)?;
        msecs("FN_HOT_PULL_TIMEOUT_MSECS", &mut c.pull_timeout)?;
        let unsigned = |k: &str, d: &mut u64| -> Result<(), String> {
            if let Some(n) = num(k)? {
                *d = n.max(0) as u64;
            }
            Ok(())
        };
        unsigned("FN_MAX_RESPONSE_SIZE", &mut c.max_response_size)?;
        unsigned("FN_MAX_HDR_RESPONSE_SIZE", &mut c.max_response_header_size)?;
        unsigned("FN_MAX_REQUEST_SIZE", &mut c.max_request_size)?;
        unsigned("FN_MAX_TOTAL_MEMORY_BYTES", &mut c.max_total_memory)?;
        unsigned("FN_MAX_TOTAL_CPU_MCPUS", &mut c.max_total_cpu_mcpus)?;
        unsigned("FN_MAX_FS_SIZE_MB", &mut c.max_fs_size_mb)?;
        unsigned("FN_MAX_TMPFS_INODES", &mut c.max_tmpfs_inodes)?;
        if let Some(n) = num("FN_MAX_LOG_SIZE_BYTES")? {
            c.max_log_size = n.max(0) as usize;
        }
        if let Some(n) = num("FN_CALL_RECORD_QUEUE")? {
            c.record_queue = n.max(1) as usize;
        }
        for (k, d) in [
            ("FN_MAX_PIDS", &mut c.max_pids),
            ("FN_MAX_OPEN_FILES", &mut c.max_open_files),
            ("FN_MAX_LOCKED_MEMORY", &mut c.max_locked_memory),
            ("FN_MAX_PENDING_SIGNALS", &mut c.max_pending_signals),
            ("FN_MAX_MESSAGE_QUEUE", &mut c.max_message_queue),
        ] {
            if let Some(n) = num(k)? {
                *d = n;
            }
        }
        c.non_blocking_resources = get("FN_ENABLE_NB_RESOURCE_TRACKER").is_some();
        c.disable_readonly_rootfs = get("FN_DISABLE_READONLY_ROOTFS").is_some();
        c.disable_unprivileged = get("FN_DISABLE_UNPRIVILEGED_CONTAINERS").is_some();
        if let Some(v) = get("FN_DOCKER_NETWORKS") {
            c.docker_networks = v.split_whitespace().map(str::to_string).collect();
        }
        if let Some(v) = get("FN_CONTAINER_LABEL_TAG").filter(|v| !v.is_empty()) {
            c.container_label_tag = v;
        }
        if let Some(v) = get("FN_INSTANCE_ID").filter(|v| !v.is_empty()) {
            c.instance_id = v;
        }
        if let Some(v) = get("FN_IOFS_PATH").filter(|v| !v.is_empty()) {
            c.iofs_path = PathBuf::from(v);
        }
        c.docker_auth =
            get("FN_DOCKER_AUTH").or_else(|| get("DOCKER_AUTH")).filter(|v| !v.is_empty()).map(RegistryAuth::new);
        Ok(c)
    }
}

/// Registry credentials (Docker's `config.json` form, `{"auths":{"host":{"auth":"base64"}}}`). They
/// are secrets: `Debug` shows no part of them, and nothing logs them.
pub type RegistryAuth = shared::secret::Secret<String>;

fn default_instance_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "fn-runner".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<AgentConfig, String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AgentConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_fn() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.freeze_idle, Some(Duration::from_millis(50)));
        assert_eq!(c.max_pids, 50);
        assert_eq!(c.max_log_size, 1 << 20);
        assert_eq!(c.hot_start_timeout, Duration::from_secs(5));
        assert_eq!((c.max_request_size, c.max_response_size), (6 << 20, 6 << 20));
        let c = cfg(&[("FN_MAX_REQUEST_SIZE", "0"), ("FN_MAX_RESPONSE_SIZE", "10")]).unwrap();
        assert_eq!((c.max_request_size, c.max_response_size), (0, 10), "0 is unlimited");
    }

    #[test]
    fn reads_overrides_and_rejects_bad_numbers() {
        let c =
            cfg(&[("FN_FREEZE_IDLE_MSECS", "-1"), ("FN_DISABLE_READONLY_ROOTFS", ""), ("FN_DOCKER_NETWORKS", "a b")])
                .unwrap();
        assert_eq!(c.freeze_idle, None);
        assert!(c.disable_readonly_rootfs);
        assert_eq!(c.docker_networks, vec!["a", "b"]);
        assert!(cfg(&[("FN_MAX_PIDS", "lots")]).is_err());
    }

    #[test]
    fn registry_credentials_never_show_in_debug_output() {
        let secret = r#"{"auths":{"registry.example.com":{"auth":"dXNlcjpodW50ZXIy"}}}"#;
        let c = cfg(&[("FN_DOCKER_AUTH", secret)]).unwrap();
        assert_eq!(c.docker_auth.as_ref().map(|a| a.expose().as_str()), Some(secret));
        let shown = format!("{c:?}");
        assert!(!shown.contains("dXNlcjpodW50ZXIy") && !shown.contains("registry.example.com"), "{shown}");
        assert!(shown.contains(shared::secret::REDACTED), "{shown}");
    }

    /// Every `*_MSECS` setting the agent reads, at -1 ("never") and at `i64::MAX`.
    pub(crate) const MSECS_VARIABLES: [&str; 4] =
        ["FN_FREEZE_IDLE_MSECS", "FN_HOT_POLL_MSECS", "FN_HOT_START_TIMEOUT_MSECS", "FN_HOT_PULL_TIMEOUT_MSECS"];

    #[test]
    fn msecs_settings_take_never_and_huge_values() {
        for value in ["-1".to_string(), i64::MAX.to_string()] {
            let vars: Vec<(&str, &str)> = MSECS_VARIABLES.iter().map(|k| (*k, value.as_str())).collect();
            let c = cfg(&vars).unwrap();
            for d in [c.hot_poll, c.hot_start_timeout, c.pull_timeout].into_iter().chain(c.freeze_idle) {
                assert!(d <= shared::config::NEVER, "{value}: {d:?}");
                // What the agent does with them: deadlines from now.
                let _ = tokio::time::Instant::now() + d;
                let _ = std::time::Instant::now() + d;
            }
        }
        let never = cfg(&[("FN_HOT_START_TIMEOUT_MSECS", "-1")]).unwrap();
        assert_eq!(never.hot_start_timeout, shared::config::NEVER);
    }
}
