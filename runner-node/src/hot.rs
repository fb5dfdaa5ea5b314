//! One hot container: its connection, its log sink, its pause state and its exit watch.
//! Starting one is the slow path (pull, create, attach, start, wait for the socket); using one
//! touches only its connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::call::{CallSpec, Format};
use crate::driver::{Driver, ExitStatus, Output};
use crate::error::AgentError;
use crate::protocol::logs::{CallLogs, Stream};
use crate::protocol::{self, HotConn, Limits, Outcome, StdioIo};
use crate::resources::ResourceToken;

/// A running container that serves one call at a time.
pub(crate) struct HotContainer {
    /// Docker id.
    pub id: String,
    /// How long it may sit idle.
    pub idle_timeout: Duration,
    conn: tokio::sync::Mutex<HotConn>,
    /// Its stderr (and, for http-stream, stdout) split into the logs of its calls.
    logs: Arc<CallLogs>,
    /// Whether it is frozen; the lock serialises pause and unpause.
    pub paused: tokio::sync::Mutex<bool>,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Held for the container's whole life; released only after removal.
    token: Option<ResourceToken>,
    iofs: Option<IofsDir>,
    pump: tokio::task::AbortHandle,
    driver: Arc<dyn Driver>,
    tasks: TaskTracker,
}

/// Dropping the last handle retires the container: it is killed and removed in the
/// background, and only then are its resources and socket directory given back. This also
/// covers callers that vanish mid-call, so no path can leak a container.
impl Drop for HotContainer {
    fn drop(&mut self) {
        self.pump.abort();
        let driver = self.driver.clone();
        let id = std::mem::take(&mut self.id);
        let token = self.token.take();
        let iofs = self.iofs.take();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.tasks.spawn(async move {
                if let Err(e) = driver.remove(&id).await {
                    tracing::warn!(container = %id, error = %e, "failed to remove container");
                }
                drop((token, iofs));
            });
        }
    }
}

/// The host side of the http-stream socket directory; removed with the container.
pub(crate) struct IofsDir(pub PathBuf);

/// Mode of the agent's socket root: only its owner (root) may create or rename entries; others
/// (the containers' users) may only pass through to their own directory.
const IOFS_ROOT_MODE: u32 = 0o711;

impl IofsDir {
    /// Makes the socket directory `name` of one container under `root` (created root-owned, mode
    /// 0711, if missing). With the container's `owner` (uid, gid) known, the directory is theirs
    /// with mode 0700, so nobody else can plant or swap files in it. Without one (the container runs
    /// as its image's user) or when the agent may not give files away (it is not root), the
    /// container's user is unknown to the host, so the directory must stay open to all (0777).
    pub fn create(root: &Path, name: &str, owner: Option<(u32, u32)>) -> Result<IofsDir, AgentError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let fail = |what: &str, e: std::io::Error| AgentError::Internal(format!("iofs dir {what}: {e}"));
        prepare_root(root)?;
        let dir = root.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| fail("create", e))?;
        let dir = IofsDir(dir);
        let given = match owner {
            Some((uid, gid)) => match std::os::unix::fs::chown(&dir.0, Some(uid), Some(gid)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot give the socket directory to the container's user (is the agent root?); leaving it open to all");
                    false
                }
            },
            None => false,
        };
        if !given {
            std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).map_err(|e| fail("mode", e))?;
        }
        Ok(dir)
    }
}

/// Creates the socket root (mode 0711) if missing, and refuses one this process does not own or
/// that others may write to: whoever can write there can swap a container's directory.
pub(crate) fn prepare_root(root: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let fail = |e: std::io::Error| AgentError::Internal(format!("iofs root {}: {e}", root.display()));
    std::fs::DirBuilder::new().recursive(true).mode(IOFS_ROOT_MODE).create(root).map_err(fail)?;
    let meta = std::fs::symlink_metadata(root).map_err(fail)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Err(AgentError::Internal(format!(
            "FN_IOFS_PATH: {} is not a directory owned by the agent's user",
            root.display()
        )));
    }
    if meta.mode() & 0o7777 != IOFS_ROOT_MODE {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(IOFS_ROOT_MODE)).map_err(fail)?;
    }
    Ok(())
}

impl Drop for IofsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a hot container needs besides the call: created by the agent.
pub(crate) struct HotStart<'a> {
    pub driver: &'a Arc<dyn Driver>,
    pub spec: crate::driver::ContainerSpec,
    pub iofs: Option<IofsDir>,
    pub start_timeout: Duration,
    pub token: ResourceToken,
    pub tasks: TaskTracker,
    /// Per-call log cap (`FN_MAX_LOG_SIZE_BYTES`).
    pub log_cap: usize,
}

