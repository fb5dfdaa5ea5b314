//! The async loop: takes queued calls from the API node and runs them, while this node has room.
//!
//! A call is taken with a short lease, which the runner keeps by heartbeating ([`DataAccess::heartbeat`],
//! three beats per lease) from the moment it takes the call until its completion is delivered: while the
//! call waits for room, its image is pulled, its container starts and it runs. So a slow pull or a long
//! wait does not make the call run twice, while a runner that dies stops beating and its call runs
//! elsewhere one lease later. The call's end is recorded before the queue is told
//! (`DataAccess::complete`): the API node then acks it, or gives a failed call back for a retry with
//! backoff. At-least-once, with one record per call ID.
//!
//! Each call runs in its own task. Its slot in the loop's capacity is released by a guard, and a panic in
//! it is caught and logged: one bad call neither leaks capacity nor stops the loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::FutureExt;
use shared::time::DateTime;
use shared::{Call, CallStatus, Error, QueuedCall};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::call::CallSpec;
use crate::data_access::{DataAccess, Delivery};
use crate::http::request::{fn_spec, route_spec, Incoming};
use crate::Agent;

/// Longest long-poll for a queued call; short enough that shutdown is prompt.
const DEQUEUE_WAIT: Duration = Duration::from_secs(5);
/// Memory an async call is assumed to need when deciding whether to take one (Fn's default).
const TYPICAL_CALL_BYTES: u64 = 128 << 20;
/// Heartbeats per lease: two may be lost or late before the lease runs out.
const BEATS_PER_LEASE: u32 = 3;
/// Shortest time between heartbeats, whatever the lease.
const MIN_BEAT: Duration = Duration::from_millis(50);
/// Wait before retrying a heartbeat the API node did not answer (and before the first answer).
const BEAT_RETRY: Duration = Duration::from_secs(1);

