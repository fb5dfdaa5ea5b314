//! The agent: the entry point that runs calls (docs/fn-compatibility.md, "Agent").
//!
//! `submit` checks the call can ever fit, then either runs it cold (`default`: one container
//! per call) or finds it a hot container through the slot queue of its slot key. The call's
//! timeout starts when it has a container; waiting for capacity is bounded by the same
//! timeout but answers 503 instead of 504.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use shared::config::bounded;
use shared::time::DateTime;
use shared::{Call, CallStatus};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::call::{CallResponse, CallSpec, Format};
use crate::config::AgentConfig;
use crate::driver::docker::DockerDriver;
use crate::driver::{ContainerSpec, Driver};
use crate::error::AgentError;
use crate::hot::{HotContainer, HotStart, IofsDir};
use crate::protocol::{self, Limits, Outcome};
use crate::recorder::{CallRecorder, LogBuffer, RecordWriter};
use crate::resources::{ResourceToken, ResourceTracker};
use crate::slots::{LaunchReply, SlotQueue, SlotStats};

/// How long to wait for a container's exit status after its connection broke, to tell a
/// crash (exit code, OOM) from a protocol error.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How a run ended, as a call status. Nobody sees a queued call's answer, so a 5xx from its function is
/// its failure (and retried).
pub fn run_status(queued: bool, result: &Result<CallResponse, AgentError>) -> CallStatus {
    match result {
        Ok(r) if queued && r.status >= 500 => CallStatus::Error,
        Ok(_) => CallStatus::Success,
        Err(AgentError::Timeout) => CallStatus::Timeout,
        Err(_) => CallStatus::Error,
    }
}

/// The bridge network the agent creates for function containers when `FN_DOCKER_NETWORKS` names
/// none: inter-container traffic off, shared by every node on the host, and also the name of its
/// host interface (for firewall rules).
pub const FUNCTIONS_NETWORK: &str = "fn-functions";

/// The (uid, gid) function containers run as unless `FN_DISABLE_UNPRIVILEGED_CONTAINERS` (Fn's).
pub const CONTAINER_USER: (u32, u32) = (1000, 1000);

/// Longest unix socket path the kernel takes (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// A call's output that is not framed counts as complete once quiet this long after the answer;
/// the container waits for it before its next call, so back-to-back calls of a function whose FDK
/// does not frame pay it. It covers the engine's relay delay between the function's write and our
/// read (about 1 ms when idle, up to 25 ms measured on an overloaded node)...
const LOG_QUIET: std::time::Duration = std::time::Duration::from_millis(50);
/// ...up to this long at most (also how long the first call of a container waits for its frame,
/// and a retired container's output for its end).
const LOG_SETTLE_MAX: std::time::Duration = std::time::Duration::from_millis(500);
/// A framed container serves its next call at once, and the next frame completes the log; when no
/// call follows, the log is complete once quiet this long (nobody waits for it but the record)...
const FRAMED_QUIET: std::time::Duration = std::time::Duration::from_millis(250);
/// ...up to this long at most.
const FRAMED_SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// The rest of a call once it has answered: the tail of its log, completed off the response path
/// (and, for a container that waits for it, the container's release).
type LogTail = std::pin::Pin<Box<dyn std::future::Future<Output = Bytes> + Send>>;

/// Runs function calls in containers. Cheap to clone; all clones share one agent.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AgentConfig,
    driver: Arc<dyn Driver>,
    tracker: Arc<ResourceTracker>,
    queues: Mutex<HashMap<String, Arc<SlotQueue<HotContainer>>>>,
    records: RecordWriter,
    shutting_down: AtomicBool,
    inflight: AtomicUsize,
    drained: Notify,
    next_network: AtomicUsize,
    /// Background container removals, awaited at shutdown.
    tasks: TaskTracker,
    /// Calls answered whose log (and so record) is still being completed.
    finishing: Arc<Finishing>,
}

