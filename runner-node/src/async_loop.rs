//! The async loop: takes queued calls from the API node and runs them, while this node has room.
//!
//! A call is taken with a lease, run through the agent like any other, and its end is recorded before
//! the queue is told (`DataAccess::complete`): the API node then acks it, or gives a failed call back for
//! a retry with backoff. A runner that dies mid-call never completes it, so its lease runs out and the
//! call runs elsewhere: at-least-once, with one record per call ID.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use shared::time::DateTime;
use shared::{Call, CallStatus, Error, QueuedCall};
use tokio::sync::watch;

use crate::call::CallSpec;
use crate::data_access::{DataAccess, Delivery};
use crate::http::request::{fn_spec, route_spec, Incoming};
use crate::Agent;

/// Longest long-poll for a queued call; short enough that shutdown is prompt.
const DEQUEUE_WAIT: Duration = Duration::from_secs(5);
/// Memory an async call is assumed to need when deciding whether to take one (Fn's default).
const TYPICAL_CALL_BYTES: u64 = 128 << 20;

/// Runs queued calls until `stop` turns true, then waits for the calls it started.
pub async fn run(agent: Arc<Agent>, data: Arc<dyn DataAccess>, mut stop: watch::Receiver<bool>) {
    let running = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    // Take calls only while 80% of the node's memory would cover them, as Fn's async high-water mark.
    let limit = ((agent.resources().total_memory() / 10 * 8) / TYPICAL_CALL_BYTES).max(1) as usize;
    while !*stop.borrow() {
        let (used_memory, _) = agent.resources().used();
        if running.load(Ordering::SeqCst) >= limit || used_memory + TYPICAL_CALL_BYTES > agent.resources().total_memory() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => {}
            }
            while tasks.try_join_next().is_some() {}
            continue;
        }
        let next = tokio::select! {
            next = data.dequeue(DEQUEUE_WAIT) => next,
            _ = stop.changed() => break,
        };
        match next {
            Ok(Some(delivery)) => {
                running.fetch_add(1, Ordering::SeqCst);
                let (agent, data, running) = (agent.clone(), data.clone(), running.clone());
                tasks.spawn(async move {
                    run_one(&agent, data.as_ref(), delivery).await;
                    running.fetch_sub(1, Ordering::SeqCst);
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
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs one delivered call and completes it once its end is recorded.
async fn run_one(agent: &Agent, data: &dyn DataAccess, delivery: Delivery) {
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
    let incoming = Incoming { id: q.call.id.clone(), method: q.method.clone(), url: q.url.clone(), headers, body: Bytes::from(body) };
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