/// Runs queued calls until `stop` turns true, then waits for the calls it started.
pub async fn run(agent: Arc<Agent>, data: Arc<dyn DataAccess>, mut stop: watch::Receiver<bool>) {
    let running = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    // Take calls only while 80% of the node's memory would cover them, as Fn's async high-water mark.
    let limit = ((agent.resources().total_memory() / 10 * 8) / TYPICAL_CALL_BYTES).max(1) as usize;
    while !*stop.borrow() {
        let (used_memory, _) = agent.resources().used();
        // A runner whose report buffer is full takes no call it could not report.
        let full = running.load(Ordering::SeqCst) >= limit
            || used_memory + TYPICAL_CALL_BYTES > agent.resources().total_memory()
            || !data.accepts_calls();
        if full {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => {}
            }
            reap(&mut tasks);
            continue;
        }
        let next = tokio::select! {
            next = data.dequeue(DEQUEUE_WAIT) => next,
            _ = stop.changed() => break,
        };
        match next {
            Ok(Some(delivery)) => {
                let slot = Slot::take(&running);
                let (agent, data) = (agent.clone(), data.clone());
                tasks.spawn(async move {
                    let _slot = slot;
                    let id = delivery.call.call.id.clone();
                    let run = std::panic::AssertUnwindSafe(run_one(&agent, data, delivery));
                    if let Err(panic) = run.catch_unwind().await {
                        let cause = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(call_id = %id, %cause, "queued call panicked; its lease runs out and it runs again");
                    }
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot take queued calls; retrying in 1s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        reap(&mut tasks);
    }
    while tasks.join_next().await.is_some() {}
}

/// Forgets finished call tasks. Their panics were caught and logged inside; a task that still failed
/// (cancelled) has released its slot through its guard.
fn reap(tasks: &mut JoinSet<()>) {
    while let Some(done) = tasks.try_join_next() {
        if let Err(e) = done {
            tracing::error!(error = %e, "queued call task failed");
        }
    }
}

/// One call's place in the loop's capacity, given back when dropped: when the call ends, and also when
/// its task unwinds from a panic or is cancelled.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(running: &Arc<AtomicUsize>) -> Slot {
        running.fetch_add(1, Ordering::SeqCst);
        Slot(running.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Aborts a task when dropped (the heartbeat of a call that ended, failed or panicked).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a delivered call held until aborted: beats at once (learning the lease), then three times per
/// lease. A refusal (4xx) means the hold is lost, the call runs elsewhere: beating stops. An API node
/// that does not answer is asked again soon; the lease may run out meanwhile, as it must if it stays away.
async fn keep_held(data: Arc<dyn DataAccess>, delivery: Delivery) {
    let id = &delivery.call.call.id;
    let mut every = BEAT_RETRY;
    loop {
        match data.heartbeat(&delivery).await {
            Ok(lease) => every = (lease / BEATS_PER_LEASE).max(MIN_BEAT),
            Err(e) if e.status() < 500 => {
                tracing::warn!(call_id = %id, error = %e, "lost the hold on a queued call; it may run elsewhere");
                return;
            }
            Err(e) => {
                tracing::warn!(call_id = %id, error = %e, "heartbeat of a queued call not taken; retrying");
                every = every.min(BEAT_RETRY);
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs one delivered call and completes it once its end is recorded, holding its lease throughout.
async fn run_one(agent: &Agent, data: Arc<dyn DataAccess>, delivery: Delivery) {
    let _held = AbortOnDrop(tokio::spawn(keep_held(data.clone(), delivery.clone())));
    let data = data.as_ref();
    let id = delivery.call.call.id.clone();
    let record = match spec(data, &delivery.call).await {
        Ok(spec) => {
            let result = agent.submit(spec).await;
            // The agent records the call in the background; wait for it, so the queue never forgets a
            // call whose result is not stored yet.
            agent.flush_records().await;
            Call { status: crate::agent::run_status(true, &result), ..delivery.call.call.clone() }
        }
        Err(e) if e.status() == 503 => {
            // The API node is unreachable: nothing can be recorded, so leave the call to its lease.
            tracing::warn!(call_id = %id, error = %e, "queued call not run: cannot reach the API node");
            return;
        }
        Err(e) => {
            // Its fn, route or app is gone: the call fails, recorded with the reason.
            let record = Call {
                status: CallStatus::Error,
                error: e.message(),
                completed_at: Some(DateTime::now()),
                ..delivery.call.call.clone()
            };
            if let Err(e) = data.call_finished(&record, "").await {
                tracing::warn!(call_id = %id, error = %e, "cannot record a failed queued call");
                return;
            }
            record
        }
    };
    if let Err(e) = data.complete(&delivery, &record).await {
        tracing::warn!(call_id = %id, error = %e, "cannot complete a queued call; it will run again");
    }
}

/// What to run for a queued call: its fn (by ID) or route (by app and path), with the stored request.
async fn spec(data: &dyn DataAccess, q: &QueuedCall) -> Result<CallSpec, Error> {
    let body = base64::engine::general_purpose::STANDARD
        .decode(&q.body)
        .map_err(|_| Error::internal(format!("queued call {} has a body that is not base64", q.call.id)))?;
    let mut headers = http::HeaderMap::new();
    for (name, values) in &q.headers {
        for v in values {
            if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(v)) {
                headers.append(n, v);
            }
        }
    }
    let incoming = Incoming {
        id: q.call.id.clone(),
        method: q.method.clone(),
        url: q.url.clone(),
        headers,
        body: Bytes::from(body),
    };
    let mut spec = if q.call.fn_id.is_empty() {
        let app = data.app_by_id(&q.call.app_id).await?;
        let route = data.route(&app.id, &q.call.path).await?;
        route_spec(&app, &route, incoming)
    } else {
        let f = data.fn_by_id(&q.call.fn_id).await?;
        let app = data.app_by_id(&f.app_id).await?;
        fn_spec(&app, &f, incoming)
    };
    spec.queued = true;
    Ok(spec)
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use async_trait::async_trait;
    use serde_json::json;
    use shared::{App, Func, Route, Trigger};

    use super::*;
    use crate::memory_data::MemoryDataAccess;
    use crate::{AgentConfig, NoopRecorder};

    /// Memory data whose `fn_by_id` panics for the fn ID `"boom"`.
    struct Panicky(Arc<MemoryDataAccess>);

    #[async_trait]
    impl DataAccess for Panicky {
        async fn app_by_name(&self, name: &str) -> Result<App, Error> {
            self.0.app_by_name(name).await
        }
        async fn app_by_id(&self, id: &str) -> Result<App, Error> {
            self.0.app_by_id(id).await
        }
        async fn fn_by_id(&self, id: &str) -> Result<Func, Error> {
            assert_ne!(id, "boom", "a bug in one call");
            self.0.fn_by_id(id).await
        }
        async fn route(&self, app_id: &str, path: &str) -> Result<Route, Error> {
            self.0.route(app_id, path).await
        }
        async fn trigger_by_source(&self, app_id: &str, t: &str, source: &str) -> Result<Trigger, Error> {
            self.0.trigger_by_source(app_id, t, source).await
        }
        async fn enqueue(&self, call: &QueuedCall) -> Result<(), Error> {
            self.0.enqueue(call).await
        }
        async fn dequeue(&self, wait: Duration) -> Result<Option<Delivery>, Error> {
            self.0.dequeue(wait).await
        }
        async fn heartbeat(&self, delivery: &Delivery) -> Result<Duration, Error> {
            self.0.heartbeat(delivery).await
        }
        async fn call_started(&self, call: &Call) -> Result<(), Error> {
            self.0.call_started(call).await
        }
        async fn call_finished(&self, call: &Call, log: &str) -> Result<(), Error> {
            self.0.call_finished(call, log).await
        }
        async fn complete(&self, delivery: &Delivery, call: &Call) -> Result<(), Error> {
            self.0.complete(delivery, call).await
        }
    }

    /// An agent on the local Docker engine with room for `memory` bytes: at 256 MiB the loop runs one
    /// call at a time.
    async fn agent(test: &str, memory: u64) -> Arc<Agent> {
        let cfg = AgentConfig {
            container_label_tag: "fnrs-async-loop-test".into(),
            instance_id: format!("{test}-{}", shared::id::new_id().to_lowercase()),
            iofs_path: std::env::temp_dir().join("fn-iofs-tests"),
            max_total_memory: memory,
            ..AgentConfig::default()
        };
        Arc::new(Agent::new(cfg, Arc::new(NoopRecorder)).await.expect("agent on the local Docker engine"))
    }

    fn delivery(fn_id: &str, app_id: &str) -> Delivery {
        let call = Call { fn_id: fn_id.into(), ..Call::new(shared::id::new_id(), app_id, CallStatus::Queued) };
        let queued = QueuedCall {
            call,
            method: "POST".into(),
            url: "http://x/invoke".into(),
            headers: Default::default(),
            body: String::new(),
            priority: 0,
        };
        Delivery { call: queued, token: "t".repeat(32), attempt: 1 }
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_call_neither_leaks_capacity_nor_stops_the_loop() {
        let agent = agent("panic", 256 << 20).await;
        let memory = Arc::new(MemoryDataAccess::default());
        // Room for one call at a time: a slot leaked by a panic would stop every call after it.
        {
            let mut queue = memory.deliveries.lock().unwrap();
            for fn_id in ["boom", "gone-1", "boom", "gone-2", "boom", "gone-3"] {
                queue.push_back(delivery(fn_id, "app"));
            }
        }
        let (stop_tx, stop) = watch::channel(false);
        let looping = tokio::spawn(run(agent, Arc::new(Panicky(memory.clone())), stop));
        wait_for("the calls after the panics", || memory.completed.lock().unwrap().len() == 3).await;
        let completed: Vec<(String, CallStatus)> =
            memory.completed.lock().unwrap().iter().map(|(d, c)| (d.call.call.fn_id.clone(), c.status)).collect();
        assert_eq!(
            completed,
            vec![
                ("gone-1".into(), CallStatus::Error),
                ("gone-2".into(), CallStatus::Error),
                ("gone-3".into(), CallStatus::Error)
            ]
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), looping)
            .await
            .expect("the loop stops")
            .expect("no panic escapes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_is_held_by_heartbeats_until_it_is_completed() {
        let docker = bollard::Docker::connect_with_local_defaults().unwrap();
        let image = crate::testing::function_image(&docker, "sleep").await.unwrap();
        let agent = agent("beat", 1 << 30).await;
        let memory = Arc::new(MemoryDataAccess::default());
        let app = App::new(serde_json::from_value(json!({"name": "beats"})).unwrap()).unwrap();
        let func = Func::new(
            serde_json::from_value(
                json!({"name": "s", "app_id": app.id, "image": image, "format": "http-stream", "timeout": 30}),
            )
            .unwrap(),
        )
        .unwrap();
        memory.apps.lock().unwrap().push(app.clone());
        memory.fns.lock().unwrap().push(func.clone());
        // A 300 ms lease: the runner beats every 100 ms while the container starts and sleeps 1.5 s.
        memory.lease_ms.store(300, Ordering::SeqCst);
        let mut d = delivery(&func.id, &app.id);
        d.call.body = base64::engine::general_purpose::STANDARD.encode("1500");
        memory.deliveries.lock().unwrap().push_back(d.clone());
        let (stop_tx, stop) = watch::channel(false);
        let looping = tokio::spawn(run(agent, memory.clone(), stop));
        wait_for("the completion", || !memory.completed.lock().unwrap().is_empty()).await;
        let (_, call) = memory.completed.lock().unwrap()[0].clone();
        assert_eq!(call.status, CallStatus::Success);
        let beats = memory.heartbeats.lock().unwrap().len();
        assert!(beats >= 15, "beats all through the call (1.5 s at one per 100 ms): {beats}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(memory.heartbeats.lock().unwrap().len(), beats, "no beats once the call is completed");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), looping).await.expect("the loop stops").unwrap();
    }
}
