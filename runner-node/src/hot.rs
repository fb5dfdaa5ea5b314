//! One hot container: its connection, its log sink, its pause state and its exit watch.
//! Starting one is the slow path (pull, create, attach, start, wait for the socket); using one
//! touches only its connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::call::{CallSpec, Format};
use crate::driver::{Driver, ExitStatus, Output};
use crate::error::AgentError;
use crate::protocol::{self, HotConn, Limits, Outcome, StdioIo};
use crate::recorder::LogBuffer;
use crate::resources::ResourceToken;

/// Where a container's stderr (and, for http-stream, stdout) goes: the current call's log, or
/// the debug log between calls.
pub(crate) type LogSink = Arc<Mutex<Option<LogBuffer>>>;

/// A running container that serves one call at a time.
pub(crate) struct HotContainer {
    /// Docker id.
    pub id: String,
    /// How long it may sit idle.
    pub idle_timeout: Duration,
    conn: tokio::sync::Mutex<HotConn>,
    log: LogSink,
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
    pub fn create(
        root: &Path,
        name: &str,
        owner: Option<(u32, u32)>,
    ) -> Result<IofsDir, AgentError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let fail =
            |what: &str, e: std::io::Error| AgentError::Internal(format!("iofs dir {what}: {e}"));
        prepare_root(root)?;
        let dir = root.join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| fail("create", e))?;
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
            std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| fail("mode", e))?;
        }
        Ok(dir)
    }
}

/// Creates the socket root (mode 0711) if missing, and refuses one this process does not own or
/// that others may write to: whoever can write there can swap a container's directory.
pub(crate) fn prepare_root(root: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let fail =
        |e: std::io::Error| AgentError::Internal(format!("iofs root {}: {e}", root.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(IOFS_ROOT_MODE)
        .create(root)
        .map_err(fail)?;
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
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(IOFS_ROOT_MODE))
            .map_err(fail)?;
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

    async fn open(
        call: &CallSpec,
        id: &str,
        s: HotStart<'_>,
    ) -> Result<Arc<HotContainer>, AgentError> {
        let stdio = matches!(call.format, Format::Http | Format::Json);
        let attached = s.driver.attach(id, stdio).await?;
        let log: LogSink = Arc::new(Mutex::new(None));
        let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(64);
        let pump = {
            let log = log.clone();
            let mut output = attached.output;
            let id = id.to_string();
            tokio::spawn(async move {
                while let Some(Ok(item)) = output.next().await {
                    let (bytes, is_stdout) = match item {
                        Output::Stdout(b) => (b, true),
                        Output::Stderr(b) => (b, false),
                    };
                    if is_stdout && stdio {
                        if stdout_tx.send(bytes).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    match log.lock().expect("log lock").as_mut() {
                        Some(buf) => buf.write(&bytes),
                        None => tracing::debug!(container = %id, user_log = %String::from_utf8_lossy(&bytes).trim_end(), "idle container output"),
                    }
                }
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
                        let _ = exit_tx.send(Some(ExitStatus {
                            code: -1,
                            oom_killed: false,
                        }));
                    }
                }
            });
        }
        let conn = match call.format {
            Format::HttpStream => {
                let dir = s
                    .iofs
                    .as_ref()
                    .expect("http-stream has a socket dir")
                    .0
                    .clone();
                let mut exit = exit_rx.clone();
                let exited = async move {
                    let _ = exit.wait_for(|e| e.is_some()).await;
                };
                HotConn::Hyper(protocol::http_stream::connect(&dir, s.start_timeout, exited).await?)
            }
            Format::Http => {
                let io = StdioIo {
                    stdin: attached.stdin,
                    stdout: stdout_rx,
                    pending: Bytes::new(),
                };
                HotConn::Hyper(protocol::handshake(io).await?)
            }
            Format::Json => HotConn::Json(protocol::json::JsonConn {
                stdin: attached.stdin,
                stdout: stdout_rx,
                buf: BytesMut::new(),
            }),
            Format::Default | Format::CloudEvent => {
                return Err(AgentError::UnsupportedFormat(call.format))
            }
        };
        Ok(Arc::new(HotContainer {
            id: id.to_string(),
            idle_timeout: call.idle_timeout,
            conn: tokio::sync::Mutex::new(conn),
            log,
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
    pub async fn dispatch(
        &self,
        call: &CallSpec,
        deadline: DateTime<Utc>,
        limits: Limits,
    ) -> Outcome {
        let mut conn = self.conn.lock().await;
        match &mut *conn {
            HotConn::Hyper(sender) if call.format == Format::HttpStream => {
                protocol::http_stream::dispatch(sender, call, deadline, limits).await
            }
            HotConn::Hyper(sender) => {
                protocol::http::dispatch(sender, call, deadline, limits).await
            }
            HotConn::Json(j) => protocol::json::dispatch(j, call, deadline, limits).await,
        }
    }

    /// Starts collecting the container's stderr for a call.
    pub fn begin_log(&self, cap: usize) {
        *self.log.lock().expect("log lock") = Some(LogBuffer::new(cap));
    }

    /// Waits until the call's stderr has been quiet for `quiet` (at most `max`). Stderr reaches us on
    /// Docker's attach stream, apart from the response, so a function that writes and then answers at
    /// once (a panic reported as a 502, say) can have its last lines arrive after the answer.
    pub async fn settle_log(&self, quiet: Duration, max: Duration) {
        let len = || self.log.lock().expect("log lock").as_ref().map_or(0, |b| b.len());
        let started = tokio::time::Instant::now();
        let mut seen = len();
        while started.elapsed() < max {
            tokio::time::sleep(quiet).await;
            let now = len();
            if now == seen {
                return;
            }
            seen = now;
        }
    }

    /// Stops collecting and returns what the call logged.
    pub fn end_log(&self) -> Bytes {
        self.log
            .lock()
            .expect("log lock")
            .take()
            .map(LogBuffer::into_bytes)
            .unwrap_or_default()
    }

    /// Resolves when the container has exited, with how.
    pub async fn exited(&self) -> ExitStatus {
        let mut rx = self.exit.clone();
        let status = match rx.wait_for(|e| e.is_some()).await {
            Ok(v) => v.expect("checked"),
            Err(_) => ExitStatus {
                code: -1,
                oom_killed: false,
            },
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