/// Counts a call in flight, until its record is queued; shutdown waits for the count to reach zero.
struct InflightGuard(Arc<Inner>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Removes a cold container (then frees its resources) however the call ends.
struct ColdContainer {
    id: String,
    token: Option<ResourceToken>,
    driver: Arc<dyn Driver>,
    tasks: TaskTracker,
}

impl Drop for ColdContainer {
    fn drop(&mut self) {
        let (id, token, driver) = (std::mem::take(&mut self.id), self.token.take(), self.driver.clone());
        self.tasks.spawn(async move {
            if let Err(e) = driver.remove(&id).await {
                tracing::warn!(container = %id, error = %e, "failed to remove container");
            }
            drop(token);
        });
    }
}

/// Background tasks that complete answered calls' logs and queue their records, numbered so that
/// a flush waits for those started before it only.
#[derive(Default)]
struct Finishing {
    state: Mutex<(u64, std::collections::BTreeSet<u64>)>,
    done: Notify,
}

impl Finishing {
    fn spawn(self: &Arc<Self>, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let n = {
            let mut st = self.state.lock().expect("finishing lock");
            st.0 += 1;
            let n = st.0;
            st.1.insert(n);
            n
        };
        let this = self.clone();
        tokio::spawn(async move {
            work.await;
            this.state.lock().expect("finishing lock").1.remove(&n);
            this.done.notify_waiters();
        });
    }

    /// Waits until every task spawned before this call has ended.
    async fn wait(&self) {
        let upto = self.state.lock().expect("finishing lock").0;
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let oldest = self.state.lock().expect("finishing lock").1.first().copied();
            if oldest.is_none_or(|n| n > upto) {
                return;
            }
            done.await;
        }
    }
}

/// A hot container taken for a call; if the call is abandoned, the container is retired.
struct Busy {
    queue: Arc<SlotQueue<HotContainer>>,
    container: Option<Arc<HotContainer>>,
    /// Counted as settling in the queue (answered, waiting for its log).
    settling: bool,
}

impl Busy {
    fn get(&self) -> &Arc<HotContainer> {
        self.container.as_ref().expect("busy container")
    }
    fn take(&mut self) -> Arc<HotContainer> {
        self.container.take().expect("busy container")
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if std::mem::take(&mut self.settling) {
            self.queue.settling(false);
        }
        if self.container.take().is_some() {
            self.queue.retire_busy();
        }
    }
}

impl Agent {
    /// An agent on the local Docker engine, with capacity detected from the machine and capped
    /// by the configuration. Leftover containers of this instance are removed first.
    pub async fn new(cfg: AgentConfig, recorder: Arc<dyn CallRecorder>) -> Result<Agent, AgentError> {
        let driver = Arc::new(DockerDriver::connect(cfg.docker_auth.clone()).await?);
        let tracker =
            ResourceTracker::detect(cfg.max_total_memory, cfg.max_total_cpu_mcpus, cfg.non_blocking_resources);
        Self::with_driver(cfg, driver, tracker, recorder).await
    }