impl HotContainer {
    /// Creates, attaches and starts the container and opens its connection. On failure the
    /// container is removed before returning.
    pub async fn start(call: &CallSpec, s: HotStart<'_>) -> Result<Arc<HotContainer>, AgentError> {
        let driver = s.driver.clone();
        let id = driver.create(&s.spec).await?;
        match Self::open(call, &id, s).await {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = driver.remove(&id).await;
                Err(e)
            }
        }
    }

    async fn open(call: &CallSpec, id: &str, s: HotStart<'_>) -> Result<Arc<HotContainer>, AgentError> {
        let stdio = matches!(call.format, Format::Http | Format::Json);
        let attached = s.driver.attach(id, stdio).await?;
        let logs = Arc::new(CallLogs::new(id, true, !stdio, s.log_cap));
        let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(64);
        let pump = {
            let logs = logs.clone();
            let mut output = attached.output;
            tokio::spawn(async move {
                while let Some(Ok(item)) = output.next().await {
                    match item {
                        Output::Stdout(b) if stdio => {
                            if stdout_tx.send(b).await.is_err() {
                                break;
                            }
                        }
                        Output::Stdout(b) => logs.write(Stream::Stdout, &b),
                        Output::Stderr(b) => logs.write(Stream::Stderr, &b),
                    }
                }
                logs.end();
            })
            .abort_handle()
        };
        s.driver.start(id).await?;
        let (exit_tx, exit_rx) = watch::channel(None);
        {
            let driver = s.driver.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                match driver.wait(&id).await {
                    Ok(st) => {
                        let _ = exit_tx.send(Some(st));
                    }
                    Err(e) => {
                        tracing::debug!(container = %id, error = %e, "wait failed");
                        let _ = exit_tx.send(Some(ExitStatus { code: -1, oom_killed: false }));
                    }
                }
            });
        }
        let conn = match call.format {
            Format::HttpStream => {
                let dir = s.iofs.as_ref().expect("http-stream has a socket dir").0.clone();
                let mut exit = exit_rx.clone();
                let exited = async move {
                    let _ = exit.wait_for(|e| e.is_some()).await;
                };
                HotConn::Hyper(protocol::http_stream::connect(&dir, s.start_timeout, exited).await?)
            }
            Format::Http => {
                let io = StdioIo { stdin: attached.stdin, stdout: stdout_rx, pending: Bytes::new() };
                HotConn::Hyper(protocol::handshake(io).await?)
            }
            Format::Json => HotConn::Json(protocol::json::JsonConn {
                stdin: attached.stdin,
                stdout: stdout_rx,
                buf: BytesMut::new(),
            }),
            Format::Default | Format::CloudEvent => return Err(AgentError::UnsupportedFormat(call.format)),
        };
        Ok(Arc::new(HotContainer {
            id: id.to_string(),
            idle_timeout: call.idle_timeout,
            conn: tokio::sync::Mutex::new(conn),
            logs,
            paused: tokio::sync::Mutex::new(false),
            exit: exit_rx,
            token: Some(s.token),
            iofs: s.iofs,
            pump,
            driver: s.driver.clone(),
            tasks: s.tasks,
        }))
    }

    /// Runs one call. The caller bounds it with the call's timeout.
    pub async fn dispatch(&self, call: &CallSpec, deadline: DateTime<Utc>, limits: Limits) -> Outcome {
        let mut conn = self.conn.lock().await;
        match &mut *conn {
            HotConn::Hyper(sender) if call.format == Format::HttpStream => {
                protocol::http_stream::dispatch(sender, call, deadline, limits).await
            }
            HotConn::Hyper(sender) => protocol::http::dispatch(sender, call, deadline, limits).await,
            HotConn::Json(j) => protocol::json::dispatch(j, call, deadline, limits).await,
        }
    }

    /// Starts collecting the container's output for a call; returns the handle of its log.
    pub fn open_log(&self, call_id: &str) -> u64 {
        self.logs.open(call_id)
    }

    /// Whether the container frames its output, so it may serve the next call before the last
    /// call's log is complete (see [`crate::protocol::logs`]).
    pub fn logs_framed(&self) -> bool {
        self.logs.framed()
    }

    /// Waits for the end of a call's log (see [`CallLogs::finish`]) and returns it.
    pub async fn finish_log(&self, seq: u64, answered: Instant, quiet: Duration, max: Duration) -> Bytes {
        self.logs.finish(seq, answered, quiet, max).await
    }

    /// Resolves when the container has exited, with how.
    pub async fn exited(&self) -> ExitStatus {
        let mut rx = self.exit.clone();
        let status = match rx.wait_for(|e| e.is_some()).await {
            Ok(v) => v.expect("checked"),
            Err(_) => ExitStatus { code: -1, oom_killed: false },
        };
        status
    }

    /// The exit status if the container exits within `grace` (to explain a broken connection).
    pub async fn exit_within(&self, grace: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(grace, self.exited()).await.ok()
    }

    /// Thaws the container if it was frozen while idle.
    pub async fn ensure_running(&self, driver: &Arc<dyn Driver>) -> Result<(), AgentError> {
        let mut paused = self.paused.lock().await;
        if *paused {
            driver.unpause(&self.id).await?;
            *paused = false;
        }
        Ok(())
    }
}
