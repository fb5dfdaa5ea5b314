//! The container driver seam. The agent only talks to containers through [`Driver`]; the real
//! implementation is [`docker::DockerDriver`] (bollard). Only lifecycle operations go through
//! it: once a hot container runs, calls use its socket or attached pipes directly.

pub mod docker;

use std::collections::HashMap;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use tokio::io::AsyncWrite;

use crate::error::AgentError;

/// Everything needed to create one container, hardening included, so that the agent (not
/// the driver) decides policy and every driver applies the same one.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Container name (unique per node).
    pub name: String,
    /// Image to run.
    pub image: String,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Memory limit in bytes; swap limit is the same (no swap).
    pub memory_bytes: u64,
    /// CPU limit in mCPU, 0 = none.
    pub cpu_mcpu: u64,
    /// Size of the /tmp tmpfs in MB, 0 = no size option.
    pub tmpfs_mb: u64,
    /// `nr_inodes` of the /tmp tmpfs, 0 = default.
    pub tmpfs_inodes: u64,
    /// Whether /tmp gets a tmpfs at all (needed with a read-only root).
    pub tmpfs: bool,
    /// Labels (owner tag for reaping).
    pub labels: HashMap<String, String>,
    /// Bind mounts `host:container[:opts]`.
    pub binds: Vec<String>,
    /// Keep stdin open (stdio formats); stdin closes after the first attach ends for cold calls.
    pub open_stdin: bool,
    /// Close stdin when the attached client disconnects (cold `default` calls).
    pub stdin_once: bool,
    /// Read-only root fs.
    pub read_only_rootfs: bool,
    /// Run as `user` with all capabilities dropped and no-new-privileges.
    pub user: Option<String>,
    /// Drop all capabilities and forbid privilege gain.
    pub drop_privileges: bool,
    /// pids cgroup limit, 0 = none.
    pub pids_limit: i64,
    /// Ulimits as (name, soft = hard).
    pub ulimits: Vec<(String, i64)>,
    /// Docker network mode (`none`, a network name), `None` = Docker's default.
    pub network_mode: Option<String>,
    /// Storage quota in MB, 0 = none.
    pub fs_size_mb: u64,
}

/// One chunk of container output.
#[derive(Debug, Clone)]
pub enum Output {
    /// From stdout.
    Stdout(Bytes),
    /// From stderr.
    Stderr(Bytes),
}

/// The container's stdin and its (stdout, stderr) output.
pub struct Attached {
    /// Writes to the container's stdin (shut it down to send EOF).
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Output as it arrives; ends when the container exits.
    pub output: BoxStream<'static, Result<Output, AgentError>>,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code.
    pub code: i64,
    /// Whether the kernel OOM killer stopped it.
    pub oom_killed: bool,
}

/// Container lifecycle operations the agent needs.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Makes sure the image is present locally, pulling it if not. Errors name the image.
    async fn ensure_image(&self, image: &str) -> Result<(), AgentError>;
    /// Creates a container; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, AgentError>;
    /// Attaches to stdin/stdout/stderr (call before `start` so no output is lost).
    async fn attach(&self, id: &str, stdin: bool) -> Result<Attached, AgentError>;
    /// Starts a created container.
    async fn start(&self, id: &str) -> Result<(), AgentError>;
    /// Waits for the container to exit.
    async fn wait(&self, id: &str) -> Result<ExitStatus, AgentError>;
    /// Freezes an idle container (docker pause).
    async fn pause(&self, id: &str) -> Result<(), AgentError>;
    /// Thaws a frozen container.
    async fn unpause(&self, id: &str) -> Result<(), AgentError>;
    /// Kills and removes the container (force, with volumes). Missing containers are fine.
    async fn remove(&self, id: &str) -> Result<(), AgentError>;
    /// Ids of containers carrying the label `key=value` (running or not).
    async fn list_labelled(&self, key: &str, value: &str) -> Result<Vec<String>, AgentError>;
    /// Makes sure the bridge network `name` for function containers exists with traffic between
    /// its containers off, creating it (with `labels`) if absent. An existing network of that name
    /// that lets containers reach each other is an error, never used. Drivers that cannot isolate
    /// containers fail here.
    async fn ensure_isolated_network(&self, name: &str, labels: &HashMap<String, String>) -> Result<(), AgentError> {
        let _ = labels;
        Err(AgentError::Internal(format!("this driver cannot create the isolated network {name}")))
    }
}