    /// An agent on any driver and tracker (tests, other engines).
    pub async fn with_driver(
        cfg: AgentConfig,
        driver: Arc<dyn Driver>,
        tracker: Arc<ResourceTracker>,
        recorder: Arc<dyn CallRecorder>,
    ) -> Result<Agent, AgentError> {
        // A unix socket path longer than the kernel's limit fails only when a container starts, as an
        // opaque 502: refuse the setting at start instead, naming it.
        let socket = cfg.iofs_path.join(&cfg.instance_id).join(format!("fn-{}", "x".repeat(26))).join("lsnr.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(AgentError::Internal(format!(
                "FN_IOFS_PATH {} is too long: function sockets under it ({} bytes) exceed the {MAX_SOCKET_PATH}-byte unix socket limit",
                cfg.iofs_path.display(),
                socket.as_os_str().len()
            )));
        }
        // Function containers are tenants, not neighbours: unless the operator names networks,
        // they share a bridge where they cannot reach each other (see the deploy docs for the
        // firewall rules that also keep them off the host and the cloud metadata address).
        let mut cfg = cfg;
        if cfg.docker_networks.is_empty() {
            let labels = HashMap::from([(cfg.container_label_tag.clone(), FUNCTIONS_NETWORK.to_string())]);
            driver.ensure_isolated_network(FUNCTIONS_NETWORK, &labels).await?;
            cfg.docker_networks = vec![FUNCTIONS_NETWORK.to_string()];
        }
        let records = RecordWriter::start(recorder, cfg.record_queue);
        let agent = Agent {
            inner: Arc::new(Inner {
                cfg,
                driver,
                tracker,
                queues: Mutex::new(HashMap::new()),
                records,
                shutting_down: AtomicBool::new(false),
                inflight: AtomicUsize::new(0),
                drained: Notify::new(),
                next_network: AtomicUsize::new(0),
                tasks: TaskTracker::new(),
                finishing: Arc::default(),
            }),
        };
        let reaped = agent.reap().await?;
        if reaped > 0 {
            tracing::info!(reaped, "removed containers left behind by a previous run");
        }
        check_iofs_path(&agent.inner.cfg.iofs_path)?;
        crate::hot::prepare_root(&agent.inner.iofs_root())?;
        Ok(agent)
    }

    /// The memory/CPU tracker (capacity and usage).
    pub fn resources(&self) -> &Arc<ResourceTracker> {
        &self.inner.tracker
    }

    /// The configuration in use.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.cfg
    }

    /// Counters of the hot slot queue for a slot key ([`CallSpec::slot_key`]), if it exists.
    pub fn slot_stats(&self, key: &str) -> Option<SlotStats> {
        self.inner.queues.lock().expect("queues lock").get(key).map(|q| q.stats())
    }

    /// Removes every container labelled as this instance's (a previous run that was killed),
    /// and its socket directories. Returns how many containers were removed.
    pub async fn reap(&self) -> Result<usize, AgentError> {
        let cfg = &self.inner.cfg;
        let ids = self.inner.driver.list_labelled(&cfg.container_label_tag, &cfg.instance_id).await?;
        for id in &ids {
            self.inner.driver.remove(id).await?;
        }
        let _ = std::fs::remove_dir_all(self.inner.iofs_root());
        Ok(ids.len())
    }

    /// Runs one call and returns the function's response. Errors carry Fn's status/message.
    /// The call is recorded (start and finish, with its log) off the response path: the tail of a
    /// hot container's output is collected after the answer (see [`crate::protocol::logs`]).
    pub async fn submit(&self, call: CallSpec) -> Result<CallResponse, AgentError> {
        let inner = &self.inner;
        inner.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = InflightGuard(inner.clone());
        if inner.shutting_down.load(Ordering::SeqCst) {
            return Err(AgentError::ShuttingDown);
        }
        let mut record = Call {
            fn_id: call.fn_id.clone(),
            path: call.path.clone(),
            ..Call::new(&call.id, &call.app_id, CallStatus::Running)
        };
        let mut log = LogBuffer::new(inner.cfg.max_log_size);
        let (result, tail) = inner.run(&call, &mut record, &mut log).await;
        record.completed_at = Some(DateTime::now());
        let status = run_status(call.queued, &result);
        record.error = match &result {
            Ok(r) if status == CallStatus::Error => format!("function responded with status {}", r.status),
            Ok(_) => String::new(),
            Err(e) => e.message(),
        };
        // A queued call's failed run is not its end: the record stays running until the queue side
        // records the attempt and either queues the call again or gives it up (`DataAccess::complete`).
        record.status = if call.queued && status != CallStatus::Success { CallStatus::Running } else { status };
        if let Err(e) = &result {
            if e.status() >= 500 && !matches!(e, AgentError::TooBusy | AgentError::ShuttingDown) {
                tracing::debug!(call_id = %call.id, error = %e, "call failed");
            }
        }
        let body = match (call.queued, &result) {
            (true, Ok(response)) => Some(response.body.clone()),
            _ => None,
        };
        let finish = {
            let inner = inner.clone();
            async move {
                if let Some(tail) = tail {
                    log.write(&tail.await);
                }
                if let Some(body) = body {
                    log.write(&body);
                }
                inner.records.finished(record, log.into_bytes()).await;
                drop(guard);
            }
        };
        if call.queued {
            // Nobody waits for a queued call's answer; its record must be complete when it returns.
            finish.await;
        } else {
            inner.finishing.spawn(finish);
        }
        result
    }

    /// Waits until the records of every call submitted so far are written: an async call is
    /// acknowledged to the queue only after its result is recorded.
    pub async fn flush_records(&self) {
        self.inner.finishing.wait().await;
        self.inner.records.flush().await
    }

    /// Graceful stop (SIGTERM): new calls get 503, in-flight calls finish, then every
    /// container is removed and pending records are written.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::SeqCst);
        loop {
            let drained = inner.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if inner.inflight.load(Ordering::SeqCst) == 0 {
                break;
            }
            drained.await;
        }
        let queues: Vec<_> = inner.queues.lock().expect("queues lock").values().cloned().collect();
        for q in queues {
            drop(q.drain_idle());
        }
        inner.records.close().await;
        inner.tasks.close();
        inner.tasks.wait().await;
        // Idle watchers drop their handles a moment after the drain, and Docker may still be
        // finishing a removal: sweep by label until nothing of ours is left.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match self.reap().await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to remove containers at shutdown"),
            }
            if Instant::now() >= deadline {
                tracing::warn!("containers still present after shutdown");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// `FN_IOFS_PATH` holds every node's socket root: if others may write there (and it is not sticky,
/// like /tmp), they could rename a node's root away and plant their own.
fn check_iofs_path(path: &std::path::Path) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(path)
        .map_err(|e| AgentError::Internal(format!("FN_IOFS_PATH {}: {e}", path.display())))?;
    let meta =
        std::fs::metadata(path).map_err(|e| AgentError::Internal(format!("FN_IOFS_PATH {}: {e}", path.display())))?;
    let others_write = meta.mode() & 0o022 != 0;
    let sticky = meta.mode() & 0o1000 != 0;
    if others_write && !sticky {
        return Err(AgentError::Internal(format!(
            "FN_IOFS_PATH {} may be written by other users; make it writable by its owner only (chmod 711)",
            path.display()
        )));
    }
    Ok(())
}

impl Inner {
    fn iofs_root(&self) -> PathBuf {
        self.cfg.iofs_path.join(&self.cfg.instance_id)
    }

    fn limits(&self) -> Limits {
        Limits { max_body: self.cfg.max_response_size, max_headers: self.cfg.max_response_header_size }
    }

    /// Forgets a slot queue that has nothing in it and that nobody else holds, so queues of
    /// functions that stopped being called do not pile up.
    fn prune_queue(&self, key: &str) {
        let mut queues = self.queues.lock().expect("queues lock");
        if let Some(q) = queues.get(key) {
            let s = q.stats();
            if Arc::strong_count(q) == 1 && s.waiting + s.starting + s.idle + s.busy == 0 {
                queues.remove(key);
            }
        }
    }

    fn queue(&self, key: &str) -> Arc<SlotQueue<HotContainer>> {
        self.queues
            .lock()
            .expect("queues lock")
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(SlotQueue::new()))
            .clone()
    }

    async fn run(
        self: &Arc<Self>,
        call: &CallSpec,
        record: &mut Call,
        log: &mut LogBuffer,
    ) -> (Result<CallResponse, AgentError>, Option<LogTail>) {
        if self.cfg.max_request_size > 0 && call.body.len() as u64 > self.cfg.max_request_size {
            return (Err(AgentError::RequestTooLarge), None);
        }
        if call.format == Format::CloudEvent {
            return (Err(AgentError::UnsupportedFormat(call.format)), None);
        }
        if !self.tracker.is_possible(call.memory_bytes(), call.cpus_mcpu) {
            return (Err(AgentError::CannotAllocate), None);
        }
        let wait_deadline = Instant::now() + bounded(call.timeout);
        if call.format.is_hot() {
            match self.run_hot(call, wait_deadline, record).await {
                Ok((result, tail)) => (result, Some(tail)),
                Err(e) => (Err(e), None),
            }
        } else {
            (self.run_cold(call, wait_deadline, record, log).await, None)
        }
    }

    /// Marks the call running and queues the "started" record.
    async fn started(&self, record: &mut Call) {
        record.started_at = Some(DateTime::now());
        self.records.started(record.clone()).await;
    }

    /// Container settings shared by hot and cold containers, hardening included.
    fn container_spec(&self, call: &CallSpec, env: Vec<String>) -> ContainerSpec {
        let cfg = &self.cfg;
        let mut labels = HashMap::from([(cfg.container_label_tag.clone(), cfg.instance_id.clone())]);
        labels.insert("fn.app_id".into(), call.app_id.clone());
        labels.insert("fn.fn_id".into(), call.fn_id.clone());
        let network_mode = match cfg.docker_networks.len() {
            0 => None,
            // Spread containers over the networks in turn.
            n => Some(cfg.docker_networks[self.next_network.fetch_add(1, Ordering::Relaxed) % n].clone()),
        };
        let ulimits = [
            ("nofile", cfg.max_open_files),
            ("memlock", cfg.max_locked_memory),
            ("sigpending", cfg.max_pending_signals),
            ("msgqueue", cfg.max_message_queue),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(n, v)| (n.to_string(), v))
        .collect();
        ContainerSpec {
            name: format!("fn-{}", ulid::Ulid::new().to_string().to_lowercase()),
            image: call.image.clone(),
            env,
            memory_bytes: call.memory_mb << 20,
            cpu_mcpu: call.cpus_mcpu,
            tmpfs_mb: call.tmpfs_mb,
            tmpfs_inodes: cfg.max_tmpfs_inodes,
            tmpfs: call.tmpfs_mb > 0 || !cfg.disable_readonly_rootfs,
            labels,
            binds: Vec::new(),
            open_stdin: false,
            stdin_once: false,
            read_only_rootfs: !cfg.disable_readonly_rootfs,
            user: (!cfg.disable_unprivileged).then(|| format!("{}:{}", CONTAINER_USER.0, CONTAINER_USER.1)),
            drop_privileges: !cfg.disable_unprivileged,
            pids_limit: cfg.max_pids,
            ulimits,
            network_mode,
            fs_size_mb: cfg.max_fs_size_mb,
        }
    }

    async fn ensure_image(&self, image: &str) -> Result<(), AgentError> {
        tokio::time::timeout(self.cfg.pull_timeout, self.driver.ensure_image(image))
            .await
            .map_err(|_| AgentError::PullTimeout)?
    }

    /// `default` format: a fresh container per call.
    async fn run_cold(
        self: &Arc<Self>,
        call: &CallSpec,
        wait_deadline: Instant,
        record: &mut Call,
        log: &mut LogBuffer,
    ) -> Result<CallResponse, AgentError> {
        let token = self.tracker.acquire(call.memory_bytes(), call.cpus_mcpu, wait_deadline).await?;
        self.ensure_image(&call.image).await?;
        // The deadline the function sees is fixed at create time; it is close to the real one
        // because create and start are quick once the image is there.
        let fn_deadline = Utc::now() + bounded(call.timeout);
        let mut env = call.base_env();
        env.extend(protocol::default::call_env(call, fn_deadline));
        let mut spec = self.container_spec(call, env);
        spec.open_stdin = true;
        spec.stdin_once = true;
        let id = self.driver.create(&spec).await?;
        let container =
            ColdContainer { id, token: Some(token), driver: self.driver.clone(), tasks: self.tasks.clone() };
        let attached = self.driver.attach(&container.id, true).await?;
        self.driver.start(&container.id).await?;
        self.started(record).await;
        let exec = async {
            let body =
                protocol::default::exchange(attached, call.body.clone(), self.cfg.max_response_size, log).await?;
            let status = self.driver.wait(&container.id).await?;
            match AgentError::from_exit(status.code, status.oom_killed) {
                Some(e) => Err(e),
                None => Ok(body),
            }
        };
        let body = tokio::time::timeout(call.timeout, exec).await.map_err(|_| AgentError::Timeout)??;
        drop(container);
        Ok(CallResponse { status: 200, headers: http::HeaderMap::new(), body })
    }

    /// Hot formats: take (or launch) a container from the slot queue and dispatch over its
    /// connection. Answers the call's result and the tail of its log: a container whose output is
    /// framed goes back to the stack at once; any other waits for its output to settle first, so no
    /// line of this call can reach the next call's log.
    async fn run_hot(
        self: &Arc<Self>,
        call: &CallSpec,
        wait_deadline: Instant,
        record: &mut Call,
    ) -> Result<(Result<CallResponse, AgentError>, LogTail), AgentError> {
        let key = call.slot_key();
        let queue = self.queue(&key);
        // Launches only need the function's settings, not this request.
        let template = Arc::new(CallSpec { body: Bytes::new(), headers: http::HeaderMap::new(), ..call.clone() });
        let container = queue
            .acquire(wait_deadline, self.cfg.hot_poll, |reply| {
                let (inner, queue, template) = (self.clone(), queue.clone(), template.clone());
                tokio::spawn(async move { inner.launch(queue, template, wait_deadline, reply).await });
            })
            .await?;
        let mut busy = Busy { queue: queue.clone(), container: Some(container), settling: false };
        busy.get().ensure_running(&self.driver).await?;
        self.started(record).await;
        let seq = busy.get().open_log(&call.id);
        let fn_deadline = Utc::now() + bounded(call.timeout);
        let outcome = {
            let c = busy.get();
            tokio::select! {
                o = tokio::time::timeout(call.timeout, c.dispatch(call, fn_deadline, self.limits())) => {
                    o.unwrap_or_else(|_| Outcome::fatal(AgentError::Timeout))
                }
                st = c.exited() => {
                    Outcome::fatal(AgentError::from_exit(st.code, st.oom_killed).unwrap_or(AgentError::ReceiveFailed))
                }
            }
        };
        let answered = Instant::now();
        let mut result = outcome.result;
        let c = busy.get().clone();
        if outcome.retire {
            // A broken connection is often a dying container: report its exit like Fn does.
            if matches!(
                result,
                Err(AgentError::ReceiveFailed)
                    | Err(AgentError::InvalidHttpResponse(_))
                    | Err(AgentError::InvalidJsonResponse(_))
            ) {
                if let Some(st) = c.exit_within(EXIT_GRACE).await {
                    if let Some(e) = AgentError::from_exit(st.code, st.oom_killed) {
                        result = Err(e);
                    }
                }
            }
            // Killed at once; its output ends once everything it wrote has arrived.
            let inner = self.clone();
            let tail = async move {
                if let Err(e) = inner.driver.remove(&c.id).await {
                    tracing::warn!(container = %c.id, error = %e, "failed to remove container");
                }
                let killed = Instant::now();
                let log = c.finish_log(seq, killed, LOG_SETTLE_MAX, LOG_SETTLE_MAX).await;
                drop((c, busy, queue));
                inner.prune_queue(&key);
                log
            };
            return Ok((result, Box::pin(tail)));
        }
        if c.logs_framed() {
            let (gen, claimed) = queue.release(busy.take());
            self.watch_idle(key, queue, c.clone(), gen, claimed);
            let tail = async move { c.finish_log(seq, answered, FRAMED_QUIET, FRAMED_SETTLE_MAX).await };
            return Ok((result, Box::pin(tail)));
        }
        queue.settling(true);
        busy.settling = true;
        let inner = self.clone();
        let tail = async move {
            let log = c.finish_log(seq, answered, LOG_QUIET, LOG_SETTLE_MAX).await;
            busy.settling = false;
            queue.settling(false);
            let (gen, claimed) = queue.release(busy.take());
            inner.watch_idle(key, queue, c, gen, claimed);
            log
        };
        Ok((result, Box::pin(tail)))
    }

    /// Starts one hot container for a waiting call: resources first (bounded by the caller's
    /// wait, abandoned if the caller leaves), then pull and start, which are not charged.
    async fn launch(
        self: Arc<Self>,
        queue: Arc<SlotQueue<HotContainer>>,
        call: Arc<CallSpec>,
        wait_deadline: Instant,
        reply: LaunchReply<HotContainer>,
    ) {
        let mut reply = reply;
        let token = tokio::select! {
            t = self.tracker.acquire(call.memory_bytes(), call.cpus_mcpu, wait_deadline) => t,
            _ = reply.closed() => {
                queue.launch_ended();
                return;
            }
        };
        let result = match token {
            Ok(token) => self.start_hot(&call, token).await,
            Err(e) => Err(e),
        };
        queue.launch_ended();
        match result {
            Ok(c) => {
                if let Err(Ok(c)) = reply.send(Ok(c)) {
                    if !self.shutting_down.load(Ordering::SeqCst) {
                        let (gen, claimed) = queue.push_launched(c.clone());
                        self.watch_idle(call.slot_key(), queue, c, gen, claimed);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(image = %call.image, error = %e, "hot container launch failed");
                let _ = reply.send(Err(e));
            }
        }
    }

    async fn start_hot(&self, call: &CallSpec, token: ResourceToken) -> Result<Arc<HotContainer>, AgentError> {
        self.ensure_image(&call.image).await?;
        let mut env = call.base_env();
        let mut spec = self.container_spec(call, Vec::new());
        let mut iofs = None;
        if call.format == Format::HttpStream {
            // The function creates its socket there as the container's user, and only it may.
            let owner = (!self.cfg.disable_unprivileged).then_some(CONTAINER_USER);
            let dir = IofsDir::create(&self.iofs_root(), &spec.name, owner)?;
            spec.binds.push(format!("{}:{}", dir.0.display(), protocol::http_stream::CONTAINER_DIR));
            env.push(format!("FN_LISTENER={}", protocol::http_stream::LISTENER));
            iofs = Some(dir);
        } else {
            spec.open_stdin = true;
        }
        // Ask the FDK to frame each call's output (see `protocol::logs`).
        env.push(format!("FN_LOGFRAME_NAME={}", protocol::logs::FRAME_NAME));
        env.push(format!("FN_LOGFRAME_HDR={}", protocol::logs::FRAME_HEADER));
        spec.env = env;
        let start = HotStart {
            driver: &self.driver,
            spec,
            iofs,
            start_timeout: self.cfg.hot_start_timeout,
            token,
            tasks: self.tasks.clone(),
            log_cap: self.cfg.max_log_size,
        };
        HotContainer::start(call, start).await
    }

    /// Watches an idle container: pauses it after the freeze delay, retires it after its idle
    /// timeout, when it dies, or when another function waits for memory and nobody waits for
    /// this one. Stops as soon as a call takes the container.
    fn watch_idle(
        self: &Arc<Self>,
        key: String,
        queue: Arc<SlotQueue<HotContainer>>,
        c: Arc<HotContainer>,
        gen: u64,
        claimed: oneshot::Receiver<()>,
    ) {
        let inner = self.clone();
        tokio::spawn(async move {
            inner.idle_watch(&queue, c, gen, claimed).await;
            drop(queue);
            inner.prune_queue(&key);
        });
    }

    async fn idle_watch(
        &self,
        queue: &SlotQueue<HotContainer>,
        c: Arc<HotContainer>,
        gen: u64,
        claimed: oneshot::Receiver<()>,
    ) {
        let inner = self;
        let idle_deadline = Instant::now() + bounded(c.idle_timeout);
        let mut freeze_at = inner.cfg.freeze_idle.map(|d| Instant::now() + bounded(d));
        tokio::pin!(claimed);
        loop {
            let freezing = freeze_at.is_some();
            tokio::select! {
                _ = &mut claimed => return,
                _ = tokio::time::sleep_until(idle_deadline) => {
                    drop(queue.take_idle(gen));
                    return;
                }
                _ = c.exited() => {
                    drop(queue.take_idle(gen));
                    return;
                }
                _ = tokio::time::sleep_until(freeze_at.unwrap_or(idle_deadline)), if freezing => {
                    freeze_at = None;
                    let mut paused = c.paused.lock().await;
                    if !*paused && queue.is_idle(gen) {
                        match inner.driver.pause(&c.id).await {
                            Ok(()) => *paused = true,
                            Err(e) => tracing::debug!(container = %c.id, error = %e, "pause failed"),
                        }
                    }
                }
                _ = inner.tracker.pressure() => {
                    if inner.tracker.waiters() > 0 && queue.stats().waiting == 0 {
                        if let Some(evicted) = queue.take_idle(gen) {
                            tracing::debug!(container = %evicted.id, "evicting idle container for a waiting call");
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_spec_is_hardened_by_default_and_switchable() {
        let cfg = AgentConfig { instance_id: "node-1".into(), ..AgentConfig::default() };
        let spec_for = |cfg: AgentConfig| {
            let inner = Inner {
                cfg,
                driver: Arc::new(NullDriver),
                tracker: ResourceTracker::with_capacity(1 << 30, 1000, false),
                queues: Mutex::new(HashMap::new()),
                records: RecordWriter::inert(),
                shutting_down: AtomicBool::new(false),
                inflight: AtomicUsize::new(0),
                drained: Notify::new(),
                next_network: AtomicUsize::new(0),
                tasks: TaskTracker::new(),
                finishing: Arc::default(),
            };
            let mut call = CallSpec::new("c", "img");
            call.memory_mb = 64;
            call.cpus_mcpu = 250;
            inner.container_spec(&call, vec![])
        };
        let s = spec_for(cfg.clone());
        assert!(s.read_only_rootfs && s.tmpfs && s.drop_privileges);
        assert_eq!(s.user.as_deref(), Some("1000:1000"));
        assert_eq!(s.pids_limit, 50);
        assert_eq!(s.memory_bytes, 64 << 20);
        assert_eq!(s.labels.get("fnproject.runner").map(String::as_str), Some("node-1"));
        let s = spec_for(AgentConfig {
            disable_readonly_rootfs: true,
            disable_unprivileged: true,
            docker_networks: vec!["none".into()],
            ..cfg
        });
        assert!(!s.read_only_rootfs && !s.tmpfs && !s.drop_privileges && s.user.is_none());
        assert_eq!(s.network_mode.as_deref(), Some("none"));
    }

    /// A driver for tests that never reach a container.
    struct NullDriver;

    #[async_trait::async_trait]
    impl Driver for NullDriver {
        async fn ensure_image(&self, _: &str) -> Result<(), AgentError> {
            Ok(())
        }
        async fn create(&self, _: &ContainerSpec) -> Result<String, AgentError> {
            Err(AgentError::Internal("null driver".into()))
        }
        async fn attach(&self, _: &str, _: bool) -> Result<crate::driver::Attached, AgentError> {
            Err(AgentError::Internal("null driver".into()))
        }
        async fn start(&self, _: &str) -> Result<(), AgentError> {
            Ok(())
        }
        async fn wait(&self, _: &str) -> Result<crate::driver::ExitStatus, AgentError> {
            Err(AgentError::Internal("null driver".into()))
        }
        async fn pause(&self, _: &str) -> Result<(), AgentError> {
            Ok(())
        }
        async fn unpause(&self, _: &str) -> Result<(), AgentError> {
            Ok(())
        }
        async fn remove(&self, _: &str) -> Result<(), AgentError> {
            Ok(())
        }
        async fn list_labelled(&self, _: &str, _: &str) -> Result<Vec<String>, AgentError> {
            Ok(vec![])
        }
    }
}
